"""Run > Options…: which analyses run and the options the core runner hands them.

:class:`RunOptions` holds the choices as plain data and turns them into the
runner's per-analysis ``options`` mapping (``ctx.options`` of each analysis):

- ``patching`` and ``attribution_patching``: ``sweeps``, the grids to patch
  (resid_pre, attn_out, mlp_out, head z/v/pattern/q/k, head z by position);
  attribution patching estimates the same grids, so both get the same list;
- ``logit_diff`` and ``logit_lens``: ``top_k``, how many top tokens to keep;
- ``logit_lens``: ``lens_norm``, how the logit-difference lens applies the final
  LayerNorm ("cached_final", the notebook's method, or "recompute");
- ``head_scores``: ``seed`` and ``seq_len`` of the repeated random sequences;
- every analysis: ``batch_size``, prompts per forward pass (absent = automatic).

An option left at "Default" is not passed at all, so the analysis's own
default applies (the defaults live in the core modules, which import torch;
this dialog must not). The same dict form is stored in QSettings (remembered
between runs of the app) and in a session's ``settings["options"]``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QLabel,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ioi_desktop.core.analyses import ANALYSES
from ioi_desktop.core.analyses.patching import SWEEPS

SETTINGS_KEY = "run/options"
SWEEP_TITLES = {
    "resid_pre": "Residual stream (layer × position)",
    "attn_out": "Attention layer output (layer × position)",
    "mlp_out": "MLP layer output (layer × position)",
    "head_z": "Head output z (layer × head)",
    "head_v": "Head values v (layer × head)",
    "head_pattern": "Head attention pattern (layer × head)",
    "head_q": "Head queries q (layer × head)",
    "head_k": "Head keys k (layer × head)",
    "head_z_by_pos": "Head output z by position (layer × position × head)",
}
_SWEEP_ANALYSES = ("patching", "attribution_patching")
_TOP_K_ANALYSES = ("logit_diff", "logit_lens")
# logit_lens's lens_norm values (core.analyses.logit_lens.LENS_NORMS; not imported: it imports torch).
LENS_NORM_CHOICES = (
    ("cached_final", "Final LayerNorm scale cached (the notebook's method)"),
    ("recompute", "LayerNorm recomputed at each point"),
)
MAX_BATCH_SIZE = 4096
MAX_TOP_K = 100
MAX_SEQ_LEN = 4096


@dataclass(frozen=True)
class RunOptions:
    """The run's options; ``None`` means "the analysis's default" (or automatic batching)."""

    sweeps: tuple[str, ...] = tuple(SWEEPS)
    batch_size: int | None = None
    top_k: int | None = None
    head_seed: int = 0
    head_seq_len: int | None = None
    lens_norm: str | None = None
    analyses: tuple[str, ...] = field(default_factory=lambda: tuple(info.name for info in ANALYSES))

    def runner_options(self, analyses: list[str] | tuple[str, ...] | None = None) -> dict[str, dict[str, Any]]:
        """The core runner's ``options``: analysis name -> that analysis's options."""
        names = list(analyses) if analyses is not None else list(self.analyses)
        options: dict[str, dict[str, Any]] = {name: {} for name in names}
        for name in names:
            if self.batch_size is not None:
                options[name]["batch_size"] = self.batch_size
            if name in _SWEEP_ANALYSES:
                options[name]["sweeps"] = list(self.sweeps)
            if name in _TOP_K_ANALYSES and self.top_k is not None:
                options[name]["top_k"] = self.top_k
            if name == "logit_lens" and self.lens_norm is not None:
                options[name]["lens_norm"] = self.lens_norm
            if name == "head_scores":
                options[name]["seed"] = self.head_seed
                if self.head_seq_len is not None:
                    options[name]["seq_len"] = self.head_seq_len
        return options

    def to_dict(self) -> dict[str, Any]:
        return {
            "analyses": list(self.analyses),
            "sweeps": list(self.sweeps),
            "batch_size": self.batch_size,
            "top_k": self.top_k,
            "head_seed": self.head_seed,
            "head_seq_len": self.head_seq_len,
            "lens_norm": self.lens_norm,
        }

    @classmethod
    def from_dict(cls, data: Any) -> RunOptions:
        """Options from :meth:`to_dict`'s form; unknown or malformed entries fall back to the defaults.

        The data comes from QSettings or a session file, which an older
        version or a hand edit may have left different; a bad value is not
        worth refusing the session for.
        """
        default = cls()
        if not isinstance(data, Mapping):
            return default

        def names(key: str, known: tuple[str, ...], fallback: tuple[str, ...]) -> tuple[str, ...]:
            value = data.get(key)
            if not isinstance(value, (list, tuple)):
                return fallback
            # Kept in the canonical order, so the runner's cache key does not depend on click order.
            return tuple(name for name in known if name in value)

        def whole(key: str, low: int, high: int, fallback: int | None) -> int | None:
            value = data.get(key, fallback)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                return fallback
            return value

        all_analyses = tuple(info.name for info in ANALYSES)
        return cls(
            sweeps=names("sweeps", tuple(SWEEPS), default.sweeps),
            batch_size=whole("batch_size", 1, MAX_BATCH_SIZE, default.batch_size),
            top_k=whole("top_k", 1, MAX_TOP_K, default.top_k),
            head_seed=whole("head_seed", 0, 2**31 - 1, default.head_seed) or 0,
            head_seq_len=whole("head_seq_len", 2, MAX_SEQ_LEN, default.head_seq_len),
            lens_norm=data.get("lens_norm") if data.get("lens_norm") in dict(LENS_NORM_CHOICES) else default.lens_norm,
            analyses=names("analyses", all_analyses, default.analyses),
        )


