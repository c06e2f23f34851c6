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


# A normalised score (patched - corrupted) / (clean - corrupted) divides by the gap between the clean and
# corrupted mean logit differences; below this gap (in logits) the ratio is mostly noise. The panels, the
# exported figures and the CLI show a warning naming this threshold next to such scores.
SMALL_GAP_THRESHOLD = 0.1


def small_gap_warning(clean, corrupted) -> str:
    """One sentence when |clean - corrupted| < SMALL_GAP_THRESHOLD ('' otherwise, or when either is unknown)."""
    try:
        gap = abs(float(clean) - float(corrupted))
    except (TypeError, ValueError):
        return ""
    if not np.isfinite(gap) or gap >= SMALL_GAP_THRESHOLD:
        return ""
    return (f"Small gap: |clean − corrupted| = {gap:.3g} logits, below the {SMALL_GAP_THRESHOLD:g} threshold; "
            "normalised scores divide by it and are mostly noise.")
