"""The prompt modules import neither torch nor Qt (the GUI imports them at startup)."""

from __future__ import annotations

import subprocess
import sys

CHECK = r"""
import sys
import ioi_desktop.core.prompts, ioi_desktop.core.pairs, ioi_desktop.core.pairfiles, ioi_desktop.commands.pairs
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "transformer_lens", "PySide6", "pyqtgraph"})
print(",".join(heavy))
"""


def test_no_torch_or_qt_on_import():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
