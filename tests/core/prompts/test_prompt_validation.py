"""Validation findings, tokenization and named positions (core/prompts.py)."""

from __future__ import annotations

import numpy as np
import pytest

from ioi_desktop.core.errors import PromptError
from ioi_desktop.core.pairs import notebook_prompt_set
from ioi_desktop.core.prompts import (
    PairMeta,
    PromptPair,
    PromptSet,
    render_prompt,
    role_spans,
    tokenize_set,
    validate,
)

DEMO = "When John and Mary went to the shops, John gave the bag to"
DEMO_CORRUPT = "When John and Mary went to the shops, Mary gave the bag to"


def _one(clean=DEMO, corrupt=DEMO_CORRUPT, correct=" Mary", incorrect=" John", meta=PairMeta()):
    return PromptSet((PromptPair(clean, corrupt, correct, incorrect, meta),))


def _codes(findings):
    return [(f.severity, f.pair_index, f.field, f.code) for f in findings]


def test_gpt2_facts_from_the_demo(gpt2_tokenizer):
    assert gpt2_tokenizer.encode(" Mary", add_special_tokens=False) == [5335]
    batch = tokenize_set(notebook_prompt_set(), gpt2_tokenizer)
    assert batch.clean_tokens.shape == (8, 15)
    assert batch.equal_length
    assert batch.clean_tokens.dtype == np.int64 and batch.corrupt_tokens.dtype == np.int64
    assert (batch.clean_tokens[:, 0] == 50256).all()
    assert batch.str_tokens[0] == ["<|endoftext|>", "When", " John", " and", " Mary", " went", " to", " the",
                                   " shops", ",", " John", " gave", " the", " bag", " to"]
    assert batch.correct_ids[0] == 5335
    assert list(batch.lengths) == [15] * 8 and list(batch.end_pos) == [14] * 8


def test_notebook_roles_and_answers(gpt2_tokenizer):
    batch = tokenize_set(notebook_prompt_set(), gpt2_tokenizer)
    # Demo order: prompt 0 "When John and Mary ..., John" (IO Mary at 4), prompt 1 "..., Mary" (IO John at 2).
    assert list(batch.roles["IO"]) == [4, 2, 2, 4, 2, 4, 2, 4]
    assert list(batch.roles["S1"]) == [2, 4, 4, 2, 4, 2, 4, 2]
    assert list(batch.roles["S2"]) == [10] * 8
    assert list(batch.roles["END"]) == [14] * 8
    assert list(batch.roles["S1+1"]) == list(batch.roles["S1"] + 1)
    assert list(batch.roles["punct"]) == [9] * 8
    assert "C" not in batch.roles
    for row, tokens in enumerate(batch.str_tokens):
        assert tokens[batch.roles["IO"][row]] == gpt2_tokenizer.decode([int(batch.correct_ids[row])])
        assert tokens[batch.roles["S2"][row]] == gpt2_tokenizer.decode([int(batch.incorrect_ids[row])])
    # The adjacent swap: each corrupted prompt is its partner's clean prompt.
    np.testing.assert_array_equal(batch.corrupt_tokens, batch.clean_tokens[[1, 0, 3, 2, 5, 4, 7, 6]])


def test_bundled_tokenizer_tokenizes_the_demo_alike(bundled_tokenizer):
    batch = tokenize_set(notebook_prompt_set(), bundled_tokenizer)
    assert batch.clean_tokens.shape == (8, 15)
    assert batch.clean_tokens[0, 0] == bundled_tokenizer.bos_token_id
    assert list(batch.roles["IO"]) == [4, 2, 2, 4, 2, 4, 2, 4]
    assert list(batch.roles["S2"]) == [10] * 8


def test_a_valid_set_has_no_findings(gpt2_tokenizer, bundled_tokenizer):
    assert validate(notebook_prompt_set(), gpt2_tokenizer, n_ctx=1024) == []
    assert validate(notebook_prompt_set(), bundled_tokenizer, n_ctx=64) == []


def test_multi_token_answer_is_named_with_its_pieces(gpt2_tokenizer):
    findings = validate(_one(correct=" Marylouise"), gpt2_tokenizer)
    (error,) = [f for f in findings if f.severity == "error"]
    assert (error.pair_index, error.field, error.code) == (0, "correct", "answer-not-single-token")
    assert "' Marylouise'" in error.message and "tokens" in error.message
    assert error.hint


def test_different_lengths_name_both(gpt2_tokenizer):
    findings = validate(_one(corrupt="When John and Mary went to the big shops, Mary gave the bag to"), gpt2_tokenizer)
    (error,) = findings
    assert (error.code, error.field, error.pair_index) == ("length-mismatch", "corrupt", 0)
    assert "15" in error.message and "16" in error.message


def test_unknown_words_are_reported_with_the_word(bundled_tokenizer):
    findings = validate(_one(clean="When John and Mary went to the zorgplex, John gave the bag to",
                             corrupt="When John and Mary went to the zorgplex, Mary gave the bag to"),
                        bundled_tokenizer)
    errors = [f for f in findings if f.code == "unknown-words"]
    assert {f.field for f in errors} == {"clean", "corrupt"}
    assert all("'zorgplex'" in f.message for f in errors)


def test_unknown_answer(bundled_tokenizer):
    findings = validate(_one(correct=" Zorg"), bundled_tokenizer)
    assert ("error", 0, "correct", "unknown-answer") in _codes(findings)


def test_too_long_for_the_context(gpt2_tokenizer):
    findings = validate(_one(), gpt2_tokenizer, n_ctx=10)
    assert [f.code for f in findings] == ["too-long", "too-long"]
    assert "15 tokens" in findings[0].message and "10" in findings[0].message


