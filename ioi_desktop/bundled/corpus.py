"""Seeded training corpus and evaluation prompts for the bundled IOI model.

Indirect Object Identification (IOI): in "When John and Mary went to the
shops, John gave the bag to", the answer is the indirect object (IO, " Mary"),
not the subject (S, " John") who is mentioned twice (S1, S2).

The corpus mixes five kinds of sequences, each starting with BOS when
tokenized (as TransformerLens's ``to_tokens`` prepends it):

- IOI sentences from every family of the IOI paper (Wang et al. 2022: BABA,
  BABA_LONG, early/late IOS, ABC) in both name orders (BABA and ABBA), plus
  demo-style templates ("When [B] and [A] went to the shops, [B] gave the bag
  to [A]"). A share of them is preceded by an earlier sentence that mentions
  another name once, so "copy every name seen once" is not a solution: the
  model has to tell the repeated name from the other one in the clause.
- "Roll call" lists, where the word after a name is " again" exactly when the
  name was already called: it rewards a head that detects duplicated tokens.
- Repeated random word sequences, which reward induction heads.
- Filler sentences from a small grammar over the same words, so the model is
  a language model of this little world and not a pure template matcher.
- Optionally (``odd_one_out_share``), "odd one out" IOI sentences: the first
  clause lists three or four names in random order, the second repeats all
  of them but one, and the answer is the one left out ("When John, Mary and
  Tom went to the shops, Tom and John gave the bag to" -> " Mary"). One head
  suppressing one repeated name no longer picks the answer, so a head has to
  attend to the name that is not repeated: the IOI paper's name mover.

Held out from training, for evaluation: four templates (one per paper family)
and about a tenth of all name pairs.
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass, replace

from ioi_desktop.core.pairs import WordLists, default_word_lists, family_templates, swap_first_clause

DEMO_NAMES = ("John", "Mary", "Tom", "James", "Dan", "Sid", "Martin", "Amy")
# The paper's template groups, in the dataset file's order (the tokenizer's word order follows it).
PAPER_GROUPS = ("BABA", "BABA_LONG", "BABA_LATE_IOS", "BABA_EARLY_IOS", "ABC")
DEMO_PLACES = ("shops", "park")
DEMO_THINGS = ("the bag", "the ball", "an apple", "a drink", "a bottle of milk")

# The TransformerLens demo's prompts: (prompt, IO, S); the slot holds S2.
DEMO_PROMPTS: tuple[tuple[str, str, str], ...] = tuple(
    (template.format(f" {s}"), io, s)
    for template, first, second in (
        ("When John and Mary went to the shops,{} gave the bag to", "Mary", "John"),
        ("When Tom and James went to the park,{} gave the ball to", "Tom", "James"),
        ("When Dan and Sid went to the shops,{} gave an apple to", "Dan", "Sid"),
        ("After Martin and Amy went to the park,{} gave a drink to", "Martin", "Amy"),
    )
    for io, s in ((first, second), (second, first))
)
SANITY_PROMPT = ("After John and Mary went to the store, John gave a bottle of milk to", "Mary", "John")

DEMO_TEMPLATES = (
    "When [B] and [A] went to the [PLACE], [B] gave [THING] to [A]",
    "After [B] and [A] went to the [PLACE], [B] gave [THING] to [A]",
    "While [B] and [A] were at the [PLACE], [B] gave [THING] to [A]",
    "When [B] and [A] arrived at the [PLACE], [B] handed [THING] to [A]",
)

# One template per paper family never seen in training.
HELD_OUT_TEMPLATES = {
    "BABA": "While [B] and [A] were commuting to the [PLACE], [B] gave a [OBJECT] to [A]",
    "BABA_LONG": "Friends separated at birth [B] and [A] found a [OBJECT] at the [PLACE]. [B] gave it to [A]",
    "BABA_EARLY_IOS": "Then [B] and [A] were thinking about going to the [PLACE], and [B] wanted to give a [OBJECT] to [A]",
    "BABA_LATE_IOS": "Then, [B] and [A] had a long argument and after that [B] said to [A]",
}

# Evaluation families: (name, template group, name orders).
EVAL_FAMILIES = (
    ("BABA", "BABA", ("BABA",)),
    ("ABBA", "BABA", ("ABBA",)),
    ("long", "BABA_LONG", ("BABA", "ABBA")),
    ("early-IO", "BABA_EARLY_IOS", ("BABA", "ABBA")),
    ("late-IO", "BABA_LATE_IOS", ("BABA", "ABBA")),
)

FILLER_TEMPLATES = (
    "[NAME] went to the [PLACE].",
    "[NAME] had a [OBJECT] at the [PLACE].",
    "The [ANIMAL] was at the [PLACE].",
    "[NAME] saw a [ANIMAL] at the [PLACE].",
    "[NAME] was thinking about the [ANIMAL].",
    "Then, the [ANIMAL] and the [ANIMAL] went to the [PLACE].",
    "The [PLACE] had a [ANIMAL].",
    "[NAME] found a [OBJECT].",
    "After the lunch, [NAME] went to the [PLACE].",
    "[NAME] and the [ANIMAL] had a lot of fun.",
    "Afterwards, [NAME] was working at the [PLACE].",
    "The [ANIMAL] got a [OBJECT] at the [PLACE].",
)
ROLL_CALL_OPENING = "Roll call:"
ROLL_CALL_REPEAT = " again"
# Punctuation users may type, so that only words can be unknown.
EXTRA_PUNCTUATION = "!?;'\"-()"

# Share of each sequence kind in training.
# Words in one run of the induction texts (a run, then the same run again).
INDUCTION_RUN_WORDS = (4, 10)
DEFAULT_MIX = {"ioi": 0.7, "roll_call": 0.15, "induction": 0.07, "filler": 0.08}
# Share of IOI sentences per template group.
IOI_GROUP_MIX = {
    "BABA": 0.27,
    "BABA_LONG": 0.18,
    "BABA_EARLY_IOS": 0.15,
    "BABA_LATE_IOS": 0.10,
    "DEMO": 0.24,
    "ABC": 0.06,
}
PREFIX_SHARE = 0.3
# Share of those earlier sentences that mention the indirect object instead of another name
# ("Mary went to the park. When John and Mary went to the shops, John gave the bag to" -> Mary), so
# that "the name seen twice is the subject" is not a rule the model can rely on: it has to tell
# the names apart by which one the last clause repeats. 0 (the default) keeps the corpus, draw for draw.
PREFIX_IO_SHARE = 0.0
# Other continuations of an IOI sentence than the indirect object, and their shares among them
# ("... gave the bag to him", "... to the dog", "... to Kate" (a name not in the sentence),
# "... to John" (the subject again)). With a share of sentences ending so, the answer slot holds a
# real distribution, as in natural text, and a model trained on it is calibrated like a language
# model instead of certain. 0 (the default) keeps the original corpus, draw for draw.
CONTINUATION_SHARE = 0.0
# Share of all training sequences replaced by an "odd one out" IOI sentence (see the module docstring):
# 2 or 3 subjects (ODD_ONE_OUT_SUBJECTS) named in the first clause with the answer, in random order, then
# again in the second. 0 (the default) keeps the original corpus, draw for draw.
ODD_ONE_OUT_SHARE = 0.0
ODD_ONE_OUT_SUBJECTS = {2: 0.6, 3: 0.4}
# The template groups odd-one-out sentences are built from (their first clause reads "[B] and [A]").
ODD_ONE_OUT_GROUPS = ("BABA", "BABA_LONG", "BABA_EARLY_IOS", "BABA_LATE_IOS", "DEMO")
CONTINUATION_KINDS = {"pronoun": 0.45, "article": 0.30, "other_name": 0.22, "subject": 0.03}
PRONOUNS = ("him", "her")
ARTICLES = ("the", "a")
HELD_OUT_PAIR_SHARE = 0.1
_HOLDOUT_SEED = 2211  # fixed: the held-out pairs must not move with the training seed
_SLOT = re.compile(r"\[([A-Z]+)\]")


@dataclass(frozen=True)
class IOIPrompt:
    """An IOI prompt without its answer: ``text + " " + io`` is the full sentence."""

    text: str
    io: str
    s: str
    family: str
    template: str
    order: str


# A training sequence as (text, weighted) segments; weighted segments are answers.
Segments = list[tuple[str, bool]]


@functools.lru_cache(maxsize=1)
def load_word_lists() -> WordLists:
    """The IOI paper's word lists (those of the pair builder) plus the demo's names."""
    paper = default_word_lists()
    return replace(paper, names=paper.names + tuple(n for n in DEMO_NAMES if n not in paper.names))


def paper_templates(group: str) -> tuple[str, ...]:
    """One of the paper's template groups (PAPER_GROUPS), as the dataset file lists them."""
    return tuple(template for _, template in family_templates(group))


