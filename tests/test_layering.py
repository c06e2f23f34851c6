"""The layering contracts in pyproject.toml ([tool.importlinter]) hold: checked with import-linter.

Each contract is listed with its id in ``[tool.importlinter]``; this test runs
all of them (imports inside functions count too) and fails with
import-linter's report, which names every import that breaks a contract.
tests/core/test_qt_free.py checks the same for the core at run time (modules
imported by name through importlib are invisible to a static check).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"

LINT = "import sys; from importlinter.cli import lint_imports; " \
       "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))"


def lint(config: Path, cwd: Path) -> subprocess.CompletedProcess:
    """import-linter's Python API in a fresh interpreter (it puts ``cwd`` on sys.path and prints a report)."""
    return subprocess.run([sys.executable, "-c", LINT, str(config)], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_every_layering_contract_is_kept():
    result = lint(PYPROJECT, REPO)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_the_contracts_the_design_names_are_configured():
    contracts = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["importlinter"]["contracts"]
    by_id = {contract["id"]: contract for contract in contracts}
    assert {"layers", "core-is-headless", "headless-tools", "analyses-below-runner", "no-cycles"} <= set(by_id)
    assert by_id["layers"]["layers"][-1] == "core"
    assert {"PySide6", "pyqtgraph", "ioi_desktop.gui"} <= set(by_id["core-is-headless"]["forbidden_modules"])
    assert by_id["no-cycles"]["type"] == "acyclic_siblings" and by_id["no-cycles"]["ancestors"] == ["ioi_desktop"]


def test_a_broken_contract_fails_the_check(tmp_path):
    """The same check on a small package that breaks a layer and has a cycle reports both."""
    package = tmp_path / "layering_probe"
    (package / "core").mkdir(parents=True)
    (package / "gui").mkdir()
    for folder in (package, package / "core", package / "gui"):
        (folder / "__init__.py").write_text("")
    (package / "core" / "model.py").write_text("from layering_probe.gui import view\n")
    (package / "gui" / "view.py").write_text("from layering_probe.core import model\n")
    config = tmp_path / "contracts.toml"
    config.write_text(textwrap.dedent("""
        [tool.importlinter]
        root_package = "layering_probe"

        [[tool.importlinter.contracts]]
        id = "layers"
        name = "gui over core"
        type = "layers"
        containers = ["layering_probe"]
        layers = ["gui", "core"]

        [[tool.importlinter.contracts]]
        id = "no-cycles"
        name = "no cycles"
        type = "acyclic_siblings"
        ancestors = ["layering_probe"]
    """))
    result = lint(config, tmp_path)
    assert result.returncode != 0
    assert "2 broken" in result.stdout
    assert "layering_probe.core.model -> layering_probe.gui.view" in result.stdout
