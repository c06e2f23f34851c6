"""The IOI pair builder: template families, word lists, corruption schemes, presets.

A clean IOI prompt fills a template such as "When [B] and [A] went to the
[PLACE], [B] gave a [OBJECT] to [A]" with two names: [A] is the indirect
object (IO, the answer) and [B] the subject (S), which occurs twice (S1 in
the first clause, S2 in the second). The prompt stops before the final [A].
Its answers are always the clean prompt's: correct = " IO", incorrect = " S".

A corruption scheme makes the corrupted prompt of each pair by changing what
the experiment ablates while keeping every other token in place, so that
activations can be patched position by position; a pair whose corrupted
prompt does not tokenize to the clean prompt's length is rejected with the
reason. Families and the word lists come from the IOI paper (Wang et al.
2022, ``resources/data/ioi_paper_dataset.json``); ``notebook`` is the
TransformerLens demo's 8-prompt set.

The builder is seeded: the same settings, word lists, tokenizer and seed give
the same pairs in the same order. No torch, no Qt.
"""

from __future__ import annotations

import functools
import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ioi_desktop.core.errors import FileFormatError, PromptError
from ioi_desktop.core.paths import resource_path
from ioi_desktop.core.prompts import (
    PairMeta,
    PromptPair,
    PromptSet,
    first_error,
    prompt_body,
    render_prompt,
    template_slots,
    to_tokens,
    unknown_words,
    validate,
)

FAMILIES: dict[str, str] = {
    "BABA": "the paper's templates: S and IO in the first clause, S first ('When John and Mary ..., John gave ...')",
    "ABBA": "BABA with the first clause's names swapped: IO first ('When Mary and John ..., John gave ...')",
    "mixed": "BABA and ABBA templates drawn at random, as the paper's 'mixed' dataset",
    "BABA_LONG": "BABA with longer openings before the names ('Then in the morning, ...')",
    "ABBA_LONG": "BABA_LONG with the first clause's names swapped",
    "BABA_LATE_IOS": "the paper's late-IO variant: the first clause ends with a full stop before S2",
    "ABBA_LATE_IOS": "BABA_LATE_IOS with the first clause's names swapped",
    "BABA_EARLY_IOS": "the paper's early-IO variant: one sentence, the clauses joined by ', and'",
    "ABBA_EARLY_IOS": "BABA_EARLY_IOS with the first clause's names swapped",
    "ABC": "three names, IO first ('Then, Mary, John and Tom ...'); S and a third name C both repeat",
    "BAC": "ABC with the first clause's IO and S swapped ('Then, John, Mary and Tom ...')",
    "custom": "your own templates with [A] (IO), [B] (S, at least twice), [C], [PLACE], [OBJECT] slots",
}

CORRUPTIONS: dict[str, str] = {
    "swap": "the demo's: prompts come in adjacent pairs with IO and S exchanged (first clause kept); each one's corrupted prompt is its partner",
    "abc": "ABB->XYZ: every name replaced by a fresh one (IO, S1, S2 and C all different), the paper's reference data",
    "io-rand": "IO->RAND: the indirect object replaced by a fresh random name",
    "s-rand": "S->RAND: both occurrences of the subject replaced by one fresh random name",
    "s1-rand": "S1->RAND: only the first-clause subject replaced by a fresh random name",
    "s2-rand": "S2->RAND: only the second occurrence of the subject replaced by a fresh random name",
    "s2-io": "S2->IO: the second occurrence of the subject replaced by the IO name",
    "io-animal": "IO->ANIMAL: the indirect object replaced by a random animal word",
    "s-animal": "S->ANIMAL: both occurrences of the subject replaced by one random animal word",
    "prefix": "prefix flip: the words before the first name replaced by another opening of the same token length",
}

PRESETS: dict[str, str] = {
    "notebook": "the TransformerLens demo's 8 prompts: 4 templates x 2 name orders, corrupted by swapping adjacent pairs",
}