def training_templates(group: str) -> tuple[str, ...]:
    """A template group's templates minus the held-out ones."""
    if group == "DEMO":
        return DEMO_TEMPLATES
    held = HELD_OUT_TEMPLATES.get(group)
    return tuple(t for t in paper_templates(group) if t != held)


@functools.lru_cache(maxsize=1)
def held_out_pairs() -> frozenset[frozenset[str]]:
    """Unordered name pairs never used as (IO, S) together in training."""
    names = load_word_lists().names
    pairs = [frozenset((a, b)) for i, a in enumerate(names) for b in names[i + 1 :]]
    demo = {frozenset(p[1:]) for p in DEMO_PROMPTS}
    pairs = [p for p in pairs if p not in demo]
    rng = random.Random(_HOLDOUT_SEED)
    return frozenset(rng.sample(pairs, int(len(pairs) * HELD_OUT_PAIR_SHARE)))


def fill_template(template: str, words: dict[str, str]) -> str:
    return _SLOT.sub(lambda m: words[m.group(1)], template)


def make_prompt(template: str, order: str, io: str, s: str, place: str, obj: str, family: str, third: str = "") -> IOIPrompt:
    """Fill a BABA-form template (answer [A] last) in the given name order."""
    form = swap_first_clause(template) if order == "ABBA" else template
    if not form.endswith("[A]"):
        raise ValueError(f"IOI template must end with the answer slot: {template!r}")
    thing = obj if " " in obj else f"a {obj}"
    text = fill_template(form[: -len("[A]")].rstrip(), {"A": io, "B": s, "C": third, "PLACE": place, "OBJECT": obj, "THING": thing})
    return IOIPrompt(text=text, io=io, s=s, family=family, template=template, order=order)


