"""Fixtures: a small random GPT-2 bridge, the notebook's prompts, TransformerLens references."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.support.patching_helpers import (
    SWEEP_NAMES,
    notebook_pairs,
    random_gpt2_bridge,
    tl_reference_cells,
    tokenized_pairs,
)


@pytest.fixture(autouse=True)
def _one_thread_quiet_tl(monkeypatch):
    import torch
    import transformer_lens.patching as tl_patching

    torch.set_num_threads(1)
    # TL's sweeps draw a progress bar per call.
    monkeypatch.setattr(tl_patching, "tqdm", lambda iterable, *a, **k: iterable)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """Random 2-layer GPT-2 (GPT-2 vocabulary) and the 8 demo prompts."""
    import torch

    torch.set_num_threads(1)
    model = random_gpt2_bridge(n_layer=2, n_head=4, n_embd=32, folder=tmp_path_factory.mktemp("tiny-gpt2"))
    batch = tokenized_pairs(notebook_pairs())
    first_changed = int((batch.clean_tokens != batch.corrupt_tokens).argmax(axis=1).min())
    return SimpleNamespace(model=model, batch=batch, first_changed=first_changed)


@pytest.fixture(scope="session")
def references(tiny):
    """TransformerLens's grids on ``tiny``: {sweep: {cell: patched mean logit difference}}.

    Position sweeps are computed from one position before the first corrupted
    token to the end (earlier positions cannot change anything).
    """
    import torch
    import transformer_lens.patching as tl_patching

    positions = list(range(tiny.first_changed - 1, tiny.batch.clean_tokens.shape[1]))
    saved = tl_patching.tqdm
    tl_patching.tqdm = lambda iterable, *a, **k: iterable
    try:
        with torch.no_grad():
            _logits, clean_cache = tiny.model.run_with_cache(torch.as_tensor(tiny.batch.clean_tokens))
        return {s: tl_reference_cells(tiny.model, tiny.batch, s, clean_cache, positions) for s in SWEEP_NAMES}
    finally:
        tl_patching.tqdm = saved