# Openings used by the prefix flip besides the paper templates' own (Easy-Transformer's PREFIXES).
_EXTRA_PREFIXES = ("Afterwards,", "Two friends met at a bar. Then,", "After a long day,", "Then,")
_MAX_N = 100_000
_MAX_TEMPLATE_CHARS = 2_000
_MAX_REJECTED_KEPT = 200
# Give up on a build when this many draws in a row produced no usable pair.
_HOPELESS_DRAWS = 200
_NAME_SLOTS = ("A", "B", "C")


@dataclass(frozen=True)
class WordLists:
    """The words the builder draws from; names are filtered to single tokens per model."""

    names: tuple[str, ...]
    places: tuple[str, ...]
    objects: tuple[str, ...]
    animals: tuple[str, ...]

    def to_dict(self) -> dict[str, list[str]]:
        return {"names": list(self.names), "places": list(self.places),
                "objects": list(self.objects), "animals": list(self.animals)}


@dataclass(frozen=True)
class BuilderSettings:
    """Everything that determines a built set (with the tokenizer).

    ``n`` is the number of pairs in the set. ``symmetric`` builds each draw
    twice, the second time with IO and S exchanged (the pair count stays
    ``n``). The ``swap`` scheme ignores it: it always builds the demo's
    partners (first clause kept, the other name at S2, answers exchanged).
    """

    family: str = "BABA"
    n: int = 8
    corruption: str = "abc"
    seed: int = 0
    symmetric: bool = False
    word_lists: WordLists | None = None  # None: the paper's lists
    templates: tuple[str, ...] = ()  # only for family "custom"


@dataclass(frozen=True)
class RejectedName:
    name: str
    reason: str


@dataclass(frozen=True)
class RejectedPair:
    clean: str
    corrupt: str
    reason: str


@dataclass(frozen=True)
class BuildReport:
    """The built set and what was left out: names unusable for the model, pairs that failed a check.

    ``rejected_pairs`` keeps the first few rejections (with their reasons);
    ``rejected_pair_count`` counts them all.
    """

    prompt_set: PromptSet
    rejected_names: tuple[RejectedName, ...]
    rejected_pairs: tuple[RejectedPair, ...]
    rejected_pair_count: int


# ---------------------------------------------------------------- data


@functools.lru_cache(maxsize=1)
def _load_dataset() -> dict[str, Any]:
    """The paper's dataset file, read once (callers must not modify it)."""
    path = resource_path("data", "ioi_paper_dataset.json")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FileFormatError(
            f"The IOI word lists in {path} cannot be read ({exc}).",
            "Reinstall IOI Desktop; the file ships with it.",
        ) from exc


def default_word_lists() -> WordLists:
    """The IOI paper's names, places, objects and animals."""
    data = _load_dataset()
    return WordLists(*(tuple(data[key]) for key in ("names", "places", "objects", "animals")))


def swap_first_clause(template: str) -> str:
    """Exchange the first [A] and the first [B] (BABA -> ABBA, ABC -> BAC), as the paper derives them."""
    slots = list(re.finditer(r"\[(A|B)\]", template))
    first_a = next((m for m in slots if m.group(1) == "A"), None)
    first_b = next((m for m in slots if m.group(1) == "B"), None)
    if first_a is None or first_b is None:
        return template
    swapped = list(template)
    swapped[first_a.start() + 1] = "B"
    swapped[first_b.start() + 1] = "A"
    return "".join(swapped)


def family_templates(family: str) -> tuple[tuple[str, str], ...]:
    """(family of the template, template) pairs a family draws from; 'mixed' spans BABA and ABBA."""
    if family not in FAMILIES or family == "custom":
        raise PromptError(
            f"There is no built-in template family '{family}'.",
            "Choose one of: " + ", ".join(f for f in FAMILIES if f != "custom") + ".",
        )
    templates = _load_dataset()["templates"]
    if family == "mixed":
        return family_templates("BABA") + family_templates("ABBA")
    if family in templates:
        return tuple((family, t) for t in templates[family])
    source = {"ABBA": "BABA", "ABBA_LONG": "BABA_LONG", "ABBA_LATE_IOS": "BABA_LATE_IOS",
              "ABBA_EARLY_IOS": "BABA_EARLY_IOS", "BAC": "ABC"}[family]
    return tuple((family, swap_first_clause(t)) for t in templates[source])