class CorpusSampler:
    """Draws training sequences from a seed; the same seed gives the same corpus."""

    def __init__(
        self,
        seed: int,
        mix: dict[str, float] | None = None,
        prefix_share: float = PREFIX_SHARE,
        continuation_share: float = CONTINUATION_SHARE,
        prefix_io_share: float = PREFIX_IO_SHARE,
        odd_one_out_share: float = ODD_ONE_OUT_SHARE,
    ) -> None:
        self.rng = random.Random(seed)
        self.words = load_word_lists()
        self.mix = dict(mix or DEFAULT_MIX)
        self.prefix_share = prefix_share
        self.continuation_share = continuation_share
        self.prefix_io_share = prefix_io_share
        self.odd_one_out_share = odd_one_out_share
        self._held = held_out_pairs()
        self._templates = {g: training_templates(g) for g in IOI_GROUP_MIX}

    def _pick(self, weights: dict[str, float]) -> str:
        return self.rng.choices(list(weights), weights=list(weights.values()))[0]

    def _names(self, count: int, avoid: tuple[str, ...] = ()) -> list[str]:
        pool = [n for n in self.words.names if n not in avoid]
        return self.rng.sample(pool, count)

    def _training_pair(self) -> tuple[str, str]:
        while True:
            io, s = self._names(2)
            if frozenset((io, s)) not in self._held:
                return io, s

    def _filler_sentence(self, name: str | None = None) -> str:
        template = self.rng.choice(FILLER_TEMPLATES if name is None else [t for t in FILLER_TEMPLATES if "[NAME]" in t])
        animals = iter(self.rng.sample(self.words.animals, 2))

        def fill(match: re.Match) -> str:
            slot = match.group(1)
            if slot == "NAME":
                return name or self.rng.choice(self.words.names)
            if slot == "PLACE":
                return self.rng.choice(self.words.places + DEMO_PLACES)
            if slot == "OBJECT":
                return self.rng.choice(self.words.objects)
            return next(animals)

        return _SLOT.sub(fill, template)

    def ioi(self) -> Segments:
        group = self._pick(IOI_GROUP_MIX)
        template = self.rng.choice(self._templates[group])
        io, s = self._training_pair()
        if group == "DEMO":
            place = self.rng.choice(self.words.places + DEMO_PLACES)
            obj = self.rng.choice(DEMO_THINGS + tuple(f"a {o}" for o in self.words.objects))
        else:
            place, obj = self.rng.choice(self.words.places), self.rng.choice(self.words.objects)
        third = self._names(1, avoid=(io, s))[0]
        order = "BABA" if group == "ABC" else self.rng.choice(("BABA", "ABBA"))
        prompt = make_prompt(template, order, io, s, place, obj, group, third)
        text, other = prompt.text, ""
        if self.rng.random() < self.prefix_share:
            if self.prefix_io_share and self.rng.random() < self.prefix_io_share:
                text = f"{self._filler_sentence(io)} {text}"  # the IO is then mentioned twice
            else:
                other = self._names(1, avoid=(io, s, third))[0]
                text = f"{self._filler_sentence(other)} {text}"
        if self.continuation_share and self.rng.random() < self.continuation_share:
            return [(text, False), *self._other_continuation(io, s, third, other)]
        return [(text, False), (f" {io}", True)]

    def _other_continuation(self, io: str, s: str, third: str, other: str) -> Segments:
        """A continuation of an IOI sentence other than its indirect object; the first token is the weighted answer slot.

        The answer position is weighted whatever comes next, so the weighting
        does not bias the learned distribution towards one kind of continuation.
        """
        kind = self._pick(CONTINUATION_KINDS)
        if kind == "pronoun":
            return [(f" {self.rng.choice(PRONOUNS)}", True)]
        if kind == "article":
            return [(f" {self.rng.choice(ARTICLES)}", True), (f" {self.rng.choice(self.words.animals)}", False)]
        if kind == "other_name":
            return [(f" {self._names(1, avoid=(io, s, third, other))[0]}", True)]
        return [(f" {s}", True)]

    def odd_one_out(self) -> Segments:
        """An IOI sentence with 2 or 3 subjects: every name of the first clause but one comes again, and that one is the answer.

        The names of the first clause are in random order (so the answer's
        position tells nothing), the subjects come again in another random
        order, and no (answer, subject) pair is a held-out pair. A share
        ``prefix_share`` follows a filler sentence that names one of the
        subjects (then mentioned three times); ``continuation_share`` applies
        as to the other IOI sentences.
        """
        group = self.rng.choice(ODD_ONE_OUT_GROUPS)
        template = self.rng.choice(self._templates[group])
        k = int(self._pick({str(n): w for n, w in ODD_ONE_OUT_SUBJECTS.items()}))
        while True:
            io, *subjects = self._names(k + 1)
            if not any(frozenset((io, s)) in self._held for s in subjects):
                break
        listed = [io, *subjects]
        self.rng.shuffle(listed)
        again = list(subjects)
        self.rng.shuffle(again)
        if group == "DEMO":  # its templates name [THING], the paper's [OBJECT]
            place = self.rng.choice(self.words.places + DEMO_PLACES)
            thing = self.rng.choice(DEMO_THINGS + tuple(f"a {o}" for o in self.words.objects))
            obj = ""
        else:
            place, obj = self.rng.choice(self.words.places), self.rng.choice(self.words.objects)
            thing = f"a {obj}"
        form = template.replace("[B] and [A]", "[LIST]", 1)
        text = fill_template(form[: -len("[A]")].rstrip(), {
            "LIST": _name_list(listed), "B": _name_list(again), "PLACE": place, "OBJECT": obj, "THING": thing,
        })
        if self.rng.random() < self.prefix_share:
            text = f"{self._filler_sentence(self.rng.choice(subjects))} {text}"
        if self.continuation_share and self.rng.random() < self.continuation_share:
            middle = subjects[1] if len(subjects) > 2 else ""  # every name of the sentence is avoided by "a new name"
            return [(text, False), *self._other_continuation(io, subjects[0], subjects[-1], middle)]
        return [(text, False), (f" {io}", True)]

    def roll_call(self) -> Segments:
        segments: Segments = [(ROLL_CALL_OPENING, False)]
        called: list[str] = []
        for index in range(self.rng.randint(4, 9)):
            if called and self.rng.random() < 0.35:
                name = self.rng.choice(called)
            else:
                name = self._names(1, avoid=tuple(called))[0]
            if index:
                segments.append((",", False))
            segments.append((f" {name}", False))
            if name in called:
                segments.append((ROLL_CALL_REPEAT, True))
            called.append(name)
        segments.append((".", False))
        return segments

    def induction(self) -> Segments:
        pool = self.words.names + self.words.animals + self.words.objects + self.words.places
        run = " ".join(self.rng.sample(pool, self.rng.randint(*INDUCTION_RUN_WORDS)))
        return [(f" {run}", False), (f" {run}", False)]

    def filler(self) -> Segments:
        return [(" ".join(self._filler_sentence() for _ in range(self.rng.randint(1, 4))), False)]

    def next_kind(self) -> str:
        """Draw the kind of the next sequence (a key of ``mix``; also the method that builds it)."""
        return self._pick(self.mix)

    def sample(self) -> Segments:
        if self.odd_one_out_share and self.rng.random() < self.odd_one_out_share:
            return self.odd_one_out()
        return getattr(self, self.next_kind())()


