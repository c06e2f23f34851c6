"""Exact patching and attribution patching on the bundled model, against TransformerLens."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ioi_desktop.core.analyses import attribution_patching, patching
from ioi_desktop.core.paths import bundled_model_dir

from tests.support.patching_helpers import RecordingProgress, context, tl_reference_cells


def _bundled_ready() -> bool:
    try:
        return (bundled_model_dir() / "config.json").is_file()
    except Exception:
        return False


pytestmark = pytest.mark.skipif(
    not _bundled_ready(), reason="the bundled model resources/models/ioi-mini is not built yet"
)


@pytest.fixture(scope="module")
def bundled():
    from ioi_desktop.core.models import ModelSpec, load_model
    from ioi_desktop.core.pairs import BuilderSettings, build_pairs
    from ioi_desktop.core.prompts import PromptSet, tokenize_set

    torch.set_num_threads(1)
    handle = load_model(ModelSpec(device="cpu"))
    report = build_pairs(BuilderSettings(family="BABA", n=48, corruption="swap", seed=0), handle.tokenizer)
    built = tokenize_set(report.prompt_set, handle.tokenizer, n_ctx=handle.info.n_ctx)
    # TransformerLens patches absolute positions: keep 8 prompts of the most common length.
    length = np.bincount(built.lengths).argmax()
    pairs = [pair for pair, n in zip(report.prompt_set, built.lengths) if n == length][:8]
    batch = tokenize_set(PromptSet(pairs=tuple(pairs)), handle.tokenizer, n_ctx=handle.info.n_ctx)
    assert batch.equal_length and len(batch.end_pos) == 8
    return handle, batch


@pytest.mark.slow
def test_head_and_residual_grids_match_transformer_lens(bundled):
    handle, batch = bundled
    model = handle.model
    model.eval()
    ctx = context(model, batch, handle=handle)
    result = patching.run(ctx, patching.Options(sweeps=("head_z", "head_pattern", "resid_pre")), RecordingProgress())
    assert result.meta["engine"] == "fast"
    with torch.no_grad():
        _logits, clean_cache = model.run_with_cache(torch.as_tensor(batch.clean_tokens))
    first = int((batch.clean_tokens != batch.corrupt_tokens).argmax(axis=1).min())
    positions = list(range(first, batch.clean_tokens.shape[1]))
    for sweep in ("head_z", "head_pattern", "resid_pre"):
        reference = tl_reference_cells(model, batch, sweep, clean_cache, positions)
        raw = result.arrays[patching.SWEEPS[sweep].array + "_raw"]
        worst = max(abs(float(raw[cell]) - value) for cell, value in reference.items())
        assert worst <= 1e-5, (sweep, worst)
    # A model trained on IOI restores a clear share of the answer through some head.
    assert np.abs(result.arrays["patch_head_z"]).max() > 0.05

    estimate = attribution_patching.run(ctx, attribution_patching.Options(), RecordingProgress())
    assert estimate.arrays["atp_head_z"].shape == result.arrays["patch_head_z"].shape