def check_template(template: str) -> None:
    """PromptError unless a user template can make an IOI prompt: [A] once or more, [B] twice, before the answer."""
    if len(template) > _MAX_TEMPLATE_CHARS:
        raise PromptError(
            f"The template is {len(template)} characters long, more than {_MAX_TEMPLATE_CHARS}.",
            "Shorten the template.",
        )
    slots = template_slots(prompt_body(template))
    if "A" not in slots or slots.count("B") < 2:
        raise PromptError(
            f"The template {template!r} needs [A] (the indirect object) and [B] (the subject) twice "
            "before the final answer.",
            "Write it like 'When [B] and [A] went to the [PLACE], [B] gave a [OBJECT] to [A]'.",
        )
    if not prompt_body(template).strip():
        raise PromptError(f"The template {template!r} has no text before the answer.", "Add the sentence before [A].")


# ---------------------------------------------------------------- the notebook preset

# The demo's prompts: opening, the first clause's two names in the order written, the rest,
# and its answer pairs (IO first): names[0] as IO, then names[1] (its `names` list order).
_NOTEBOOK_PROMPTS = (
    ("When", ("John", "Mary"), "went to the shops, [B] gave the bag to [A]", ("Mary", "John")),
    ("When", ("Tom", "James"), "went to the park, [B] gave the ball to [A]", ("Tom", "James")),
    ("When", ("Dan", "Sid"), "went to the shops, [B] gave an apple to [A]", ("Dan", "Sid")),
    ("After", ("Martin", "Amy"), "went to the park, [B] gave a drink to [A]", ("Martin", "Amy")),
)


def notebook_prompt_set() -> PromptSet:
    """The TransformerLens demo's 8 prompts, answers and adjacent-swap corruption, exactly.

    Each of the demo's 4 sentences keeps its first clause ("When John and
    Mary ...") and is used twice, once with each name as the indirect
    object; the subject fills the second clause. Prompt 2k+1's text is prompt
    2k's corrupted version and vice versa.
    """
    built = []
    for opening, written, rest, order in _NOTEBOOK_PROMPTS:
        for io, s in (order, order[::-1]):
            slots = ["[A]" if name == io else "[B]" for name in written]
            template = f"{opening} {slots[0]} and {slots[1]} {rest}"
            family = "ABBA" if slots[0] == "[A]" else "BABA"
            text = render_prompt(template, {"A": io, "B": s}).text
            meta = PairMeta(family=family, template=template, io=io, s=s, corruption="swap")
            built.append((text, io, s, meta))
    pairs = []
    for index, (text, io, s, meta) in enumerate(built):
        partner = built[index ^ 1][0]
        pairs.append(PromptPair(text, partner, " " + io, " " + s, meta))
    return PromptSet(tuple(pairs), {"source": "preset", "preset": "notebook"})


def preset_prompt_set(name: str) -> PromptSet:
    if name == "notebook":
        return notebook_prompt_set()
    raise PromptError(f"There is no preset named '{name}'.", "Choose one of: " + ", ".join(PRESETS) + ".")


# ---------------------------------------------------------------- building


def _single_token_words(words: tuple[str, ...], tokenizer, kind: str) -> tuple[list[str], list[RejectedName]]:
    """Words that are one known token with a leading space (how they appear mid-sentence)."""
    kept: list[str] = []
    rejected: list[RejectedName] = []
    unk = getattr(tokenizer, "unk_token_id", None)
    for raw in words:
        word = raw.strip()
        if not word:
            rejected.append(RejectedName(raw, f"an empty {kind}"))
            continue
        if word in kept:
            continue
        if re.search(r"\s|\[|\]", word):
            rejected.append(RejectedName(raw, f"a {kind} must be one word without brackets"))
            continue
        ids = to_tokens(tokenizer, " " + word, prepend_bos=False)
        if unk is not None and unk in ids:
            rejected.append(RejectedName(word, "not in the model's vocabulary"))
        elif len(ids) != 1:
            rejected.append(RejectedName(word, f"{len(ids)} tokens for this model, not 1"))
        else:
            kept.append(word)
    return kept, rejected


