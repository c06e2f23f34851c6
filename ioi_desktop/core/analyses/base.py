"""The contract every analysis module follows.

An analysis module (``ioi_desktop/core/analyses/<name>.py``) exposes:

- ``NAME``: its registry name (``"logit_diff"``, ``"patching"``, ...);
- ``run(ctx: AnalysisContext, progress: Progress) -> AnalysisResult``: pure
  computation from the model handle and the tokenized prompt set; it calls
  ``progress.check_cancelled()`` between units of work, ``progress.advance(...)``
  after each, and ``progress.rows(...)`` when a block of a grid is finished so
  views can fill in while it runs.

Results leave ``core`` as float32 C-contiguous numpy arrays with no NaN, each
with named axes (TransformerLens's words: ``prompt``, ``layer``, ``head``,
``pos``, ``query_pos``, ``key_pos``, ``component``, ...) whose entries are
labelled in ``labels``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

import numpy as np


class Progress(Protocol):
    """What the runner hands to an analysis: progress, cancellation, partial rows."""

    def advance(self, units: int = 1, message: str = "") -> None:
        """Report ``units`` more units of work done."""

    def set_total(self, units: int) -> None:
        """Declare how many units this analysis will report in all."""

    def check_cancelled(self) -> None:
        """Raise ``errors.Cancelled`` if the user asked to stop."""

    def rows(self, array: str, index: tuple[int, ...] | int, values: np.ndarray) -> None:
        """Stream finished rows of ``array`` (e.g. ``patch_head_z`` row ``layer``)."""


@dataclass(frozen=True)
class AnalysisResult:
    """Arrays of one analysis with named, labelled axes and metadata.

    ``axes[array_name]`` names each axis of that array; ``labels[axis_name]``
    lists what each entry along that axis is (e.g. ``labels["component"] =
    ["embed", "pos_embed", "0_attn_out", ...]``). Axes without labels
    (``layer``, ``head``) are just indices.
    """

    name: str
    arrays: Mapping[str, np.ndarray]
    axes: Mapping[str, tuple[str, ...]]
    labels: Mapping[str, list[str]] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, value in self.arrays.items():
            if key not in self.axes:
                raise ValueError(f"array {key!r} has no axis names")
            if value.ndim != len(self.axes[key]):
                raise ValueError(f"array {key!r} has {value.ndim} dims but axes {self.axes[key]}")


class CachedRuns(Protocol):
    """One clean and one corrupted forward pass shared by all analyses of a run.

    The runner asks every selected analysis module for ``hooks_needed(ctx)``
    (a set of TransformerLens hook names, e.g. ``blocks.3.attn.hook_z``) before
    running anything, then runs the model once on the clean tokens and once on
    the corrupted tokens caching exactly the union. Asking for a hook outside
    that union triggers one extra forward (counted in ``forward_count``), so
    results stay correct even if a module under-declares.
    """

    forward_count: int

    def cache(self, which: str):
        """``transformer_lens.ActivationCache`` of the ``"clean"`` or ``"corrupt"`` run."""

    def logits(self, which: str):
        """Logits ``[prompt, pos, d_vocab]`` (torch, float32) of that run."""

    def require(self, which: str, names: set[str]) -> None:
        """Make sure these hooks are in that run's cache (extra forward if missing)."""


@dataclass(frozen=True)
class AnalysisContext:
    """Everything an analysis may read.

    ``handle`` is a ``core.models.ModelHandle`` (``.model`` the processed
    TransformerBridge, ``.tokenizer``, ``.info``), ``batch`` a
    ``core.prompts.TokenizedSet``, ``options`` this analysis's options (plain
    JSON-able values), ``runs`` the shared cached runs.
    """

    handle: Any
    batch: Any
    options: Mapping[str, Any]
    runs: CachedRuns
