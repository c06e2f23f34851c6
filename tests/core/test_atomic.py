"""Atomic writes keep the previous file on failure and give new files ordinary permissions."""

from __future__ import annotations

import os
import stat

import pytest

from ioi_desktop.core.atomic import write_text_atomic
from ioi_desktop.core.errors import FileFormatError


def test_new_file_gets_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_text() == "{}"


def test_existing_permissions_are_kept(tmp_path):
    path = tmp_path / "b.json"
    path.write_text("old")
    path.chmod(0o600)
    write_text_atomic(path, "new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "new"


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "c.json"
    path.write_text("previous")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(FileFormatError, match="No space left on device; the previous file is unchanged"):
        write_text_atomic(path, "new")
    assert path.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"]
