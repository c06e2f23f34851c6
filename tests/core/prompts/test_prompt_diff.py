"""core.prompt_diff: the spans the prompt editor highlights, with GPT-2's tokenizer and without one."""

from __future__ import annotations

from ioi_desktop.core.prompt_diff import differing_spans

from tests.support.tiny_models import make_gpt2_tokenizer

CLEAN = "When John and Mary went to the shops, John gave the bag to"
CORRUPT = "When John and Mary went to the shops, Mary gave the bag to"


def words(text, spans):
    return [text[a:b] for a, b in spans]


def test_a_name_swap_marks_the_swapped_name_in_both_prompts():
    tokenizer = make_gpt2_tokenizer()
    for tok in (tokenizer, None):
        clean, corrupt = differing_spans(CLEAN, CORRUPT, tok)
        assert words(CLEAN, clean) == ["John"] and words(CORRUPT, corrupt) == ["Mary"]
        # The marked John is S2, not S1: same position as in the corrupted prompt.
        assert clean[0][0] == CLEAN.rindex("John")


def test_equal_prompts_mark_nothing_and_an_insertion_marks_only_the_new_words():
    assert differing_spans(CLEAN, CLEAN, make_gpt2_tokenizer()) == ([], [])
    longer = CLEAN.replace("went to", "went happily to")
    clean, corrupt = differing_spans(CLEAN, longer)
    assert clean == [] and words(longer, corrupt) == ["happily"]


def test_differences_only_spaces_apart_merge_and_equal_words_between_split_them():
    clean, corrupt = differing_spans("Then, John and Mary", "After that, Tom and Mary")
    assert words("Then, John and Mary", clean) == ["Then", "John"]  # the comma is the same in both
    assert words("After that, Tom and Mary", corrupt) == ["After that", "Tom"]
