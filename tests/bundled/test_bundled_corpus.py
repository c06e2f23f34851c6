"""The training corpus: seeded, covers every kind of sequence, keeps the held-out templates and pairs out."""

from __future__ import annotations

import re
from collections import Counter

from ioi_desktop.bundled import corpus


def _texts(seed: int, count: int) -> list[list[tuple[str, bool]]]:
    sampler = corpus.CorpusSampler(seed)
    return [sampler.sample() for _ in range(count)]


def test_same_seed_same_corpus_and_other_seed_differs():
    assert _texts(5, 50) == _texts(5, 50)
    assert _texts(5, 50) != _texts(6, 50)


def test_swap_first_clause_turns_baba_into_abba():
    template = "Then, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]"
    assert corpus.swap_first_clause(template) == "Then, [A] and [B] went to the [PLACE]. [B] gave a [OBJECT] to [A]"


def test_ioi_sequences_end_with_the_weighted_indirect_object():
    sampler = corpus.CorpusSampler(1)
    for _ in range(300):
        (text, weighted), (answer, answer_weighted) = sampler.ioi()
        assert not weighted and answer_weighted
        io = answer.strip()
        assert len(re.findall(rf"\b{io}\b", text)) == 1  # the IO is mentioned once, in the first clause


def test_held_out_templates_and_pairs_never_trained():
    held_pairs = corpus.held_out_pairs()
    held_texts = {
        re.escape(t).replace(r"\[B\]", r"\w+").replace(r"\[A\]", r"\w+").replace(r"\[PLACE\]", r"\w+").replace(r"\[OBJECT\]", r"\w+")
        for t in corpus.HELD_OUT_TEMPLATES.values()
    }
    sampler = corpus.CorpusSampler(2)
    for _ in range(2000):
        (text, _), (answer, _) = sampler.ioi()
        io = answer.strip()
        names = set(re.findall(r"\b[A-Z][a-z]+\b", text)) & set(corpus.load_word_lists().names)
        repeated = [n for n in names if len(re.findall(rf"\b{n}\b", text)) == 2]
        if len(repeated) == 1:  # BABA/ABBA-style sentence (ABC ones repeat two names)
            assert frozenset((io, repeated[0])) not in held_pairs
        for pattern in held_texts:
            assert not re.search(pattern, text), text


def test_mix_contains_every_kind_and_roll_call_marks_repeats():
    sampler = corpus.CorpusSampler(4)
    kinds = Counter()
    for _ in range(600):
        kind = sampler.next_kind()
        segments = getattr(sampler, kind)()
        kinds[kind] += 1
        if kind == "roll_call":
            seen = set()
            for i, (piece, weighted) in enumerate(segments):
                if piece == corpus.ROLL_CALL_REPEAT:
                    assert weighted and segments[i - 1][0] in seen
                elif piece.startswith(" "):
                    if i + 1 < len(segments) and segments[i + 1][0] != corpus.ROLL_CALL_REPEAT:
                        assert piece not in seen
                    seen.add(piece)
    assert set(kinds) == set(corpus.DEFAULT_MIX)


def test_eval_prompts_use_held_out_pairs_and_templates():
    held = corpus.held_out_pairs()
    by_family = corpus.eval_prompts(0, 10, held_out_templates=False)
    assert [f for f, _, _ in corpus.EVAL_FAMILIES] == list(by_family)
    for prompts in by_family.values():
        assert all(frozenset((p.io, p.s)) in held for p in prompts)
    templates = set(corpus.HELD_OUT_TEMPLATES.values())
    for prompts in corpus.eval_prompts(0, 10, held_out_templates=True).values():
        assert all(p.template in templates for p in prompts)
    assert {p.order for p in by_family["ABBA"]} == {"ABBA"} and {p.order for p in by_family["long"]} == {"BABA", "ABBA"}


def test_duplicate_score_takes_the_weaker_name_order():
    import numpy as np

    from ioi_desktop.bundled import evaluate

    # Head 0 attends to whichever name sits second in the first clause: S1 in ABBA prompts only.
    # Head 1 attends to S1 in both orders, as a duplicate-token head does.
    attention = {
        "s2_to_s1": [[0.5, 0.6]],
        "s2_to_s1_by_order": {"ABBA": [[0.98, 0.55]], "BABA": [[0.02, 0.65]]},
    }
    np.testing.assert_allclose(evaluate.duplicate_scores(attention), [[0.02, 0.55]])
    # Without per-order numbers (older reports) the mean is all there is.
    np.testing.assert_allclose(evaluate.duplicate_scores({"s2_to_s1": [[0.5, 0.6]]}), [[0.5, 0.6]])


def test_other_continuations_replace_the_answer_in_their_share_only():
    """About 40% of IOI sentences continue with a pronoun, an article, a new name or the subject; the slot stays weighted."""
    names = set(corpus.load_word_lists().names)
    sampler = corpus.CorpusSampler(7, continuation_share=0.4)
    kinds = Counter()
    n = 4000
    for _ in range(n):
        segments = sampler.ioi()
        text, (answer, weighted) = segments[0][0], segments[1]
        assert weighted and all(not w for _, w in segments[2:])  # the answer slot alone is weighted
        word = answer.strip()
        if word in corpus.PRONOUNS:
            kinds["pronoun"] += 1
        elif word in corpus.ARTICLES:
            kinds["article"] += 1
            assert segments[2][0].strip() in corpus.load_word_lists().animals
        else:
            assert word in names
            kinds["named before" if re.search(rf"\b{word}\b", text) else "new name"] += 1
    expected = {"pronoun": 0.4 * 0.45, "article": 0.4 * 0.30, "new name": 0.4 * 0.22, "named before": 0.6 + 0.4 * 0.03}
    for kind, share in expected.items():
        assert abs(kinds[kind] / n - share) < 0.025, (kind, kinds[kind] / n)
    # Without the share, every IOI sentence still ends with the indirect object (the original corpus).
    plain = corpus.CorpusSampler(7)
    assert all(len(plain.ioi()) == 2 for _ in range(300))


