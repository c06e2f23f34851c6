"""Every analysis checked against TransformerLens's own ActivationCache methods.

Reference values come from each prompt run alone (unpadded) through the same
processed bridge, using ``accumulated_resid``, ``decompose_resid``,
``stack_head_results`` and ``apply_ln_to_stack``; tolerance 1e-5 (float32).
The logit-difference lens is checked in its default, the notebook's method
(``apply_ln_to_stack`` with the cached final scale); the ``recompute`` option
and the grid are checked against ``tools.analysis.logit_lens`` in
``test_transformer_lens_tools.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch


from ioi_desktop.core.analyses.metrics import rank_labels
from ioi_desktop.core.runner import Runner

from tests.support.analysis_fixtures import reference_caches

TOL = 1e-5


def _direction(model, batch, p):
    c, i = int(batch.correct_ids[p]), int(batch.incorrect_ids[p])
    return (model.W_U[:, c] - model.W_U[:, i]).float()


def _real_diff(logits, batch, p):
    return float(logits[0, -1, int(batch.correct_ids[p])] - logits[0, -1, int(batch.incorrect_ids[p])])


def check_logit_diff(handle, batch, results, refs):
    model = handle.model
    arrays = results["logit_diff"].arrays
    corrupt_refs = reference_caches(handle, batch, "corrupt")
    for which, runs in (("clean", refs), ("corrupt", corrupt_refs)):
        for p, (logits, _) in enumerate(runs):
            assert abs(arrays[f"logit_diff_{which}"][p] - _real_diff(logits, batch, p)) <= TOL
            probs = torch.softmax(logits[0, -1].float(), dim=-1)
            assert abs(arrays[f"logit_diff_p_correct_{which}"][p] - float(probs[int(batch.correct_ids[p])])) <= TOL
            expected = probs.sort(descending=True).values[:5].numpy()
            np.testing.assert_allclose(arrays[f"logit_diff_top_probs_{which}"][p], expected, atol=TOL)
            chosen = probs[torch.as_tensor(arrays[f"logit_diff_top_ids_{which}"][p], dtype=torch.long)].numpy()
            np.testing.assert_allclose(chosen, expected, atol=TOL)
    meta = results["logit_diff"].meta
    assert meta["mean_clean"] == pytest.approx(float(arrays["logit_diff_clean"].mean()), abs=TOL)
    assert meta["accuracy_clean"] == pytest.approx(float((arrays["logit_diff_clean"] > 0).mean()))
    assert results["logit_diff"].labels["rank"] == list(rank_labels(5))


def check_logit_lens(handle, batch, results, refs):
    model = handle.model
    result = results["logit_lens"]
    n_layers = handle.info.n_layers
    by_prompt = result.arrays["logit_lens_logit_diff_by_prompt"]
    assert result.arrays["logit_lens_logit_diff"].shape == (2 * n_layers + 1,)
    assert result.meta["lens_norm"] == "cached_final"
    for p, (logits, cache) in enumerate(refs):
        # The notebook's lens: the final LayerNorm's cached scale at every point.
        stack, labels = cache.accumulated_resid(layer=-1, incl_mid=True, pos_slice=-1, return_labels=True)
        stack = cache.apply_ln_to_stack(stack, layer=-1, pos_slice=-1)
        expected = (stack[:, 0].float() @ _direction(model, batch, p)).numpy()
        assert result.labels["resid"] == labels
        np.testing.assert_allclose(by_prompt[p], expected, atol=TOL)
        # The last lens point is the real logit difference without the unembedding bias.
        bias = float(model.b_U[int(batch.correct_ids[p])] - model.b_U[int(batch.incorrect_ids[p])])
        assert abs(by_prompt[p, -1] + bias - _real_diff(logits, batch, p)) <= TOL

        grid_stack, grid_labels = cache.accumulated_resid(apply_ln=True, return_labels=True)
        assert result.labels["lens_layer"] == grid_labels
        grid_logits = grid_stack[:, 0].float() @ model.W_U + model.b_U
        n = int(batch.lengths[p])
        c, i = int(batch.correct_ids[p]), int(batch.incorrect_ids[p])
        np.testing.assert_allclose(result.arrays["logit_lens_grid_logit_diff"][:, p, :n],
                                   (grid_logits[..., c] - grid_logits[..., i]).numpy(), atol=TOL)
        probs = torch.softmax(grid_logits, dim=-1)
        np.testing.assert_allclose(result.arrays["logit_lens_grid_p_correct"][:, p, :n], probs[..., c].numpy(), atol=TOL)
        np.testing.assert_allclose(result.arrays["logit_lens_grid_top_probs"][:, p, :n],
                                   probs.sort(dim=-1, descending=True).values[..., :5].numpy(), atol=TOL)
        ids = torch.as_tensor(result.arrays["logit_lens_grid_top_ids"][:, p, :n], dtype=torch.long)
        np.testing.assert_allclose(probs.gather(-1, ids).numpy(), result.arrays["logit_lens_grid_top_probs"][:, p, :n], atol=TOL)
        # The final row at END is the model's own prediction.
        np.testing.assert_allclose(grid_logits[-1, -1].numpy(), logits[0, -1].numpy(), atol=1e-4)
        assert (result.arrays["logit_lens_grid_top_ids"][:, p, n:] == -1).all()
        assert (result.arrays["logit_lens_grid_logit_diff"][:, p, n:] == 0).all()


def check_dla(handle, batch, results, refs):
    model = handle.model
    result = results["dla"]
    n_layers, n_heads = handle.info.n_layers, handle.info.n_heads
    for p, (logits, cache) in enumerate(refs):
        direction = _direction(model, batch, p)
        stack, labels = cache.decompose_resid(apply_ln=True, pos_slice=-1, return_labels=True)
        assert result.labels["component"] == labels
        components = (stack[:, 0].float() @ direction).numpy()
        np.testing.assert_allclose(result.arrays["dla_components_by_prompt"][p], components, atol=TOL)
        heads = cache.stack_head_results(layer=-1, pos_slice=-1, apply_ln=True)
        expected_heads = (heads[:, 0].float() @ direction).reshape(n_layers, n_heads).numpy()
        np.testing.assert_allclose(result.arrays["dla_head_by_prompt"][p], expected_heads, atol=TOL)
        # Sum of components plus the unembedding-bias term is the real logit difference.
        total = components.sum() + float(result.arrays["dla_unembed_bias"][p])
        assert abs(total - _real_diff(logits, batch, p)) <= TOL
    np.testing.assert_allclose(result.arrays["dla_components"], result.arrays["dla_components_by_prompt"].mean(0), atol=1e-6)
    np.testing.assert_allclose(result.arrays["dla_head"], result.arrays["dla_head_by_prompt"].mean(0), atol=1e-6)
    assert result.meta["max_reconstruction_error"] <= TOL


def check_attention(handle, batch, results, refs):
    patterns = results["attention"].arrays["attention_pattern"]
    n_pos = batch.clean_tokens.shape[1]
    assert patterns.shape == (len(refs), handle.info.n_layers, handle.info.n_heads, n_pos, n_pos)
    for p, (_, cache) in enumerate(refs):
        n = int(batch.lengths[p])
        for layer in range(handle.info.n_layers):
            np.testing.assert_allclose(patterns[p, layer, :, :n, :n], cache["pattern", layer][0].numpy(), atol=TOL)
        assert not patterns[p, :, :, n:, :].any() and not patterns[p, :, :, :, n:].any()
    np.testing.assert_allclose(patterns.sum(-1)[:, :, :, 0], 1.0, atol=1e-5)


CHECKS = (check_logit_diff, check_logit_lens, check_dla, check_attention)


@pytest.mark.parametrize("case", ["notebook", "ragged"])
@pytest.mark.parametrize("check", CHECKS, ids=lambda f: f.__name__)
def test_random_gpt2_matches_transformer_lens(gpt2_handle, gpt2_cases, case, check):
    batch, results, refs = gpt2_cases[case]
    if case == "ragged":
        assert not batch.equal_length
    check(gpt2_handle, batch, results, refs)


def test_logit_differences_are_not_trivial(gpt2_cases):
    """The random model must give logit differences far from 0 or the checks above prove little."""
    _, results, _ = gpt2_cases["notebook"]
    assert np.abs(results["logit_diff"].arrays["logit_diff_clean"]).max() > 0.1
    assert np.abs(results["dla"].arrays["dla_unembed_bias"]).max() > 1e-3


def check_built_pairs(handle):
    """All checks on pairs made by the pair builder for this model's own vocabulary."""
    from ioi_desktop.core.pairs import BuilderSettings, build_pairs
    from ioi_desktop.core.prompts import tokenize_set

    report = build_pairs(BuilderSettings(family="BABA", n=6, seed=1), handle.tokenizer, n_ctx=handle.info.n_ctx)
    batch = tokenize_set(report.prompt_set, handle.tokenizer, n_ctx=handle.info.n_ctx)
    results = Runner().run(handle, batch, ["logit_diff", "logit_lens", "dla", "attention"])
    refs = reference_caches(handle, batch)
    for check in CHECKS:
        check(handle, batch, results, refs)


def test_random_gpt2_on_built_pairs(gpt2_handle):
    check_built_pairs(gpt2_handle)


@pytest.mark.slow
def test_bundled_model_matches_transformer_lens(bundled_handle):
    check_built_pairs(bundled_handle)
