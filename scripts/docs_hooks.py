"""mkdocs hooks (``mkdocs.yml: hooks``): the pages that are generated from the code, and the checks that fail the build.

Generated at build time, so the site cannot drift from the code:

- ``<!-- sslzoo:cli -->``: one section per ``sslzoo`` sub-command, read from its own argparse parser (every flag, its
  default and choices), ``sslzoo pretrain`` and ``sslzoo publish`` included;
- ``<!-- sslzoo:public-api -->``: a mkdocstrings block for every public name of ``sslzoo`` (``sslzoo.__all__``);
- ``<!-- sslzoo:zoo-table -->`` and ``<!-- sslzoo:weights-table PATTERN -->``: the tables of
  :mod:`sslzoo.published` (the README's zoo table is the same function's output), and the model cards of
  ``MODEL_CARDS/`` as pages under ``zoo/cards/``;
- ``<!-- sslzoo:errors -->``: the troubleshooting page's sections, one per :class:`sslzoo.SslzooError` subclass.

Checked (a failure stops the build, with or without ``--strict``): every ``--flag`` a page shows after ``sslzoo
COMMAND`` (in code) exists in that command's parser, every ``sslzoo COMMAND`` exists, and every error class has a
hand-written section on the troubleshooting page (and no section names a class that is gone). A Python name a page
references that does not exist fails through mkdocstrings and autorefs under ``--strict``.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import inspect
import os
import pkgutil
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CARDS = REPO / "MODEL_CARDS"
CARD_PAGES = "zoo/cards"


# ---------------------------------------------------------------- the command line


def cli_parsers() -> dict[str, argparse.ArgumentParser]:
    """``sub-command -> its parser``: the library's own, and the training programs' (``sslzoo.commands`` plugins)."""
    from sslzoo import cli
    from sslzoo.training import config, publish

    root = cli.build_parser(plugins={})
    [sub] = [a for a in root._actions if isinstance(a, argparse._SubParsersAction)]
    parsers = dict(sub.choices)
    plugins = {"pretrain": config.parser("sslzoo pretrain"), "publish": publish.parser("sslzoo publish")}
    installed = set(cli.plugin_commands())
    if installed - set(plugins):
        raise RuntimeError(f"the CLI reference has no parser for the installed sub-commands {sorted(installed - set(plugins))}"
                           " (scripts/docs_hooks.py: cli_parsers)")
    parsers.update(plugins)
    return parsers  # in the order of `sslzoo --help`: inspect, fetch, convert, evaluate, then train and publish


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _argument(action: argparse.Action) -> str:
    if action.option_strings:
        names = ", ".join(f"`{o}`" for o in action.option_strings)
        if action.nargs != 0:
            metavar = action.metavar or action.dest.upper()
            names += f" `{metavar}`" + (" ..." if action.nargs in ("+", "*") else "")
        return names
    return f"`{action.metavar or action.dest}`" + (" ..." if action.nargs in ("+", "*") else "")


def _default(action: argparse.Action) -> str:
    if action.nargs == 0 or action.default in (None, argparse.SUPPRESS) or action.default == []:
        return ""
    return f"`{' '.join(map(str, action.default)) if isinstance(action.default, list) else action.default}`"


def _help_text(help_text: str | None, action: argparse.Action) -> str:
    text = (help_text or "").replace("%(default)s", str(action.default)).replace("%%", "%")
    return text


def command_section(name: str, parser: argparse.ArgumentParser) -> str:
    lines = [f"## `sslzoo {name}`", ""]
    if parser.description:
        lines += [parser.description, ""]
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "110"  # argparse wraps the usage to the terminal's width: the page's, whatever builds it
    try:
        usage = parser.format_usage().removeprefix("usage: ").rstrip()
    finally:
        os.environ.pop("COLUMNS") if columns is None else os.environ.update(COLUMNS=columns)
    lines += ["```text", usage, "```", "",
              "| argument | required | default | choices | what |", "|---|---|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        required = "yes" if (action.required or not action.option_strings) and action.nargs not in ("?", "*") else ""
        choices = ", ".join(f"`{c}`" for c in action.choices) if action.choices else ""
        lines.append(f"| {_cell(_argument(action))} | {required} | {_cell(_default(action))} | {_cell(choices)} |"
                     f" {_cell(_help_text(action.help, action))} |")
    exclusive = [g for g in parser._mutually_exclusive_groups if g._group_actions]
    for group in exclusive:
        lines += ["", "Only one of " + " and ".join(f"`{a.option_strings[0]}`" for a in group._group_actions)
                  + " may be given."]
    lines += ["", "`--help` prints the same; a bad value is one line on stderr and exit status 2.", ""]
    return "\n".join(lines)


def cli_reference() -> str:
    return "\n".join(command_section(name, parser) for name, parser in cli_parsers().items())


_CODE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```|`([^`\n]+)`", re.S | re.M)
_COMMAND = re.compile(r"(?:^|(?<=[\s;&|(]))(?:sslzoo\s+([a-z][\w-]*)|-m\s+sslzoo\.training\.(pretrain|publish))")


def _code_lines(markdown: str):
    """The shell lines of the fenced blocks (all but Python ones) and of the inline code spans, with backslash
    continuations joined and ``#`` comments dropped."""
    for match in _CODE.finditer(markdown):
        language, block, inline = match.groups()
        if block is not None and language in ("python", "py", "pycon"):
            continue
        for line in (block if block is not None else inline).replace("\\\n", " ").splitlines():
            yield re.split(r"(?:^|\s)#", line, maxsplit=1)[0]


