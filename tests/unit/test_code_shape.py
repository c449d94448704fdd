"""The house rules a newcomer relies on: imports point one way, modules and functions stay small."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("service", "projections", "events")
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 40
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _sources() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def test_no_source_module_is_over_300_lines():
    long = {str(p.relative_to(ROOT)): n for p in _sources() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_no_function_is_over_40_lines_without_a_reason():
    """A longer function needs a `# long: why` comment on the line above its `def` or decorators."""
    long = []
    for path in _sources():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                reason = first >= 2 and lines[first - 2].strip().startswith("# long:")
                if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES and not reason:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert long == []


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, capture_output=True, text=True, timeout=120)


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    """The packages and their contracts, copied where a test may break them."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_contracts_hold_on_this_tree(tree_copy):
    result = _lint_imports(tree_copy)
    assert result.returncode == 0, result.stdout + result.stderr


def test_lint_imports_fails_when_projections_imports_service(tree_copy):
    with (tree_copy / "projections" / "floors.py").open("a") as module:
        module.write("\nimport service.settings  # noqa: E402, F401\n")
    result = _lint_imports(tree_copy)
    assert result.returncode == 1
    assert "projections is not allowed to import service" in result.stdout
    assert "projections.floors -> service.settings" in result.stdout


def test_lint_imports_fails_when_an_evolve_module_reaches_the_driver(tree_copy):
    with (tree_copy / "projections" / "patients.py").open("a") as module:
        module.write("\nimport events.store  # noqa: E402, F401\n")  # events.store imports asyncpg
    result = _lint_imports(tree_copy)
    assert result.returncode == 1
    assert "projections.patients is not allowed to import asyncpg" in result.stdout
