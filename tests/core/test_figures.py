"""Publication figures without Qt (issue 17): every grid, vector cells coloured by value, titles, markers."""

from __future__ import annotations

import re

import numpy as np
from tests.gui.panels.conftest import build_run_results

from ioi_desktop.core import figures
from ioi_desktop.core.roles import ROLES_FORMAT, ROLES_VERSION, parse_roles


def test_every_grid_of_every_analysis_becomes_a_titled_figure():
    results = build_run_results()
    found = {f.name: f for f in figures.grid_figures(results)}
    for key in ("resid_pre", "attn_out", "mlp_out", "head_z", "head_v", "head_pattern", "head_q", "head_k"):
        assert f"patch_{key}" in found and f"atp_{key}" in found, key
    assert "dla_head" in found and "head_score_induction" in found
    assert not any(name.endswith("_raw") for name in found)
    head_z = found["patch_head_z"]
    assert head_z.title.startswith("Activation patching: Head output z") and head_z.head_grid
    # Exact and estimate of one activation share one symmetric scale, never narrower than +-0.1.
    assert head_z.levels == found["atp_head_z"].levels and head_z.levels[0] == -head_z.levels[1] >= -10
    assert not found["patch_resid_pre"].head_grid
    assert "pairs" in head_z.subtitle


def test_svg_cells_are_vector_rectangles_coloured_by_value():
    results = build_run_results()
    figure = next(f for f in figures.grid_figures(results) if f.name == "dla_head")
    svg = figures.figure_svg(figure)
    n_rows, n_cols = figure.values.shape
    fills = re.findall(r'<rect x="[^"]+" y="[^"]+" width="[^"]+" height="[^"]+" fill="(#[0-9a-f]{6})"/>', svg)
    # The first n_rows * n_cols filled rects are the cells, row by row, then the colour bar's.
    cells = fills[1:1 + n_rows * n_cols]  # fills[0] is the white background
    expected = [figures.colour(float(v), figure.levels, figure.signed) for v in figure.values.ravel()]
    assert cells == expected and "<image" not in svg
    peak = float(np.abs(figure.values).max())
    assert figures.colour(peak, figure.levels, True) == "#053061"  # RdBu's deepest blue at +peak
    assert figures.colour(-peak, figure.levels, True) == "#67001f"


def test_role_markers_only_on_head_grids_and_only_when_asked():
    results = build_run_results()
    roles = parse_roles({"format": ROLES_FORMAT, "version": ROLES_VERSION,
                         "roles": [{"layer": 9, "head": 9, "role": "name mover"}]})
    plain = {f.name: f for f in figures.grid_figures(results, roles=roles)}
    assert not plain["patch_head_z"].markers
    marked = {f.name: f for f in figures.grid_figures(results, roles=roles, markers=True)}
    assert marked["patch_head_z"].markers == {(9, 9): "name mover"}
    assert not marked["patch_resid_pre"].markers
    assert "name mover" in figures.figure_svg(marked["patch_head_z"])
    assert "<circle" not in figures.figure_svg(marked["patch_resid_pre"])


def test_prompt_rows_carry_texts_answers_and_named_positions():
    results = build_run_results()
    header, rows = figures.prompt_rows(results.meta, results.results)
    assert header[:5] == ["prompt", "clean_text", "corrupted_text", "correct_answer", "incorrect_answer"]
    assert "IO_token" in header and "logit_diff_clean" in header
    assert len(rows) == 8 and rows[0][3] and rows[0][1]
