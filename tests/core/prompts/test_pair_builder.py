"""The pair builder: every family and corruption scheme, determinism, word lists, presets."""

from __future__ import annotations

import numpy as np
import pytest

from ioi_desktop.core.errors import PromptError
from ioi_desktop.core.pairfiles import prompt_set_to_json
from ioi_desktop.core.pairs import (
    CORRUPTIONS,
    FAMILIES,
    PRESETS,
    BuilderSettings,
    WordLists,
    build_pairs,
    default_word_lists,
    family_templates,
    notebook_prompt_set,
    preset_prompt_set,
    swap_first_clause,
)
from ioi_desktop.core.prompts import template_slots, tokenize_set, validate

BUILT_IN = [f for f in FAMILIES if f != "custom"]
NAME_ROLES = ("IO", "S1", "S2")
# Which named positions each scheme changes in the corrupted prompt (the rest must stay identical).
CHANGED = {
    "io-rand": {"IO"}, "s-rand": {"S1", "S2"}, "s1-rand": {"S1"}, "s2-rand": {"S2"}, "s2-io": {"S2"},
    "io-animal": {"IO"}, "s-animal": {"S1", "S2"}, "abc": {"IO", "S1", "S2", "C"}, "swap": {"S2"},
}


def _check_built_set(report, tokenizer, settings):
    prompt_set = report.prompt_set
    assert len(prompt_set) == settings.n
    assert validate(prompt_set, tokenizer) == []
    batch = tokenize_set(prompt_set, tokenizer)
    names = set(default_word_lists().names)
    for row, pair in enumerate(prompt_set):
        meta = pair.meta
        tokens = batch.str_tokens[row]
        length = int(batch.lengths[row])
        # Answers are the clean prompt's IO and S.
        assert (pair.correct, pair.incorrect) == (" " + meta.io, " " + meta.s)
        assert meta.io != meta.s and {meta.io, meta.s} <= names
        # Names by role land where they should.
        assert tokens[batch.roles["IO"][row]].strip() == meta.io
        assert tokens[batch.roles["S1"][row]].strip() == meta.s
        assert tokens[batch.roles["S2"][row]].strip() == meta.s
        assert batch.roles["S1"][row] < batch.roles["S2"][row]
        assert batch.roles["END"][row] == length - 1
        assert batch.roles["S1+1"][row] == batch.roles["S1"][row] + 1
        punct = batch.roles["punct"][row]
        if punct >= 0:
            assert tokens[punct].strip() in {",", "."}
            assert max(batch.roles["IO"][row], batch.roles["S1"][row]) < punct < batch.roles["S2"][row]
        if "C" in template_slots(meta.template):
            assert tokens[batch.roles["C"][row]].strip() == meta.c
        assert meta.family in FAMILIES or meta.family in {"BAC"}
        assert meta.corruption == settings.corruption and meta.seed == settings.seed
        # Clean and corrupted prompts are aligned token for token.
        clean = batch.clean_tokens[row, :length]
        corrupt = batch.corrupt_tokens[row, :length]
        assert len(tokens) == len(batch.corrupt_str_tokens[row]) == length
        changed = {i for i in range(length) if clean[i] != corrupt[i]}
        roles = {r: int(batch.roles[r][row]) for r in batch.roles if batch.roles[r][row] >= 0}
        if settings.corruption == "prefix":
            assert changed and max(changed) < min(roles["IO"], roles["S1"])
        else:
            expected = {roles[r] for r in CHANGED[settings.corruption] if r in roles}
            if "C" in CHANGED[settings.corruption] and meta.c:
                # A third name occurs twice; both occurrences are replaced.
                expected |= {i for i, t in enumerate(tokens) if t.strip() == meta.c}
            assert changed == expected, (pair.clean, pair.corrupt)
        if settings.corruption in ("s2-io", "swap"):
            assert corrupt[roles["S2"]] == clean[roles["IO"]]
        if settings.corruption == "abc":
            fresh = {batch.corrupt_str_tokens[row][roles[r]].strip() for r in ("IO", "S1", "S2", "C") if r in roles}
            assert len(fresh) == len({r for r in ("IO", "S1", "S2", "C") if r in roles})
            assert not fresh & {meta.io, meta.s, meta.c}
        if settings.corruption.endswith("animal"):
            animal = batch.corrupt_str_tokens[row][min(expected)].strip()
            assert animal in default_word_lists().animals
    if settings.corruption == "swap":
        pairs = prompt_set.pairs
        for index in range(0, len(pairs) - 1, 2):
            assert pairs[index].corrupt == pairs[index + 1].clean
            assert pairs[index + 1].corrupt == pairs[index].clean


@pytest.mark.parametrize("family", BUILT_IN)
@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_every_family_and_scheme_with_gpt2(family, corruption, gpt2_tokenizer):
    settings = BuilderSettings(family=family, n=6, corruption=corruption, seed=11)
    _check_built_set(build_pairs(settings, gpt2_tokenizer), gpt2_tokenizer, settings)


