"""The package is a clean stack: no module imports, directly or through others, a module that imports it
(imports inside functions count too — they form the same loop once both run)."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dcprivacy"


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module → the package's modules it imports anywhere in its source (relative or absolute)."""
    modules = {p.stem for p in package.glob("*.py")}
    graph = {}
    for path in package.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 or (node.level == 0 and (node.module or "").split(".")[0] == package.name):
                    parts = (node.module or "").split(".")[(0 if node.level else 1):]
                    if parts and parts[0]:
                        deps.add(parts[0])
                    else:  # from . import a, b
                        deps |= {a.name for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".")[1] for a in node.names if a.name.startswith(package.name + ".")}
        graph[path.stem] = (deps & modules) - {path.stem}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as a sorted list."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_finder_sees_a_loop():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert {"cli", "reproduce", "report", "pipelines"} <= set(graph)
    assert "report" in graph["cli"] and "report" in graph["reproduce"], "both use the one attack report"
    assert cycles(graph) == [], f"import cycles: {cycles(graph)}"
