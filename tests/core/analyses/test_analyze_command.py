"""``ioi-desktop analyze``: writes loadable results; bad input gives one line and exit 2."""

from __future__ import annotations

import pytest

from ioi_desktop.cli import main
from ioi_desktop.core.analyses import analysis_names
from ioi_desktop.core.pairfiles import write_pairs
from ioi_desktop.core.pairs import notebook_prompt_set
from ioi_desktop.core.results import load_results


@pytest.fixture()
def pairs_file(tmp_path):
    return write_pairs(tmp_path / "pairs.json", notebook_prompt_set())


def test_analyze_writes_results_of_every_analysis_by_default(gpt2_handle, pairs_file, tmp_path, capsys):
    out = tmp_path / "results"
    code = main(["analyze", "--model", gpt2_handle.info.path, "--pairs", str(pairs_file), "--out", str(out),
                 "--device", "cpu", "--batch-size", "4"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "100.0%" in captured.err
    loaded = load_results(out)
    assert loaded.analyses == analysis_names()
    for name in ("logit_diff_clean", "logit_lens_logit_diff", "dla_components", "attention_pattern",
                 "patch_head_z", "atp_head_z", "head_score_induction"):
        assert loaded.has_array(name)
    assert loaded.array("dla_head").shape == (3, 4)
    assert loaded.meta["prompts"]["prompt_set"]["pairs"][0]["correct"] == " Mary"
    assert loaded.meta["options"]["dla"]["batch_size"] == 4


def test_analyze_runs_a_chosen_subset_in_display_order(gpt2_handle, pairs_file, tmp_path, capsys):
    out = tmp_path / "results"
    code = main(["analyze", "--model", gpt2_handle.info.path, "--pairs", str(pairs_file), "--out", str(out),
                 "--analyses", "dla,logit_diff", "--quiet"])
    assert code == 0
    assert load_results(out).analyses == ["logit_diff", "dla"]
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--analyses", "logit_diff,bogus"], "no analysis called 'bogus'"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--pairs", "/nonexistent/pairs.json"], "cannot be read"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(pairs_file, tmp_path, capsys, extra, message):
    args = ["analyze", "--model", "bundled", "--pairs", str(pairs_file), "--out", str(tmp_path / "o")]
    code = main(args + extra)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