def check_settings(settings: BuilderSettings) -> None:
    """PromptError naming the first invalid setting (before any tokenizer is needed)."""
    if settings.family not in FAMILIES:
        raise PromptError(f"There is no template family '{settings.family}'.",
                          "Choose one of: " + ", ".join(FAMILIES) + ".")
    if settings.corruption not in CORRUPTIONS:
        raise PromptError(f"There is no corruption scheme '{settings.corruption}'.",
                          "Choose one of: " + ", ".join(CORRUPTIONS) + ".")
    if isinstance(settings.n, bool) or not isinstance(settings.n, int) or not 1 <= settings.n <= _MAX_N:
        raise PromptError(f"The number of pairs must be between 1 and {_MAX_N}, not {settings.n!r}.",
                          "Choose a smaller or positive N.")
    if isinstance(settings.seed, bool) or not isinstance(settings.seed, int):
        raise PromptError(f"The seed must be a whole number, not {settings.seed!r}.", "Type an integer seed.")
    if settings.family == "custom":
        if not settings.templates:
            raise PromptError("The custom family needs at least one template.",
                              "Type a template such as 'When [B] and [A] went to the [PLACE], [B] gave a [OBJECT] to [A]'.")
        for template in settings.templates:
            check_template(template)
    elif settings.templates:
        raise PromptError(f"Templates were given but the family is '{settings.family}'.",
                          "Choose the 'custom' family to use your own templates.")


def _templates(settings: BuilderSettings) -> tuple[tuple[str, str], ...]:
    if settings.family == "custom":
        return tuple(("custom", t) for t in settings.templates)
    return family_templates(settings.family)


def _prefix_options() -> tuple[str, ...]:
    """Every opening (text before the first name) of the paper's templates, plus Easy-Transformer's."""
    found: list[str] = []
    for family in ("BABA", "BABA_LONG", "BABA_LATE_IOS", "BABA_EARLY_IOS", "ABC"):
        for _, template in family_templates(family):
            first_name = re.search(r"\[(A|B|C)\]", template)
            opening = template[: first_name.start()].strip() if first_name else ""
            if opening and opening not in found:
                found.append(opening)
    found.extend(p for p in _EXTRA_PREFIXES if p not in found)
    return tuple(found)


@dataclass
class _Draw:
    """One drawn template with its slot values, and the build's random source and word pools."""

    family: str
    template: str
    values: dict[str, str]
    settings: BuilderSettings
    rng: random.Random
    names: list[str]
    animals: list[str]
    prefixes: tuple[str, ...]
    tokenizer: Any

    def with_template(self, family: str, template: str, values: dict[str, str]) -> "_Draw":
        return _Draw(family, template, values, self.settings, self.rng, self.names, self.animals,
                     self.prefixes, self.tokenizer)

    def occurrences(self, slot: str) -> list[int]:
        """Indices (among all slot occurrences of the prompt) of one slot's occurrences."""
        return [i for i, s in enumerate(template_slots(prompt_body(self.template))) if s == slot]

    def fresh_names(self, count: int) -> list[str]:
        used = {self.values.get(s) for s in _NAME_SLOTS}
        pool = [n for n in self.names if n not in used]
        if len(pool) < count:
            raise _Rejected(f"too few single-token names left to pick {count} fresh one(s)")
        return self.rng.sample(pool, count)

    def animal(self) -> str:
        if not self.animals:
            raise _Rejected("no animal word is a single token for this model")
        return self.rng.choice(self.animals)


class _Rejected(Exception):
    """A drawn pair cannot be made; the message is the reason shown to the user."""


def _render(draw: _Draw, overrides: dict[int, str] | None = None) -> str:
    return render_prompt(draw.template, draw.values, overrides).text


