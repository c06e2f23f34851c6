"""The unsplit gradient path (one plain forward + backward, gradients at hook_q/k/v mapped back through
each head's projection and ln1's backward) against the split q/k/v inputs path, which differentiates at
TransformerLens's own per-head ``hook_{q,k,v}_input``: the same scores to 1e-5 of the largest score
(the gradients to float32 rounding, 5e-5 of the largest)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ioi_desktop.core.circuits import scoring


def check_parity(model, prep):
    # the gradient run stops at the final residual stream, the metric recomputed from it (ln_final and
    # the answers' unembedding columns) having matched the clean logits in prepare
    assert prep.metric_from_resid
    unsplit = scoring.unsplit_gradients(model, prep, None)
    assert unsplit is not None, "the model should be covered by the unsplit path"
    through_logits = scoring.unsplit_gradients(model, dataclasses.replace(prep, metric_from_resid=False), None)
    for key in unsplit:
        a, b = unsplit[key].double(), through_logits[key].double()
        assert float((a - b).abs().max()) <= 5e-5 * max(float(b.abs().max()), 1e-6), key
    split = scoring.split_gradients(model, prep, None)
    assert set(unsplit) == set(split)
    for key in split:
        a, b = unsplit[key].double(), split[key].double()
        assert a.shape == b.shape, key
        # float32 rounding of two different orders of summation: 1e-5 of the largest gradient, 5e-5 here
        assert float((a - b).abs().max()) <= 5e-5 * max(float(b.abs().max()), 1e-6), key
    fast = scoring.eap_scores(model, prep)
    slow = scoring.eap_scores(model, prep, split=True)
    assert np.abs(fast).max() > 0
    assert np.abs(fast - slow).max() <= 1e-5 * np.abs(slow).max()
    embed = prep.corrupt_embed + 0.4 * (prep.clean_embed - prep.corrupt_embed)
    a = scoring.receiver_gradients(model, prep, embed)
    b = scoring.receiver_gradients(model, prep, embed, split=True)
    for key in b:
        assert float((a[key].double() - b[key].double()).abs().max()) <= 5e-5 * max(float(b[key].abs().max()), 1e-6)
    assert not (model.cfg.use_split_qkv_input or model.cfg.use_attn_result or model.cfg.use_hook_mlp_in)


def test_unsplit_gradients_equal_the_split_path_on_a_small_random_gpt2(small, small_prep):
    check_parity(small.model, small_prep)


def test_a_model_whose_q_k_v_are_not_recomputed_from_ln1_falls_back_to_the_split_path(small, small_prep, monkeypatch):
    """With ln1's weights perturbed in the recomputation only, the check refuses the unsplit path."""
    model = small.model
    real = scoring.layer_norm_parameters

    def wrong(model, layer):
        weight, bias, eps, rms = real(model, layer)
        return weight * 1.5, bias, eps, rms

    with monkeypatch.context() as patch:
        patch.setattr(scoring, "layer_norm_parameters", wrong)
        assert scoring.unsplit_gradients(model, small_prep, None) is None
        fallback = scoring.eap_scores(model, small_prep)
    np.testing.assert_allclose(fallback, scoring.eap_scores(model, small_prep, split=True), rtol=0, atol=0)
