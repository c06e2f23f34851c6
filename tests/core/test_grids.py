"""The strongest cell of a grid, as panels and the smoke test name it."""

from __future__ import annotations

import numpy as np
import pytest

from ioi_desktop.core.grids import strongest_cell


def test_strongest_by_magnitude_and_by_value_skipping_rows_not_computed():
    grid = np.array([[0.1, -0.9], [np.nan, np.nan], [0.5, 0.2]], dtype=np.float32)
    assert strongest_cell(grid) == ((0, 1), pytest.approx(-0.9))
    assert strongest_cell(grid, by="max") == ((2, 0), pytest.approx(0.5))
    assert strongest_cell(np.full((2, 2), np.nan)) is None
    with pytest.raises(ValueError):
        strongest_cell(grid, by="min")
