"""The layers contract: the folders of ``src/fcnxs`` are layers, and a module may import
only from its own layer or those below it, never in a circle. Imports inside functions
count too (they are how a circle hides). docs/design.md explains each layer."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "src" / "fcnxs"
LAYERS = ("core", "hub", "formats", "model", "data", "inference", "evaluation", "training", "apps",
          "", "cli")  # fmt: skip
"""Bottom to top; "" is the package's own __init__ (the public API) and __main__."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    if module == "fcnxs.__main__":  # `python -m fcnxs`: the command line, above it all
        return len(LAYERS)
    parts = module.split(".")
    folder = parts[1] if len(parts) > 1 and parts[1] in LAYERS else ""
    return LAYERS.index(folder)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The fcnxs modules ``path`` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in modules}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports_of(path, set(paths)) - {name} for name, path in paths.items()}


def test_every_module_sits_in_a_layer():
    for name in import_graph():
        parts = name.split(".")
        assert len(parts) == 1 or parts[1] in LAYERS or parts[1] == "__main__", name


def test_no_module_imports_from_a_layer_above_it():
    upward = [
        f"{name} ({LAYERS[layer_of(name)] or 'fcnxs'}) imports {target} "
        f"({LAYERS[layer_of(target)] or 'fcnxs'})"
        for name, targets in import_graph().items()
        for target in targets
        if layer_of(target) > layer_of(name) and target != "fcnxs"
    ]
    assert not upward, "\n".join(upward)


def test_no_module_imports_itself_in_a_circle():
    graph = import_graph()
    graph = {n: {t for t in ts if t != "fcnxs" and not n.startswith(t + ".")} for n, ts in
             graph.items()}  # fmt: skip
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import circle: " + " -> ".join([*path, name]))
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_the_contract_sees_a_violation(tmp_path):
    """The check itself: an upward import in a lower layer is found."""
    module = tmp_path / "low.py"
    module.write_text("def f():\n    from fcnxs.cli import main\n")
    assert imports_of(module, {"fcnxs.cli"}) == {"fcnxs.cli"}
    assert layer_of("fcnxs.cli") > layer_of("fcnxs.core.errors")
