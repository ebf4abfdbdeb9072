"""The import rules of docs/architecture.md, read from the source with ``ast``.

Every ``import`` counts: at the top of a module, inside a function, or under ``TYPE_CHECKING``,
because each one is a dependency a reader has to follow. An import names the most specific module
that exists (``from flowguard.engine import retry`` is ``flowguard.engine.retry``; ``from
flowguard.engine.retry import plan`` is ``flowguard.engine.retry``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("flowguard", "bridge", "topics")

# flowguard's base layer, shared with the bridge: what both processes need besides the contract
# (topics). It imports nothing of flowguard outside itself, so the bridge depends on no engine,
# control plane or API through it.
SHARED = (
    "flowguard",  # the package itself: __version__
    "flowguard.celery_wire",
    "flowguard.errors",
    "flowguard.health",
    "flowguard.kafka_security",
    "flowguard.logs",
    "flowguard.metrics",
    "flowguard.settings_base",
)

# The pure core (no Kafka, no network, no clock) imports only itself, the contract, the Celery
# wire format, the errors, and the secrets' pure helpers (``is_env_ref``, ``mask``): never an I/O
# layer (live, api, actions, cli, the store, history, kafka_admin, ...).
ENGINE = "flowguard.engine"
ENGINE_MAY_IMPORT = (
    ENGINE,
    "topics",
    "flowguard.celery_wire",
    "flowguard.errors",
    "flowguard.control.secrets",
)

# The control plane (store, history, secrets, masking, workflow files, schemas, topic admin,
# workflow templates) sits above the engine and below the processes that drive it: it imports
# itself, the engine, the base layer, Settings and the contract, never live, api, actions or cli.
CONTROL = "flowguard.control"
CONTROL_MAY_IMPORT = (CONTROL, ENGINE, "flowguard.settings", "topics")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The most specific of our modules that ``name`` (a dotted import target) stands for."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def _targets(module: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for each of our modules that ``module`` imports."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name)
                if target is not None:
                    yield node.lineno, target
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                drop = node.level - 1 if is_package else node.level
                anchor = anchor[: len(anchor) - drop]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                target = _resolve(f"{base}.{alias.name}")
                if target is not None:
                    yield node.lineno, target


def _graph() -> dict[str, dict[str, int]]:
    """module -> {imported module: first line}, self-imports left out."""
    graph: dict[str, dict[str, int]] = {}
    for module, path in MODULES.items():
        edges: dict[str, int] = {}
        for line, target in _targets(module, path):
            if target != module:
                edges.setdefault(target, line)
        graph[module] = edges
    return graph


GRAPH = _graph()


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _shared(module: str) -> bool:
    """In the base layer: the package's own ``__init__`` only, the others with their modules."""
    return module == "flowguard" or any(_within(module, s) for s in SHARED[1:])


def _edges() -> Iterator[tuple[str, str, int]]:
    for source, targets in GRAPH.items():
        for target, line in targets.items():
            yield source, target, line


def _where(source: str, line: int) -> str:
    return f"{MODULES[source].relative_to(REPO)}:{line}"


def _breaking(rule: str) -> list[str]:
    broken = []
    for source, target, line in _edges():
        if RULES[rule](source, target):
            broken.append(f"{_where(source, line)} imports {target}")
    return sorted(broken)


RULES = {
    "bridge imports flowguard beyond its base layer": lambda s, t: (
        _within(s, "bridge") and _within(t, "flowguard") and not _shared(t)
    ),
    "the base layer imports the rest of flowguard": lambda s, t: (
        _shared(s) and _within(t, "flowguard") and not _shared(t)
    ),
    "flowguard imports bridge": lambda s, t: _within(s, "flowguard") and _within(t, "bridge"),
    "topics imports flowguard or bridge": lambda s, t: (
        _within(s, "topics") and (_within(t, "flowguard") or _within(t, "bridge"))
    ),
    "engine imports beyond the pure core": lambda s, t: (
        _within(s, ENGINE) and not any(_within(t, allowed) for allowed in ENGINE_MAY_IMPORT)
    ),
    "control imports a process layer (live, api, actions, cli, ...)": lambda s, t: (
        _within(s, CONTROL)
        and not _shared(t)
        and not any(_within(t, allowed) for allowed in CONTROL_MAY_IMPORT)
    ),
}


def test_the_graph_is_read() -> None:
    """A parser that found nothing would pass every rule: check it sees known imports."""
    assert len(MODULES) > 100
    assert "topics.registry" in GRAPH["flowguard.live.app"]
    assert "flowguard.engine.decision" in GRAPH["flowguard.engine.core"]
    assert "flowguard.control.masking" in GRAPH["flowguard.control.store"]


@pytest.mark.parametrize("rule", sorted(RULES))
def test_import_rule(rule: str) -> None:
    assert _breaking(rule) == [], rule


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(GRAPH):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(GRAPH[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(GRAPH[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return sorted(found)


def test_no_import_cycle() -> None:
    assert _cycles() == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The finder itself can fail: a made-up circle of three is found, a line is not."""
    saved = dict(GRAPH)
    try:
        GRAPH.update({"x.a": {"x.b": 1}, "x.b": {"x.c": 1}, "x.c": {"x.a": 1}, "x.d": {"x.a": 1}})
        assert ["x.a", "x.b", "x.c"] in _cycles()
        assert not any("x.d" in cycle for cycle in _cycles())
    finally:
        GRAPH.clear()
        GRAPH.update(saved)


_EXCEPTION_BASES = frozenset({"Exception", "ValueError", "LookupError", "RuntimeError", "KeyError"})


def _error_classes() -> Iterator[tuple[str, ast.ClassDef]]:
    """(module, class) for every class whose bases include an exception class by name."""
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ClassDef):
                names = {base.id for base in node.bases if isinstance(base, ast.Name)}
                names |= {base.attr for base in node.bases if isinstance(base, ast.Attribute)}
                if names & _EXCEPTION_BASES or any(n.endswith(("Error", "Failed")) for n in names):
                    yield module, node


def test_one_error_tree() -> None:
    """Every public error is defined in flowguard/errors.py, under FlowguardError; a module may
    keep a private one (``_Name``) for its own control flow."""
    stray = [
        f"{module}.{node.name}"
        for module, node in _error_classes()
        if module != "flowguard.errors" and not node.name.startswith("_")
    ]
    assert stray == []
    roots = [
        node.name
        for module, node in _error_classes()
        if module == "flowguard.errors" and node.name != "FlowguardError"
        and not any(isinstance(b, ast.Name) and b.id in ERROR_TREE for b in node.bases)
    ]  # fmt: skip
    assert roots == []


def _tree() -> set[str]:
    """The classes of flowguard/errors.py that descend from FlowguardError (by name)."""
    nodes = [node for module, node in _error_classes() if module == "flowguard.errors"]
    found = {"FlowguardError"}
    while True:
        more = {
            node.name
            for node in nodes
            if any(isinstance(b, ast.Name) and b.id in found for b in node.bases)
        }
        if more <= found:
            return found
        found |= more


ERROR_TREE = _tree()
