"""Run > Options…: which analyses run, the batch size, and every analysis's options.

The dialog is generated from the analyses' ``Options`` types
(:class:`~ioi_desktop.core.analyses.base.OptionSpec`): one group per analysis
with options, one widget per option (a spin box for numbers, a combo box for
one choice, check boxes for a set of choices, a check box for yes/no), each
with the option's help as its tooltip and its default from the type. Nothing
here repeats a default or a range.

It edits and returns the workbench's settings form
(:meth:`~ioi_desktop.core.workbench.Workbench.settings`): ``{"analyses":
[...], "batch_size": n or None, "options": {analysis: {option: value}}}``;
the same form is stored in QSettings and sessions.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ioi_desktop.core.analyses import ANALYSES, option_types
from ioi_desktop.core.analyses.base import OptionSpec
from ioi_desktop.core.workbench import MAX_BATCH_SIZE

SETTINGS_KEY = "run/settings"
_AUTOMATIC = "Automatic"


def load_settings(settings: QSettings) -> dict[str, Any] | None:
    """The run settings remembered in QSettings (None when there are none or they are unreadable)."""
    text = settings.value(SETTINGS_KEY)
    try:
        data = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def save_settings(settings: QSettings, data: Mapping[str, Any]) -> None:
    settings.setValue(SETTINGS_KEY, json.dumps(data))


class OptionEditor:
    """The widget of one option and how to read and set its value."""

    def __init__(self, spec: OptionSpec) -> None:
        self.spec = spec
        self.checks: dict[str, QCheckBox] = {}
        if spec.kind == "choices":
            self.widget = QWidget()
            grid = QGridLayout(self.widget)
            grid.setContentsMargins(0, 0, 0, 0)
            for i, choice in enumerate(spec.choices):
                check = QCheckBox(_choice_title(spec, choice))
                self.checks[choice] = check
                grid.addWidget(check, i // 2, i % 2)
        elif spec.kind == "choice":
            self.widget = QComboBox()
            self.widget.addItems(list(spec.choices))
        elif spec.kind == "bool":
            self.widget = QCheckBox()
        elif spec.kind == "text":
            self.widget = QLineEdit()
        else:
            self.widget = QSpinBox() if spec.kind == "int" else QDoubleSpinBox()
            low = spec.low if spec.low is not None else -(2**31 - 1)
            high = spec.high if spec.high is not None else 2**31 - 1
            # With a None meaning ("auto"), the value below the range stands for it.
            self.widget.setRange(low - 1 if spec.none_text else low, high)
            if spec.none_text:
                self.widget.setSpecialValueText(_AUTOMATIC)
        if spec.kind in ("int", "float", "choice"):
            self.widget.setMaximumWidth(220)
        self.widget.setToolTip(f"{spec.help} ({spec.allowed()}; default {spec.default_text()})")
        self.widget.setObjectName(f"option_{spec.key}")
        self.set_value(spec.default)

    def set_value(self, value: Any) -> None:
        spec = self.spec
        if spec.kind == "choices":
            for choice, check in self.checks.items():
                check.setChecked(choice in (value or ()))
        elif spec.kind == "choice":
            self.widget.setCurrentText(str(value))
        elif spec.kind == "bool":
            self.widget.setChecked(bool(value))
        elif spec.kind == "text":
            self.widget.setText(str(value or ""))
        else:
            self.widget.setValue(self.widget.minimum() if value is None else value)

    def value(self) -> Any:
        spec = self.spec
        if spec.kind == "choices":
            return [choice for choice, check in self.checks.items() if check.isChecked()]
        if spec.kind == "choice":
            return self.widget.currentText()
        if spec.kind == "bool":
            return self.widget.isChecked()
        if spec.kind == "text":
            return self.widget.text().strip()
        if spec.none_text and self.widget.value() == self.widget.minimum():
            return None
        return self.widget.value()


def _choice_title(spec: OptionSpec, choice: str) -> str:
    """The patching grids have titles in core's sweep catalogue; other choices show their name."""
    if spec.name == "sweeps":
        from ioi_desktop.core.analyses.patching import SWEEPS

        return SWEEPS[choice].title if choice in SWEEPS else choice
    return choice


