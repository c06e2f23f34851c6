"""File readers: no code runs while reading, newer versions are refused, and any input gives
either a valid object or ``FileFormatError`` (property-based, hypothesis), never another exception.

Readers covered here: session files (``core.session``) and results files
(``core.results``); the pair files and the pair builder have their own
properties in tests/core/prompts/test_prompt_properties.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ioi_desktop.core.analyses import logit_diff, patching
from ioi_desktop.core.errors import FileFormatError
from ioi_desktop.core.pairs import notebook_prompt_set
from ioi_desktop.core.results import RunResults, load_results, save_results
from ioi_desktop.core.session import Session, load_session, save_session

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def small_results() -> RunResults:
    rng = np.random.default_rng(0)
    return RunResults(
        {
            "logit_diff": logit_diff.Result(
                logit_diff_clean=rng.normal(size=4).astype(np.float32), prompt_labels=("a", "b", "c", "d"),
                accuracy_clean=0.5),
            "patching": patching.Result(patch_head_z=rng.normal(size=(2, 3)).astype(np.float32), engine="fast"),
        },
        meta={"model": {"name": "tiny"}},
    )


def small_session() -> Session:
    return Session(model_spec={"source": "bundled"}, prompt_set=notebook_prompt_set(),
                   settings={"analyses": ["logit_diff"]}, results=small_results())


class _Detonator:
    """Unpickling this creates a marker file: proof that a reader executed code from a file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _pickle_bomb_npz(marker: Path) -> bytes:
    buffer = io.BytesIO()
    bomb = np.empty(1, dtype=object)
    bomb[0] = _Detonator(str(marker))
    np.savez(buffer, logit_diff_clean=bomb, patch_head_z=np.zeros((2, 3), np.float32))
    return buffer.getvalue()


def _replace_npz(folder: Path, data: bytes) -> None:
    """Put ``data`` as results.npz and make results.json's checksum match it (so only the content is wrong)."""
    (folder / "results.npz").write_bytes(data)
    document = json.loads((folder / "results.json").read_text())
    document["npz"]["sha256"] = hashlib.sha256(data).hexdigest()
    (folder / "results.json").write_text(json.dumps(document))


# ---------------------------------------------------------------- no code execution


def test_results_npz_with_a_pickled_object_is_refused_unexecuted(tmp_path):
    save_results(small_results(), tmp_path)
    marker = tmp_path / "code-ran"
    _replace_npz(tmp_path, _pickle_bomb_npz(marker))
    with pytest.raises(FileFormatError, match="is not a readable .npz archive"):
        load_results(tmp_path)
    assert not marker.exists()


def test_session_holding_a_pickled_object_is_refused_unexecuted(tmp_path):
    path = save_session(tmp_path / "s.ioisession", small_session())
    marker = tmp_path / "code-ran"
    bomb = _pickle_bomb_npz(marker)
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    document = json.loads(entries["results/results.json"])
    document["npz"]["sha256"] = hashlib.sha256(bomb).hexdigest()
    entries["results/results.json"], entries["results/results.npz"] = json.dumps(document).encode(), bomb
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    with pytest.raises(FileFormatError, match="is not a readable .npz archive"):
        load_session(path)
    assert not marker.exists()


def test_pickle_model_weights_are_not_read_without_consent(tmp_path):
    """A pytorch_model.bin that would run code is refused before anything opens it."""
    import pickle

    from ioi_desktop.core.errors import ModelLoadError
    from ioi_desktop.core.models import ModelSpec, load_model

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}))
    marker = tmp_path / "code-ran"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Detonator(str(marker))))
    with pytest.raises(ModelLoadError, match="pickle files"):
        load_model(ModelSpec(source=str(folder), device="cpu"))
    assert not marker.exists()


# ---------------------------------------------------------------- versions


@pytest.mark.parametrize("version", [2, 99, True, "1", None, 0, 1.0])
def test_session_versions_other_than_1_are_refused(tmp_path, version):
    path = save_session(tmp_path / "s.ioisession", small_session())
    _rewrite_manifest(path, lambda manifest: manifest.update(version=version))
    with pytest.raises(FileFormatError, match="this IOI Desktop reads version 1") as raised:
        load_session(path)
    assert "update IOI Desktop" in raised.value.hint


@pytest.mark.parametrize("version", [3, True, "1", None, 0])
def test_results_versions_other_than_1_and_2_are_refused(tmp_path, version):
    save_results(small_results(), tmp_path)
    document = json.loads((tmp_path / "results.json").read_text())
    document["version"] = version
    (tmp_path / "results.json").write_text(json.dumps(document))
    with pytest.raises(FileFormatError, match="which this version of IOI Desktop cannot read"):
        load_results(tmp_path)


