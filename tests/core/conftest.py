"""Fixtures for core tests: tiny random GPT-2 models saved as Hugging Face folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

TINY_WORDS = (
    "When Then After and went to the store shops park , . gave a an bag ball drink apple bottle of milk "
    "John Mary Tom James Dan Sid Martin Amy"
).split()


def make_word_tokenizer(words=TINY_WORDS):
    """A closed-vocabulary tokenizer in GPT-2 style (" Mary" is one token), BOS id 0."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|endoftext|>": 0, "<unk>": 1}
    for word in words:
        for form in (word, "Ġ" + word):
            vocab.setdefault(form, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<unk>"
    )


def save_tiny_gpt2(folder: Path, *, n_layer=2, n_head=2, n_embd=16, seed=0) -> Path:
    """Write a random GPT-2 with the tiny tokenizer to ``folder`` (HF format)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = make_word_tokenizer()
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=32, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        bos_token_id=0, eos_token_id=0,
    )
    model = GPT2LMHeadModel(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return save_tiny_gpt2(tmp_path_factory.mktemp("tiny") / "tiny-gpt2")
