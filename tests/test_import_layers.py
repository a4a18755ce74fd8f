"""The import direction of src/lucidrec: derived from the source with ``ast`` (every import statement,
inside functions and ``if TYPE_CHECKING`` blocks too), no module may import a module of a higher layer,
and the module graph has no circle. Data flows down ARCHITECTURE §1's list; so do imports."""

from __future__ import annotations

import ast
from fnmatch import fnmatch
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src"

#: Lowest first. A module belongs to the first layer with a pattern matching its dotted name (a package
#: pattern "lucidrec.data" also covers "lucidrec.data.*"). A module may import its own layer or lower ones.
LAYERS: list[tuple[str, list[str]]] = [
    (
        "foundation",
        [
            "lucidrec",
            "lucidrec.errors",
            "lucidrec.metrics",
            "lucidrec.history",
            "lucidrec.user_history",
            "lucidrec.rewriter",
            "lucidrec.forgetting",
            "lucidrec.encoders",
            "lucidrec.models.config",
        ],
    ),
    ("data", ["lucidrec.data", "lucidrec.splits", "lucidrec.scorer"]),
    ("text", ["lucidrec.query_synonyms", "lucidrec.understanding", "lucidrec.vocab"]),
    ("models", ["lucidrec.models", "lucidrec.sasrec", "lucidrec.baselines", "lucidrec.evaluate"]),
    (
        "artifact",
        [
            "lucidrec.catalog",
            "lucidrec.artifact",
            "lucidrec.io.model_check",
            "lucidrec.retrieval",
            "lucidrec.history_inputs",
            "lucidrec.query",
        ],
    ),
    ("explain", ["lucidrec.explain"]),
    ("pipeline", ["lucidrec.pipeline"]),
    (
        "training, io, evaluation",
        ["lucidrec.training", "lucidrec.finetune", "lucidrec.io", "lucidrec.model_eval"],
    ),
    ("facade", ["lucidrec.recommender", "lucidrec.api"]),
    ("jobs", ["lucidrec.batch", "lucidrec.comparison", "lucidrec.report"]),
    ("interfaces", ["lucidrec.cli", "lucidrec.service"]),
]


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "lucidrec").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the lucidrec modules it imports (``from a import b`` counts ``a.b`` when that is a module,
    else ``a``)."""
    mods = modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
                # `from pkg import sub` needs the module pkg.sub (the package's __init__ runs for any of its
                # modules, so it is no edge); `from mod import name` needs mod.
                found = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            targets |= {t for t in found if t in mods and t != name}
        graph[name] = targets
    return graph


def layer_of(module: str) -> int:
    for n, (_, patterns) in enumerate(LAYERS):
        for p in patterns:
            if module == p or fnmatch(module, p) or (p != "lucidrec" and module.startswith(p + ".")):
                return n
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in {__file__}")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_layer():
    for name in modules():
        layer_of(name)


def test_no_module_imports_a_higher_layer():
    bad = []
    for name, targets in sorted(import_graph().items()):
        for t in sorted(targets):
            if layer_of(t) > layer_of(name):
                bad.append(f"{name} ({LAYERS[layer_of(name)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})")
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_the_module_graph_has_no_circle():
    found = cycles(import_graph())
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_nothing_below_the_facade_imports_it():
    facade = layer_of("lucidrec.recommender")
    users = sorted(n for n, t in import_graph().items() if "lucidrec.recommender" in t and layer_of(n) <= facade)
    assert users in ([], ["lucidrec.api"]), users


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": set(), "c": {"b"}}, []),
    ],
)
def test_the_circle_finder_finds_circles(graph, expected):
    """The checker itself: a circle of three is reported, a tree is not."""
    assert cycles(graph) == expected


def test_the_graph_sees_imports_inside_functions_and_relative_ones():
    """The graph reads lazy imports (the serving path defers heavy ones) and package-relative imports."""
    graph = import_graph()
    assert "lucidrec.service.app" in graph["lucidrec.service"]  # `from lucidrec.service.app import ...`
    # lucidrec.recommender imports lucidrec.training inside fit(); it must be seen
    assert "lucidrec.training" in graph["lucidrec.recommender"]