def _rewrite_manifest(path: Path, change) -> None:
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(entries["session.json"])
    change(manifest)
    entries["session.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


def test_huge_session_and_results_are_refused_before_unpacking(tmp_path, monkeypatch):
    import ioi_desktop.core.results as results_module
    import ioi_desktop.core.session as session_module

    path = save_session(tmp_path / "s.ioisession", small_session())
    monkeypatch.setattr(session_module, "_MAX_UNPACKED_BYTES", 1024)
    with pytest.raises(FileFormatError, match="unpacks to more than"):
        load_session(path)
    save_results(small_results(), tmp_path / "r")
    monkeypatch.setattr(results_module, "_MAX_JSON_BYTES", 100)
    with pytest.raises(FileFormatError, match="too large for a results file"):
        load_results(tmp_path / "r")


# ---------------------------------------------------------------- property-based

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def _paths(value, prefix=()):
    """Every key path inside a JSON document."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, prefix + (index,))


def _mutated(document, data):
    """``document`` with one value replaced by random JSON, or one key deleted."""
    paths = [path for path in _paths(document) if path]
    path = data.draw(st.sampled_from(paths))
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    if isinstance(parent, dict) and data.draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(JSON_VALUES)
    return document


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("readers")
    save_results(small_results(), folder / "results")
    session = save_session(folder / "s.ioisession", small_session())
    return {
        "results_json": json.loads((folder / "results" / "results.json").read_text()),
        "results_npz": (folder / "results" / "results.npz").read_bytes(),
        "session": session.read_bytes(),
    }


def _load_results_or_error(json_text: str, npz: bytes):
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "results.json").write_text(json_text, encoding="utf-8")
        (Path(folder) / "results.npz").write_bytes(npz)
        try:
            loaded = load_results(folder)
        except FileFormatError as error:
            assert error.message and error.hint
            return None
    assert isinstance(loaded, RunResults)
    return loaded


@FAST
@given(data=st.data())
def test_mutated_results_json_gives_results_or_file_format_error(saved, data):
    document = _mutated(json.loads(json.dumps(saved["results_json"])), data)
    _load_results_or_error(json.dumps(document), saved["results_npz"])


@FAST
@given(cut=st.integers(0, 10**6), flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4))
def test_damaged_results_npz_gives_results_or_file_format_error(saved, cut, flips):
    npz = bytearray(saved["results_npz"][: cut % (len(saved["results_npz"]) + 1)])
    for position, value in flips:
        if npz:
            npz[position % len(npz)] = value
    document = dict(saved["results_json"], npz={"file": "results.npz", "sha256": hashlib.sha256(npz).hexdigest()})
    _load_results_or_error(json.dumps(document), bytes(npz))


@FAST
@given(text=st.text(max_size=200))
def test_arbitrary_results_json_text(saved, text):
    _load_results_or_error(text, saved["results_npz"])


def _load_session_or_error(data: bytes):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "s.ioisession"
        path.write_bytes(data)
        try:
            loaded = load_session(path)
        except FileFormatError as error:
            assert error.message and error.hint
            return None
    assert isinstance(loaded, Session)
    return loaded


def _with_manifest(session_bytes: bytes, manifest_text: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(session_bytes)) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    entries["session.json"] = manifest_text.encode("utf-8")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, value in entries.items():
            archive.writestr(name, value)
    return buffer.getvalue()


@FAST
@given(data=st.data())
def test_mutated_session_manifest_gives_a_session_or_file_format_error(saved, data):
    with zipfile.ZipFile(io.BytesIO(saved["session"])) as archive:
        manifest = json.loads(archive.read("session.json"))
    _load_session_or_error(_with_manifest(saved["session"], json.dumps(_mutated(manifest, data))))


@FAST
@given(cut=st.integers(0, 10**6), flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4))
def test_damaged_session_bytes_give_a_session_or_file_format_error(saved, cut, flips):
    data = bytearray(saved["session"][: cut % (len(saved["session"]) + 1)])
    for position, value in flips:
        if data:
            data[position % len(data)] = value
    _load_session_or_error(bytes(data))


@FAST
@given(blob=st.binary(max_size=300))
def test_arbitrary_bytes_as_a_session(blob):
    _load_session_or_error(blob)


def test_reader_properties_do_not_touch_the_user_folder():
    assert "IOI_DESKTOP_DATA" in os.environ
