"""Prompt pairs and prompt sets, their validation against a tokenizer, and named positions.

An IOI experiment compares a *clean* prompt ("When John and Mary went to the
shops, John gave the bag to") with a *corrupted* one that differs only where
the experiment needs it. Both are scored with the clean prompt's answers: the
correct answer is the indirect object (IO, " Mary"), the incorrect one the
subject (S, " John"), as in the TransformerLens demo and the IOI paper.

Analyses line prompts up by *named positions* found in the tokenization:

- ``IO``: the indirect object's name in the first clause;
- ``S1`` / ``S2``: the first / last occurrence of the subject's name;
- ``S1+1``: the token right after S1;
- ``punct``: the first punctuation token after the first clause's names
  (the "," or "." that closes the clause), where the template has one;
- ``END``: the last token, where the model predicts the answer;
- ``C``: a third name (ABC templates), when the pair has one.

Positions come from the builder's metadata when it made the pair (its
template says exactly where each slot is) and are otherwise inferred from
the text (IO = the correct answer's first occurrence, S1/S2 = the first/last
occurrence of the incorrect answer). Either way character spans are mapped
onto tokens with the tokenizer's offsets, so this works for every tokenizer.

Tokenization follows the model's BOS convention: the text is encoded
without special tokens and the BOS token is put first when ``prepend_bos`` is
True, as TransformerLens's ``to_tokens`` does with ``cfg.default_prepend_bos``.
The loader resolves the convention (``ModelInfo.prepend_bos``: the
architecture's ``default_prepend_bos``, no BOS when the tokenizer has none,
or the user's choice); the functions here take it as ``prepend_bos``, where
None means "BOS first if the tokenizer has one". Named positions and length
checks count the BOS when there is one.

This module imports neither torch nor Qt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ioi_desktop.core.errors import PromptError

ROLES = ("IO", "S1", "S2", "END", "S1+1", "punct", "C")
# Roles every prompt of a set whose prompts differ in length must have, so analyses can align by role.
REQUIRED_ROLES = ("IO", "S1", "S2", "END")
TEXT_FIELDS = ("clean", "corrupt", "correct", "incorrect")
# Template slots: [A] the indirect object, [B] the subject, [C] a third name, then the nouns.
SLOTS = ("A", "B", "C", "PLACE", "OBJECT")
_SLOT_PATTERN = re.compile(r"\[(" + "|".join(SLOTS) + r")\]")
_PUNCTUATION = frozenset(",.;:!?")


@dataclass(frozen=True)
class PairMeta:
    """Where a pair came from: its template, the names by role, and how it was corrupted.

    Empty strings (and ``seed=None``) mean "not known". ``io``, ``s`` and ``c``
    are the clean prompt's names (S1 and S2 are both ``s`` there); the
    template uses [A] for the IO, [B] for the subject, [C] for a third name.
    """

    family: str = ""
    template: str = ""
    io: str = ""
    s: str = ""
    c: str = ""
    place: str = ""
    object: str = ""
    corruption: str = ""
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Only the known fields, in declaration order (for files)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value not in ("", None):
                out[f.name] = value
        return out


META_FIELDS = tuple(f.name for f in fields(PairMeta))


@dataclass(frozen=True)
class PromptPair:
    """A clean prompt, its corrupted version, and the clean prompt's answers."""

    clean: str
    corrupt: str
    correct: str
    incorrect: str
    meta: PairMeta = field(default_factory=PairMeta)


