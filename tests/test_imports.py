"""No import cycles in rlkit/: every import, at module level or hidden inside a function (where cycles are dodged),
is an edge of the module graph, and the graph must have no cycle."""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

import rlkit

PACKAGE = Path(rlkit.__file__).parent


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted name -> file, for every module under the package folder ``root`` (``pkg/a/__init__.py`` is ``pkg.a``)."""
    names = {}
    for file in sorted(root.rglob("*.py")):
        parts = [package, *file.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = file
    return names


def import_graph(root: Path, package: str) -> dict[str, dict[str, int]]:
    """module -> {imported module of the package: line of the first such import}.

    Every ``import`` statement counts, wherever it is (module level, in a function, under ``if TYPE_CHECKING``: a
    cycle there is still two modules that need each other). ``from pkg.a import b`` points at ``pkg.a.b`` when that
    is a module, else at ``pkg.a``; ``import pkg.a.b`` at ``pkg.a.b``. Importing ``pkg.a.b`` also runs
    ``pkg/a/__init__.py``, but that implicit edge to the parent package is not added: it would make every
    package that imports its own submodules a cycle.
    """
    modules = module_names(root, package)
    graph: dict[str, dict[str, int]] = {}
    for name, file in modules.items():
        is_package = file.name == "__init__.py"
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from the module's package, one level up per extra dot
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                targets = [f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in modules else stem
                           for alias in node.names]
            for target in targets:
                while target and target not in modules:  # `import pkg.a.b` of a module: pkg.a.b; else the nearest
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.setdefault(target, node.lineno)
        graph[name] = edges
    return graph


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The cycles of the graph, each as ``[a, b, ..., a]`` starting at its alphabetically first module: in each
    strongly connected component of more than one module, the shortest cycle through each of its modules (every
    module on a cycle is named at least once, without listing every one of the possibly exponentially many
    cycles). In a stable order, so the report reads the same twice."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm; the graphs are small enough for recursion
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
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
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles: list[list[str]] = []
    for component in sorted(components):
        members = set(component)
        for start in component:
            cycle = shortest_cycle(graph, start, members)
            first = cycle.index(min(cycle[:-1]))  # the same cycle found from another member: one rotation
            rotated = [*cycle[first:-1], *cycle[:first], cycle[first]]
            if rotated not in cycles:
                cycles.append(rotated)
    return cycles


def shortest_cycle(graph: dict[str, dict[str, int]], start: str, members: set[str]) -> list[str]:
    """``[start, ..., start]``, breadth first through ``members`` (a strongly connected component holding start)."""
    parent: dict[str, str] = {}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        if start in graph.get(v, {}):
            path = [v]
            while path[-1] != start:
                path.append(parent[path[-1]])
            return [*reversed(path), start]
        for w in sorted(graph.get(v, {})):
            if w in members and w not in parent and w != start:
                parent[w] = v
                queue.append(w)
    raise AssertionError(f"{start} is not on a cycle of {sorted(members)}")


def describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    """``a (line 3) -> b (line 9) -> a``: each module with the line of its import of the next."""
    steps = [f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])]
    return " -> ".join(steps) + f" -> {cycle[-1]}"


def test_rlkit_has_no_import_cycles():
    graph = import_graph(PACKAGE, "rlkit")
    assert len(graph) > 50 and "rlkit.agents.dqn" in graph["rlkit.agents"]  # the walk found the package
    cycles = find_cycles(graph)
    report = "\n".join(describe(c, graph) for c in cycles)
    assert not cycles, f"{len(cycles)} import cycle(s) (module (line of the import) -> imported module):\n{report}"


def write_package(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_graph_and_cycles_of_a_small_package(tmp_path):
    """A package without a cycle: the edges as the rules say (from-imports of modules and of names, relative
    imports, imports inside functions, none to parent packages implicitly), and no cycle reported."""
    root = write_package(tmp_path, {
        "pkg/__init__.py": "from pkg.a import helper\nfrom . import b\n",
        "pkg/a/__init__.py": "from pkg.a.low import helper\n",
        "pkg/a/low.py": "import os\n\ndef helper():\n    return os.sep\n",
        "pkg/b.py": "import pkg.a.low\n\ndef f():\n    from .c import g\n    return g\n",
        "pkg/c.py": "from pkg.a import low, helper\nfrom .a.low import helper as h\n\ndef g():\n    pass\n",
    })
    graph = import_graph(root, "pkg")
    assert graph == {
        "pkg": {"pkg.a": 1, "pkg.b": 2},
        "pkg.a": {"pkg.a.low": 1},
        "pkg.a.low": {},
        "pkg.b": {"pkg.a.low": 1, "pkg.c": 4},
        "pkg.c": {"pkg.a.low": 1, "pkg.a": 1},
    }
    assert find_cycles(graph) == []


def test_cycles_hidden_in_functions_are_found(tmp_path):
    """Two cycles: a package and its submodule (the rlkit.agents <-> rlkit.agents.base shape), and three modules
    where the import closing the loop hides in a function."""
    root = write_package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/agents/__init__.py": "from pkg.agents.base import Agent\nAGENTS = {}\n",
        "pkg/agents/base.py": "class Agent:\n    def check(self):\n        from pkg.agents import AGENTS\n",
        "pkg/tasks.py": "from pkg import gan\n",
        "pkg/gan.py": "from pkg.video import clip\n",
        "pkg/video.py": "def clip():\n    from pkg.tasks import NETS\n",
        "pkg/fine.py": "from pkg.tasks import NETS\n",
    })
    graph = import_graph(root, "pkg")
    assert find_cycles(graph) == [["pkg.agents", "pkg.agents.base", "pkg.agents"],
                                  ["pkg.gan", "pkg.video", "pkg.tasks", "pkg.gan"]]
    assert describe(find_cycles(graph)[1], graph) == ("pkg.gan (line 1) -> pkg.video (line 2) -> pkg.tasks (line 1) "
                                                      "-> pkg.gan")
