"""The shipped model (resources/models/ioi-mini) answers the demo's prompts through TransformerLens."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ioi_desktop.bundled import corpus, evaluate
from ioi_desktop.core.paths import bundled_model_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bridge():
    torch.set_num_threads(1)
    return evaluate.boot_bridge(bundled_model_dir())


def test_shipped_files():
    folder = bundled_model_dir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "training.json", "eval.json", "README.md", "roles.json"):
        assert (folder / name).is_file(), name
    assert (folder / "model.safetensors").stat().st_size <= 20 * 1024 * 1024
    assert not (folder / "pytorch_model.bin").exists()


def test_demo_prompts_all_correct_via_to_tokens(bridge):
    prompts = [p for p, _, _ in corpus.DEMO_PROMPTS]
    tokens = bridge.to_tokens(prompts)
    assert tokens.shape == (8, 15) and tokens[:, 0].eq(bridge.tokenizer.bos_token_id).all()
    with torch.no_grad():
        final = bridge(tokens)[:, -1]
    for row, (_, io, s) in enumerate(corpus.DEMO_PROMPTS):
        io_id, s_id = bridge.to_single_token(f" {io}"), bridge.to_single_token(f" {s}")
        assert final[row, io_id] > final[row, s_id], corpus.DEMO_PROMPTS[row]


def test_head_dla_matches_the_logit_difference(bridge):
    """Summed per-component DLA equals the real logit difference (fold_ln makes it exact)."""
    batch = evaluate.build_batch(bridge.tokenizer, [corpus.IOIPrompt(p, io, s, "demo", "", "") for p, io, s in corpus.DEMO_PROMPTS])
    with torch.no_grad():
        logits, cache = bridge.run_with_cache(batch.tokens)
        stack = cache.apply_ln_to_stack(cache.decompose_resid(layer=-1), layer=-1)[:, :, -1]
        direction = (bridge.W_U[:, batch.io_id] - bridge.W_U[:, batch.s_id]).T
        summed = (stack * direction).sum((0, -1))
        bias = bridge.b_U[batch.io_id] - bridge.b_U[batch.s_id]
        expected = evaluate.logit_diffs(logits, batch)
    np.testing.assert_allclose((summed + bias).numpy(), expected.numpy(), atol=1e-3)


def test_head_z_patching_matches_transformer_lens_patching(bridge):
    from transformer_lens import patching

    prompts = [corpus.IOIPrompt(p, io, s, "demo", "", "") for p, io, s in corpus.DEMO_PROMPTS]
    ours = evaluate.circuit_metrics(bridge, bridge.tokenizer, prompts, seed=0)["patching"]["s2_to_io"]
    batch = evaluate.build_batch(bridge.tokenizer, prompts)
    corrupted = evaluate.s2_to_io_tokens(batch)
    with torch.no_grad():
        _, clean_cache = bridge.run_with_cache(batch.tokens)
    clean, corrupt = ours["clean_logit_diff"], ours["corrupted_logit_diff"]

    def metric(logits):
        return (evaluate.logit_diffs(logits, batch).mean() - corrupt) / (clean - corrupt)

    theirs = patching.get_act_patch_attn_head_out_all_pos(bridge, corrupted, clean_cache, metric)
    np.testing.assert_allclose(np.array(ours["effects"]), theirs.numpy(), atol=1e-4)


def test_recorded_evaluation_meets_the_quality_bar():
    report = json.loads((bundled_model_dir() / "eval.json").read_text())
    assert report["quality_ok"] and report["demo"]["all_correct"]
    for split in report["quality"].values():
        for family in split.values():
            assert family["accuracy"] >= 0.95 and family["mean_logit_diff"] >= 3.0