@dataclass(frozen=True)
class PromptSet:
    """An ordered list of prompt pairs plus its provenance (``meta``: how it was made)."""

    pairs: tuple[PromptPair, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pairs", tuple(self.pairs))

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[PromptPair]:
        return iter(self.pairs)

    def __getitem__(self, index: int) -> PromptPair:
        return self.pairs[index]


@dataclass(frozen=True)
class Finding:
    """One validation problem, attached to a pair and field when it has one.

    ``severity`` is "error" (the set cannot be analysed) or "warning" (it can,
    but a result may mislead). ``code`` is stable for programs; ``message``
    names the problem and ``hint`` the fix, for people.
    """

    severity: str
    pair_index: int | None
    field: str | None
    code: str
    message: str
    hint: str


# eq=False: fields are numpy arrays, which have no single truth value to compare by.
@dataclass(frozen=True, eq=False)
class TokenizedSet:
    """A prompt set as token arrays, with every prompt's named positions.

    ``clean_tokens`` / ``corrupt_tokens``: int64 [prompt, pos], BOS first
    when ``prepend_bos`` (the model's convention), right-padded with
    ``pad_id`` when lengths differ. ``roles[name]``: int64 [prompt] position, -1 where the prompt has no such position. ``C`` is in
    ``roles`` only when some pair has a third name.
    """

    clean_tokens: np.ndarray
    corrupt_tokens: np.ndarray
    correct_ids: np.ndarray
    incorrect_ids: np.ndarray
    lengths: np.ndarray
    end_pos: np.ndarray
    roles: dict[str, np.ndarray]
    str_tokens: list[list[str]]
    corrupt_str_tokens: list[list[str]]
    equal_length: bool
    pad_id: int
    prepend_bos: bool = True


# ---------------------------------------------------------------- templates


@dataclass(frozen=True)
class RenderedPrompt:
    """A template filled in: the prompt text and where each slot landed (character spans)."""

    text: str
    spans: tuple[tuple[str, int, int], ...]

    def slot_spans(self, slot: str) -> list[tuple[int, int]]:
        return [(start, end) for name, start, end in self.spans if name == slot]


def template_slots(template: str) -> list[str]:
    """The slot names of a template in order of appearance, e.g. ['B', 'A', 'B', 'A']."""
    return _SLOT_PATTERN.findall(template)


def prompt_body(template: str) -> str:
    """The part of a template before its final answer slot (the whole template if it has none)."""
    body = template.rstrip()
    if body.endswith("[A]"):
        body = body[: -len("[A]")].rstrip()
    return body


def render_prompt(template: str, values: Mapping[str, str],
                  overrides: Mapping[int, str] | None = None) -> RenderedPrompt:
    """Fill a template's [A] [B] [C] [PLACE] [OBJECT] slots; drop the final answer slot.

    IOI templates end with the answer ("... gave a [OBJECT] to [A]"); the
    prompt is everything before it, so the model predicts the answer next.
    A template that does not end with [A] is used whole. ``overrides`` maps
    the index of a slot occurrence (in order of appearance) to the text put
    there instead of its slot's value; corruptions use it to change one
    occurrence (e.g. only S2).
    """
    body = prompt_body(template)
    overrides = overrides or {}
    parts: list[str] = []
    spans: list[tuple[str, int, int]] = []
    position = 0
    cursor = 0
    for occurrence, match in enumerate(_SLOT_PATTERN.finditer(body)):
        literal = body[cursor : match.start()]
        parts.append(literal)
        position += len(literal)
        slot = match.group(1)
        value = overrides.get(occurrence, values[slot])
        parts.append(value)
        spans.append((slot, position, position + len(value)))
        position += len(value)
        cursor = match.end()
    parts.append(body[cursor:])
    return RenderedPrompt("".join(parts), tuple(spans))


# ---------------------------------------------------------------- role spans


def _word_occurrences(text: str, word: str) -> list[tuple[int, int]]:
    """Character spans of ``word`` in ``text`` as a whole word (not inside another word)."""
    if not word:
        return []
    pattern = re.compile(r"(?<!\w)" + re.escape(word) + r"(?!\w)")
    return [(m.start(), m.end()) for m in pattern.finditer(text)]


def _spans_from_template(pair: PromptPair) -> dict[str, tuple[int, int]] | None:
    """Role spans from the builder's template, if it still reproduces the clean text."""
    meta = pair.meta
    if not meta.template or not meta.io or not meta.s:
        return None
    slots = set(template_slots(meta.template))
    values = {"A": meta.io, "B": meta.s, "C": meta.c, "PLACE": meta.place, "OBJECT": meta.object}
    if any(not values[slot] for slot in slots):
        return None
    rendered = render_prompt(meta.template, values)
    if rendered.text != pair.clean:
        return None
    spans: dict[str, tuple[int, int]] = {}
    a_spans, b_spans, c_spans = (rendered.slot_spans(s) for s in ("A", "B", "C"))
    if a_spans:
        spans["IO"] = a_spans[0]
    if b_spans:
        spans["S1"] = b_spans[0]
    if len(b_spans) >= 2:
        spans["S2"] = b_spans[-1]
    if c_spans:
        spans["C"] = c_spans[0]
    return spans


def _spans_from_text(pair: PromptPair) -> dict[str, tuple[int, int]]:
    """Role spans inferred from where the answers' names occur in the clean text."""
    io_name = pair.meta.io or pair.correct.strip()
    s_name = pair.meta.s or pair.incorrect.strip()
    spans: dict[str, tuple[int, int]] = {}
    io_found = _word_occurrences(pair.clean, io_name)
    s_found = _word_occurrences(pair.clean, s_name)
    if io_found:
        spans["IO"] = io_found[0]
    if s_found:
        spans["S1"] = s_found[0]
    if len(s_found) >= 2:
        spans["S2"] = s_found[-1]
    c_found = _word_occurrences(pair.clean, pair.meta.c)
    if c_found:
        spans["C"] = c_found[0]
    return spans


def role_spans(pair: PromptPair) -> dict[str, tuple[int, int]]:
    """Character spans of the named roles in the clean prompt (IO, S1, S2, C, punct).

    ``punct`` is the first punctuation mark after the first clause's names
    and before S2: the end of the clause that introduces the names.
    """
    spans = _spans_from_template(pair)
    if spans is None:
        spans = _spans_from_text(pair)
    clause_names = [spans[r][1] for r in ("IO", "S1", "C") if r in spans]
    if clause_names:
        start = max(clause_names)
        stop = spans["S2"][0] if "S2" in spans and spans["S2"][0] > start else len(pair.clean)
        for index in range(start, stop):
            if pair.clean[index] in _PUNCTUATION:
                spans["punct"] = (index, index + 1)
                break
    return spans


# ---------------------------------------------------------------- tokenization


@dataclass(frozen=True)
class _Encoded:
    ids: list[int]  # without BOS
    offsets: list[tuple[int, int]]


def bos_token_id(tokenizer) -> int:
    """The id TransformerLens prepends; PromptError if the tokenizer has none."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        raise PromptError(
            "The model's tokenizer has no beginning-of-sequence (BOS) token.",
            "Use a model whose tokenizer defines bos_token (GPT-2 style models use <|endoftext|>).",
        )
    return int(bos)


def resolve_bos(tokenizer, prepend_bos: bool | None = None) -> int | None:
    """The BOS id to put first, or None for no BOS. ``prepend_bos=None``: BOS when the tokenizer has one;
    True without a BOS token in the tokenizer is a PromptError."""
    if prepend_bos is None:
        bos = getattr(tokenizer, "bos_token_id", None)
        return None if bos is None else int(bos)
    return bos_token_id(tokenizer) if prepend_bos else None


def pad_token_id(tokenizer) -> int:
    """Padding id: the tokenizer's pad token, else EOS, else BOS (as TransformerLens does)."""
    for name in ("pad_token_id", "eos_token_id", "bos_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return 0


def _encode(tokenizer, text: str) -> _Encoded:
    try:
        encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError as exc:
        raise PromptError(
            "The model's tokenizer cannot map tokens back to the text (it is not a 'fast' tokenizer).",
            "Save the model with a tokenizer.json (a Hugging Face fast tokenizer).",
        ) from exc
    ids = [int(i) for i in encoding["input_ids"]]
    offsets = [(int(a), int(b)) for a, b in encoding["offset_mapping"]]
    return _Encoded(ids, offsets)


def to_tokens(tokenizer, text: str, prepend_bos: bool | None = None) -> list[int]:
    """Token ids as TransformerLens's ``to_tokens`` makes them: BOS (see ``resolve_bos``), then the text's tokens."""
    bos = resolve_bos(tokenizer, prepend_bos)
    return ([] if bos is None else [bos]) + _encode(tokenizer, text).ids


def token_strings(tokenizer, ids: Sequence[int]) -> list[str]:
    """Each token decoded on its own, as TransformerLens's ``to_str_tokens`` shows them."""
    return [tokenizer.decode([int(i)], clean_up_tokenization_spaces=False) for i in ids]


def _token_range(encoded: _Encoded, start: int, end: int, offset: int = 1) -> tuple[int, int] | None:
    """First and last index (in the sequence with ``offset`` BOS tokens first) of tokens overlapping a character span."""
    hits = [i for i, (a, b) in enumerate(encoded.offsets) if a < end and b > start and b > a]
    if not hits:
        return None
    return hits[0] + offset, hits[-1] + offset


def unknown_words(tokenizer, text: str) -> list[str]:
    """The words of ``text`` a closed-vocabulary tokenizer maps to its unknown token, in order, once each."""
    return _unknown_words(tokenizer, _encode(tokenizer, text), text)


def _unknown_words(tokenizer, encoded: _Encoded, text: str) -> list[str]:
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None:
        return []
    words = []
    for token_id, (a, b) in zip(encoded.ids, encoded.offsets):
        if token_id == unk:
            word = text[a:b].strip() or text[a:b]
            if word not in words:
                words.append(word)
    return words


@dataclass
class _PairTokens:
    clean: _Encoded
    corrupt: _Encoded
    correct_id: int
    incorrect_id: int
    roles: dict[str, int]


def _check_answer(tokenizer, index: int, name: str, answer: str, findings: list[Finding]) -> int | None:
    label = "correct" if name == "correct" else "incorrect"
    if not answer.strip():
        findings.append(Finding("error", index, name, "empty-answer", f"Pair {index}: the {label} answer is empty.",
                                "Type the answer token, e.g. ' Mary' with its leading space."))
        return None
    encoded = _encode(tokenizer, answer)
    unknown = _unknown_words(tokenizer, encoded, answer)
    if unknown:
        findings.append(Finding(
            "error", index, name, "unknown-answer",
            f"Pair {index}: the {label} answer {answer!r} is not in the model's vocabulary.",
            "Use a name the model knows (the pair builder lists them).",
        ))
        return None
    if len(encoded.ids) != 1:
        pieces = token_strings(tokenizer, encoded.ids)
        findings.append(Finding(
            "error", index, name, "answer-not-single-token",
            f"Pair {index}: the {label} answer {answer!r} is not a single token for this model: "
            f"it tokenizes as {pieces} ({len(pieces)} tokens).",
            "Choose a name that is one token (the pair builder keeps only those), usually with a leading space.",
        ))
        return None
    if not answer.startswith(" "):
        findings.append(Finding(
            "warning", index, name, "answer-without-space",
            f"Pair {index}: the {label} answer {answer!r} has no leading space, "
            "but after a word the model predicts the name with one.",
            f"Use {' ' + answer.strip()!r} unless the prompt ends with a space.",
        ))
    return encoded.ids[0]


def _check_text(tokenizer, index: int, name: str, text: str, n_ctx: int | None,
                findings: list[Finding], offset: int = 1) -> _Encoded | None:
    label = "clean" if name == "clean" else "corrupted"
    if not text.strip():
        findings.append(Finding("error", index, name, "empty-prompt", f"Pair {index}: the {label} prompt is empty.",
                                "Type the prompt text or remove the pair."))
        return None
    encoded = _encode(tokenizer, text)
    unknown = _unknown_words(tokenizer, encoded, text)
    if unknown:
        findings.append(Finding(
            "error", index, name, "unknown-words",
            f"Pair {index}: the {label} prompt has words the model does not know: "
            + ", ".join(repr(w) for w in unknown) + ".",
            "Replace them with words from the model's vocabulary (the bundled model knows only its training words).",
        ))
    length = len(encoded.ids) + offset
    if n_ctx is not None and length > n_ctx:
        findings.append(Finding(
            "error", index, name, "too-long",
            f"Pair {index}: the {label} prompt is {length} tokens{' with BOS' if offset else ''}, "
            f"longer than the model's context of {n_ctx}.",
            "Shorten the prompt.",
        ))
    return encoded


def _find_roles(tokenizer, index: int, pair: PromptPair, encoded: _Encoded,
                findings: list[Finding], offset: int = 1) -> dict[str, int]:
    roles = {role: -1 for role in ROLES}
    roles["END"] = len(encoded.ids) - 1 + offset
    spans = role_spans(pair)
    for role, (start, end) in spans.items():
        found = _token_range(encoded, start, end, offset)
        if found is None:
            continue
        first, last = found
        roles[role] = first
        if role in ("IO", "S1", "S2", "C") and last != first:
            findings.append(Finding(
                "warning", index, "clean", "name-not-single-token",
                f"Pair {index}: the {role} name {pair.clean[start:end]!r} is {last - first + 1} tokens "
                "in the clean prompt; its position is its first token.",
                "Use names that are one token where they stand in the prompt.",
            ))
        if role == "S1" and last + 1 < len(encoded.ids) + offset:
            roles["S1+1"] = last + 1
    return roles


def _analyse(prompt_set: PromptSet, tokenizer, n_ctx: int | None,
             prepend_bos: bool | None = None) -> tuple[list[Finding], list[_PairTokens | None]]:
    findings: list[Finding] = []
    results: list[_PairTokens | None] = []
    if len(prompt_set) == 0:
        findings.append(Finding("error", None, None, "empty-set", "The prompt set has no pairs.",
                                "Add pairs, build them with the pair builder, or open a pairs file."))
        return findings, results
    try:
        offset = int(resolve_bos(tokenizer, prepend_bos) is not None)
    except PromptError as error:
        findings.append(Finding("error", None, None, "no-bos", error.message, error.hint))
        return findings, results
    for index, pair in enumerate(prompt_set):
        clean = _check_text(tokenizer, index, "clean", pair.clean, n_ctx, findings, offset)
        corrupt = _check_text(tokenizer, index, "corrupt", pair.corrupt, n_ctx, findings, offset)
        correct_id = _check_answer(tokenizer, index, "correct", pair.correct, findings)
        incorrect_id = _check_answer(tokenizer, index, "incorrect", pair.incorrect, findings)
        if correct_id is not None and correct_id == incorrect_id:
            findings.append(Finding(
                "error", index, "incorrect", "same-answers",
                f"Pair {index}: the correct and incorrect answers are the same token {pair.correct!r}.",
                "The incorrect answer is the subject (S), a different name from the indirect object (IO).",
            ))
        if clean is not None and corrupt is not None and len(clean.ids) != len(corrupt.ids):
            findings.append(Finding(
                "error", index, "corrupt", "length-mismatch",
                f"Pair {index}: the clean prompt is {len(clean.ids) + offset} tokens but the corrupted one is "
                f"{len(corrupt.ids) + offset}; patching needs them aligned token for token.",
                "Change the corrupted prompt so it tokenizes to the same length (e.g. swap single-token names only).",
            ))
        if clean is None or corrupt is None or correct_id is None or incorrect_id is None:
            results.append(None)
            continue
        roles = _find_roles(tokenizer, index, pair, clean, findings, offset)
        results.append(_PairTokens(clean, corrupt, correct_id, incorrect_id, roles))
    lengths = {len(r.clean.ids) for r in results if r is not None}
    equal_length = len(lengths) <= 1
    for index, tokens in enumerate(results):
        if tokens is None:
            continue
        missing = [role for role in REQUIRED_ROLES if tokens.roles[role] < 0]
        if not missing:
            continue
        pair = prompt_set[index]
        severity = "warning" if equal_length else "error"
        consequence = (
            "role-based views will skip it" if equal_length
            else "the set's prompts differ in length, so analyses must align them by role"
        )
        findings.append(Finding(
            severity, index, "clean", "missing-roles",
            f"Pair {index}: the clean prompt has no {'/'.join(missing)} position "
            f"(IO is where {pair.correct.strip()!r} first occurs, S1 and S2 where "
            f"{pair.incorrect.strip()!r} occurs first and last); {consequence}.",
            "Name the indirect object once in the first clause and the subject twice, or make every prompt the same length.",
        ))
    return findings, results


def validate(prompt_set: PromptSet, tokenizer, n_ctx: int | None = None,
             prepend_bos: bool | None = None) -> list[Finding]:
    """Check a prompt set against a model's tokenizer; every problem found, errors and warnings.

    Errors: answers that are not single known tokens, clean/corrupted prompts
    of different token lengths, prompts longer than ``n_ctx``, unknown words
    (reported with the word), a set of differing lengths whose prompts lack
    named positions. Warnings: answers without a leading space, names split
    into several tokens, missing roles in an equal-length set. ``prepend_bos``:
    see ``resolve_bos`` (lengths and positions count the BOS when there is one).
    """
    findings, _ = _analyse(prompt_set, tokenizer, n_ctx, prepend_bos)
    return findings


def first_error(findings: Sequence[Finding]) -> Finding | None:
    return next((f for f in findings if f.severity == "error"), None)


def tokenize_set(prompt_set: PromptSet, tokenizer, n_ctx: int | None = None,
                 prepend_bos: bool | None = None) -> TokenizedSet:
    """Tokenize a valid prompt set for analyses; PromptError names the first problem otherwise.

    ``prepend_bos``: see ``resolve_bos`` (pass the model's ``ModelInfo.prepend_bos``).
    """
    findings, results = _analyse(prompt_set, tokenizer, n_ctx, prepend_bos)
    error = first_error(findings)
    if error is not None:
        others = sum(1 for f in findings if f.severity == "error") - 1
        suffix = f" ({others} more problem{'s' if others != 1 else ''} in the set.)" if others else ""
        raise PromptError(error.message + suffix, error.hint)
    pairs = [r for r in results if r is not None]
    bos_id = resolve_bos(tokenizer, prepend_bos)
    bos = [] if bos_id is None else [bos_id]
    pad = pad_token_id(tokenizer)
    lengths = np.array([len(p.clean.ids) + len(bos) for p in pairs], dtype=np.int64)
    width = int(lengths.max())
    clean_tokens = np.full((len(pairs), width), pad, dtype=np.int64)
    corrupt_tokens = np.full((len(pairs), width), pad, dtype=np.int64)
    for row, p in enumerate(pairs):
        clean_tokens[row, : lengths[row]] = bos + p.clean.ids
        corrupt_tokens[row, : lengths[row]] = bos + p.corrupt.ids
    role_names = [r for r in ROLES if r != "C" or any(p.roles["C"] >= 0 for p in pairs)]
    roles = {r: np.array([p.roles[r] for p in pairs], dtype=np.int64) for r in role_names}
    return TokenizedSet(
        clean_tokens=clean_tokens,
        corrupt_tokens=corrupt_tokens,
        correct_ids=np.array([p.correct_id for p in pairs], dtype=np.int64),
        incorrect_ids=np.array([p.incorrect_id for p in pairs], dtype=np.int64),
        lengths=lengths,
        end_pos=lengths - 1,
        roles=roles,
        str_tokens=[token_strings(tokenizer, bos + p.clean.ids) for p in pairs],
        corrupt_str_tokens=[token_strings(tokenizer, bos + p.corrupt.ids) for p in pairs],
        equal_length=bool(np.all(lengths == lengths[0])),
        pad_id=pad,
        prepend_bos=bool(bos),
    )