def _name_list(names: list[str]) -> str:
    """ "A and B", "A, B and C" """
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def eval_prompts(seed: int, per_family: int, held_out_templates: bool) -> dict[str, list[IOIPrompt]]:
    """Fresh prompts per evaluation family.

    With ``held_out_templates`` False: training templates with held-out name
    pairs only. With True: each family's held-out template (never trained)
    with any names.
    """
    rng = random.Random(seed)
    words = load_word_lists()
    held = sorted(tuple(sorted(p)) for p in held_out_pairs())
    out: dict[str, list[IOIPrompt]] = {}
    for family, group, orders in EVAL_FAMILIES:
        templates = (HELD_OUT_TEMPLATES[group],) if held_out_templates else training_templates(group)
        prompts = []
        for index in range(per_family):
            if held_out_templates:
                io, s = rng.sample(words.names, 2)
            else:
                io, s = rng.sample(rng.choice(held), 2)
            prompts.append(
                make_prompt(
                    templates[index % len(templates)],
                    orders[index % len(orders)],
                    io,
                    s,
                    rng.choice(words.places),
                    rng.choice(words.objects),
                    family,
                )
            )
        out[family] = prompts
    return out


def vocabulary_words() -> list[str]:
    """Every word and punctuation mark the corpus, the paper and the demo use."""
    words = load_word_lists()
    texts: list[str] = [ROLL_CALL_OPENING, ROLL_CALL_REPEAT, *DEMO_THINGS, *DEMO_PLACES, *DEMO_TEMPLATES]
    texts += [t for group in PAPER_GROUPS for t in paper_templates(group)]
    texts += list(FILLER_TEMPLATES) + [p[0] for p in DEMO_PROMPTS] + [SANITY_PROMPT[0]]
    texts += list(words.names + words.places + words.objects + words.animals) + [EXTRA_PUNCTUATION]
    texts += [*PRONOUNS, *ARTICLES]  # last, so that the earlier words keep their ids
    found: dict[str, None] = {}
    for text in texts:
        for word in re.findall(r"[A-Za-z]+|[^\sA-Za-z]", _SLOT.sub(" ", text)):
            found[word] = None
    return list(found)
