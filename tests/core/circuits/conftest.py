"""Fixtures: a small random GPT-2 bridge (3 layers, 2 heads: 100 edges) and 6 ABC-corrupted prompt pairs.

The model has random LayerNorm weights (so fold_ln matters) and weights ten
times HF's initial scale, so the logit difference and the edge effects are far
from 0; the corrupted prompts replace every name (ABC), so clean and corrupted
means do not cancel as the notebook's swapped pairs do on a random model.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.support.circuit_fixtures import ABC_PAIRS, save_strong_random_gpt2
from tests.support.patching_helpers import boot_processed_bridge, tokenized_pairs
from tests.support.tiny_models import make_word_tokenizer


@pytest.fixture(scope="session")
def small(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    tokenizer = make_word_tokenizer()
    folder = save_strong_random_gpt2(tmp_path_factory.mktemp("circuit-gpt2") / "m", tokenizer)
    return SimpleNamespace(model=boot_processed_bridge(folder), batch=tokenized_pairs(ABC_PAIRS, tokenizer),
                           folder=folder)


@pytest.fixture(scope="session")
def small_prep(small):
    from ioi_desktop.core.circuits import scoring

    return scoring.prepare(small.model, small.batch)
