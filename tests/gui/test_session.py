"""Session files (Qt-free core): round trip, validation errors, model availability."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from ioi_desktop.core.analyses import logit_diff as logit_diff_analysis
from ioi_desktop.core.analyses import patching as patching_analysis
from ioi_desktop.core.errors import FileFormatError
from ioi_desktop.core.pairs import notebook_prompt_set
from ioi_desktop.core.results import RunResults
from ioi_desktop.core.session import Session, load_session, model_availability, save_session


def _results() -> RunResults:
    rng = np.random.default_rng(0)
    logit_diff = logit_diff_analysis.Result(
        logit_diff_clean=rng.normal(size=8).astype(np.float32),
        logit_diff_corrupt=rng.normal(size=8).astype(np.float32),
        accuracy_clean=0.75,
    )
    patching = patching_analysis.Result(patch_head_z=rng.normal(size=(3, 4)).astype(np.float32), engine="fast")
    return RunResults({"logit_diff": logit_diff, "patching": patching}, meta={"model": {"name": "tiny"}})


def _session(**changes) -> Session:
    values = dict(
        model_spec={"source": "bundled", "device": "auto", "dtype": "float32"},
        prompt_set=notebook_prompt_set(),
        settings={"analyses": ["logit_diff", "patching"], "options": {}},
        selection={"prompt": 2, "layer": 1, "head": 3, "position": None, "key_pos": None},
        layout={"state": "AAAA"},
        results=_results(),
    )
    values.update(changes)
    return Session(**values)


def test_round_trip_keeps_everything(tmp_path):
    original = _session()
    written = save_session(tmp_path / "analysis", original)
    assert written.name == "analysis.ioisession"
    assert [p.name for p in tmp_path.iterdir()] == ["analysis.ioisession"]  # no temp files left
    loaded = load_session(written)
    assert loaded.prompt_set == original.prompt_set
    assert loaded.settings == original.settings
    assert loaded.selection == original.selection
    assert loaded.layout == original.layout
    assert dict(loaded.model_spec) == dict(original.model_spec)
    assert loaded.results.analyses == ["logit_diff", "patching"]
    for name, array in original.results.iter_arrays():
        np.testing.assert_array_equal(loaded.results.array(name), array)
    assert loaded.results["logit_diff"].meta == {"accuracy_clean": 0.75}


def test_session_without_results(tmp_path):
    loaded = load_session(save_session(tmp_path / "s.ioisession", _session(results=None)))
    assert loaded.results is None


def test_the_file_is_a_readable_zip(tmp_path):
    path = save_session(tmp_path / "s.ioisession", _session())
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("session.json"))
    assert names == {"session.json", "results/results.json", "results/results.npz"}
    assert manifest["format"] == "ioi-desktop/session" and manifest["version"] == 1
    assert manifest["prompt_set"]["pairs"][0]["correct"] == " Mary"


def _rewrite_manifest(path, change):
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(entries["session.json"])
    change(manifest)
    entries["session.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda m: m.update(version=99), "version 99"),
        (lambda m: m.update(format="something/else"), "not an IOI Desktop session"),
        (lambda m: m.update(settings=[1, 2]), "'settings' must be a JSON object"),
        (lambda m: m.pop("prompt_set"), "no prompt set"),
    ],
)
def test_damaged_manifests_are_named(tmp_path, change, words):
    path = save_session(tmp_path / "s.ioisession", _session())
    _rewrite_manifest(path, change)
    with pytest.raises(FileFormatError, match=words):
        load_session(path)


def test_not_a_session_at_all(tmp_path):
    text = tmp_path / "notes.ioisession"
    text.write_text("hello")
    with pytest.raises(FileFormatError, match="not a zip archive"):
        load_session(text)
    with pytest.raises(FileFormatError, match="does not exist"):
        load_session(tmp_path / "missing.ioisession")


def test_results_entries_cannot_escape_the_folder(tmp_path):
    path = save_session(tmp_path / "s.ioisession", _session())
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("results/../../evil.txt", "x")
    with pytest.raises(FileFormatError, match="unexpected entry"):
        load_session(path)
    assert not (tmp_path.parent / "evil.txt").exists()


def test_model_availability(tmp_path):
    ok, why = model_availability({"source": str(tmp_path)})
    assert ok and why == ""
    ok, why = model_availability({"source": str(tmp_path / "gone")})
    assert not ok and "does not exist" in why
    ok, why = model_availability({"source": "someone/not-cached-model", "allow_download": True})
    assert not ok and "not in the local Hugging Face cache" in why
