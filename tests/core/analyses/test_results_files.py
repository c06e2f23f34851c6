"""results.json + results.npz: round trip, and clear errors for damaged or foreign files."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from ioi_desktop.core.errors import FileFormatError
from ioi_desktop.core.results import position_labels
from ioi_desktop.core.results import RESULTS_VERSION, RunResults, load_results, save_results


@pytest.fixture(scope="module")
def run_results(gpt2_cases):
    return gpt2_cases["ragged"][1]


def test_round_trip_keeps_arrays_axes_labels_and_metadata(run_results, tmp_path):
    path = save_results(run_results, tmp_path / "out")
    assert path.name == "results.json" and (tmp_path / "out" / "results.npz").is_file()
    loaded = load_results(tmp_path / "out")
    assert loaded.analyses == run_results.analyses
    for name, array in run_results.iter_arrays():
        restored = loaded.array(name)
        assert restored.dtype == array.dtype and restored.shape == array.shape
        np.testing.assert_array_equal(restored, array)
        assert loaded.axes(name) == run_results.axes(name)
        assert loaded.labels(name) == run_results.labels(name)
    meta = loaded.meta
    assert meta["model"]["n_layers"] == 3 and meta["processing"]["fold_ln"] is True
    assert meta["prompts"]["str_tokens"][2][0] == "<|endoftext|>"
    assert meta["prompts"]["equal_length"] is False
    assert set(meta["versions"]) >= {"ioi_desktop", "torch", "transformer_lens", "transformers"}
    assert set(meta["timings"]) >= {"logit_diff", "dla", "forward"}
    assert loaded["dla"].meta["max_reconstruction_error"] == run_results["dla"].meta["max_reconstruction_error"]
    # Loading the JSON path itself works too.
    assert load_results(path).analyses == run_results.analyses


def test_issue_array_names_and_shapes(gpt2_cases):
    batch, results, _ = gpt2_cases["notebook"]
    n_prompts, n_pos = batch.clean_tokens.shape
    expected = {
        "logit_diff_clean": (n_prompts,),
        "logit_diff_corrupt": (n_prompts,),
        "logit_lens_logit_diff": (2 * 3 + 1,),
        "dla_components": (2 + 2 * 3,),
        "dla_head": (3, 4),
        "attention_pattern": (n_prompts, 3, 4, n_pos, n_pos),
    }
    for name, shape in expected.items():
        assert results.array(name).shape == shape
        assert results.array(name).dtype == np.float32 and results.array(name).flags.c_contiguous
    assert results.labels("dla_components")[0][:4] == ["embed", "pos_embed", "0_attn_out", "0_mlp_out"]
    assert results.labels("logit_lens_logit_diff")[0][:2] == ["0_pre", "0_mid"]
    assert position_labels(batch)[-1] == "14:  to (END)"


def _saved(run_results, tmp_path):
    save_results(run_results, tmp_path)
    return tmp_path / "results.json", tmp_path / "results.npz"


def _edit(json_path, change):
    document = json.loads(json_path.read_text())
    change(document)
    json_path.write_text(json.dumps(document))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda j, n: j.unlink(), "cannot be read"),
        (lambda j, n: j.write_text("{not json"), "not valid UTF-8 JSON"),
        (lambda j, n: _edit(j, lambda d: d.update(format="something-else")), "has format"),
        (lambda j, n: _edit(j, lambda d: d.update(version=RESULTS_VERSION + 1)), "cannot read"),
        (lambda j, n: n.unlink(), "results arrays"),
        (lambda j, n: n.write_bytes(n.read_bytes()[:-10]), "checksum"),
        (lambda j, n: _edit(j, lambda d: d["analyses"]["dla"]["arrays"]["dla_head"].update(shape=[9, 9])), "shape"),
        (lambda j, n: _edit(j, lambda d: d["analyses"]["dla"]["labels"].update(component=["embed"])), "labels for the axis"),
        (lambda j, n: _edit(j, lambda d: d["analyses"]["dla"]["arrays"].update(dla_extra=d["analyses"]["dla"]["arrays"]["dla_head"])), "lacks the array 'dla_extra'"),
    ],
)
def test_damaged_files_raise_file_format_error(run_results, tmp_path, damage, message):
    json_path, npz_path = _saved(run_results, tmp_path)
    damage(json_path, npz_path)
    with pytest.raises(FileFormatError, match=message):
        load_results(tmp_path)


def test_results_refuse_nan_or_other_dtypes_when_made():
    from ioi_desktop.core.analyses import logit_diff

    with pytest.raises(ValueError, match="NaN"):
        logit_diff.Result(logit_diff_clean=np.array([np.nan], dtype=np.float32))
    with pytest.raises(TypeError, match="float32"):
        logit_diff.Result(logit_diff_clean=np.zeros(2))
    with pytest.raises(ValueError, match="axes"):
        logit_diff.Result(logit_diff_clean=np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="'prompt' has 3 entries"):
        logit_diff.Result(logit_diff_clean=np.zeros(2, dtype=np.float32), prompt_labels=("a", "b", "c"))


def test_array_names_are_unique_across_every_result_type():
    from ioi_desktop.core.analyses import analysis_names, result_type

    owner: dict[str, str] = {}
    for name in analysis_names():
        for spec in result_type(name).array_specs():
            assert spec.name not in owner, (spec.name, owner.get(spec.name), name)
            owner[spec.name] = name


def test_run_results_refuse_one_array_from_two_analyses():
    one = SimpleNamespace(arrays={"same": np.zeros(1, np.float32)})
    two = SimpleNamespace(arrays={"same": np.zeros(1, np.float32)})
    with pytest.raises(ValueError, match="both"):
        RunResults({"a": one, "b": two})
