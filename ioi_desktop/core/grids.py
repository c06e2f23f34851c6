"""Reading a result grid: its strongest cell (panels and the smoke test name it; they do no arithmetic)."""

from __future__ import annotations

import numpy as np


def strongest_cell(grid: np.ndarray, by: str = "abs") -> tuple[tuple[int, ...], float] | None:
    """Index and value of the cell with the largest ``|value|`` (``by="abs"``) or value (``by="max"``).

    NaN cells (rows of a run in progress) are skipped; None when no cell has a value.
    """
    values = np.asarray(grid, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return None
    if by not in ("abs", "max"):
        raise ValueError(f"by must be 'abs' or 'max', not {by!r}")
    score = np.where(finite, np.abs(values) if by == "abs" else values, -np.inf)
    index = tuple(int(i) for i in np.unravel_index(int(np.argmax(score)), values.shape))
    return index, float(values[index])
