"""Fixtures for the robustness tests: tiny models, pairs files, an isolated user-data folder.

Models: the bundled one (closed word vocabulary, context 64) where a case is
about it; a tiny random GPT-2 with GPT-2's real byte-level tokenizer for the
cases only an open vocabulary shows (multi-token names, emoji that tokenize).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("IOI_DESKTOP_THREADS", "1")


@pytest.fixture(autouse=True)
def isolated_user_data(tmp_path, monkeypatch):
    """Logs and settings go to a temporary folder, never the real user's."""
    folder = tmp_path / "user-data"
    monkeypatch.setenv("IOI_DESKTOP_DATA", str(folder))
    return folder


@pytest.fixture(scope="session")
def word_model_dir(tmp_path_factory) -> Path:
    """A random 2-layer GPT-2 with the demo-word closed tokenizer."""
    import torch

    torch.set_num_threads(1)
    from tests.support.tiny_models import save_tiny_gpt2

    return save_tiny_gpt2(tmp_path_factory.mktemp("robust-word") / "tiny-gpt2", n_head=4, n_embd=32)


@pytest.fixture(scope="session")
def gpt2_model_dir(tmp_path_factory) -> Path:
    """A random 1-layer GPT-2 (d_model 16) with GPT-2's real tokenizer (50,257 tokens)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from tests.support.tiny_models import make_gpt2_tokenizer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    tokenizer = make_gpt2_tokenizer()
    folder = tmp_path_factory.mktemp("robust-gpt2") / "gpt2-tiny"
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=32, n_embd=16, n_layer=1, n_head=2,
                        bos_token_id=50256, eos_token_id=50256)
    GPT2LMHeadModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
