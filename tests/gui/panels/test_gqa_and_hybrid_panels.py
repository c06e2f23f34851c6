"""Panels for grouped-query attention and hybrids: path patching's k/v grids per key-value head, labelled so;
the attention viewer over a hybrid's attention layers only."""

from __future__ import annotations

import csv

import numpy as np
from PySide6.QtCore import QPointF, Qt

from ioi_desktop.gui.panels import AttentionPanel, PathPatchingPanel

N_LAYERS, N_HEADS, N_KV = 4, 8, 2
LABELS = ("KV0 (H0-H3)", "KV1 (H4-H7)")


def _results(question="forward"):
    from ioi_desktop.core.analyses import path_patching
    from ioi_desktop.core.results import RunResults

    rng = np.random.default_rng(3)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    heads = f32(rng.normal(0, 0.1, (N_LAYERS, N_HEADS)))
    kv = f32(rng.normal(0, 0.1, (N_LAYERS, N_KV)))
    kv[2, 1] = 0.9  # the strongest cell: layer 2, key-value head 1
    if question == "forward":
        grids = dict(path_patch_k_kv=kv, path_patch_k_kv_raw=kv, path_patch_v_kv=kv, path_patch_v_kv_raw=kv,
                     senders=[[0, 1]], receivers=["q", "k", "v"])
    else:
        grids = dict(path_patch_k=heads, path_patch_k_raw=heads, receiver_head=[3, 5], receiver_kv_head=[3, 1],
                     receivers=["q", "k"])
    result = path_patching.Result(path_patch_q=heads, path_patch_q_raw=heads, question=question,
                                  kv_head_labels=LABELS, n_key_value_heads=N_KV, **grids)
    meta = {"model": {"name": "llama-shaped", "n_layers": N_LAYERS, "n_heads": N_HEADS}, "prompts": {}}
    return RunResults(results={result.name: result}, meta=meta)


def _panel(qtbot, selection, results, cls=PathPatchingPanel):
    panel = cls(selection)
    qtbot.addWidget(panel)
    panel.resize(1150, 620)
    panel.show()
    qtbot.waitExposed(panel)
    panel.show_results(results)
    return panel


def test_key_value_head_grids_are_labelled_exported_and_not_linked_to_heads(qtbot, selection, tmp_path):
    results = _results()
    panel = _panel(qtbot, selection, results)
    k_map = panel.heatmaps["path_patch_k_kv"]
    assert k_map.isVisibleTo(panel) and not panel.heatmaps["path_patch_k"].isVisibleTo(panel)
    np.testing.assert_array_equal(k_map.values(), results.array("path_patch_k_kv"))
    assert [k_map.col_label(i) for i in range(N_KV)] == list(LABELS)
    assert "L2 KV1 (H4-H7)" in panel.status.text()
    # A column is a group of query heads: clicking it selects no head.
    selection.update(layer=0, head=0)
    scene = k_map.plot.vb.mapViewToScene(QPointF(1, 2))
    qtbot.mouseClick(k_map.viewport(), Qt.MouseButton.LeftButton, pos=k_map.mapFromScene(scene))
    assert (selection.layer, selection.head) == (0, 0)
    tables = [path for path in panel.export(tmp_path) if path.suffix == ".csv" and "path_patch_k_kv" in path.stem]
    assert tables  # the core's figure table and the panel's own
    for table in tables:
        with open(table, newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle))
        assert [cell.removeprefix("key-value head ") for cell in header[1:]] == list(LABELS), (table.name, header)
    panel.clear()
    assert not k_map.isVisibleTo(panel)


def test_the_reverse_question_names_the_receivers_key_value_head(qtbot, selection):
    panel = _panel(qtbot, selection, _results("reverse"))
    assert "key-value head KV1 (H4-H7)" in panel.status.text()
    assert panel.heatmaps["path_patch_k"].isVisibleTo(panel)
    assert not panel.heatmaps["path_patch_k_kv"].isVisibleTo(panel)


def test_the_attention_viewer_of_a_hybrid_shows_its_attention_layers_by_their_real_index(qtbot, selection):
    from ioi_desktop.core.analyses import attention
    from ioi_desktop.core.results import RunResults

    rng = np.random.default_rng(5)
    n = 6
    raw = np.tril(rng.random((2, 2, 2, n, n))) + np.eye(n)
    patterns = np.ascontiguousarray(raw / raw.sum(-1, keepdims=True), dtype=np.float32)
    result = attention.Result(attention_pattern=patterns, layer_labels=("1", "3"), attention_layers=[1, 3])
    meta = {"model": {"name": "hybrid", "n_layers": 4, "n_heads": 2}, "prompts": {}}
    panel = _panel(qtbot, selection, RunResults(results={result.name: result}, meta=meta), AttentionPanel)
    selection.update(prompt=0, layer=3, head=1)
    assert panel.shown_head() == (0, 3, 1)
    np.testing.assert_array_equal(panel.shown_pattern(), patterns[0, 1, 1])
    assert "L3H1" in panel.heatmap.plot.titleLabel.text
    selection.update(layer=0, head=0)  # a mixer layer: the nearest attention layer is shown, and said so
    assert panel.shown_head() == (0, 1, 0)
    np.testing.assert_array_equal(panel.shown_pattern(), patterns[0, 0, 0])
    assert "Layer 0 has no attention heads" in panel.status.text()
    assert (panel.layer_spin.minimum(), panel.layer_spin.maximum()) == (1, 3)


