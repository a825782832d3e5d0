"""Imports run one way (STYLE.md rule 10, DESIGN.md "Packages and their rooms"): read every
module's imports from its source with `ast`, and fail on a cycle or on an import that runs up
the house. Anyone can run it alone: `.venv/bin/pytest tests/unit/test_import_graph.py`."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("config", "statements", "ledger", "providers", "payments")

# The rooms people see or finance runs (DESIGN.md): one floor, and none imports another.
ROOMS_APART = ("payments.settlement", "payments.checkout", "payments.finance")
# The floors, top down: a module may import only from its own floor or below. The first
# prefix that names a module gives its floor.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("payments.cli",),
    ("payments.api",),
    ROOMS_APART,
    ("payments.service",),
    ("payments",),  # the gateway's own plumbing: models, idempotency, webhooks, metrics, ...
    ("providers", "ledger"),
    ("config", "statements"),
)


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:  # Alembic loads them; nothing imports them
                found[_module(path)] = path
    return found


def _imports(path: Path, name: str, known: dict[str, Path]) -> Iterator[str]:
    """The project's modules `path` imports, at run time or for type checking alike."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            # `from pkg import module` is the module; `from module import name`, the module.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: set(_imports(path, name, known)) for name, path in known.items()}


def _floor(module: str) -> int:
    for index, prefixes in enumerate(FLOORS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{module} stands on no floor: add it to FLOORS")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
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


def test_the_graph_is_read() -> None:
    graph = _graph()
    assert len(graph) > 100
    assert "payments.service.payments" in graph["payments.api.payments"]
    assert "ledger" in graph["payments.postings"] or any(
        target.startswith("ledger") for target in graph["payments.postings"]
    )


def test_no_module_imports_one_that_imports_it_back() -> None:
    assert _cycles(_graph()) == []


def test_every_import_runs_down_the_house() -> None:
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in _graph().items()
        for target in targets
        if _floor(target) < _floor(module)
    )
    assert upward == []


def test_the_ledger_and_the_acquirers_know_nothing_of_the_gateway() -> None:
    for module, targets in _graph().items():
        if module.startswith("statements"):  # plumbing for both: it knows neither
            assert not any(t.startswith(("payments", "ledger")) for t in targets), module
        if module.startswith(("ledger", "providers", "config")):
            assert not any(t.startswith("payments") for t in targets), module
        if module.startswith(("ledger", "config")):
            assert not any(t.startswith("providers") for t in targets), module


def test_the_rooms_people_see_or_finance_runs_stand_apart() -> None:
    """The hosted page, settlement and the finance console import none of each other."""
    for module, targets in _graph().items():
        room = next((r for r in ROOMS_APART if module.startswith(r + ".")), None)
        if room is not None:
            others = [t for t in targets if t.startswith(ROOMS_APART) and not t.startswith(room)]
            assert others == [], module


def test_only_the_rooms_people_see_import_flask() -> None:
    """STYLE.md rule 2: only payments/api, payments/checkout (and payments/finance) import
    Flask."""
    for name, path in _modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        flask = any(
            (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "flask")
            or (
                isinstance(node, ast.Import)
                and any(a.name.split(".")[0] == "flask" for a in node.names)
            )
            for node in ast.walk(tree)
        )
        if flask:
            assert name.startswith(("payments.api", "payments.checkout", "payments.finance")), name
