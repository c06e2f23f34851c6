"""A session saved by the version before the typed contract opens in the window (tests/data/format-v1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.support.gui_helpers import RUN_TIMEOUT_MS, open_session_and_wait, save_session_and_wait

V1_SESSION = Path(__file__).resolve().parents[1] / "data" / "format-v1" / "session.ioisession"


def test_version_1_session_opens_with_its_results_settings_and_selection(qtbot, window):
    with qtbot.waitSignal(window.results_shown, timeout=RUN_TIMEOUT_MS) as shown:
        assert open_session_and_wait(qtbot, window, V1_SESSION), window.step_label.text()
    results = shown.args[0]
    assert results.analyses == ["logit_diff", "logit_lens", "dla", "attention", "patching",
                                "attribution_patching", "head_scores"]
    assert (window.selection.prompt, window.selection.layer, window.selection.head) == (2, 3, 3)
    # The old flat options (one sweep list for both patching analyses) became typed per-analysis options.
    settings = window.run_settings()
    assert settings["options"]["patching"]["sweeps"] == settings["options"]["attribution_patching"]["sweeps"]
    assert len(settings["options"]["patching"]["sweeps"]) == 9
    panels = {panel.TITLE: panel for panel in window.panels}
    patching = panels["Patching"]
    patching.ensure_drawn()
    patching.grid_combo.setCurrentIndex(patching.grid_combo.findData("head_z"))
    np.testing.assert_array_equal(patching.exact.values(), results.array("patch_head_z"))
    attention = panels["Attention"]
    attention.ensure_drawn()
    assert attention.shown_head() == (2, 3, 3)
    # The session's model (the bundled one) is on this machine, so it loads and Run becomes possible.
    qtbot.waitUntil(lambda: window.handle is not None and not window.worker.busy, timeout=RUN_TIMEOUT_MS)
    assert not window.read_only
