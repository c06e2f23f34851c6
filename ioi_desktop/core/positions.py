"""Labels of the ``pos`` axis of a tokenized prompt set.

Shared by the analyses that label a position axis and by the results
metadata; a module of its own so that the analyses do not import
:mod:`ioi_desktop.core.results` (which sits above them). numpy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def position_labels(batch: Any) -> list[str]:
    """Labels of the ``pos`` axis of a tokenized set.

    Equal-length sets: ``"<index>: <token of prompt 0>"`` plus the role name where
    every prompt has that role at that position (``"14: to (END)"``). Sets of
    unequal length have no shared absolute positions: the label says only the
    index and, where the prompts agree, the role.
    """
    width = int(np.asarray(batch.clean_tokens).shape[1])
    roles_here: dict[int, str] = {}
    for role, positions in batch.roles.items():
        positions = np.asarray(positions)
        if positions.size and (positions >= 0).all() and (positions == positions[0]).all():
            roles_here.setdefault(int(positions[0]), role)
    labels = []
    for pos in range(width):
        text = f"{pos}"
        if batch.equal_length:
            text += f": {batch.str_tokens[0][pos]}"
        if pos in roles_here:
            text += f" ({roles_here[pos]})"
        labels.append(text)
    return labels
