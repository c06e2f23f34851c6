"""``ioi-desktop ablate`` and ``ioi-desktop path-patch``: analyze's result files; bad input one line, exit 2."""

from __future__ import annotations

import numpy as np
import pytest

from ioi_desktop.cli import main
from ioi_desktop.core.pairfiles import write_pairs
from ioi_desktop.core.pairs import notebook_prompt_set
from ioi_desktop.core.prompts import PromptSet
from ioi_desktop.core.results import load_results


@pytest.fixture()
def pairs_file(tmp_path):
    return write_pairs(tmp_path / "pairs.json", notebook_prompt_set())


def _main(gpt2_handle, pairs_file, out, *extra):
    return main([extra[0], "--model", gpt2_handle.info.path, "--pairs", str(pairs_file), "--out", str(out),
                 "--device", "cpu", "--quiet", *extra[1:]])


def test_ablate_writes_the_ablation_arrays(gpt2_handle, pairs_file, tmp_path, capsys):
    out = tmp_path / "ablated"
    code = _main(gpt2_handle, pairs_file, out, "ablate", "--heads", "2.1,1.0", "--method", "mean",
                 "--positions", "S2")
    assert code == 0, capsys.readouterr().err
    loaded = load_results(out)
    assert loaded.analyses == ["ablation"]
    assert loaded.array("ablation_logit_diff").shape == (8,)
    assert loaded.array("ablation_dla_head_after").shape == (3, 4)
    assert loaded.array("ablation_predicted_drop").shape == ()
    assert loaded.meta["options"]["ablation"]["heads"] == "2.1,1.0"


def test_path_patch_forward_and_reverse(gpt2_handle, pairs_file, tmp_path, capsys):
    out = tmp_path / "paths"
    assert _main(gpt2_handle, pairs_file, out, "path-patch", "--senders", "0.1",
                 "--receivers", "q,k,v,logits") == 0, capsys.readouterr().err
    loaded = load_results(out)
    for name in ("path_patch_q", "path_patch_k_raw", "path_patch_v", "path_patch_logits"):
        assert loaded.array(name).shape == (3, 4)
    reverse = tmp_path / "reverse"
    assert _main(gpt2_handle, pairs_file, reverse, "path-patch", "--receiver-head", "2.1",
                 "--receivers", "v") == 0, capsys.readouterr().err
    grid = load_results(reverse).array("path_patch_v")
    assert np.all(grid[2] == 0) and np.abs(grid[:2]).max() > 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["ablate", "--heads", "3.0"], "outside this model, which has 3 layers"),
        (["ablate", "--heads", ","], "set of heads to ablate is empty"),
        (["ablate", "--positions", "C"], "no position called 'C'"),
        (["ablate", "--method", "reference"], "needs a reference set"),
        (["path-patch", "--senders", "1.9"], "outside this model"),
        (["path-patch", "--receivers", "x"], "has 'x', which is not one of q, k, v, logits"),
        (["path-patch", "--receiver-head", "0.0"], "in layer 0"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(gpt2_handle, pairs_file, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    code = _main(gpt2_handle, pairs_file, out, *extra)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1
    assert not (out / "results.json").exists()


def test_resample_from_a_set_of_other_size_is_refused(gpt2_handle, pairs_file, tmp_path, capsys):
    fewer = write_pairs(tmp_path / "fewer.json", PromptSet(tuple(notebook_prompt_set())[:3]))
    code = _main(gpt2_handle, pairs_file, tmp_path / "out", "ablate", "--method", "resample",
                 "--reference", str(fewer))
    err = capsys.readouterr().err
    assert code == 2 and "has 3 pairs but the prompt set has 8" in err
