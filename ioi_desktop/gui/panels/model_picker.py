"""Model picker: which model to analyse, on which device, in which dtype.

Sources are the bundled model, a local Hugging Face folder (file dialog), or a
model found in the local Hugging Face cache. The device list shows what this
machine has (GPU name and free memory); CUDA and MPS stay listed but disabled
when absent, so the user sees why they cannot be chosen. The picker only
describes a :class:`~ioi_desktop.core.models.ModelSpec`; the window hands it to
the worker, which loads the model in the background and reports back here.

Listing devices and cached models needs torch and TransformerLens, so the
lists are filled in by the worker (``set_inventory``) once those are imported.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ioi_desktop.core.devices import all_gpus_choice
from ioi_desktop.core.models import DTYPES, format_bytes, format_count

BUNDLED = "bundled"
_BROWSE = "__browse__"


class ModelPicker(QWidget):
    """Choose and load a model; shows what is loaded and any load error."""

    TITLE = "Model"
    load_requested = Signal(object)  # a core.models.ModelSpec

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source_combo = QComboBox()
        self.source_combo.setToolTip("The bundled model, a model folder on disk, or a model in the Hugging Face cache")
        self.source_combo.addItem("Bundled model (ioi-mini)", BUNDLED)
        self.source_combo.addItem("Local folder…", _BROWSE)
        self.source_combo.activated.connect(self._on_source_activated)
        self.device_combo = QComboBox()
        self.device_combo.setToolTip("auto picks a CUDA GPU, then an Apple GPU, then the CPU; 'All GPUs' splits a model too large for one GPU")
        self._set_devices([])
        self.dtype_combo = QComboBox()
        self.dtype_combo.addItems(DTYPES)
        self.dtype_combo.setToolTip("float32 is exact; float16/bfloat16 halve the memory on a GPU")
        self.bos_combo = QComboBox()
        self.bos_combo.addItem("Model's convention", None)
        self.bos_combo.addItem("Always", True)
        self.bos_combo.addItem("Never", False)
        self.bos_combo.setToolTip("Whether prompts start with the BOS token: by default as TransformerLens does for "
                                  "the architecture (default_prepend_bos), and never when the tokenizer has no BOS")
        self.load_button = QPushButton("Load model")
        self.load_button.clicked.connect(self._on_load_clicked)

        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 0)
        self.progress_bar.setTextVisible(False)
        self.progress_bar.setMaximumHeight(8)
        self.progress_bar.hide()
        self._loaded_text = "No model loaded yet."
        self.status_label = QLabel(self._loaded_text)
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.error_label.setStyleSheet("color: #d32f2f;")
        self.error_label.hide()

        form = QFormLayout()
        form.addRow("Model", self.source_combo)
        form.addRow("Device", self.device_combo)
        form.addRow("Dtype", self.dtype_combo)
        form.addRow("BOS", self.bos_combo)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.load_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)
        layout.addWidget(self.error_label)
        layout.addStretch(1)

    # -- the spec -------------------------------------------------------------

    def spec(self):
        """The ModelSpec described by the current choices."""
        from ioi_desktop.core.models import ModelSpec

        return ModelSpec(
            source=self.source_combo.currentData() or BUNDLED,
            device=self.device_combo.currentData() or "auto",
            dtype=self.dtype_combo.currentText(),
            prepend_bos=self.bos_combo.currentData(),
        )

    def set_spec(self, spec: Any) -> None:
        """Show ``spec`` (a ModelSpec) as the current choice, adding its source if new."""
        self._select_source(spec.source)
        device_index = self.device_combo.findData(spec.device)
        if device_index < 0:
            self.device_combo.addItem(spec.device, spec.device)
            device_index = self.device_combo.count() - 1
        self.device_combo.setCurrentIndex(device_index)
        dtype_index = self.dtype_combo.findText(spec.dtype)
        self.dtype_combo.setCurrentIndex(max(0, dtype_index))
        self.bos_combo.setCurrentIndex({None: 0, True: 1, False: 2}.get(getattr(spec, "prepend_bos", None), 0))

    def _select_source(self, source: str) -> None:
        index = self.source_combo.findData(source)
        if index < 0:
            # Insert before "Local folder…" so that entry stays last.
            index = self.source_combo.count() - 1
            self.source_combo.insertItem(index, source, source)
        self.source_combo.setCurrentIndex(index)

    def forget_source(self, source: str, loaded: Any = None) -> None:
        """A folder that failed to load leaves the list; the loaded model's spec (or the bundled one) is shown.
        Hugging Face cache names stay: the inventory listed them."""
        from pathlib import Path

        index = self.source_combo.findData(source)
        if index >= 0 and Path(source).is_absolute() and source != getattr(loaded, "source", None):
            self.source_combo.removeItem(index)
        self._select_source(loaded.source if loaded is not None else BUNDLED)

    # -- what this machine has -----------------------------------------------

    def set_inventory(self, devices: list, local_models: list) -> None:
        """Fill the device list and the cached models (core.models DeviceInfo/LocalModel)."""
        current_device = self.device_combo.currentData()
        self._set_devices(devices)
        index = self.device_combo.findData(current_device)
        self.device_combo.setCurrentIndex(max(0, index))
        for model in local_models:
            if model.source != "hub" or self.source_combo.findData(model.name) >= 0:
                continue
            label = f"{model.name} (HF cache, {format_bytes(model.size_bytes)})"
            at = self.source_combo.count() - 1
            self.source_combo.insertItem(at, label, model.name)
            if not model.supported:
                self._disable_item(self.source_combo, at, f"{model.name}: {model.note}")

    def _set_devices(self, devices: list) -> None:
        self.device_combo.clear()
        self.device_combo.addItem("auto", "auto")
        names = {device.name for device in devices}
        for device in devices:
            label = f"{device.name}: {device.label}" if device.name.startswith("cuda") else device.label
            self.device_combo.addItem(label if device.name != "cpu" else "CPU", device.name)
        if devices:  # split across GPUs; the tooltip lists each GPU's free memory
            label, tooltip, enabled = all_gpus_choice(devices)
            self.device_combo.addItem(label, "all")
            at = self.device_combo.count() - 1
            if enabled:
                self.device_combo.setItemData(at, tooltip, Qt.ItemDataRole.ToolTipRole)
            else:
                self._disable_item(self.device_combo, at, tooltip)
        if devices and not any(name.startswith("cuda") for name in names):
            self.device_combo.addItem("CUDA (no NVIDIA GPU found)", "cuda")
            self._disable_item(self.device_combo, self.device_combo.count() - 1, "No CUDA GPU is available here.")
        if devices and "mps" not in names:
            self.device_combo.addItem("MPS (no Apple GPU found)", "mps")
            self._disable_item(self.device_combo, self.device_combo.count() - 1, "No Apple GPU is available here.")
        if not devices:
            self.device_combo.addItem("CPU", "cpu")

    @staticmethod
    def _disable_item(combo: QComboBox, index: int, tooltip: str) -> None:
        item = combo.model().item(index)
        item.setEnabled(False)
        item.setToolTip(tooltip)

    # -- loading state ----------------------------------------------------------

    def set_loading(self, message: str) -> None:
        self.load_button.setEnabled(False)
        self.progress_bar.show()
        self.error_label.hide()
        self.status_label.setText(message)

    def set_loaded(self, info: Any) -> None:
        """Show the loaded model (a core.models.ModelInfo)."""
        self.load_button.setEnabled(True)
        self.progress_bar.hide()
        self.error_label.hide()
        self._loaded_text = (
            f"<b>{info.name}</b> ({info.architecture})<br>"
            f"{info.n_layers} layers × {info.n_heads} heads, d_model {info.d_model}, "
            f"{format_count(info.n_params)} parameters<br>"
            f"vocabulary {info.d_vocab:,}, context {info.n_ctx}<br>"
            f"on {info.device} ({info.dtype}), loaded in {info.load_seconds:.1f} s"
        )
        self.status_label.setText(self._loaded_text)

    def set_failed(self, message: str, hint: str) -> None:
        self.load_button.setEnabled(True)
        self.progress_bar.hide()
        # The previously loaded model (if any) is still the one in use.
        self.status_label.setText(self._loaded_text)
        self.error_label.setText(f"<b>{message}</b><br>{hint}" if hint else f"<b>{message}</b>")
        self.error_label.show()

    def set_busy(self, busy: bool) -> None:
        """Disable loading while another job (a run) uses the worker."""
        self.load_button.setEnabled(not busy)

    # -- slots -------------------------------------------------------------------

    def _on_source_activated(self, index: int) -> None:
        if self.source_combo.itemData(index) != _BROWSE:
            return
        folder = QFileDialog.getExistingDirectory(self, "Choose a model folder (with config.json)")
        if folder:
            self._select_source(folder)
        else:
            self.source_combo.setCurrentIndex(0)

    def _on_load_clicked(self) -> None:
        self.load_requested.emit(self.spec())