def test_empty_set_and_empty_fields(gpt2_tokenizer):
    assert _codes(validate(PromptSet(()), gpt2_tokenizer)) == [("error", None, None, "empty-set")]
    codes = _codes(validate(_one(clean="  ", correct=""), gpt2_tokenizer))
    assert ("error", 0, "clean", "empty-prompt") in codes
    assert ("error", 0, "correct", "empty-answer") in codes


def test_same_answers_and_missing_space(gpt2_tokenizer):
    assert ("error", 0, "incorrect", "same-answers") in _codes(validate(_one(incorrect=" Mary"), gpt2_tokenizer))
    assert ("warning", 0, "correct", "answer-without-space") in _codes(validate(_one(correct="Mary"), gpt2_tokenizer))


def test_missing_roles_warn_when_equal_length_and_fail_otherwise(gpt2_tokenizer):
    no_io = PromptPair("When John and Tom went to the shops, John gave the bag to",
                       "When John and Tom went to the shops, Tom gave the bag to", " Mary", " John")
    longer = PromptPair("When John and Mary went to the big shops, John gave the bag to",
                        "When John and Mary went to the big shops, Mary gave the bag to", " Mary", " John")
    equal = validate(PromptSet((no_io,)), gpt2_tokenizer)
    assert _codes(equal) == [("warning", 0, "clean", "missing-roles")]
    mixed = validate(PromptSet((no_io, longer)), gpt2_tokenizer)
    assert _codes(mixed) == [("error", 0, "clean", "missing-roles")]
    assert "IO" in mixed[0].message and "differ in length" in mixed[0].message


def test_tokenize_set_raises_the_first_error(gpt2_tokenizer):
    with pytest.raises(PromptError, match="Pair 0: the correct answer ' Marylouise'"):
        tokenize_set(_one(correct=" Marylouise"), gpt2_tokenizer)


def test_mixed_lengths_are_right_padded(gpt2_tokenizer):
    longer = PromptPair("When John and Mary went to the big shops, John gave the bag to",
                        "When John and Mary went to the big shops, Mary gave the bag to", " Mary", " John")
    batch = tokenize_set(PromptSet(_one().pairs + (longer,)), gpt2_tokenizer)
    assert not batch.equal_length
    assert list(batch.lengths) == [15, 16] and list(batch.end_pos) == [14, 15]
    assert batch.clean_tokens.shape == (2, 16)
    assert batch.clean_tokens[0, 15] == batch.pad_id == 50256
    assert list(batch.roles["S2"]) == [10, 11]
    assert len(batch.str_tokens[0]) == 15 and len(batch.str_tokens[1]) == 16


def test_roles_inferred_from_text_for_user_pairs(gpt2_tokenizer):
    # The IO name also appears inside a longer word; only whole words count.
    pair = PromptPair("Then Maryann, Mary and John met. John thanked Mary and John said to",
                      "Then Maryann, Mary and John met. Mary thanked Mary and John said to", " Mary", " John")
    spans = role_spans(pair)
    assert pair.clean[slice(*spans["IO"])] == "Mary" and spans["IO"][0] == pair.clean.index(" Mary and") + 1
    assert spans["S1"][0] == pair.clean.index("John")
    assert spans["S2"][0] == pair.clean.rindex("John")
    assert pair.clean[spans["punct"][0]] == "."
    batch = tokenize_set(PromptSet((pair,)), gpt2_tokenizer)
    tokens = batch.str_tokens[0]
    assert tokens[batch.roles["IO"][0]] == " Mary"
    assert tokens[batch.roles["S1"][0]] == " John" and tokens[batch.roles["S2"][0]] == " John"
    assert batch.roles["S2"][0] == len(tokens) - 3


def test_template_metadata_wins_over_text_search(gpt2_tokenizer):
    # A place named like the subject: text search would take it for S1, the template knows better.
    template = "At [PLACE] [B] met [A], and then [B] gave a [OBJECT] to [A]"
    values = {"A": "Mary", "B": "Paris", "PLACE": "Paris", "OBJECT": "book"}
    text = render_prompt(template, values).text
    assert text == "At Paris Paris met Mary, and then Paris gave a book to"
    meta = PairMeta(template=template, io="Mary", s="Paris", place="Paris", object="book")
    pair = PromptPair(text, text.replace("then Paris", "then Mary"), " Mary", " Paris", meta)
    assert role_spans(pair)["S1"][0] == len("At Paris ")
    without = PromptPair(pair.clean, pair.corrupt, pair.correct, pair.incorrect)
    assert role_spans(without)["S1"][0] == len("At ")


def test_multi_token_names_warn_and_use_the_first_token(gpt2_tokenizer):
    pair = PromptPair("When Zyxwvut and Mary went out, Zyxwvut gave a bag to",
                      "When Zyxwvut and Mary went out, Zyxwvut gave a cup to", " Mary", " John",
                      PairMeta(s="Zyxwvut"))
    findings = validate(PromptSet((pair,)), gpt2_tokenizer)
    warnings = [f for f in findings if f.code == "name-not-single-token"]
    assert warnings and "Zyxwvut" in warnings[0].message
    batch = tokenize_set(PromptSet((pair,)), gpt2_tokenizer)
    # " Zyxwvut" is 5 GPT-2 tokens: S1 is the first, S1+1 the token after the whole name.
    assert batch.str_tokens[0][batch.roles["S1"][0]] == " Z"
    assert batch.str_tokens[0][batch.roles["S1+1"][0]] == " and"
