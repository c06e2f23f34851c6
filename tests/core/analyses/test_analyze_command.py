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
        (["--set", "patching.sweeps=head_z,head_w"], "option patching.sweeps has 'head_w'"),
        (["--set", "head_scores.seq_len=1"], "option head_scores.seq_len must be a whole number from 2 to 4096, not 1"),
        (["--set", "head_scores.seq_len=many"], "option head_scores.seq_len must be a whole number from 2 to 4096, not 'many'"),
        (["--set", "patching.warp=1"], "has no option 'warp'"),
        (["--set", "nothing.top_k=1"], "names no analysis called 'nothing'"),
        (["--set", "top_k=1"], "not of the form ANALYSIS.OPTION=VALUE"),
        (["--set", "patching.engine=fast", "--analyses", "dla"], "gives options of patching, which this run"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(pairs_file, tmp_path, capsys, extra, message):
    args = ["analyze", "--model", "bundled", "--pairs", str(pairs_file), "--out", str(tmp_path / "o")]
    code = main(args + extra)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_set_options_reach_the_analyses_and_are_recorded(gpt2_handle, pairs_file, tmp_path):
    out = tmp_path / "results"
    code = main(["analyze", "--model", gpt2_handle.info.path, "--pairs", str(pairs_file), "--out", str(out),
                 "--analyses", "patching,head_scores", "--set", "patching.sweeps=head_z,resid_pre",
                 "--set", "head_scores.seq_len=6", "--quiet"])
    assert code == 0
    loaded = load_results(out)
    assert sorted(loaded["patching"].arrays) == ["patch_head_z", "patch_head_z_raw", "patch_resid_pre",
                                                 "patch_resid_pre_raw"]
    assert loaded["head_scores"].seq_len == 6
    assert loaded.meta["options"]["patching"]["sweeps"] == ["head_z", "resid_pre"]
    assert loaded.meta["options"]["head_scores"] == {"seq_len": 6, "batch": 2, "seed": 0, "prepend_bos": "auto",
                                                     "token_pool": "words"}


def test_list_options_prints_every_option_with_default_and_help(capsys):
    from ioi_desktop.core.analyses import option_types

    assert main(["analyze", "--list-options"]) == 0
    out = capsys.readouterr().out
    for name, cls in option_types().items():
        assert name in out
        for spec in cls.specs():
            assert f"{spec.key} = {spec.default_text()}" in out and spec.help in out
    assert "head_scores.seq_len = 100" in out and "patching.sweeps = all" in out
