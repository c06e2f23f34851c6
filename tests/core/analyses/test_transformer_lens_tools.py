"""Parity with TransformerLens 4.3's own analysis tools, where ours compute the same thing.

- the logit-difference lens (default, the notebook's method) against
  ``ActivationCache.accumulated_resid`` + ``apply_ln_to_stack`` with the cached
  final scale; its ``recompute`` option and the top-token grid against
  ``tools.analysis.logit_lens`` and ``logit_readout``;
- DLA against ``tools.analysis.direct_logit_attribution`` (components and heads);
- attribution patching against ``tools.analysis.attribution_patch`` (node
  granularity, denoising convention) after converting our normalized scores back;
- head-type scores against ``head_detector.detect_head`` on the same sequences.

References come from each prompt run alone through the same processed bridge.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.support.analysis_fixtures import notebook_batch, reference_caches

from ioi_desktop.core.runner import Runner

TOL = 1e-5
# float32: TransformerLens reads two full logits (~50 on the bundled model) and subtracts; ours projects
# once on the answer direction, so values near 20 may differ by a few float32 steps (~1e-6 relative).
RTOL = 1e-6


def _lens(handle, batch, lens_norm):
    options = {"logit_lens": {"lens_norm": lens_norm}}
    return Runner().run(handle, batch, ["logit_lens", "dla"], options)


def _notebook_lens(cache, direction):
    """The Exploratory Analysis Demo's cell, verbatim: accumulated_resid then apply_ln_to_stack."""
    stack, labels = cache.accumulated_resid(layer=-1, incl_mid=True, pos_slice=-1, return_labels=True)
    scaled = cache.apply_ln_to_stack(stack, layer=-1, pos_slice=-1)
    return (scaled[:, 0].float() @ direction).numpy(), labels


def _direction(model, batch, p):
    c, i = int(batch.correct_ids[p]), int(batch.incorrect_ids[p])
    return (model.W_U[:, c] - model.W_U[:, i]).float()


@pytest.fixture(scope="module", params=["random_gpt2", "bundled"])
def case(request):
    handle = request.getfixturevalue("gpt2_handle" if request.param == "random_gpt2" else "bundled_handle")
    batch = notebook_batch(handle)
    return handle, batch, reference_caches(handle, batch)


def test_default_lens_is_the_notebooks_cached_scale_lens(case):
    handle, batch, refs = case
    results = _lens(handle, batch, "cached_final")
    result = results["logit_lens"]
    assert result.meta["lens_norm"] == "cached_final" and "cached" in result.meta["lens_ln"]
    assert "recomputed" in result.meta["grid_ln"]
    for p, (_, cache) in enumerate(refs):
        expected, labels = _notebook_lens(cache, _direction(handle.model, batch, p))
        assert result.labels["resid"] == labels
        np.testing.assert_allclose(result.arrays["logit_lens_logit_diff_by_prompt"][p], expected, atol=TOL)
    # Linear in the residual stream: each step is that half-layer's direct attribution.
    lens = result.arrays["logit_lens_logit_diff"]
    dla = results["dla"].arrays["dla_components"]
    labels = results["dla"].labels["component"]
    n_embed = sum(label in ("embed", "pos_embed") for label in labels)
    np.testing.assert_allclose(lens[0], dla[:n_embed].sum(), atol=TOL)
    np.testing.assert_allclose(np.diff(lens), dla[n_embed:], atol=TOL)


def test_recompute_option_equals_tools_logit_lens(case):
    from transformer_lens.tools.analysis import logit_lens

    handle, batch, refs = case
    model = handle.model
    result = _lens(handle, batch, "recompute")["logit_lens"]
    assert result.meta["lens_norm"] == "recompute"
    for p, (_, cache) in enumerate(refs):
        c, i = int(batch.correct_ids[p]), int(batch.incorrect_ids[p])
        theirs = logit_lens(model, cache=cache, incl_mid=True, positions=-1, vocab=[c, i])
        values = theirs.values[:, 0]  # [point, 2], logits with b_U
        expected = (values[:, 0] - values[:, 1] - (model.b_U[c] - model.b_U[i])).float().numpy()
        assert result.labels["resid"] == theirs.labels
        np.testing.assert_allclose(result.arrays["logit_lens_logit_diff_by_prompt"][p], expected, atol=TOL, rtol=RTOL)