def _corrupt(draw: _Draw) -> str:
    """The corrupted prompt of a drawn clean prompt under the settings' scheme."""
    scheme = draw.settings.corruption
    a, b, c = draw.occurrences("A"), draw.occurrences("B"), draw.occurrences("C")
    if scheme == "io-rand":
        (x,) = draw.fresh_names(1)
        return _render(draw, {i: x for i in a})
    if scheme == "s-rand":
        (x,) = draw.fresh_names(1)
        return _render(draw, {i: x for i in b})
    if scheme == "s1-rand":
        (x,) = draw.fresh_names(1)
        return _render(draw, {b[0]: x})
    if scheme == "s2-rand":
        (x,) = draw.fresh_names(1)
        return _render(draw, {b[-1]: x})
    if scheme == "s2-io":
        return _render(draw, {b[-1]: draw.values["A"]})
    if scheme == "io-animal":
        animal = draw.animal()
        return _render(draw, {i: animal for i in a})
    if scheme == "s-animal":
        animal = draw.animal()
        return _render(draw, {i: animal for i in b})
    if scheme == "abc":
        # The paper: IO->RAND, then S->RAND (both S), then S1->RAND; a third name C is replaced too.
        x, y, z, *w = draw.fresh_names(4 if c else 3)
        overrides = {i: x for i in a} | {i: z for i in b} | {b[0]: y}
        overrides |= {i: w[0] for i in c}
        return _render(draw, overrides)
    if scheme == "prefix":
        return _flip_prefix(draw)
    raise AssertionError(f"scheme {scheme} is handled by the pairing step")


def _flip_prefix(draw: _Draw) -> str:
    """Replace the words before the first name by another opening that keeps the token count (Easy-Transformer's flip)."""
    clean = _render(draw)
    spans = render_prompt(draw.template, draw.values).spans
    first_name = next((start for slot, start, _ in spans if slot in _NAME_SLOTS), 0)
    opening = clean[:first_name].strip()
    if not opening:
        raise _Rejected("the template has no words before the first name, so there is no prefix to flip")
    rest = clean[first_name:].lstrip()
    target = len(to_tokens(draw.tokenizer, clean))
    options = [p.replace("[PLACE]", draw.values.get("PLACE", "")).replace("[OBJECT]", draw.values.get("OBJECT", ""))
               for p in draw.prefixes]
    options = [p for p in options if p != opening]
    draw.rng.shuffle(options)
    for prefix in options:
        candidate = prefix + " " + rest
        if len(to_tokens(draw.tokenizer, candidate)) == target and not unknown_words(draw.tokenizer, prefix):
            return candidate
    raise _Rejected(f"no other opening has the same token length as {opening!r}")


def _clean_pair(draw: _Draw, corrupt: str) -> PromptPair:
    # Only the slots the template uses: the draw also picks a place and object for templates without them.
    used = set(template_slots(draw.template))
    values = {slot: value for slot, value in draw.values.items() if slot in used}
    meta = PairMeta(
        family=draw.family, template=draw.template, io=values["A"], s=values["B"], c=values.get("C", ""),
        place=values.get("PLACE", ""), object=values.get("OBJECT", ""),
        corruption=draw.settings.corruption, seed=draw.settings.seed,
    )
    return PromptPair(_render(draw), corrupt, " " + values["A"], " " + values["B"], meta)


def _draw_pairs(draw: _Draw) -> list[PromptPair]:
    """The pairs one draw makes: one, or two (the partner) for the swap scheme and symmetric sets."""
    settings = draw.settings
    if settings.corruption == "swap":
        # The demo's partner keeps the first clause's text and puts the other name at S2.
        partner = draw.with_template(_partner_family(draw.family), swap_first_clause(draw.template),
                                     dict(draw.values, A=draw.values["B"], B=draw.values["A"]))
        return [_clean_pair(draw, _render(partner)), _clean_pair(partner, _render(draw))]
    first = _clean_pair(draw, _corrupt(draw))
    if not settings.symmetric:
        return [first]
    mirrored = draw.with_template(draw.family, draw.template, dict(draw.values, A=draw.values["B"], B=draw.values["A"]))
    return [first, _clean_pair(mirrored, _corrupt(mirrored))]


def _partner_family(family: str) -> str:
    swaps = {"BABA": "ABBA", "ABBA": "BABA", "ABC": "BAC", "BAC": "ABC"}
    for old, new in swaps.items():
        if family.startswith(old):
            return new + family[len(old):]
    return family