def load_options(settings: QSettings) -> RunOptions:
    """The options remembered in QSettings (the defaults when none are)."""
    text = settings.value(SETTINGS_KEY)
    try:
        return RunOptions.from_dict(json.loads(text)) if isinstance(text, str) else RunOptions()
    except ValueError:
        return RunOptions()


def save_options(settings: QSettings, options: RunOptions) -> None:
    settings.setValue(SETTINGS_KEY, json.dumps(options.to_dict()))


def _spin(low: int, high: int, value: int | None, special: str = "", tip: str = "") -> QSpinBox:
    """A spin box; with ``special``, its lowest value stands for None and reads ``special``."""
    spin = QSpinBox()
    spin.setRange(low - 1 if special else low, high)
    if special:
        spin.setSpecialValueText(special)
    spin.setValue(spin.minimum() if value is None else value)
    spin.setToolTip(tip)
    return spin


def _spin_value(spin: QSpinBox) -> int | None:
    return None if spin.specialValueText() and spin.value() == spin.minimum() else spin.value()


class AnalysisOptionsDialog(QDialog):
    """Edit :class:`RunOptions`; ``options()`` reads the dialog's current choices."""

    def __init__(self, options: RunOptions, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Analysis options")
        self.setObjectName("analysis_options_dialog")
        layout = QVBoxLayout(self)

        analyses_box = QGroupBox("Analyses to run")
        analyses_grid = QGridLayout(analyses_box)
        self.analysis_checks: dict[str, QCheckBox] = {}
        for i, info in enumerate(ANALYSES):
            check = QCheckBox(info.title)
            check.setToolTip(info.description)
            check.setChecked(info.name in options.analyses)
            check.toggled.connect(self._update_enabled)
            analyses_grid.addWidget(check, i // 2, i % 2)
            self.analysis_checks[info.name] = check
        layout.addWidget(analyses_box)

        self.sweeps_box = QGroupBox("Patching grids (activation and attribution patching)")
        sweeps_grid = QGridLayout(self.sweeps_box)
        self.sweep_checks: dict[str, QCheckBox] = {}
        for i, name in enumerate(SWEEPS):
            check = QCheckBox(SWEEP_TITLES.get(name, name))
            check.setChecked(name in options.sweeps)
            check.toggled.connect(self._update_enabled)
            sweeps_grid.addWidget(check, i // 2, i % 2)
            self.sweep_checks[name] = check
        sweeps_note = QLabel("Each grid costs one patched forward pass per layer (per position or head); "
                             "fewer grids run faster.")
        sweeps_note.setWordWrap(True)
        sweeps_grid.addWidget(sweeps_note, (len(SWEEPS) + 1) // 2, 0, 1, 2)
        layout.addWidget(self.sweeps_box)

        form_box = QGroupBox("Settings")
        form = QFormLayout(form_box)
        self.batch_spin = _spin(1, MAX_BATCH_SIZE, options.batch_size, "Automatic",
                                "Prompts per forward pass; smaller uses less memory, automatic picks for you")
        form.addRow("Batch size:", self.batch_spin)
        self.top_k_spin = _spin(1, MAX_TOP_K, options.top_k, "Default (5)",
                                "How many most likely next tokens the logit difference and logit lens keep")
        form.addRow("Top tokens (logit lens):", self.top_k_spin)
        self.lens_norm_combo = QComboBox()
        for key, label in LENS_NORM_CHOICES:
            self.lens_norm_combo.addItem(label, key)
        self.lens_norm_combo.setToolTip("How the logit-difference lens applies the final LayerNorm to each point; "
                                        "the top-token grid always recomputes it (the standard logit lens)")
        self._set_lens_norm(options.lens_norm)
        form.addRow("Logit-difference lens:", self.lens_norm_combo)
        self.seed_spin = _spin(0, 2**31 - 1, options.head_seed,
                               tip="Seed of the random token sequences the head types are scored on")
        form.addRow("Head types seed:", self.seed_spin)
        self.seq_len_spin = _spin(2, MAX_SEQ_LEN, options.head_seq_len, "Default (100)",
                                  "Length of each half of the repeated random sequence (clipped to half the "
                                  "model's context)")
        form.addRow("Head types sequence length:", self.seq_len_spin)
        layout.addWidget(form_box)

        self.problem = QLabel("")
        self.problem.setStyleSheet("color: #c62828;")
        self.problem.setWordWrap(True)
        layout.addWidget(self.problem)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
                                        | QDialogButtonBox.StandardButton.RestoreDefaults)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(
            lambda: self.set_options(RunOptions()))
        layout.addWidget(self.buttons)
        self._update_enabled()

    def set_options(self, options: RunOptions) -> None:
        for name, check in self.analysis_checks.items():
            check.setChecked(name in options.analyses)
        for name, check in self.sweep_checks.items():
            check.setChecked(name in options.sweeps)
        for spin, value in ((self.batch_spin, options.batch_size), (self.top_k_spin, options.top_k),
                            (self.seed_spin, options.head_seed), (self.seq_len_spin, options.head_seq_len)):
            spin.setValue(spin.minimum() if value is None else value)
        self._set_lens_norm(options.lens_norm)

    def _set_lens_norm(self, value: str | None) -> None:
        self.lens_norm_combo.setCurrentIndex(max(0, self.lens_norm_combo.findData(value or LENS_NORM_CHOICES[0][0])))

    def options(self) -> RunOptions:
        return replace(
            RunOptions(),
            analyses=tuple(name for name, check in self.analysis_checks.items() if check.isChecked()),
            sweeps=tuple(name for name, check in self.sweep_checks.items() if check.isChecked()),
            batch_size=_spin_value(self.batch_spin),
            top_k=_spin_value(self.top_k_spin),
            head_seed=self.seed_spin.value(),
            head_seq_len=_spin_value(self.seq_len_spin),
            # The default stays None (not passed), so the analysis's own default applies.
            lens_norm=None if self.lens_norm_combo.currentData() == LENS_NORM_CHOICES[0][0] else self.lens_norm_combo.currentData(),
        )

    def problem_text(self) -> str:
        """Why OK is disabled ('' when the choices can run)."""
        chosen = self.options()
        if not chosen.analyses:
            return "Choose at least one analysis."
        if any(name in chosen.analyses for name in _SWEEP_ANALYSES) and not chosen.sweeps:
            return "Choose at least one patching grid, or turn off both patching analyses."
        return ""

    def _update_enabled(self) -> None:
        chosen = [name for name, check in self.analysis_checks.items() if check.isChecked()]
        self.sweeps_box.setEnabled(any(name in chosen for name in _SWEEP_ANALYSES))
        self.top_k_spin.setEnabled(any(name in chosen for name in _TOP_K_ANALYSES))
        self.lens_norm_combo.setEnabled("logit_lens" in chosen)
        head_scores = "head_scores" in chosen
        self.seed_spin.setEnabled(head_scores)
        self.seq_len_spin.setEnabled(head_scores)
        problem = self.problem_text()
        self.problem.setText(problem)
        self.problem.setVisible(bool(problem))
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not problem)
