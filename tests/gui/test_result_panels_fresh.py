"""Issue 17, the result panels in the real window: stale results, cancel, readouts, layout, warnings, exports.

Each test drives the real window and worker on the tiny model (see tests/support/gui_fixtures.py).
"""

from __future__ import annotations

import struct
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication
from tests.support.gui_helpers import RUN_TIMEOUT_MS, run_and_wait, save_session_and_wait

from ioi_desktop.core.grids import SMALL_GAP_THRESHOLD


def panels_of(window) -> dict:
    return {panel.TITLE: panel for panel in window.panels}


def raise_panel(qtbot, window, title: str):
    dock = window.docks[title]
    dock.show()
    dock.raise_()
    panel = panels_of(window)[title]
    qtbot.waitUntil(panel.on_screen, timeout=5000)
    panel.ensure_drawn()
    QApplication.processEvents()
    return panel


def hover(heatmap, row: int, col: int) -> None:
    """Move the mouse over a cell the way Qt delivers it (the view's mouse tracking is on)."""
    scene_point = heatmap.plot.vb.mapViewToScene(QPointF(col, row))
    local = QPointF(heatmap.mapFromScene(scene_point))
    event = QMouseEvent(QEvent.Type.MouseMove, local, heatmap.viewport().mapToGlobal(local),
                        Qt.MouseButton.NoButton, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(heatmap.viewport(), event)
    QApplication.processEvents()


# ---------------------------------------------------------------- finding 1


def test_changed_inputs_grey_out_the_results_and_run_reruns_only_what_changed(qtbot, loaded_window, tiny_handle):
    window = loaded_window
    run_and_wait(qtbot, window)
    panels = panels_of(window)
    lens, overview = panels["Logit lens"], panels["Overview"]
    assert not lens.greyed and lens.banner_text() == ""

    # Options of one analysis: only its panel greys out, with the one line, and keeps its results.
    options = window.workbench.options["logit_lens"]
    window.workbench.set_options("logit_lens", type(options).from_dict({**options.to_dict(),
                                                                         "top_k": options.top_k + 1}))
    assert lens.greyed and not overview.greyed
    model = tiny_handle.info.name
    assert lens.banner_text().startswith(f"Results from {model}, 8 pairs; press Run"), lens.banner_text()
    raise_panel(qtbot, window, "Logit lens")
    assert lens.results is not None and lens.grid.values().size > 0

    requests = []
    real_run = window.worker.run_analyses
    window.worker.run_analyses = lambda handle, prompts, request: (requests.append(request),
                                                                   real_run(handle, prompts, request))[1]
    run_and_wait(qtbot, window)
    assert [r.analyses for r in requests] == [("logit_lens",)]
    assert not lens.greyed and lens.banner_text() == ""
    assert window.results.get("logit_diff") is not None, "the results that were still current were dropped"

    # An edited pair changes the prompt set: every panel greys out.
    prompt_set = window.prompt_editor.prompt_set()
    pair = prompt_set.pairs[0]
    edited = replace(prompt_set, pairs=(replace(pair, clean=pair.clean.replace("shops", "park")),
                                        *prompt_set.pairs[1:]))
    window.prompt_editor.set_prompt_set(edited)
    qtbot.waitUntil(lambda: overview.greyed, timeout=5000)
    assert "prompt set" in overview.banner_text() and lens.greyed

    # Another model: the banner names the model the results came from.
    window.prompt_editor.set_prompt_set(prompt_set)
    qtbot.waitUntil(lambda: not overview.greyed, timeout=5000)
    other = replace(tiny_handle, info=replace(tiny_handle.info, name="another-model"))
    window.worker.model_loaded.emit(other)
    assert overview.greyed and "model" in overview.banner_text()
    assert overview.banner_text().startswith(f"Results from {model}, 8 pairs")
    window.worker.model_loaded.emit(tiny_handle)


# ---------------------------------------------------------------- finding 3


def test_cancel_mid_logit_lens_shows_labelled_partial_rows(qtbot, loaded_window, monkeypatch):
    import ioi_desktop.core.analyses.metrics as metrics

    window = loaded_window
    cancel_pressed = threading.Event()
    real_as_int32 = metrics.as_int32
    lens_rows = []

    def as_int32_after_cancel(tensor):
        # The logit lens converts each grid row's top ids [prompt, pos, rank]; its second row waits
        # (in the worker thread) until the user has pressed Cancel, so the third never starts.
        if tensor.ndim == 3:
            lens_rows.append(1)
            if len(lens_rows) == 2:
                cancel_pressed.wait(timeout=60)
        return real_as_int32(tensor)

    monkeypatch.setattr(metrics, "as_int32", as_int32_after_cancel)

    def on_rows(event) -> None:
        if event.array == "logit_lens_grid_top_ids" and not cancel_pressed.is_set():
            window.cancel()
            cancel_pressed.set()

    window.worker.rows_ready.connect(on_rows)
    with qtbot.waitSignal(window.worker.run_cancelled, timeout=RUN_TIMEOUT_MS):
        assert window.run()
    window.worker.rows_ready.disconnect(on_rows)

    panels = panels_of(window)
    overview = raise_panel(qtbot, window, "Overview")
    assert "Mean logit difference" in overview.summary.text(), "the finished analysis is not shown"
    lens = raise_panel(qtbot, window, "Logit lens")
    assert lens.banner_text().startswith("Cancelled at "), lens.banner_text()
    rows = [lens.grid.row_label(i) for i in range(lens.grid.values().shape[0])]
    assert rows == ["0 pre", "1 pre", "final post"]
    texts = lens.grid.cell_texts()
    assert texts and not any(text.startswith("#") or text == "?" for text in texts), texts
    length = window.results.meta["prompts"]["lengths"][0] if window.results else None
    meta_lengths = window.workbench.results.meta["prompts"]["lengths"]
    assert lens.grid.values().shape[1] == (length or meta_lengths[0])
    assert "Computing" not in lens.status.text() and "Cancelled at" in lens.status.text()
    assert "When" in lens.grid.col_label(1)
    assert panels["Patching"].banner_text() == "" or "Computing" not in panels["Patching"].status.text()


# ---------------------------------------------------------------- findings 5, 6, 9


def test_readouts_follow_the_grid_prompt_and_mode(qtbot, loaded_window):
    window = loaded_window
    run_and_wait(qtbot, window)
    patching = raise_panel(qtbot, window, "Patching")
    patching.grid_combo.setCurrentIndex(patching.grid_combo.findData("resid_pre"))
    hover(patching.exact, 1, 3)
    assert "position" in patching.exact.hover_label.text
    patching.grid_combo.setCurrentIndex(patching.grid_combo.findData("head_z"))
    # The read-out now describes the head grid (or nothing), never the position grid's cell.
    assert "position" not in patching.exact.hover_label.text

    # "Attribution estimate" mode: the header describes the estimate grid.
    patching.mode_combo.setCurrentIndex(1)
    estimate = window.results.array("atp_head_z")
    layer, head = np.unravel_index(int(np.nanargmax(np.abs(estimate))), estimate.shape)
    assert patching.status.text().startswith("Attribution estimate")
    assert f"L{layer}H{head}" in patching.status.text()
    patching.mode_combo.setCurrentIndex(0)
    assert patching.status.text().startswith("Exact patching")

    lens = raise_panel(qtbot, window, "Logit lens")
    hover(lens.grid, 0, 2)
    before = lens.grid.hover_label.text
    assert "John" in before
    window.selection.select_prompt(2)
    after = lens.grid.hover_label.text
    assert "John" not in after and after in (" ", lens.grid.describe_cell(0, 2))


def test_role_markers_only_on_layer_by_head_grids_and_not_in_exports(qtbot, loaded_window, tmp_path):
    from ioi_desktop.core.roles import parse_roles

    window = loaded_window
    run_and_wait(qtbot, window)
    patching = raise_panel(qtbot, window, "Patching")
    from ioi_desktop.core.roles import ROLES_FORMAT, ROLES_VERSION

    roles = parse_roles({"format": ROLES_FORMAT, "version": ROLES_VERSION, "roles": [{"layer": 0, "head": 1, "role": "duplicate token"},
                                   {"layer": 1, "head": 2, "role": "name mover"}]})
    patching.set_head_roles(roles)
    patching.grid_combo.setCurrentIndex(patching.grid_combo.findData("head_z"))
    assert patching.exact.marker_count() == 2
    for key in ("resid_pre", "attn_out", "mlp_out", "head_z_by_pos"):
        patching.grid_combo.setCurrentIndex(patching.grid_combo.findData(key))
        assert all(m.marker_count() == 0 for m in (patching.exact, patching.estimate, patching.error)), key

    patching.grid_combo.setCurrentIndex(patching.grid_combo.findData("head_z"))
    plain = patching.export(tmp_path / "plain", dpi=100)
    head_svg = next(p for p in plain if p.name == "patch_head_z.svg").read_text()
    assert "<circle" not in head_svg and "duplicate token" not in head_svg
    assert patching.exact.marker_count() == 2, "the on-screen markers came back after the export"
    marked = patching.export(tmp_path / "marked", dpi=100, markers=True)
    assert "duplicate token" in next(p for p in marked if p.name == "patch_head_z.svg").read_text()
    assert "<circle" not in next(p for p in marked if p.name == "patch_resid_pre.svg").read_text()


def test_small_gap_warning_next_to_normalised_scores(qtbot, loaded_window):
    from ioi_desktop.core.results import RunResults

    window = loaded_window
    run_and_wait(qtbot, window)
    results = window.results
    small = {**results.results,
             "patching": replace(results.results["patching"], clean_logit_diff=1.0, corrupt_logit_diff=0.997),
             "attribution_patching": replace(results.results["attribution_patching"], clean_logit_diff=1.0,
                                             corrupt_logit_diff=0.997)}
    window.show_results(RunResults(results=small, meta=results.meta))
    patching = raise_panel(qtbot, window, "Patching")
    assert patching.gap_label.isVisibleTo(patching)
    text = patching.gap_label.text()
    assert "0.003" in text and f"{SMALL_GAP_THRESHOLD:g}" in text
    large = {**small, "patching": replace(small["patching"], clean_logit_diff=2.0, corrupt_logit_diff=-1.0),
             "attribution_patching": replace(small["attribution_patching"], clean_logit_diff=2.0,
                                             corrupt_logit_diff=-1.0)}
    window.show_results(RunResults(results=large, meta=results.meta))
    patching.ensure_drawn()
    assert not patching.gap_label.isVisibleTo(patching)


# ---------------------------------------------------------------- findings 7, 8


@pytest.mark.parametrize("width", [1280, 1680])
def test_exact_estimate_and_error_fit_with_shared_scale_and_colour_bars(qtbot, loaded_window, width):
    window = loaded_window
    window.resize(width, 900)
    run_and_wait(qtbot, window)
    patching = raise_panel(qtbot, window, "Patching")
    for key in ("head_z", "resid_pre"):
        patching.grid_combo.setCurrentIndex(patching.grid_combo.findData(key))
        patching.mode_combo.setCurrentIndex(2)
        QApplication.processEvents()
        maps = [patching.exact, patching.estimate, patching.error]
        assert all(m.isVisibleTo(patching) for m in maps)
        assert patching.exact.levels() == patching.estimate.levels()
        viewport = patching.grid_scroll.viewport()
        for heatmap in maps:
            # Each grid lies wholly inside the visible width, its colour bar with it.
            right = heatmap.mapTo(viewport, heatmap.rect().topRight()).x()
            assert right <= viewport.width() + 1, (key, width, right, viewport.width())
            bar = heatmap.mapFromScene(heatmap.colorbar.sceneBoundingRect().topRight())
            assert heatmap.colorbar.isVisible() and bar.x() <= heatmap.width(), key
    combo = patching.grid_combo
    for i in range(combo.count()):
        combo.setCurrentIndex(i)
        QApplication.processEvents()
        assert combo.width() >= combo.fontMetrics().horizontalAdvance(combo.currentText()), combo.currentText()


def test_attention_cells_square_every_token_labelled_and_pins_named(qtbot, loaded_window):
    window = loaded_window
    window.resize(1680, 1000)
    run_and_wait(qtbot, window)
    attention = raise_panel(qtbot, window, "Attention")
    window.selection.select_head(1, 2)
    QApplication.processEvents()
    heatmap = attention.heatmap
    n = heatmap.values().shape[0]
    origin = heatmap.plot.vb.mapViewToScene(QPointF(0, 0))
    corner = heatmap.plot.vb.mapViewToScene(QPointF(1, 1))
    cell_w, cell_h = abs(corner.x() - origin.x()), abs(corner.y() - origin.y())
    assert abs(cell_w - cell_h) < 1.0 and cell_h >= 14, (cell_w, cell_h)
    assert len(heatmap.shown_ticks("bottom")) == n and len(heatmap.shown_ticks("left")) == n
    assert "When" in heatmap.col_label(1)
    window.selection.set_pinned([(0, 1)])
    QApplication.processEvents()
    pinned = attention.pinned_maps[0]
    assert pinned.isVisibleTo(attention)
    assert "L0H1" in pinned.plot.titleLabel.text
    assert pinned.col_label(1) == heatmap.col_label(1) and pinned.row_label(1) == heatmap.row_label(1)


# ---------------------------------------------------------------- finding 10


def _png_size(path: Path) -> tuple[int, int]:
    return struct.unpack(">II", path.read_bytes()[16:24])


def test_export_all_writes_every_grid_at_publication_size(qtbot, loaded_window, tmp_path, tiny_handle):
    window = loaded_window
    run_and_wait(qtbot, window)
    written = window.export_all(tmp_path / "out", dpi=200)
    names = {p.relative_to(tmp_path / "out").as_posix() for p in written}
    # Every grid of patching, not only the one on screen.
    for key in ("resid_pre", "attn_out", "mlp_out", "head_z", "head_v", "head_pattern"):
        assert f"patching/patch_{key}.png" in names and f"patching/atp_{key}.svg" in names, key
    svg = (tmp_path / "out/patching/patch_head_z.svg").read_text()
    assert svg.count("<rect") >= 2 * 4 and "<image" not in svg
    assert "Head output z" in svg and tiny_handle.info.name in svg and "8 pairs" in svg
    width = float(svg.split('width="', 1)[1].split('"', 1)[0])
    png_w, _ = _png_size(tmp_path / "out/patching/patch_head_z.png")
    assert abs(png_w - round(width * 200 / 96)) <= 1
    overview_csv = (tmp_path / "out/overview/overview_logit_diff.csv").read_text()
    header = overview_csv.splitlines()[0]
    for column in ("clean_text", "corrupted_text", "correct_answer", "incorrect_answer", "IO_token"):
        assert column in header
    assert "When John and Mary went to the shops" in overview_csv and ",Mary," in overview_csv


def test_cli_export_writes_the_same_figures_headless(qtbot, loaded_window, tmp_path):
    from ioi_desktop.cli import main

    window = loaded_window
    run_and_wait(qtbot, window)
    session = tmp_path / "run.ioisession"
    assert save_session_and_wait(qtbot, window, session)
    out = tmp_path / "cli"
    assert main(["export", str(session), "--out", str(out), "--dpi", "100"]) == 0
    assert (out / "patch_head_z.svg").is_file() and (out / "patch_head_z.png").is_file()
    assert (out / "patch_resid_pre.png").is_file() and (out / "prompts.csv").is_file()
    assert "<circle" not in (out / "patch_head_z.svg").read_text()
    assert main(["export", str(tmp_path / "missing.ioisession"), "--out", str(out)]) == 2


# ---------------------------------------------------------------- finding 12


def test_overview_ticks_stay_readable_with_1000_prompts(qtbot, loaded_window):
    from ioi_desktop.core.pairs import notebook_prompt_set

    window = loaded_window
    for name, action in window.analysis_actions.items():
        action.setChecked(name == "logit_diff")
    base = notebook_prompt_set()
    window.set_prompt_set(replace(base, pairs=tuple(base.pairs[i % len(base.pairs)] for i in range(1000))))
    qtbot.waitUntil(lambda: window.prompt_editor.valid, timeout=30000)
    run_and_wait(qtbot, window)
    overview = raise_panel(qtbot, window, "Overview")
    ticks = overview.bars.shown_ticks()
    metrics = overview.bars.fontMetrics()
    widest = max(metrics.horizontalAdvance(label) for _, label in ticks)
    length = overview.bars.plot.vb.boundingRect().width()
    assert 2 <= len(ticks) and len(ticks) * (widest + 4) <= length, (len(ticks), widest, length)
    step = ticks[1][0] - ticks[0][0]
    assert step in (10, 20, 25, 50, 100, 200, 250, 500)


def test_model_picker_error_clears_once_a_valid_folder_loads(qtbot, window, tiny_model_dir, tmp_path):
    from tests.support.gui_fixtures import MODEL_LOAD_TIMEOUT_MS, load_through_worker

    from ioi_desktop.core.models import ModelSpec

    picker = window.model_picker
    with qtbot.waitSignal(window.worker.model_load_failed, timeout=MODEL_LOAD_TIMEOUT_MS):
        assert window.load_model(ModelSpec(source=str(tmp_path), device="cpu"))
    qtbot.waitUntil(lambda: not window.worker.busy, timeout=MODEL_LOAD_TIMEOUT_MS)
    assert picker.error_label.isVisibleTo(picker) and "not a model folder" in picker.error_label.text()
    load_through_worker(qtbot, window, tiny_model_dir)
    assert not picker.error_label.isVisibleTo(picker)


def test_patching_cancelled_mid_grid_says_where_over_its_labelled_rows(qtbot, loaded_window):
    """The worker's reports as they arrive when Cancel lands after patching's first layer."""
    from ioi_desktop.core.analyses import patching as patching_analysis
    from ioi_desktop.core.runner import RowsEvent

    window = loaded_window
    store = window.workbench.results
    patching = raise_panel(qtbot, window, "Patching")
    request = window.workbench.run_request(only=("patching",))
    window.workbench.begin_run(request)
    store.set_meta({"prompts": {"str_tokens": [["<|endoftext|>", "When", " John"]] * 8, "lengths": [3] * 8}})
    store.note_step("Activation patching: residual stream, layer 1 of 2")
    store.add_rows(RowsEvent("patching", "patch_resid_pre", (0,), np.array([0.1, 0.2, 0.9], np.float32), (2, 3),
                             patching_analysis.Result))
    assert "Computing" in patching.status.text()
    store.end("cancelled")
    assert patching.banner_text().startswith("Cancelled at Activation patching: residual stream, layer 1 of 2")
    assert "Computing" not in patching.status.text() and "1 of 2 layers computed" in patching.status.text()
    assert "When" in patching.exact.col_label(1) and "position 2 'John'" in patching.status.text()


@pytest.mark.parametrize("title", ["Path patching", "Ablation", "Head scores"])
def test_rows_of_head_maps_reflow_rather_than_cut_a_plot_off(qtbot, loaded_window, title):
    window = loaded_window
    window.resize(1280, 800)
    run_and_wait(qtbot, window)
    panel = raise_panel(qtbot, window, title)
    QApplication.processEvents()
    from ioi_desktop.gui.widgets.heatmap import Heatmap

    for heatmap in panel.findChildren(Heatmap):
        if not heatmap.isVisibleTo(panel):
            continue
        right = heatmap.mapTo(panel, heatmap.rect().topRight()).x()
        assert right <= panel.width() + 1, (title, right, panel.width())
        bar = heatmap.mapFromScene(heatmap.colorbar.sceneBoundingRect().topRight())
        assert bar.x() <= heatmap.width() + 1, title