def test_the_two_lenses_differ_where_layernorm_scales_differ(case):
    """Not the same number twice: the options change what is computed (the final point agrees)."""
    handle, batch, _ = case
    cached = _lens(handle, batch, "cached_final")["logit_lens"].arrays["logit_lens_logit_diff"]
    recomputed = _lens(handle, batch, "recompute")["logit_lens"].arrays["logit_lens_logit_diff"]
    assert np.abs(cached - recomputed).max() > 0.1 * np.abs(cached).max()
    assert abs(cached[-1] - recomputed[-1]) <= TOL


def test_grid_equals_tools_logit_lens(gpt2_handle):
    from transformer_lens.tools.analysis import logit_lens

    batch = notebook_batch(gpt2_handle)
    model = gpt2_handle.model
    result = Runner().run(gpt2_handle, batch, ["logit_lens"])["logit_lens"]
    for p, (_, cache) in enumerate(reference_caches(gpt2_handle, batch)):
        top = logit_lens(model, cache=cache, positions=None, top_k=5, return_type="probs")
        np.testing.assert_allclose(result.arrays["logit_lens_grid_top_probs"][:, p], top.values[:, 0].numpy(), atol=TOL)
        c, i = int(batch.correct_ids[p]), int(batch.incorrect_ids[p])
        answers = logit_lens(model, cache=cache, positions=None, vocab=[c, i]).values[:, 0]  # [row, pos, 2]
        np.testing.assert_allclose(result.arrays["logit_lens_grid_logit_diff"][:, p],
                                   (answers[..., 0] - answers[..., 1]).numpy(), atol=TOL)
        probs = logit_lens(model, cache=cache, positions=None, vocab=[c], return_type="probs").values[:, 0, :, 0]
        np.testing.assert_allclose(result.arrays["logit_lens_grid_p_correct"][:, p], probs.numpy(), atol=TOL)


def test_grid_rows_equal_tools_logit_readout(gpt2_handle):
    """Each grid row is the residual stream read through ln_final (recomputed), W_U and b_U."""
    from transformer_lens.tools.analysis import logit_readout

    from ioi_desktop.core.analyses.logit_lens import grid_point_names

    batch = notebook_batch(gpt2_handle)
    result = Runner().run(gpt2_handle, batch, ["logit_lens"])["logit_lens"]
    for p, (_, cache) in enumerate(reference_caches(gpt2_handle, batch)):
        for row, (_, name) in enumerate(grid_point_names(gpt2_handle.info.n_layers)):
            top = logit_readout(gpt2_handle.model, cache[name][0], top_k=5, return_type="probs")
            np.testing.assert_allclose(result.arrays["logit_lens_grid_top_probs"][row, p], top.values.numpy(), atol=TOL)
            c = int(batch.correct_ids[p])
            answer = logit_readout(gpt2_handle.model, cache[name][0], targets=c, return_type="probs")
            np.testing.assert_allclose(result.arrays["logit_lens_grid_p_correct"][row, p], answer.values[:, 0].numpy(), atol=TOL)


def test_bad_lens_norm_is_one_clear_sentence(gpt2_handle):
    from ioi_desktop.core.errors import AnalysisError

    with pytest.raises(AnalysisError, match="lens_norm must be one of cached_final, recompute"):
        _lens(gpt2_handle, notebook_batch(gpt2_handle), "sometimes")


