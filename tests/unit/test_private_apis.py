"""No private API of another library (STYLE.md rule 9): read every module with `ast` for an
attribute that starts with `_` on anything but `self`, `cls` or `super()`, an import from a
module whose name starts with `_`, and a method named to override a name-mangled one. Each
breaks on a minor upgrade without a word.

The few still in the code are listed below by place, with what they cost to replace; the test
fails on any other, and on a listed one that has gone (so the list only shrinks)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("config", "statements", "ledger", "providers", "payments")

# None: where a library lacks a public hook, the gateway writes the piece itself or takes the
# public, slower path. Anything listed here must say why, and the list may only shrink.
KNOWN: set[str] = set()


def _private_uses(path: Path) -> set[str]:
    where = path.relative_to(ROOT).as_posix()
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Call) and ast.unparse(owner.func) == "super":
                continue
            found.add(f"{where}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            if any(_private(part) for part in node.module.split(".")):
                found.add(f"{where}: from {node.module}")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _mangled(node.name):
            found.add(f"{where}: def {node.name}")  # overrides a name-mangled method
    return found


def _mangled(name: str) -> bool:
    """`_Class__method`: the name Python gives another class's `__method`."""
    return name.startswith("_") and "__" in name[1:] and not name.endswith("__")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_other_private_api_is_used() -> None:
    found: set[str] = set()
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found |= _private_uses(path)
    assert found - KNOWN == set(), "private APIs of other libraries"
    assert KNOWN - found == set(), "gone: take them off the list"
