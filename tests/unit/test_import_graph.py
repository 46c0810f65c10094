"""The import graph: no cycle between modules, no arrow that runs up the layers.

Every ``import`` statement counts, those deferred inside functions included (read with
``ast``, not by importing). Layers, lowest first: ``mission_control`` <- ``audit`` <-
``registry`` <- ``orchestrator`` <- ``dashboard``; ``localnode`` imports only
``mission_control`` (it speaks the contracts). The project's composition root
(``mission_control.settings``/``urls``/``asgi``/``wsgi``) wires the apps together and is
the one place allowed to name them all.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPS = ("mission_control", "audit", "registry", "orchestrator", "dashboard", "localnode")
LAYER = {"mission_control": 0, "audit": 1, "registry": 2, "orchestrator": 3, "dashboard": 4}
ALLOWED = {"localnode": {"localnode", "mission_control"}}
COMPOSITION_ROOT = {
    "mission_control.settings",
    "mission_control.urls",
    "mission_control.asgi",
    "mission_control.wsgi",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            found[_module_name(path)] = path
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module ``name`` lands in (a package's ``__init__`` or a module)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _imported_names(module: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")
                drop = node.level - (1 if is_package else 0)
                package = package[: len(package) - drop] if drop else package
                base = ".".join([*package, base] if base else package)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = {_resolve(name, modules) for name in _imported_names(module, path)}
        graph[module] = {t for t in targets if t and t != module and not module.startswith(t + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _upward(source: str, target: str) -> bool:
    src_app, dst_app = source.split(".")[0], target.split(".")[0]
    if source.startswith("orchestrator.clients.") and src_app == dst_app:
        # The HTTP clients sit below the engine: they import no other orchestrator module.
        return not target.startswith("orchestrator.clients")
    if source in COMPOSITION_ROOT or src_app == dst_app:
        return False
    if src_app in ALLOWED:
        return dst_app not in ALLOWED[src_app]
    if dst_app not in LAYER:
        return True
    return LAYER[dst_app] > LAYER[src_app]


def test_no_import_cycle() -> None:
    assert _cycles(import_graph()) == []


def test_no_import_runs_up_the_layers() -> None:
    graph = import_graph()
    upward = sorted(f"{s} -> {t}" for s, targets in graph.items() for t in targets if _upward(s, t))
    assert upward == []


def test_the_walker_sees_deferred_imports_and_cycles() -> None:
    source = "def f():\n    from orchestrator import events\n"
    tree = ast.parse(source)
    assert any(isinstance(node, ast.ImportFrom) for node in ast.walk(tree))
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert _upward("registry.serializers", "orchestrator.quality")
    assert _upward("localnode.runner", "registry.models")
    assert _upward("orchestrator.x", "localnode.demo")
    assert not _upward("orchestrator.x", "registry.models")
    assert not _upward("localnode.runner", "mission_control.logging")
    assert _upward("orchestrator.clients.breaker", "orchestrator.events")
    assert not _upward("orchestrator.clients.breaker", "orchestrator.clients.base")


def test_extensions_keep_one_provider_per_registration() -> None:
    from mission_control import extensions

    def provider() -> None:
        return None

    extensions.register("test-hook", provider)
    extensions.register("test-hook", provider)
    assert extensions.providers("test-hook") == [provider]
    assert extensions.first("test-hook") is provider
    assert extensions.providers("metrics")  # the apps registered theirs in ready()
    try:
        extensions.first("no-such-hook")
    except LookupError:
        pass
    else:
        raise AssertionError("an unregistered hook must raise LookupError")
