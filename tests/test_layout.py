"""The code's shape, checked: no import cycle, every import points down the flow, no file over 400 lines.

The flow is the one docs/ARCHITECTURE.md draws; ``LAYERS`` lists it lowest first. A module may import modules of its
own layer or a lower one, never a higher one, and nothing may import in a circle (imports inside functions count:
a lazy import is still an arrow). Run ``python tests/test_layout.py`` to print the graph's violations.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"sslzoo": REPO / "src" / "sslzoo", "training": REPO / "training"}
MAX_LINES = 400

# lowest first; a module belongs to the first layer one of whose prefixes it starts with (longest prefix wins)
LAYERS: list[tuple[str, ...]] = [
    ("sslzoo.errors", "sslzoo.preprocessing", "sslzoo.validation", "sslzoo.notices", "sslzoo.cache",
     "sslzoo.atomic", "sslzoo.cpu_allocator", "sslzoo.command_line"),
    ("sslzoo.registry",),
    ("sslzoo.files", "sslzoo.vit", "sslzoo.card", "sslzoo.runlog", "sslzoo.timm_compat", "sslzoo.pretrained_cfg"),
    # sslzoo.weights, its own flow lowest first: checks and names, fetchers, the sources, locating and hub folders,
    # conversion, then a registry entry's weights end to end
    ("sslzoo.weights.hf_reachable", "sslzoo.weights.pins", "sslzoo.weights.local_hubs", "sslzoo.weights.checksum"),
    ("sslzoo.weights.download", "sslzoo.weights.huggingface", "sslzoo.weights.release_listing"),
    ("sslzoo.weights.sources",),
    ("sslzoo.weights.locate", "sslzoo.weights.hub_folder"),
    ("sslzoo.weights.convert",),
    ("sslzoo.weights.registered", "sslzoo.weights"),
    ("sslzoo.models", "sslzoo.torch_hub"),
    ("sslzoo.timm_registry",),
    ("sslzoo.data",),
    ("sslzoo.eval", "sslzoo.attention", "sslzoo.published"),
    ("sslzoo.cli", "sslzoo"),
    ("training",),
]
# what code outside sslzoo.weights may import of it: the fetchers and the sources are reached through these only
WEIGHTS_INTERFACE = {"sslzoo.weights.registered", "sslzoo.weights.hub_folder", "sslzoo.weights.locate",
                     "sslzoo.weights.pins", "sslzoo.weights.convert", "sslzoo.weights.local_hubs"}


def module_name(path: Path) -> str:
    for top, root in ROOTS.items():
        if path.is_relative_to(root):
            parts = [top, *path.relative_to(root).with_suffix("").parts]
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise ValueError(path)


def modules() -> dict[str, Path]:
    return {module_name(p): p for root in ROOTS.values() for p in sorted(root.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports anywhere in its file (top level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import mod` imports the module; `from mod import name` the module that defines the name
            targets = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known] or [base]
        else:
            continue
        for t in targets:
            while t and t not in known:  # `import a.b.c` imports a.b.c; `from a import b` may name a module or not
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def layer(name: str) -> int:
    best, found = -1, None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (name == p or name.startswith(p + ".")) and len(p) > best:
                best, found = len(p), i
    if found is None:
        raise AssertionError(f"{name} is in no layer of tests/test_layout.py LAYERS: add it where it belongs")
    return found


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(n: str) -> None:
        state[n] = "open"
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == "open":
                found.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = "done"

    for n in sorted(edges):
        if n not in state:
            visit(n)
    return found


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    return [f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
            for a, targets in sorted(edges.items()) for b in sorted(targets) if layer(b) > layer(a)]


def test_the_import_graph_has_no_cycle():
    assert cycles(graph()) == []


def test_every_import_points_down_the_flow():
    assert upward_imports(graph()) == []


def test_the_graph_reader_sees_lazy_and_relative_imports():
    edges = graph()
    assert "sslzoo.weights.locate" in edges["sslzoo.cli"]  # imported inside a command function
    assert "sslzoo.files" in edges["sslzoo.data.cache"]  # `from .. import files`
    assert {"sslzoo.vit", "sslzoo.weights.checksum", "sslzoo.weights.local_hubs"} <= edges["sslzoo.weights.hub_folder"]
    assert {"sslzoo.files", "sslzoo.weights.local_hubs"} <= edges["sslzoo.weights.convert.cache"]  # `...`, `..`
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def weights_reached_from_outside(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """``{module outside sslzoo.weights: the sslzoo.weights modules it imports that are not its interface}``."""
    inside = lambda m: m == "sslzoo.weights" or m.startswith("sslzoo.weights.")  # noqa: E731
    bypass = {a: {b for b in targets if inside(b) and b not in WEIGHTS_INTERFACE
                  and not any(b.startswith(i + ".") for i in WEIGHTS_INTERFACE)}
              for a, targets in edges.items() if not inside(a)}
    return {a: b for a, b in bypass.items() if b}


def test_every_weights_module_has_its_own_layer_and_the_package_is_reached_through_its_interface():
    edges = graph()
    weights = [m for m in edges if m.startswith("sslzoo.weights.")]
    assert weights and all(LAYERS[layer(m)][0].startswith("sslzoo.weights.") for m in weights)
    assert weights_reached_from_outside(edges) == {}
    assert weights_reached_from_outside({"sslzoo.models": {"sslzoo.weights.sources"}}) == {
        "sslzoo.models": {"sslzoo.weights.sources"}}


def test_no_file_is_over_400_lines():
    long = {str(p.relative_to(REPO)): n for p in modules().values()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


if __name__ == "__main__":
    g = graph()
    print("\n".join(["cycles:", *map(" -> ".join, cycles(g)), "upward:", *upward_imports(g), "weights bypassed:",
                     *(f"{a} imports {sorted(b)}" for a, b in weights_reached_from_outside(g).items())]))
    sys.exit(0)