def test_earlier_sentence_names_the_io_in_its_share_only():
    """With prefix_io_share, that share of the earlier sentences mentions the IO, so the IO is named twice before the answer."""
    sampler = corpus.CorpusSampler(8, prefix_share=1.0, prefix_io_share=0.5)
    n, twice = 2000, 0
    for _ in range(n):
        (text, _), (answer, weighted) = sampler.ioi()
        io, = re.findall(r"\w+", answer)
        mentions = [m.start() for m in re.finditer(rf"\b{io}\b", text)]
        assert weighted and len(mentions) in (1, 2)
        if len(mentions) == 2:
            twice += 1
            earlier = text[: text.index(". ") + 1]  # the filler sentence in front of the IOI sentence
            assert mentions[0] < len(earlier) < mentions[1], text
    assert abs(twice / n - 0.5) < 0.04, twice / n
    # Without it every earlier sentence names someone else: the IO is mentioned once (as in the original corpus).
    other = corpus.CorpusSampler(8, prefix_share=1.0)
    for _ in range(300):
        (text, _), (answer, _) = other.ioi()
        assert len(re.findall(rf"\b{answer.strip()}\b", text)) == 1


def test_without_odd_one_out_sentences_the_corpus_is_the_one_before_the_option():
    """Share 0 draws the same sequences as the corpus before odd-one-out sentences existed (digests taken from that code)."""
    import hashlib
    import json

    def digest(sampler):
        return hashlib.sha256(json.dumps([sampler.sample() for _ in range(500)]).encode()).hexdigest()[:16]

    assert digest(corpus.CorpusSampler(5, continuation_share=0.3, odd_one_out_share=0.0)) == "f00a0a6ef06c4a81"
    assert digest(corpus.CorpusSampler(9)) == "d3588400b0468814"
    assert digest(corpus.CorpusSampler(9, odd_one_out_share=0.2)) != "d3588400b0468814"


def test_odd_one_out_sentences_repeat_every_name_but_the_answer():
    """The first clause lists the answer and 2 or 3 subjects in random order; the later text names every subject again, never the answer."""
    names = set(corpus.load_word_lists().names)
    held = corpus.held_out_pairs()
    sampler = corpus.CorpusSampler(12, prefix_share=0.3, odd_one_out_share=1.0)
    # The held-out templates, with any names, places or objects in their slots.
    slot = {"A": "[A-Z][a-z]+", "B": "[A-Z][a-z]+(?:(?:, | and )[A-Z][a-z]+)*", "PLACE": "[a-z]+", "OBJECT": "[a-z]+"}
    held_out = [
        "(?:^|\\. )" + re.sub(r"\\\[([A-Z]+)\\\]", lambda m: slot[m.group(1)], re.escape(t.rsplit(" [A]", 1)[0])) + "$"
        for t in corpus.HELD_OUT_TEMPLATES.values()
    ]
    assert all(re.search(pattern, make.text) for pattern, make in zip(held_out, (
        corpus.make_prompt(t, "BABA", "Mary", "John", "park", "ball", "x") for t in corpus.HELD_OUT_TEMPLATES.values())))
    n, subject_counts, answer_slots, thrice = 1500, Counter(), Counter(), 0
    for _ in range(n):
        segments = sampler.sample()
        (text, weighted), (answer, answer_weighted) = segments
        assert not weighted and answer_weighted
        io = answer.strip()
        mentioned = [w for w in re.findall(r"[A-Z][a-z]+", text) if w in names]
        counts = Counter(mentioned)
        assert counts[io] == 1, text  # the answer is the one name said once
        subjects = [w for w in counts if w != io]
        assert all(counts[s] >= 2 for s in subjects), text
        assert not any(frozenset((io, s)) in held for s in subjects)
        thrice += any(counts[s] == 3 for s in subjects)
        subject_counts[len(subjects)] += 1
        listing = re.search(r"((?:[A-Z][a-z]+, )+[A-Z][a-z]+ and [A-Z][a-z]+)", text).group(1)
        listed = [w for w in re.findall(r"[A-Z][a-z]+", listing) if w in names]
        assert io in listed and len(listed) == len(subjects) + 1
        answer_slots[listed.index(io)] += 1
        assert not any(re.search(pattern, text) for pattern in held_out), text
    for k, share in corpus.ODD_ONE_OUT_SUBJECTS.items():
        assert abs(subject_counts[k] / n - share) < 0.04, subject_counts
    assert min(answer_slots[i] for i in range(3)) > 0.2 * n  # the answer is first, second or third alike
    assert abs(thrice / n - 0.3) < 0.04  # a subject named in the earlier sentence too
    # A share of all sequences, the rest drawn as before.
    mixed = corpus.CorpusSampler(13, odd_one_out_share=0.25)
    drawn = Counter()
    for kind in ("odd_one_out", *corpus.DEFAULT_MIX):
        build = getattr(mixed, kind)
        setattr(mixed, kind, lambda build=build, kind=kind: drawn.update([kind]) or build())
    for _ in range(4000):
        mixed.sample()
    assert abs(drawn["odd_one_out"] / 4000 - 0.25) < 0.02
    for kind, share in corpus.DEFAULT_MIX.items():
        assert abs(drawn[kind] / 4000 - 0.75 * share) < 0.02, (kind, drawn)
