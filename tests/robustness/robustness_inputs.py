"""Inputs shared by the robustness tests: a valid pair, pairs-file text, other folders' fixtures."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
GOOD_PAIR = {
    "clean": "When John and Mary went to the store, John gave a bag to",
    "corrupt": "When John and Mary went to the store, Mary gave a bag to",
    "correct": " Mary",
    "incorrect": " John",
}


def module_from(path: Path, name: str):
    """Import another folder's conftest under its own name (every conftest is called "conftest")."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def pairs_document(*changes: dict) -> str:
    """A pairs-file JSON text with one pair per ``changes`` entry (GOOD_PAIR updated by it)."""
    return json.dumps({"format": "ioi-desktop/pairs", "version": 1,
                       "pairs": [{**GOOD_PAIR, **change} for change in changes]}, ensure_ascii=False)
