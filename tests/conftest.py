"""Fixtures shared by every test folder: GPT-2's real tokenizer (no network)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.support.tiny_models import make_gpt2_tokenizer  # noqa: E402  (after the offline switch)


@pytest.fixture(scope="session")
def gpt2_tokenizer():
    return make_gpt2_tokenizer()