def _build_draw(draw: _Draw, n_ctx: int | None) -> list[PromptPair] | RejectedPair:
    """The validated pairs of one draw, or why it was rejected."""
    clean = _render(draw)
    try:
        made = _draw_pairs(draw)
    except _Rejected as why:
        return RejectedPair(clean, "", str(why))
    for pair in made:
        findings = validate(PromptSet((pair,)), tokenizer=draw.tokenizer, n_ctx=n_ctx)
        # A built pair must have every named position, even where a lone prompt would only warn.
        problem = first_error(findings) or next((f for f in findings if f.code == "missing-roles"), None)
        if problem is not None:
            # The finding's "Pair 0: " lead means nothing outside a set.
            return RejectedPair(pair.clean, pair.corrupt, re.sub(r"^Pair \d+: ", "", problem.message))
    return made


def build_pairs(settings: BuilderSettings, tokenizer, n_ctx: int | None = None) -> BuildReport:
    """Build ``settings.n`` valid clean/corrupted pairs for this tokenizer, reproducibly.

    Each draw picks a template, two (or three) different single-token names,
    a place and an object with a ``random.Random(seed)``; the corruption is
    applied and the pair is validated (aligned lengths, known words, names
    where the template says). Invalid pairs are skipped and reported.
    PromptError when the settings are invalid or too few pairs can be made.
    """
    check_settings(settings)
    words = settings.word_lists or default_word_lists()
    names, rejected_names = _single_token_words(tuple(words.names), tokenizer, "name")
    animals, _ = _single_token_words(tuple(words.animals), tokenizer, "animal")
    templates = _templates(settings)
    needs_c = any("C" in template_slots(t) for _, t in templates)
    needed = 3 if needs_c else 2
    if len(names) < needed:
        raise PromptError(
            f"Only {len(names)} of the {len(words.names)} names are single tokens for this model; "
            f"the templates need at least {needed}.",
            "Add names the model knows to the word list.",
        )
    for slot, pool, label in (("PLACE", words.places, "places"), ("OBJECT", words.objects, "objects")):
        if not [w for w in pool if w.strip()] and any(slot in template_slots(t) for _, t in templates):
            raise PromptError(f"The templates use [{slot}] but the {label} list is empty.",
                              f"Add {label} to the word lists.")
    places = [w.strip() for w in words.places if w.strip()]
    objects = [w.strip() for w in words.objects if w.strip()]
    prefixes = _prefix_options()
    rng = random.Random(settings.seed)
    pairs: list[PromptPair] = []
    rejected: list[RejectedPair] = []
    rejected_count = 0
    reasons: Counter[str] = Counter()
    failures_in_a_row = 0
    while len(pairs) < settings.n and failures_in_a_row < _HOPELESS_DRAWS:
        family, template = rng.choice(templates)
        picked = rng.sample(names, needed)
        values = {"A": picked[0], "B": picked[1]}
        if needs_c:
            values["C"] = picked[2]
        if places:
            values["PLACE"] = rng.choice(places)
        if objects:
            values["OBJECT"] = rng.choice(objects)
        draw = _Draw(family, template, values, settings, rng, names, animals, prefixes, tokenizer)
        outcome = _build_draw(draw, n_ctx)
        if isinstance(outcome, RejectedPair):
            failures_in_a_row += 1
            rejected_count += 1
            reasons[outcome.reason] += 1
            if len(rejected) < _MAX_REJECTED_KEPT:
                rejected.append(outcome)
            continue
        failures_in_a_row = 0
        pairs.extend(outcome)
    if len(pairs) < settings.n:
        common = reasons.most_common(1)[0][0] if reasons else "no pair could be drawn"
        # A reason may be a finding's whole sentence ("... 'walked'."): one full stop, not two.
        common = common.rstrip(".")
        raise PromptError(
            f"Only {len(pairs)} of {settings.n} pairs could be built; most were rejected because {common}.",
            "Change the templates, word lists or corruption scheme.",
        )
    meta: dict[str, Any] = {
        "source": "builder", "family": settings.family, "n": settings.n, "corruption": settings.corruption,
        "seed": settings.seed, "symmetric": settings.symmetric,
    }
    if settings.templates:
        meta["templates"] = list(settings.templates)
    if settings.word_lists is not None:
        meta["word_lists"] = settings.word_lists.to_dict()
    return BuildReport(PromptSet(tuple(pairs[: settings.n]), meta), tuple(rejected_names),
                       tuple(rejected), rejected_count)