def test_dla_equals_tools_direct_logit_attribution(case):
    from transformer_lens.tools.analysis import direct_logit_attribution

    handle, batch, refs = case
    result = Runner().run(handle, batch, ["dla"])["dla"]
    n_layers, n_heads = handle.info.n_layers, handle.info.n_heads
    for p, (_, cache) in enumerate(refs):
        c, i = int(batch.correct_ids[p]), int(batch.incorrect_ids[p])
        components = direct_logit_attribution(handle.model, answer_tokens=c, incorrect_tokens=i, unit="component", cache=cache)
        assert components.labels == result.labels["component"]
        np.testing.assert_allclose(result.arrays["dla_components_by_prompt"][p], components.attribution[:, 0].numpy(), atol=TOL)
        heads = direct_logit_attribution(handle.model, answer_tokens=c, incorrect_tokens=i, unit="head", cache=cache)
        per_head = heads.attribution[: n_layers * n_heads, 0].reshape(n_layers, n_heads)
        assert heads.labels[:2] == ["L0H0", "L0H1"]
        np.testing.assert_allclose(result.arrays["dla_head_by_prompt"][p], per_head.numpy(), atol=TOL)


def test_attribution_patching_equals_tools_attribution_patch_after_conversion(gpt2_handle):
    """Same denoising convention (gradient on the corrupted run, toward clean); ours is divided by
    (clean - corrupted) and uses the set-mean metric, so ours x span = TL's per-prompt node scores
    averaged over prompts and summed over positions (head z) or read at each position (MLP out)."""
    from transformer_lens.tools.analysis import attribution_patch

    batch = notebook_batch(gpt2_handle)
    model = gpt2_handle.model
    result = Runner().run(gpt2_handle, batch, ["attribution_patching"],
                          {"attribution_patching": {"sweeps": ["head_z", "mlp_out"]}})["attribution_patching"]
    span = result.meta["clean_logit_diff"] - result.meta["corrupt_logit_diff"]
    n_layers, n_heads, n_pos = gpt2_handle.info.n_layers, gpt2_handle.info.n_heads, batch.clean_tokens.shape[1]
    head_z = np.zeros((n_layers, n_heads))
    mlp_out = np.zeros((n_layers, n_pos))
    clean = torch.as_tensor(np.asarray(batch.clean_tokens))
    corrupt = torch.as_tensor(np.asarray(batch.corrupt_tokens))
    n_prompts = clean.shape[0]
    # TL's tool differentiates through the parameters' graph; the app loads models with gradients off.
    flags = [parameter.requires_grad for parameter in model.parameters()]
    model.requires_grad_(True)
    try:
        found = [attribution_patch(model, clean[p:p + 1], corrupt[p:p + 1],
                                   lambda logits, c=int(batch.correct_ids[p]), i=int(batch.incorrect_ids[p]):
                                   logits[0, -1, c] - logits[0, -1, i]).node_scores for p in range(n_prompts)]
    finally:
        for parameter, flag in zip(model.parameters(), flags):
            parameter.requires_grad_(flag)
    for scores in found:
        for node, score in scores.items():
            if node.kind == "attn_head_out":
                head_z[node.layer, node.head] += score / n_prompts
            elif node.kind == "mlp_out":
                mlp_out[node.layer, node.position] += score / n_prompts
    assert np.abs(head_z).max() > 1e-3
    np.testing.assert_allclose(result.arrays["atp_head_z"] * span, head_z, atol=1e-4)
    np.testing.assert_allclose(result.arrays["atp_mlp_out"] * span, mlp_out, atol=1e-4)


