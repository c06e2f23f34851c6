"""Fixtures shared by every test folder: GPT-2's real tokenizer (no network)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

GPT2_TOKENIZER_DIR = Path(__file__).parent / "data" / "gpt2-tokenizer"


def make_gpt2_tokenizer():
    """GPT-2's byte-level BPE tokenizer built from the vocab/merges in tests/data (see its README)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE.from_file(
        str(GPT2_TOKENIZER_DIR / "vocab.json"), str(GPT2_TOKENIZER_DIR / "merges.txt")
    ))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )


@pytest.fixture(scope="session")
def gpt2_tokenizer():
    return make_gpt2_tokenizer()