def flag_problems(markdown: str, parsers: dict[str, argparse.ArgumentParser] | None = None) -> list[str]:
    """Every ``sslzoo COMMAND`` in the code of ``markdown`` that names a missing command, or a ``--flag`` (up to the
    next ``|``, ``;``, ``&&`` or ``#``) that the command's parser does not have."""
    parsers = cli_parsers() if parsers is None else parsers
    problems = []
    for line in _code_lines(markdown):
        for match in _COMMAND.finditer(line):
            command = match.group(1) or match.group(2)
            if command not in parsers:
                close = difflib.get_close_matches(command, parsers, n=2)
                problems.append(f"`sslzoo {command}` is no command" + (f" (did you mean {close})" if close else ""))
                continue
            rest = re.split(r"\s(?:\||;|&&)\s?|\)", line[match.end():])[0]
            known = {o for a in parsers[command]._actions for o in a.option_strings}
            for flag in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", rest):
                if flag not in known:
                    close = difflib.get_close_matches(flag, known, n=2)
                    problems.append(f"`sslzoo {command}` has no flag `{flag}`" + (f" (did you mean {close})" if close else ""))
    return problems


# ---------------------------------------------------------------- errors


def error_classes() -> list[type]:
    """Every :class:`sslzoo.SslzooError` subclass of the library and of ``sslzoo.training``, by name."""
    from sslzoo.errors import SslzooError

    for package in ("sslzoo", "sslzoo.training"):
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, f"{package}."):
            importlib.import_module(info.name)
    found, todo = {}, [SslzooError]
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith("sslzoo"):
            found[cls.__name__] = cls
        todo += cls.__subclasses__()
    return [found[name] for name in sorted(found, key=lambda n: (n != "SslzooError", n))]


_ERROR_HEADING = re.compile(r"^### `(\w+)`\s*$", re.M)


def error_sections(markdown: str) -> tuple[str, list[str]]:
    """The troubleshooting page with each ``### `ClassName``` section headed by its generated facts (module, bases,
    docstring), and the problems: classes without a section, sections without a class."""
    classes = {cls.__name__: cls for cls in error_classes()}
    named = _ERROR_HEADING.findall(markdown)
    problems = [f"error class `{n}` has no `### `{n}`` section on the troubleshooting page" for n in classes if n not in named]
    problems += [f"the troubleshooting page has a section for `{n}`, which is no SslzooError subclass" for n in named
                 if n not in classes]

    def facts(match: re.Match) -> str:
        cls = classes.get(match.group(1))
        if cls is None:
            return match.group(0)
        bases = ", ".join(f"`{b.__name__}`" for b in cls.__bases__)
        doc = inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0].replace("\n", " ")
        return f"{match.group(0)}\n\n`{cls.__module__}.{cls.__qualname__}` ({bases}): {doc}\n\n**What to do:**"

    return _ERROR_HEADING.sub(facts, markdown), problems


# ---------------------------------------------------------------- the public API


def public_api() -> str:
    """A mkdocstrings block for each name of ``sslzoo.__all__``, at the module that defines it."""
    import sslzoo

    blocks = []
    first = ["create_model", "list_models", "model_info", "save_pretrained", "push_to_hub"]  # the entry points
    for name in sorted(sslzoo.__all__, key=lambda n: (n not in first, first.index(n) if n in first else 0, n == "SslzooError", n)):
        obj = getattr(sslzoo, name)
        blocks.append(f"::: {obj.__module__}.{obj.__qualname__}\n")
    return "\n".join(blocks)


# ---------------------------------------------------------------- mkdocs events


def on_files(files, config):
    from mkdocs.structure.files import File

    for card in sorted(CARDS.glob("*.md")):
        files.append(File.generated(config, f"{CARD_PAGES}/{card.name}", abs_src_path=str(card)))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    from mkdocs.exceptions import PluginError

    from sslzoo.published import weights_table, zoo_table

    problems: list[str] = []
    if "<!-- sslzoo:cli -->" in markdown:
        markdown = markdown.replace("<!-- sslzoo:cli -->", cli_reference())
    if "<!-- sslzoo:public-api -->" in markdown:
        markdown = markdown.replace("<!-- sslzoo:public-api -->", public_api())
    if "<!-- sslzoo:zoo-table -->" in markdown:
        link = os.path.relpath(CARD_PAGES, os.path.dirname(page.file.src_uri) or ".")
        markdown = markdown.replace("<!-- sslzoo:zoo-table -->", zoo_table(card_link=f"{link}/{{name}}.md"))
    markdown = re.sub(r"<!-- sslzoo:weights-table (\S+) -->", lambda m: weights_table(m.group(1)), markdown)
    if "<!-- sslzoo:errors -->" in markdown:
        markdown, missing = error_sections(markdown.replace("<!-- sslzoo:errors -->", ""))
        problems += missing
    if not page.file.src_uri.startswith(CARD_PAGES):
        problems += flag_problems(markdown)
    if problems:
        raise PluginError(f"{page.file.src_uri}: " + "; ".join(problems))
    return markdown
