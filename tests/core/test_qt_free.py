"""The core is Qt-free: importing every module of ioi_desktop.core loads no Qt binding.

The run-time counterpart of the static contract "core-is-headless" (tests/test_layering.py):
this one also sees modules imported by name (importlib) and Qt pulled in by a dependency.
"""

from __future__ import annotations

import subprocess
import sys

CHECK = r"""
import importlib, pkgutil, sys
import ioi_desktop.core as core
names = [m.name for m in pkgutil.walk_packages(core.__path__, core.__name__ + ".")]
for name in names:
    importlib.import_module(name)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in {"PySide6", "PySide2", "PyQt5", "PyQt6", "pyqtgraph", "shiboken6"})
print(len(names))
print(",".join(leaked))
"""


def test_core_imports_no_qt():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    count, leaked = (result.stdout.strip().split("\n") + [""])[:2]
    assert int(count) >= 5, "expected to import the core's modules"
    assert leaked == "", f"ioi_desktop.core imported Qt: {leaked}"
