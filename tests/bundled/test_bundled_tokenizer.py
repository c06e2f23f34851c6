"""The bundled model's word-level tokenizer: single-token names, equal-length demo prompts, unknown words."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ioi_desktop.bundled import corpus
from ioi_desktop.bundled.tokenizer import BOS_TOKEN, UNK_TOKEN, build_tokenizer, unknown_words


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def test_special_tokens(tokenizer):
    assert tokenizer.convert_tokens_to_ids(BOS_TOKEN) == 0
    assert tokenizer.bos_token_id == tokenizer.eos_token_id == 0
    assert tokenizer.unk_token == UNK_TOKEN


def test_every_name_is_one_token_with_a_leading_space(tokenizer):
    for name in corpus.load_word_lists().names + corpus.DEMO_NAMES:
        ids = tokenizer(f" {name}", add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, name
        assert tokenizer.convert_ids_to_tokens(ids[0]) == f"Ġ{name}"
        assert ids[0] != tokenizer.unk_token_id


def test_demo_prompts_are_fifteen_tokens_with_bos(tokenizer):
    lengths = {1 + len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p, _, _ in corpus.DEMO_PROMPTS}
    assert lengths == {15}
    for prompt, _, _ in corpus.DEMO_PROMPTS + (corpus.SANITY_PROMPT,):
        assert unknown_words(tokenizer, prompt) == []


def test_unknown_words_become_unk_and_are_named(tokenizer):
    ids = tokenizer("Then, Mary met a zebra!", add_special_tokens=False)["input_ids"]
    assert ids.count(tokenizer.unk_token_id) == 2  # "met" and "zebra"
    assert unknown_words(tokenizer, "Then, Mary met a zebra! The zebra left.") == ["met", "zebra", "left"]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_any_text_tokenizes(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert all(0 <= i < len(tokenizer) for i in ids)
    unknown_words(tokenizer, text)


def test_corpus_has_no_unknown_words(tokenizer):
    sampler = corpus.CorpusSampler(seed=3)
    for _ in range(400):
        text = "".join(piece for piece, _ in sampler.sample())
        assert tokenizer.unk_token_id not in tokenizer(text, add_special_tokens=False)["input_ids"], text


def test_saved_tokenizer_loads_offline_with_autotokenizer(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(str(tmp_path))
    loaded = AutoTokenizer.from_pretrained(str(tmp_path))
    prompt = corpus.DEMO_PROMPTS[0][0]
    assert loaded(prompt)["input_ids"] == tokenizer(prompt)["input_ids"]
    assert loaded.bos_token == BOS_TOKEN and loaded.unk_token == UNK_TOKEN
    assert loaded.decode(loaded(prompt, add_special_tokens=False)["input_ids"]) == prompt
