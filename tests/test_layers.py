"""The import layers of marc: every import points down (or within its package), no circles.

Layers, bottom to top (docs/DESIGN.md, "Layers"):

    0  marc.io, marc.configurable, marc.decoding, marc.vocabulary, marc.compression
    1  marc.rl, marc.retrieval, marc.assets
    2  marc.data
    3  marc.models
    4  marc.modules, callbacks, marc.prerequisites, marc.answer
    5  marc.cli, marc.eval
    6  main, marc.demo, marc.ask, benchmarks

A module may import a module of a lower layer or of its own package (``marc.rl.rewards``
may import ``marc.rl.answers``). Every import counts, including those inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = {
    "marc.io": 0,
    "marc.configurable": 0,
    "marc.assets": 1,
    "marc.decoding": 0,
    "marc.vocabulary": 0,
    "marc.compression": 0,
    "marc.rl": 1,
    "marc.retrieval": 1,
    "marc.data": 2,
    "marc.models": 3,
    "marc.modules": 4,
    "callbacks": 4,
    "marc.prerequisites": 4,
    "marc.answer": 4,
    "marc.cli": 5,
    "marc.eval": 5,
    "main": 6,
    "marc.demo": 6,
    "marc.ask": 6,
    "benchmarks": 6,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def package_of(name: str) -> str:
    """The LAYERS key a module belongs to (its longest matching prefix)."""
    matches = [key for key in LAYERS if name == key or name.startswith(key + ".")]
    if not matches:
        raise AssertionError(f"module {name} has no layer: add it to LAYERS and docs/DESIGN.md")
    return max(matches, key=len)


def project_modules() -> dict[str, Path]:
    files = [*(REPO / "marc").rglob("*.py"), *(REPO / "callbacks").rglob("*.py")]
    files += [*(REPO / "benchmarks").glob("*.py"), REPO / "main.py"]
    modules = {module_name(path): path for path in files}
    modules.pop("marc")  # the empty top-level package: every module has a layer of its own
    return modules


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Project modules imported anywhere in ``path`` (module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from marc.data import synthetic" may name a submodule.
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(name for name in names if name in known)
    return found


MODULES = project_modules()
GRAPH = {name: imports_of(path, set(MODULES)) for name, path in MODULES.items()}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down_or_within_the_package(name):
    own = package_of(name)
    upward = [
        target
        for target in sorted(GRAPH[name])
        if package_of(target) != own and LAYERS[package_of(target)] >= LAYERS[own]
    ]
    assert not upward, (
        f"{name} (layer {LAYERS[own]}) imports {upward} of the same or a higher layer"
    )


def test_there_is_no_import_circle():
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name):
        state[name] = 1
        stack.append(name)
        for target in sorted(GRAPH[name] - {name}):
            if state.get(target) == 1:
                cycle = stack[stack.index(target) :] + [target]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[name] = 2

    for name in sorted(MODULES):
        if name not in state:
            visit(name)


def test_the_checker_sees_lazy_imports(tmp_path):
    source = tmp_path / "lazy.py"
    source.write_text("def f():\n    from marc.models.vlm import VideoVLM\n")
    assert imports_of(source, set(MODULES)) == {"marc.models.vlm"}
