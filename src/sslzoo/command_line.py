"""How every sslzoo program reports bad input: ``PROG: error: MESSAGE`` on one line, exit status 2, no usage block.

The ``sslzoo`` command, its evaluation sub-commands and the training programs (``sslzoo pretrain``, ``sslzoo
publish``) all parse with :class:`CommandParser` and print a user error through :func:`report_error`, so that a bad
flag, a bad value and a bad file read the same. Imports nothing heavy: the programs check their options first.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from typing import Any, Iterable, NoReturn

EXIT_FAILED, EXIT_USAGE = 1, 2


def invalid_choice(value: Any, choices: Iterable[Any]) -> str:
    """``invalid choice 'mocov': did you mean 'mocov3'? (choose from ...)``: the close names first."""
    names = [str(c) for c in choices]
    close = difflib.get_close_matches(str(value), names, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"invalid choice {str(value)!r}{hint} (choose from {', '.join(names)})"


class CommandParser(argparse.ArgumentParser):
    """argparse with the one error format: its sub-parsers (``add_subparsers``) are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")

    def _check_value(self, action: argparse.Action, value: Any) -> None:  # argparse's hook for choices
        if action.choices is not None and value not in action.choices:
            raise argparse.ArgumentError(action, invalid_choice(value, action.choices))


def report_error(prog: str, error: BaseException, status: int = EXIT_USAGE) -> int:
    """Print a user error as ``PROG: error: MESSAGE`` on stderr; returns the exit status."""
    print(f"{prog}: error: {error}", file=sys.stderr)
    return status
