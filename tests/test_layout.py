"""The shape of the package (docs/architecture.md): pure deciders, a thin pipeline, modules of one idea.

These hold the layout in place: a decider that starts doing I/O, or a module that grows two ideas, fails here.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "alertd"
DECIDERS = (
    "alertd.polling",
    "alertd.outbox",
    "alertd.due",
    "alertd.health",
    "alertd.stories",
    "alertd.excerpt",
)
IO_MODULES = (
    "httpx",
    "httpcore",
    "sqlite3",
    "aiosmtplib",
    "asyncio",
    "apscheduler",
    "alertd.store",
    "alertd.pipeline",
)
MODULE_LIMIT = 500
PIPELINE_LIMIT = 400


def imported_names(module: str) -> set[str]:
    return _imports_of(PACKAGE.parent / (module.replace(".", "/") + ".py"))


def is_io(name: str) -> bool:
    return any(name == io or name.startswith(io + ".") for io in IO_MODULES)


@pytest.mark.parametrize("decider", DECIDERS)
def test_a_decider_imports_no_io_module(decider: str) -> None:
    assert [] == sorted(name for name in imported_names(decider) if is_io(name))


def test_importing_the_deciders_loads_no_io_module_at_all() -> None:
    """Not even indirectly: a fresh interpreter imports the four and lists what came with them."""
    code = f"import sys, json\nimport {', '.join(DECIDERS)}\nprint(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    )
    assert [] == [name for name in loaded if is_io(name)]


def test_no_module_holds_more_than_one_screenful_of_ideas() -> None:
    sizes = {
        str(path.relative_to(PACKAGE.parent)): len(path.read_text(encoding="utf-8").splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    assert {} == {name: lines for name, lines in sizes.items() if lines > MODULE_LIMIT}
    assert sizes["alertd/pipeline.py"] <= PIPELINE_LIMIT


def test_all_sql_is_in_the_store() -> None:
    """Only alertd/store/ talks to SQLite."""
    outside = [
        str(path.relative_to(PACKAGE.parent))
        for path in PACKAGE.rglob("*.py")
        if "store" not in path.relative_to(PACKAGE).parts[:1]
        and any(name == "sqlite3" for name in _imports_of(path))
    ]
    assert [] == outside


def _imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names
