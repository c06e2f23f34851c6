"""Fixtures for core tests: tiny random GPT-2 models saved as Hugging Face folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.tiny_models import save_tiny_gpt2

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return save_tiny_gpt2(tmp_path_factory.mktemp("tiny") / "tiny-gpt2")