@pytest.mark.parametrize("family", BUILT_IN)
@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_every_family_and_scheme_with_the_bundled_tokenizer(family, corruption, bundled_tokenizer):
    settings = BuilderSettings(family=family, n=4, corruption=corruption, seed=5, symmetric=True)
    _check_built_set(build_pairs(settings, bundled_tokenizer), bundled_tokenizer, settings)


def test_families_have_the_papers_templates():
    assert len(family_templates("BABA")) == 15
    assert len(family_templates("mixed")) == 30
    baba = family_templates("BABA")[5][1]
    assert baba == "After [B] and [A] went to the [PLACE], [B] gave a [OBJECT] to [A]"
    assert family_templates("ABBA")[5][1] == "After [A] and [B] went to the [PLACE], [B] gave a [OBJECT] to [A]"
    assert family_templates("BAC")[0][1].startswith("Then, [B], [A] and [C] went")
    assert swap_first_clause(swap_first_clause(baba)) == baba
    for family in BUILT_IN:
        for variant, template in family_templates(family):
            body = template_slots(template)[:-1]
            assert body.count("B") == 2 and "A" in body, (family, template)
            assert variant in FAMILIES


def test_same_seed_same_bytes_other_seed_other_set(gpt2_tokenizer):
    settings = BuilderSettings(family="mixed", n=20, corruption="abc", seed=3, symmetric=True)
    first = prompt_set_to_json(build_pairs(settings, gpt2_tokenizer).prompt_set)
    second = prompt_set_to_json(build_pairs(settings, gpt2_tokenizer).prompt_set)
    assert first == second
    other = prompt_set_to_json(build_pairs(BuilderSettings(family="mixed", n=20, corruption="abc", seed=4,
                                                           symmetric=True), gpt2_tokenizer).prompt_set)
    assert other != first


def test_symmetric_adds_each_prompt_with_io_and_s_exchanged(gpt2_tokenizer):
    report = build_pairs(BuilderSettings(family="BABA", n=6, corruption="s2-rand", seed=2, symmetric=True),
                         gpt2_tokenizer)
    pairs = report.prompt_set.pairs
    for first, second in zip(pairs[::2], pairs[1::2]):
        assert first.meta.template == second.meta.template
        assert (first.meta.io, first.meta.s) == (second.meta.s, second.meta.io)
        assert (first.correct, first.incorrect) == (second.incorrect, second.correct)


def test_odd_n_is_respected(gpt2_tokenizer):
    report = build_pairs(BuilderSettings(family="BABA", n=5, corruption="swap", seed=0), gpt2_tokenizer)
    assert len(report.prompt_set) == 5


def test_names_that_are_not_single_tokens_are_rejected_and_reported(gpt2_tokenizer, bundled_tokenizer):
    words = WordLists(names=("Mary", "John", "Tom", "Zyxwvut", "", "Mary", "Anne Marie"),
                      places=("store",), objects=("ring",), animals=("dog",))
    report = build_pairs(BuilderSettings(family="BABA", n=4, corruption="io-rand", seed=0, word_lists=words),
                         gpt2_tokenizer)
    rejected = {r.name: r.reason for r in report.rejected_names}
    assert set(rejected) == {"Zyxwvut", "", "Anne Marie"}
    assert "tokens" in rejected["Zyxwvut"]
    used = {p.meta.io for p in report.prompt_set} | {p.meta.s for p in report.prompt_set}
    assert used <= {"Mary", "John", "Tom"}
    assert report.prompt_set.meta["word_lists"]["names"][3] == "Zyxwvut"
    # The paper's names against the closed vocabulary: every one is known and kept.
    paper = build_pairs(BuilderSettings(family="BABA", n=2, corruption="abc", seed=0), bundled_tokenizer)
    assert paper.rejected_names == ()


def test_too_few_names_is_a_clear_error(gpt2_tokenizer):
    words = WordLists(names=("Mary", "Zyxwvut"), places=("store",), objects=("ring",), animals=())
    with pytest.raises(PromptError, match="Only 1 of the 2 names"):
        build_pairs(BuilderSettings(family="BABA", n=2, word_lists=words), gpt2_tokenizer)


def test_pairs_that_cannot_be_made_are_rejected_with_the_reason(gpt2_tokenizer):
    # No animal is one token: every IO->ANIMAL pair is rejected, with that reason.
    words = WordLists(names=("Mary", "John", "Tom"), places=("store",), objects=("ring",), animals=("Zyxwvut",))
    with pytest.raises(PromptError, match="no animal word is a single token"):
        build_pairs(BuilderSettings(family="BABA", n=2, corruption="io-animal", word_lists=words), gpt2_tokenizer)


