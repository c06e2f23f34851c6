"""The panels on real results: the core runner on a tiny random GPT-2 and the notebook prompt set.

This checks the panels against what the analyses really produce (array names,
label formats, streamed rows, metadata) rather than against the hand-built
fixture, and saves a screenshot of every panel with real numbers.
"""

from __future__ import annotations

import numpy as np
import pytest

from ioi_desktop.gui.panels import RESULT_PANELS, LogitLensPanel, PatchingPanel
from ioi_desktop.gui.panels.result_panel import slug

from .conftest import save_screenshot


@pytest.fixture(scope="module")
def real_run(tiny_model_dir):
    """(RunResults, streamed row events) of every analysis on the tiny model."""
    import torch

    from ioi_desktop.core.models import ModelSpec, load_model
    from ioi_desktop.core.pairs import notebook_prompt_set
    from ioi_desktop.core.runner import Runner

    torch.set_num_threads(1)
    handle = load_model(ModelSpec(source=str(tiny_model_dir), device="cpu"))
    events = []
    results = Runner().run(handle, notebook_prompt_set(), on_rows=events.append)
    return results, events


@pytest.mark.parametrize("cls", RESULT_PANELS, ids=lambda cls: slug(cls.TITLE))
def test_panel_shows_real_results(qtbot, tmp_path, cls, selection, real_run):
    results, _ = real_run
    panel = cls(selection)
    qtbot.addWidget(panel)
    panel.resize(1150, 620)
    panel.show()
    qtbot.waitExposed(panel)
    panel.show_results(results)
    selection.update(prompt=1, layer=1, head=2, position=14)
    save_screenshot(panel, f"real_panel_{slug(cls.TITLE)}")
    written = panel.export(tmp_path)
    problem = results["circuit"].problem if "circuit" in cls.analyses() else None
    if problem:
        # The random model gives the notebook's symmetric set no clean-corrupt gap: the panel says so, draws nothing.
        assert "faithfulness cannot be normalised" in problem and problem in panel.status.text()
        assert not [p for p in written if p.suffix in (".png", ".svg")]
        return
    assert any(p.suffix == ".csv" for p in written) and any(p.suffix == ".png" for p in written)


def test_streamed_rows_fill_every_panel_then_the_final_grid(qtbot, selection, real_run):
    from ioi_desktop.core.workbench import ResultsStore
    from ioi_desktop.core.events import EventHub

    results, events = real_run
    store = ResultsStore(EventHub())
    panels = [cls(selection) for cls in RESULT_PANELS]
    for panel in panels:
        qtbot.addWidget(panel)
        panel.observe(store)
    assert any(e.array == "patch_head_z" for e in events), "the patching analysis streamed no head-z rows"
    assert any(e.array.startswith("logit_lens_grid") for e in events)
    store.begin(tuple(results.analyses), {})
    for event in events:
        # As in the window: the worker's rows go into the store, which tells the panels that show them.
        store.add_rows(event)
    patching = next(p for p in panels if isinstance(p, PatchingPanel))
    # With no grid chosen, the panel shows the notebook's first grid (resid_pre), complete.
    assert any(e.array == "patch_resid_pre" for e in events)
    assert patching.grid_combo.currentData() == "resid_pre"
    assert not np.isnan(patching.exact.values()).any()
    patching.grid_combo.setCurrentIndex(patching.grid_combo.findData("head_z"))
    np.testing.assert_array_equal(patching.exact.values(), results.array("patch_head_z"))
    lens = next(p for p in panels if isinstance(p, LogitLensPanel))
    np.testing.assert_array_equal(lens.grid.values(), results.array("logit_lens_grid_top_probs")[:, 0, :, 0])


def test_real_metadata_feeds_tokens_roles_and_top_tokens(qtbot, selection, real_run):
    from ioi_desktop.gui.panels import AttentionPanel, OverviewPanel

    results, _ = real_run
    overview = OverviewPanel(selection)
    lens = LogitLensPanel(selection)
    attention = AttentionPanel(selection)
    for panel in (overview, lens, attention):
        qtbot.addWidget(panel)
        panel.show_results(results)
    tokens = results.meta["prompts"]["str_tokens"][0]
    assert overview.strip.tokens() == tokens
    assert overview.strip.roles_at(results.meta["prompts"]["roles"]["IO"][0]) == ["IO"]
    assert overview.top_table.rowCount() == 5 and not overview.top_table.item(0, 0).text().startswith("'#")
    assert all(text and not text.startswith("#") for text in lens.grid.cell_texts())
    assert attention.shown_pattern().shape == (len(tokens), len(tokens))


def test_logit_lens_and_head_types_say_how_they_measured(qtbot, selection, real_run):
    """The lens names its LayerNorm choice (the notebook's by default), the grid its own, head types their sequences."""
    from ioi_desktop.gui.panels import HeadScoresPanel
    from ioi_desktop.gui.panels.logit_lens import GRID_NOTE, LENS_TITLES

    results, _ = real_run
    lens = LogitLensPanel(selection)
    qtbot.addWidget(lens)
    lens.show_results(results)
    assert lens.lens_title() == LENS_TITLES["cached_final"]
    assert "cached" in lens.lens_view.getPlotItem().titleLabel.text
    assert "recomputes LayerNorm in every cell" in lens.status.text() and "cached scale" in lens.status.text()
    assert GRID_NOTE in lens.grid.plot.titleLabel.text
    scores = HeadScoresPanel(selection)
    qtbot.addWidget(scores)
    scores.show_results(results)
    meta = results["head_scores"].meta
    assert f"BOS, then {meta['seq_len']} distinct random word tokens" in scores.note.text()