class AnalysisOptionsDialog(QDialog):
    """Edit the run settings; ``settings()`` reads the dialog's current choices."""

    def __init__(self, settings: Mapping[str, Any], parent: QWidget | None = None) -> None:
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
            check.toggled.connect(self._update_enabled)
            analyses_grid.addWidget(check, i // 2, i % 2)
            self.analysis_checks[info.name] = check
        layout.addWidget(analyses_box)

        run_box = QGroupBox("Every analysis")
        run_form = QFormLayout(run_box)
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(0, MAX_BATCH_SIZE)
        self.batch_spin.setSpecialValueText(_AUTOMATIC)
        self.batch_spin.setMaximumWidth(220)
        self.batch_spin.setToolTip("Prompts per forward pass; smaller uses less memory, automatic picks for you")
        run_form.addRow("Batch size:", self.batch_spin)
        layout.addWidget(run_box)

        body = QWidget()
        body_layout = QVBoxLayout(body)
        body_layout.setContentsMargins(0, 0, 0, 0)
        self.groups: dict[str, QGroupBox] = {}
        self.editors: dict[str, dict[str, OptionEditor]] = {}
        for info in ANALYSES:
            specs = option_types()[info.name].specs()
            if not specs:
                continue
            group = QGroupBox(info.title)
            form = QFormLayout(group)
            self.editors[info.name] = {}
            for spec in specs:
                editor = OptionEditor(spec)
                for check in editor.checks.values():
                    check.toggled.connect(self._update_enabled)
                label = QLabel(spec.name.replace("_", " ").capitalize() + ":")
                label.setToolTip(spec.help)
                form.addRow(label, editor.widget)
                self.editors[info.name][spec.name] = editor
            self.groups[info.name] = group
            body_layout.addWidget(group)
        body_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(body)
        scroll.setMinimumHeight(360)
        layout.addWidget(scroll, 1)

        self.problem = QLabel("")
        self.problem.setStyleSheet("color: #c62828;")
        self.problem.setWordWrap(True)
        layout.addWidget(self.problem)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
                                        | QDialogButtonBox.StandardButton.RestoreDefaults)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(self.restore_defaults)
        layout.addWidget(self.buttons)
        self.resize(max(860, self.sizeHint().width()), 720)
        self.set_settings(settings)

    def set_settings(self, settings: Mapping[str, Any]) -> None:
        chosen = settings.get("analyses", [info.name for info in ANALYSES])
        for name, check in self.analysis_checks.items():
            check.setChecked(name in chosen)
        batch_size = settings.get("batch_size")
        self.batch_spin.setValue(0 if batch_size is None else int(batch_size))
        options = settings.get("options", {})
        for name, editors in self.editors.items():
            values = options.get(name, {})
            for option, editor in editors.items():
                editor.set_value(values.get(option, editor.spec.default))
        self._update_enabled()

    def restore_defaults(self) -> None:
        self.set_settings({})

    def settings(self) -> dict[str, Any]:
        """The workbench's settings form of the current choices."""
        return {
            "analyses": [name for name, check in self.analysis_checks.items() if check.isChecked()],
            "batch_size": None if self.batch_spin.value() == 0 else self.batch_spin.value(),
            "options": {info.name: {option: editor.value() for option, editor in self.editors.get(info.name, {}).items()}
                        for info in ANALYSES},
        }

    def problem_text(self) -> str:
        """Why OK is disabled ('' when the choices can run)."""
        chosen = self.settings()
        if not chosen["analyses"]:
            return "Choose at least one analysis."
        for name in chosen["analyses"]:
            for option, editor in self.editors.get(name, {}).items():
                if editor.spec.kind == "choices" and not editor.value():
                    title = self.groups[name].title()
                    return f"Choose at least one of {title}'s {option.replace('_', ' ')}, or turn {title} off."
        return ""

    def _update_enabled(self) -> None:
        for name, group in self.groups.items():
            group.setEnabled(self.analysis_checks[name].isChecked())
        problem = self.problem_text()
        self.problem.setText(problem)
        self.problem.setVisible(bool(problem))
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not problem)
