"""Fixtures for the prompt tests: the bundled model's word-level tokenizer."""

from __future__ import annotations

import pytest

from ioi_desktop.core.paths import bundled_model_dir


@pytest.fixture(scope="session")
def bundled_tokenizer():
    """The shipped model's tokenizer; built from its vocabulary when the model folder is not there yet."""
    folder = bundled_model_dir()
    if (folder / "tokenizer.json").is_file():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    from ioi_desktop.bundled.tokenizer import build_tokenizer

    return build_tokenizer()
