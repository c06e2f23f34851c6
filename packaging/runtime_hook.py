"""PyInstaller runtime hook: runs before the app's code in the frozen build.

- Offline: Hugging Face libraries read HF_HUB_OFFLINE at import, so set it first.
- Never write into the install folder: caches that libraries put next to
  their code go to the user's data folder instead.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.dont_write_bytecode = True
if sys.platform.startswith("linux"):
    _cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ioi-desktop"
else:
    _cache = Path.home() / ".ioi-desktop-cache"
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(_cache / "torchinductor"))
os.environ.setdefault("TRITON_CACHE_DIR", str(_cache / "triton"))
