"""Files written by the version before the typed contract (tests/data/format-v1) still open, typed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from ioi_desktop.core.analyses import attention, logit_diff, patching
from ioi_desktop.core.analyses.base import Positions
from ioi_desktop.core.results import load_results, save_results
from ioi_desktop.core.session import load_session

V1 = Path(__file__).resolve().parents[2] / "data" / "format-v1"


def test_version_1_results_open_as_typed_results():
    results = load_results(V1 / "results")
    assert json.loads((V1 / "results" / "results.json").read_text())["version"] == 1
    assert results.analyses == ["logit_diff", "logit_lens", "dla", "attention", "patching",
                                "attribution_patching", "head_scores"]
    assert isinstance(results["logit_diff"], logit_diff.Result)
    assert isinstance(results.of_type(patching.Result), patching.Result)
    grid = results["patching"].patch_head_z
    assert grid.shape == (4, 4) and grid.dtype == np.float32
    # Position labels written as text ("14:  to (END)") come back as data.
    positions = results["attention"].query_pos_labels
    assert isinstance(positions, Positions)
    assert positions.index[-1] == 14 and positions.token[-1] == " to" and positions.role[-1] == "END"
    assert positions.texts() == json.loads((V1 / "results" / "results.json").read_text())[
        "analyses"]["attention"]["labels"]["query_pos"]
    assert results["patching"].pos_labels.token[2] == " John"
    assert results["logit_diff"].top_k == 5 and "5335" not in results["logit_diff"].token_text  # word-level vocab


def test_version_1_results_survive_a_round_trip_through_the_current_format(tmp_path):
    old = load_results(V1 / "results")
    shutil.copytree(V1 / "results", tmp_path / "old")
    save_results(old, tmp_path / "new")
    new = load_results(tmp_path / "new")
    assert json.loads((tmp_path / "new" / "results.json").read_text())["version"] == 2
    for name, array in old.iter_arrays():
        np.testing.assert_array_equal(new.array(name), array)
        assert new.axes(name) == old.axes(name) and new.labels(name) == old.labels(name)
    assert new["attention"].query_pos_labels == old["attention"].query_pos_labels


def test_version_1_session_opens_with_its_results_and_selection():
    session = load_session(V1 / "session.ioisession")
    assert session.selection["layer"] == 3 and session.selection["head"] == 3
    assert len(session.prompt_set) == 8
    assert isinstance(session.results["attention"], attention.Result)
    assert session.results["attention"].attention_pattern.shape == (8, 4, 4, 15, 15)
