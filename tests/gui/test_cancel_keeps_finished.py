"""Cancel after some analyses finished: those analyses' panels are filled, the rest are not (issue 12)."""

from __future__ import annotations

import threading

import numpy as np
from tests.support.gui_helpers import RUN_TIMEOUT_MS

from ioi_desktop.core.analyses import analysis_names


def test_cancel_after_some_analyses_shows_their_panels_filled(qtbot, loaded_window, monkeypatch):
    import ioi_desktop.core.analyses.attention as attention

    window = loaded_window
    finished_before_cancel: list[str] = []
    cancel_pressed = threading.Event()
    real_run = attention.run

    def run_after_the_user_cancelled(ctx, options, progress):
        # The analysis after DLA waits (in the worker thread) until the user has pressed Cancel,
        # so the cancel lands at this point of the run however fast the machine is.
        cancel_pressed.wait(timeout=60)
        progress.check_cancelled()
        return real_run(ctx, options, progress)

    monkeypatch.setattr(attention, "run", run_after_the_user_cancelled)

    def on_result(name: str, _result) -> None:
        finished_before_cancel.append(name)
        if name == "dla":
            window.cancel()
            cancel_pressed.set()

    window.worker.result_ready.connect(on_result)
    with qtbot.waitSignal(window.worker.run_cancelled, timeout=RUN_TIMEOUT_MS):
        assert window.run()
    window.worker.result_ready.disconnect(on_result)

    results = window.results
    assert results is not None, "the finished analyses were dropped on cancel"
    assert results.analyses == finished_before_cancel == ["logit_diff", "logit_lens", "dla"]
    assert set(results.analyses) < set(analysis_names())
    # Labels of the finished results come from the run's metadata, known before the first analysis.
    assert results.meta["prompts"]["str_tokens"][0][1] == "When"
    text = window.step_label.text()
    assert "cancelled" in text and "Logit difference" in text and "Direct logit attribution" in text

    panels = {panel.TITLE: panel for panel in window.panels}
    for panel in panels.values():
        panel.ensure_drawn()
    overview, lens, attribution = panels["Overview"], panels["Logit lens"], panels["Attribution"]
    np.testing.assert_array_equal(overview.bars.series()["clean"], results.array("logit_diff_clean"))
    assert "Mean logit difference" in overview.summary.text()
    assert lens.grid.values().size > 0 and not np.isnan(lens.grid.values()).any()
    np.testing.assert_array_equal(attribution.heads.values(), results.array("dla_head"))
    # Attention, patching and head scores never finished, so their panels stay empty.
    for title in ("Attention", "Patching", "Head scores"):
        assert panels[title].results is None, title
