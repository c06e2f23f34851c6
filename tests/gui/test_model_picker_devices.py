"""The model picker's device list: each GPU with its memory, and the 'All GPUs' choice."""

from __future__ import annotations

from ioi_desktop.core.devices import all_gpus_choice
from ioi_desktop.core.models import DeviceInfo
from ioi_desktop.gui.panels.model_picker import ModelPicker

GiB = 2**30
TWO_GPUS = [
    DeviceInfo("cpu", "CPU (16 logical cores)"),
    DeviceInfo("cuda:0", "NVIDIA H200 (120.5 of 139.8 GiB free)", 140 * GiB, 120 * GiB),
    DeviceInfo("cuda:1", "NVIDIA H200 (100.0 of 139.8 GiB free)", 140 * GiB, 100 * GiB),
]


def _entries(combo):
    return {combo.itemData(i): (combo.itemText(i), combo.model().item(i).isEnabled()) for i in range(combo.count())}


def test_all_gpus_lists_each_gpus_memory(qtbot):
    picker = ModelPicker()
    qtbot.addWidget(picker)
    picker.set_inventory(TWO_GPUS, [])
    entries = _entries(picker.device_combo)
    assert entries["all"] == ("All GPUs (2, 220.0 of 280.0 GiB free)", True)
    assert entries["cuda:1"][0] == "cuda:1: NVIDIA H200 (100.0 of 139.8 GiB free)"
    index = picker.device_combo.findData("all")
    tooltip = picker.device_combo.itemData(index, 3)  # Qt.ToolTipRole
    assert "cuda:0: 120.0 of 140.0 GiB free" in tooltip and "cuda:1: 100.0 of 140.0 GiB free" in tooltip
    picker.device_combo.setCurrentIndex(index)
    assert picker.spec().device == "all"


def test_all_gpus_is_disabled_without_a_gpu(qtbot):
    picker = ModelPicker()
    qtbot.addWidget(picker)
    picker.set_inventory(TWO_GPUS[:1], [])
    assert _entries(picker.device_combo)["all"] == ("All GPUs (no NVIDIA GPU found)", False)
    assert all_gpus_choice(TWO_GPUS[:1])[2] is False
