"""The package's shape (docs/architecture.md): layers import downwards only, no import circle,
no module over 600 lines and no function over 80 lines.

Read from the source with `ast` (nothing is imported), so this runs in well under a second.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "soc_jax"

# The layers, lowest first (docs/architecture.md). A module may import its own layer and the
# layers below it; "ude" stands beside models..analysis and uses only the core.
CORE = {
    "grid", "parameters", "forcing", "transport", "linalg", "batching", "plots", "examples",
    "_checks", "_lazy", "_version", "_cli_args", "_identity", "_resources",
}  # fmt: skip
RANK = {"models": 1, "data": 2, "calibration": 3, "proda": 4, "analysis": 5, "ude": 1}
TOP = {"soc_jax", "cli", "quickstart"}  # entry points: may import every layer
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The soc_jax modules an import statement reaches (the longest existing prefix)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            here = module.split(".")
            if MODULES[module].name != "__init__.py":
                here = here[:-1]
            here = here[: len(here) - (node.level - 1)]
            base = ".".join(here + ([base] if base else []))
        # `from pkg import x`: the module pkg.x if there is one, else pkg itself
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    found = set()
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name and name != module:
            found.add(name)
    return found


def _edges() -> dict[str, set[str]]:
    edges = {}
    for module, path in MODULES.items():
        reached = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                reached |= _targets(module, node)
        # a module reaching its own (lazy) package __init__ is how sub-packages re-export;
        # the package root is not exempt (it sits above every layer)
        edges[module] = {t for t in reached if t == "soc_jax" or not module.startswith(t + ".")}
    return edges


EDGES = _edges()


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "soc_jax"


def _cli_module(module: str) -> bool:
    return module.endswith(".cli") or module.endswith("_cli")


def test_layers_import_downwards_only():
    wrong = []
    for module, targets in EDGES.items():
        here = _layer(module)
        if here in TOP or _cli_module(module):
            allowed = lambda layer: layer not in TOP or layer == "_cli_args"  # noqa: E731
        elif here in CORE:
            allowed = lambda layer: layer in CORE  # noqa: E731
        elif here == "ude":
            allowed = lambda layer: layer in CORE or layer == "ude"  # noqa: E731
        else:
            rank = RANK[here]
            allowed = lambda layer: (
                layer in CORE
                or (  # noqa: E731
                    layer in RANK and layer != "ude" and RANK[layer] <= rank
                )
            )
        wrong += [f"{module} -> {t}" for t in sorted(targets) if not allowed(_layer(t))]
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_no_import_circle():
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in EDGES[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            members = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                members.append(w)
                if w == v:
                    break
            if len(members) > 1:
                circles.append(sorted(members))

    for v in EDGES:
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_and_function_sizes(module):
    source = MODULES[module].read_text()
    n_lines = len(source.splitlines())
    assert n_lines <= MAX_FILE_LINES, f"{module}: {n_lines} lines; split it at a concept boundary"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{module}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_checks_see_the_package():
    # guards the guards: the walk found the layers and a known downward edge
    assert {"soc_jax.models.clm5", "soc_jax.proda.train", "soc_jax.ude.cases"} <= set(MODULES)
    assert "soc_jax.models.registry" in EDGES["soc_jax.proda.predict"]