def test_custom_templates(gpt2_tokenizer, bundled_tokenizer):
    template = "While [B] and [A] were at the [PLACE], [B] zorbled the [OBJECT] to [A]"
    settings = BuilderSettings(family="custom", n=6, corruption="s1-rand", seed=9, templates=(template,))
    report = build_pairs(settings, gpt2_tokenizer)
    _check_built_set(report, gpt2_tokenizer, settings)
    assert {p.meta.family for p in report.prompt_set} == {"custom"}
    assert report.prompt_set.meta["templates"] == [template]
    # A word the bundled model does not know: every pair is rejected and the error says why.
    with pytest.raises(PromptError, match="'zorbled'"):
        build_pairs(settings, bundled_tokenizer)


def test_custom_template_with_a_name_first(gpt2_tokenizer):
    # "Mary" at the very start is another token than " Mary"; positions still come from the template.
    template = "[B] and [A] went home. [B] gave a [OBJECT] to [A]"
    settings = BuilderSettings(family="custom", n=4, corruption="s2-io", seed=1, templates=(template,))
    report = build_pairs(settings, gpt2_tokenizer)
    batch = tokenize_set(report.prompt_set, gpt2_tokenizer)
    for row, pair in enumerate(report.prompt_set):
        assert batch.str_tokens[row][batch.roles["S1"][row]].strip().startswith(pair.meta.s[:1])
        assert batch.str_tokens[row][batch.roles["S2"][row]] == " " + pair.meta.s


@pytest.mark.parametrize("template, fragment", [
    ("When [B] and Mary went out, [B] gave it to [A]", "needs [A]"),
    ("When [A] went out, [B] gave it to [A]", "needs [A]"),
    ("[A]", "needs [A]"),
])
def test_bad_custom_templates(template, fragment, gpt2_tokenizer):
    with pytest.raises(PromptError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        build_pairs(BuilderSettings(family="custom", templates=(template,)), gpt2_tokenizer)


@pytest.mark.parametrize("settings, fragment", [
    (BuilderSettings(family="BABX"), "no template family 'BABX'"),
    (BuilderSettings(corruption="shuffle"), "no corruption scheme 'shuffle'"),
    (BuilderSettings(n=0), "between 1 and"),
    (BuilderSettings(n=True), "between 1 and"),
    (BuilderSettings(seed="1"), "whole number"),
    (BuilderSettings(family="custom"), "at least one template"),
    (BuilderSettings(family="BABA", templates=("[B] [A] [B] [A]",)), "family is 'BABA'"),
])
def test_bad_settings(settings, fragment, gpt2_tokenizer):
    with pytest.raises(PromptError, match=fragment):
        build_pairs(settings, gpt2_tokenizer)


def test_the_builder_respects_the_context_length(gpt2_tokenizer):
    with pytest.raises(PromptError, match="longer than the model's context of 8"):
        build_pairs(BuilderSettings(family="BABA", n=2, corruption="abc"), gpt2_tokenizer, n_ctx=8)


def test_rejections_are_counted_and_kept(gpt2_tokenizer):
    # The prefix flip cannot always find an opening of equal length; those draws are reported.
    report = build_pairs(BuilderSettings(family="BABA_LONG", n=40, corruption="prefix", seed=0), gpt2_tokenizer)
    assert report.rejected_pair_count == len(report.rejected_pairs) > 0
    assert all(r.reason and r.clean for r in report.rejected_pairs)


def test_notebook_preset_is_the_demo_set():
    prompt_set = preset_prompt_set("notebook")
    assert "notebook" in PRESETS
    expected = [
        ("When John and Mary went to the shops, John gave the bag to", " Mary", " John"),
        ("When John and Mary went to the shops, Mary gave the bag to", " John", " Mary"),
        ("When Tom and James went to the park, James gave the ball to", " Tom", " James"),
        ("When Tom and James went to the park, Tom gave the ball to", " James", " Tom"),
        ("When Dan and Sid went to the shops, Sid gave an apple to", " Dan", " Sid"),
        ("When Dan and Sid went to the shops, Dan gave an apple to", " Sid", " Dan"),
        ("After Martin and Amy went to the park, Amy gave a drink to", " Martin", " Amy"),
        ("After Martin and Amy went to the park, Martin gave a drink to", " Amy", " Martin"),
    ]
    assert [(p.clean, p.correct, p.incorrect) for p in prompt_set] == expected
    assert [p.corrupt for p in prompt_set] == [expected[i ^ 1][0] for i in range(8)]
    assert prompt_set == notebook_prompt_set()
    with pytest.raises(PromptError, match="no preset named 'demo'"):
        preset_prompt_set("demo")


def test_gui_facing_data():
    assert all(isinstance(doc, str) and doc for doc in FAMILIES.values())
    assert set(CORRUPTIONS) == {"swap", "abc", "io-rand", "s-rand", "s1-rand", "s2-rand", "s2-io",
                                "io-animal", "s-animal", "prefix"}
    assert all("\n" not in doc for doc in CORRUPTIONS.values())
    words = default_word_lists()
    assert len(words.names) == 99 and "Mary" in words.names
    assert words.places and words.objects and words.animals
    assert np.all([isinstance(n, str) for n in words.names])
