"""Where a clean prompt and its corrupted prompt differ, as character spans of each text.

The prompt editor highlights these spans in both cells of a pair, so the word
that patching swaps (a name, a prefix) is visible at a glance. Tokens are the
model's when a tokenizer is given (a Hugging Face fast tokenizer, its offset
mapping), else words and punctuation marks. Token convention: positions are
compared one for one when both prompts have the same number of tokens (what
patching needs: the same position in the clean and the corrupted run);
otherwise a longest-common-subsequence alignment (``difflib``) marks the
insertions, deletions and replacements.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Sequence

Span = tuple[int, int]  # [start, end) character offsets
_WORD = re.compile(r"[\w']+|[^\w\s]")


def _pieces(text: str, tokenizer: Any = None) -> tuple[list[Any], list[Span]]:
    """Comparable keys (token ids or words) and their character spans, without leading spaces."""
    if tokenizer is not None:
        try:
            encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            keys = [int(i) for i in encoding["input_ids"]]
            spans = []
            for a, b in encoding["offset_mapping"]:
                a, b = int(a), int(b)
                # GPT-2 style offsets include the leading space: highlight the word only.
                while a < b and text[a].isspace():
                    a += 1
                spans.append((a, b))
            return keys, spans
        except (NotImplementedError, TypeError, KeyError, ValueError):
            pass  # a slow tokenizer has no offsets: fall back to words
    matches = list(_WORD.finditer(text))
    return [m.group(0) for m in matches], [m.span() for m in matches]


def _merge(spans: Sequence[Span], text: str) -> list[Span]:
    """Overlapping spans, and spans only whitespace apart, become one."""
    merged: list[Span] = []
    for a, b in sorted(s for s in spans if s[1] > s[0]):
        if merged and (a <= merged[-1][1] or not text[merged[-1][1]:a].strip()):
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def differing_spans(clean: str, corrupt: str, tokenizer: Any = None) -> tuple[list[Span], list[Span]]:
    """Character spans of ``clean`` and of ``corrupt`` whose tokens differ (see the module docstring)."""
    clean_keys, clean_spans = _pieces(clean, tokenizer)
    corrupt_keys, corrupt_spans = _pieces(corrupt, tokenizer)
    marked_clean: list[Span] = []
    marked_corrupt: list[Span] = []
    if len(clean_keys) == len(corrupt_keys):
        for i, (a, b) in enumerate(zip(clean_keys, corrupt_keys)):
            if a != b:
                marked_clean.append(clean_spans[i])
                marked_corrupt.append(corrupt_spans[i])
    else:
        matcher = difflib.SequenceMatcher(a=clean_keys, b=corrupt_keys, autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag != "equal":
                marked_clean.extend(clean_spans[i1:i2])
                marked_corrupt.extend(corrupt_spans[j1:j2])
    return _merge(marked_clean, clean), _merge(marked_corrupt, corrupt)
