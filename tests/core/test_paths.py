"""resources/ is found the same way from a checkout, an editable install and a wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ioi_desktop.core import paths
from ioi_desktop.core.errors import FileFormatError

REPO = Path(__file__).resolve().parents[2]


def test_checkout_resources_are_the_repo_folder():
    assert paths.resources_dir() == REPO / "resources"
    assert paths.resource_path("data", "ioi_paper_dataset.json").is_file()


def test_environment_override(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("IOI_DESKTOP_RESOURCES", str(tmp_path))
    assert paths.resources_dir() == tmp_path


def test_missing_resources_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "resource_dir_candidates", lambda: [tmp_path])
    with pytest.raises(FileFormatError, match="resources folder was not found"):
        paths.resources_dir()


def test_user_data_dir_is_outside_the_install(tmp_path, monkeypatch):
    monkeypatch.setenv("IOI_DESKTOP_DATA", str(tmp_path / "data"))
    assert paths.user_data_dir() == tmp_path / "data"
    assert (tmp_path / "data").is_dir()


def test_installed_wheel_finds_its_resources(tmp_path):
    """Build the wheel, install it into a bare folder, and resolve from another directory."""
    wheel_dir = tmp_path / "wheel"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir), str(REPO)],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = wheel_dir.glob("ioi_desktop-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "ioi_desktop_resources/data/ioi_paper_dataset.json" in names
    assert "ioi_desktop/core/paths.py" in names
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "IOI_DESKTOP_RESOURCES"}
    env["PYTHONPATH"] = str(target)
    result = subprocess.run(
        [sys.executable, "-c", "from ioi_desktop.core.paths import resources_dir; print(resources_dir())"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == target / "ioi_desktop_resources"