def test_head_scores_of_a_hybrid_label_rows_with_real_layers_and_click_through(qtbot, selection, tmp_path):
    from ioi_desktop.core.analyses import head_scores
    from ioi_desktop.core.results import RunResults
    from ioi_desktop.gui.panels import HeadScoresPanel

    rng = np.random.default_rng(9)
    grids = {f"head_score_{kind}": np.ascontiguousarray(rng.random((2, 4)) * 0.3, dtype=np.float32)
             for kind in ("prev", "dup", "induction")}
    grids["head_score_dup"][1, 2] = 0.95  # strongest: row 1 = layer 3, head 2
    result = head_scores.Result(**grids, layer_labels=("1", "3"), attention_layers=[1, 3], seq_len=8, batch=2,
                                seed=0, prepend_bos=True, token_pool="words")
    meta = {"model": {"name": "hybrid", "n_layers": 4, "n_heads": 4}, "prompts": {}}
    panel = _panel(qtbot, selection, RunResults(results={result.name: result}, meta=meta), HeadScoresPanel)
    dup = panel.heatmaps["head_score_dup"]
    assert dup.row_label(0) == "1" and dup.row_label(1) == "3"
    assert "L3H2" in panel.status.text()
    scene = dup.plot.vb.mapViewToScene(QPointF(2, 1))
    qtbot.mouseClick(dup.viewport(), Qt.MouseButton.LeftButton, pos=dup.mapFromScene(scene))
    assert (selection.layer, selection.head) == (3, 2)
    assert dup.selected() == (1, 2)
    assert dup.describe_cell(1, 2).startswith("L3H2")
    selection.update(layer=0, head=1)  # a mixer layer: no cell outlined
    assert dup.selected() is None
    tables = [path for path in panel.export(tmp_path) if path.suffix == ".csv" and "head_score_dup" in path.stem]
    assert tables
    for table in tables:
        with open(table, newline="", encoding="utf-8") as handle:
            rows = [row[0] for row in csv.reader(handle)][1:]
        assert rows == ["1", "3"], (table.name, rows)


def test_dla_of_a_hybrid_labels_head_rows_with_real_layers_and_click_through(qtbot, selection, tmp_path):
    from ioi_desktop.core.analyses import dla
    from ioi_desktop.core.results import RunResults
    from ioi_desktop.gui.panels import AttributionPanel

    rng = np.random.default_rng(11)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    by_head = f32(rng.normal(0, 0.1, (2, 2, 4)))  # [prompt, attention layer, head]
    by_head[:, 1, 3] = 2.0  # strongest: row 1 = layer 3, head 3
    components = f32(rng.normal(0, 0.5, (2, 9)))
    labels = ("embed", "0_mixer_out", "0_mlp_out", "1_attn_out", "1_mlp_out", "2_mixer_out", "2_mlp_out",
              "3_attn_out", "3_mlp_out")
    result = dla.Result(dla_components=f32(components.mean(0)), dla_components_by_prompt=components,
                        dla_head=f32(by_head.mean(0)), dla_head_by_prompt=by_head, dla_unembed_bias=f32(np.zeros(2)),
                        component_labels=labels, layer_labels=("1", "3"), attention_layers=[1, 3])
    meta = {"model": {"name": "hybrid", "n_layers": 4, "n_heads": 4}, "prompts": {}}
    panel = _panel(qtbot, selection, RunResults(results={result.name: result}, meta=meta), AttributionPanel)
    assert panel.heads.row_label(0) == "1" and panel.heads.row_label(1) == "3"
    assert "L3H3" in panel.status.text()
    scene = panel.heads.plot.vb.mapViewToScene(QPointF(3, 1))
    qtbot.mouseClick(panel.heads.viewport(), Qt.MouseButton.LeftButton, pos=panel.heads.mapFromScene(scene))
    assert (selection.layer, selection.head) == (3, 3) and panel.heads.selected() == (1, 3)
    written = panel.export(tmp_path)
    tables = [path for path in written if path.suffix == ".csv" and ("heads" in path.stem or "dla_head" in path.stem)]
    assert tables
    for table in tables:
        with open(table, newline="", encoding="utf-8") as handle:
            assert [row[0] for row in csv.reader(handle)][1:] == ["1", "3"], table.name


def test_patching_of_a_hybrid_labels_rows_with_real_layers_and_click_through(qtbot, selection):
    from ioi_desktop.core.analyses import patching
    from ioi_desktop.core.results import RunResults
    from ioi_desktop.gui.panels import PatchingPanel

    rng = np.random.default_rng(13)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    head_z = f32(rng.normal(0, 0.05, (2, 4)))
    head_z[1, 2] = 0.8  # strongest: row 1 = layer 3, head 2
    result = patching.Result(patch_head_z=head_z, patch_head_z_raw=head_z, layer_labels=("1", "3"),
                             attention_layers=[1, 3], sweeps=["head_z"], engine="bridge",
                             clean_logit_diff=1.0, corrupt_logit_diff=0.0)
    meta = {"model": {"name": "hybrid", "n_layers": 4, "n_heads": 4}, "prompts": {}}
    panel = _panel(qtbot, selection, RunResults(results={result.name: result}, meta=meta), PatchingPanel)
    panel.grid_combo.setCurrentIndex(panel.grid_combo.findData("head_z"))
    assert panel.exact.row_label(0) == "1" and panel.exact.row_label(1) == "3"
    assert "L3H2" in panel.status.text()
    scene = panel.exact.plot.vb.mapViewToScene(QPointF(2, 1))
    qtbot.mouseClick(panel.exact.viewport(), Qt.MouseButton.LeftButton, pos=panel.exact.mapFromScene(scene))
    assert (selection.layer, selection.head) == (3, 2) and panel.exact.selected() == (1, 2)
    selection.update(layer=0, head=2)  # a mixer layer: nothing outlined
    assert panel.exact.selected() is None