@pytest.mark.parametrize("which", ["random_gpt2", "bundled"])
def test_head_scores_equal_detect_head_on_the_same_sequences(request, which):
    """detect_head's "mul" score divides by every query row; ours by the rows it scores."""
    from transformer_lens.head_detector import detect_head

    from ioi_desktop.core.analyses.head_scores import Options, make_sequences, model_prepends_bos, settings

    handle = request.getfixturevalue("gpt2_handle" if which == "random_gpt2" else "bundled_handle")
    options = {"seq_len": 12, "batch": 3, "seed": 5}
    result = Runner().run(handle, notebook_batch(handle), ["head_scores"], {"head_scores": options})["head_scores"]
    assert result.meta["prepend_bos"] is True and result.meta["token_pool"] == "words"
    chosen = settings(Options(**options), handle.info.n_ctx, model_prepends_bos(handle.model, handle.tokenizer))
    tokens, _ = make_sequences(handle.tokenizer, handle.info.d_vocab, chosen)
    n = chosen["seq_len"]
    special = set(handle.tokenizer.all_special_ids)
    assert not special & set(tokens[:, 1:].ravel().tolist())
    texts = [handle.tokenizer.decode(row[1:].tolist()) for row in tokens]
    # detect_head re-tokenizes the strings; the word tokens survive that round trip exactly.
    assert torch.equal(handle.model.to_tokens(texts).cpu(), tokens)
    rows = 2 * n + 1
    for kind, name, scored in (("prev", "previous_token_head", 2 * n), ("dup", "duplicate_token_head", n),
                               ("induction", "induction_head", n)):
        theirs = detect_head(handle.model, texts, name).float().numpy()
        np.testing.assert_allclose(result.arrays[f"head_score_{kind}"], theirs * rows / scored, atol=TOL, err_msg=kind)


def test_bundled_duplicate_head_is_the_cards(bundled_handle):
    """The Head types analysis at its defaults gives the numbers eval.json (and so the card) records."""
    import json

    from ioi_desktop.core.paths import bundled_model_dir

    report = json.loads((bundled_model_dir() / "eval.json").read_text(encoding="utf-8"))
    result = Runner().run(bundled_handle, notebook_batch(bundled_handle), ["head_scores"])["head_scores"]
    for kind, key in (("prev", "previous_token"), ("dup", "duplicate_token"), ("induction", "induction")):
        np.testing.assert_allclose(result.arrays[f"head_score_{kind}"], np.array(report["head_types"][key]), atol=1e-4)
    dup = result.arrays["head_score_dup"]
    assert np.unravel_index(int(dup.argmax()), dup.shape) == (0, 0)
    card = (bundled_model_dir() / "README.md").read_text(encoding="utf-8")
    assert f"The strongest duplicate-token head is L0H0, {dup[0, 0]:.2f}" in card
    short = np.array(report["head_types_short"]["duplicate_token"])
    readme = " ".join((bundled_model_dir().parents[2] / "README.md").read_text(encoding="utf-8").split())
    assert f"duplicate-token head, {dup[0, 0]:.2f} at its defaults" in readme
    assert f"and {short[0, 0]:.2f} on 10-word runs" in readme


def test_too_few_word_tokens_fall_back_to_the_demo_id_range_and_say_so():
    from tests.support.tiny_models import make_word_tokenizer

    from ioi_desktop.core.analyses.head_scores import make_sequences, word_token_ids

    tokenizer = make_word_tokenizer()
    pool = word_token_ids(tokenizer, len(tokenizer))
    assert 0 < len(pool) < 60 and not set(pool) & set(tokenizer.all_special_ids)
    chosen = {"seq_len": 60, "batch": 2, "seed": 0, "prepend_bos": True, "token_pool": "words"}
    tokens, drawn = make_sequences(tokenizer, len(tokenizer), chosen)
    assert chosen["token_pool"] == "id_range" and "fewer than the 60" in drawn["token_pool_note"]
    assert tokens.shape == (2, 121) and (tokens[:, 0] == tokenizer.bos_token_id).all()
    assert torch.equal(tokens[:, 1:61], tokens[:, 61:])
    enough = {**chosen, "seq_len": 10, "token_pool": "words"}
    tokens, drawn = make_sequences(tokenizer, len(tokenizer), enough)
    assert enough["token_pool"] == "words" and set(tokens[:, 1:].ravel().tolist()) <= set(pool)
    assert all(len(set(row[1:11].tolist())) == 10 for row in tokens)
