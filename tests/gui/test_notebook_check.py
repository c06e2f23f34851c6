"""Help > Reproduce the Exploratory Analysis Demo, through the real window and worker thread.

No GPT-2 weights here: the check runs on the tiny test model against a
reference whose numbers this test computes with TransformerLens (plus one
deliberately wrong row, which must show FAIL); without GPT-2 in the cache the
window says in one sentence how to bring it.
"""

from __future__ import annotations

import json

import torch
from tests.support.gui_helpers import RUN_TIMEOUT_MS, save_screenshot

from ioi_desktop.core import notebook_check
from ioi_desktop.core.pairs import notebook_prompt_set


def _reference(tmp_path, tiny_model_dir) -> tuple:
    from ioi_desktop.core.models import ModelSpec, load_model

    handle = load_model(ModelSpec(source=str(tiny_model_dir), device="cpu"))
    diffs = []
    with torch.no_grad():
        for pair in notebook_prompt_set().pairs:
            logits = handle.model(handle.model.to_tokens(pair.clean))[0, -1]
            c, i = (handle.tokenizer.convert_tokens_to_ids("Ġ" + name.strip()) for name in (pair.correct, pair.incorrect))
            diffs.append(float(logits[c] - logits[i]))
    rows = [
        {"step": "logit diff per prompt", "item": "mean", "quantity": {"kind": "logit_diff_mean"}, "published": sum(diffs) / 8},
        {"step": "logit diff per prompt", "item": "prompt 3", "quantity": {"kind": "logit_diff", "prompt": 3}, "published": diffs[3]},
        {"step": "per-head DLA", "item": "L1H2", "quantity": {"kind": "dla_head", "layer": 1, "head": 2}, "published": 99.0},
    ]
    reference = {"format": notebook_check.REFERENCE_FORMAT, "version": 1, "model": "tiny", "source": "this test",
                 "tolerance": 0.01, "rows": rows,
                 "not_compared": [{"step": "backup name movers", "published": "-", "why": "not in the app yet"}]}
    path = tmp_path / "reference.json"
    path.write_text(json.dumps(reference), encoding="utf-8")
    return path, reference


def test_help_menu_runs_the_check_and_shows_the_table(qtbot, window, tiny_model_dir, tmp_path):
    from ioi_desktop.core.models import ModelSpec

    action = window.actions_by_name["reproduce_notebook"]
    help_menu = next(m for m in window.menuBar().findChildren(type(window.recent_menu)) if m.title() == "&Help")
    assert action in help_menu.actions()
    path, reference = _reference(tmp_path, tiny_model_dir)
    with qtbot.waitSignal(window.worker.notebook_check_finished, timeout=RUN_TIMEOUT_MS):
        assert window.reproduce_notebook(ModelSpec(source=str(tiny_model_dir), device="cpu"), path)
    dialog = window.notebook_check_dialog
    assert dialog.table.rowCount() == 3
    results = [dialog.table.item(r, 5).text() for r in range(3)]
    assert results == ["PASS", "PASS", "FAIL"]
    assert dialog.table.item(0, 2).text() == f"{reference['rows'][0]['published']:+.3f}"
    assert "2 of 3 published numbers agree" in dialog.summary.text()
    assert "backup name movers" in dialog.left_out.text()
    # The app now holds that model, the notebook set and the run's results.
    assert window.handle is not None and window.results is not None and window.results.has_array("patch_head_z")
    assert "2 of 3" in window.step_label.text()
    dialog.resize(900, 420)
    save_screenshot(dialog, "notebook_check")


def test_without_gpt2_the_window_says_how_to_bring_it(qtbot, window, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    assert not window.reproduce_notebook()
    assert not window.worker.busy
    text = window.message_box.text()
    assert "gpt2 is not in this machine's Hugging Face cache" in text
    assert "huggingface-cli download gpt2" in text
