"""Inputs shared by the robustness tests: a valid pair and pairs-file text."""

from __future__ import annotations

import json

GOOD_PAIR = {
    "clean": "When John and Mary went to the store, John gave a bag to",
    "corrupt": "When John and Mary went to the store, Mary gave a bag to",
    "correct": " Mary",
    "incorrect": " John",
}


def pairs_document(*changes: dict) -> str:
    """A pairs-file JSON text with one pair per ``changes`` entry (GOOD_PAIR updated by it)."""
    return json.dumps({"format": "ioi-desktop/pairs", "version": 1,
                       "pairs": [{**GOOD_PAIR, **change} for change in changes]}, ensure_ascii=False)
