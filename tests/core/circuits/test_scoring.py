"""Edge scores and circuit evaluation against references written with plain TransformerLens hooks.

The references name every activation by its TransformerLens hook (no index
arithmetic of the graph module): a sender's output is ``hook_embed +
hook_pos_embed``, ``blocks.L.attn.hook_result[:, :, H]`` or
``blocks.L.hook_mlp_out``; a receiver's input ``blocks.L.attn.hook_{q,k,v}_input[:, :, H]``,
``blocks.L.hook_mlp_in`` or the last ``hook_resid_post``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ioi_desktop.core.circuits import scoring
from ioi_desktop.core.circuits.graph import Graph, faithfulness
from ioi_desktop.core.errors import AnalysisError

from tests.support.circuit_fixtures import (
    add_at, directional_derivative, receiver_hook, run_metric, sender_output, split, tl_flags,
)
from tests.support.patching_helpers import logit_diff_metric


@pytest.fixture(scope="module")
def caches(small):
    model, batch = small.model, small.batch
    with tl_flags(model), torch.no_grad():
        _, clean = model.run_with_cache(torch.as_tensor(batch.clean_tokens))
        _, corrupt = model.run_with_cache(torch.as_tensor(batch.corrupt_tokens))
    return clean, corrupt


def test_exact_scores_equal_per_edge_patching_with_plain_hooks(small, small_prep, caches):
    model, batch = small.model, small.batch
    clean, corrupt = caches
    graph = small_prep.graph
    assert graph.n_edges == 100
    L = graph.n_layers
    scores = scoring.exact_scores(model, small_prep, edges_per_forward=7)  # chunks that split receivers
    base = run_metric(model, batch, [])
    for edge in graph.edge_names:
        sender, receiver = split(edge)
        delta = sender_output(corrupt, sender) - sender_output(clean, sender)
        expected = run_metric(model, batch, [add_at(receiver, L, delta)]) - base
        got = scores[graph.edge(edge)]
        assert got == pytest.approx(expected, abs=2e-5, rel=1e-4), edge
    assert np.abs(scores).max() > 0.1  # real effects, not zeros
    assert (scores[~graph.adjacency] == 0).all()
    assert not (model.cfg.use_split_qkv_input or model.cfg.use_attn_result or model.cfg.use_hook_mlp_in)


def _edges_to_check(graph, scores, k=5):
    s, r = graph.edge_index
    order = np.argsort(-np.abs(scores[s, r]))
    picked = list(order[:k]) + [len(s) - 1, len(s) // 2]
    return [graph.edge_names[i] for i in picked]


def test_eap_equals_finite_differences_on_the_clean_run(small, small_prep, caches):
    scores = scoring.eap_scores(small.model, small_prep)
    graph = small_prep.graph
    for edge in _edges_to_check(graph, scores):
        expected = directional_derivative(small.model, small.batch, caches, edge, 1e-2)
        assert scores[graph.edge(edge)] == pytest.approx(expected, abs=1e-4, rel=2e-3), edge
    assert (scores[~graph.adjacency] == 0).all()


def test_eap_ig_is_the_left_riemann_sum_of_finite_differences(small, small_prep, caches):
    steps = 3
    scores = scoring.eap_ig_scores(small.model, small_prep, steps)
    graph = small_prep.graph
    for edge in _edges_to_check(graph, scores, k=3):
        expected = np.mean([directional_derivative(small.model, small.batch, caches, edge, 1e-2, k / steps) for k in range(steps)])
        assert scores[graph.edge(edge)] == pytest.approx(expected, abs=1e-4, rel=2e-3), edge


def test_eap_ig_converges_to_the_path_integral(small, small_prep, caches):
    """The reference integral: 12-node Gauss-Legendre quadrature of finite-difference gradients."""
    graph = small_prep.graph
    nodes, weights = np.polynomial.legendre.leggauss(12)
    alphas, weights = (nodes + 1) / 2, weights / 2
    by_steps = {m: scoring.eap_ig_scores(small.model, small_prep, m) for m in (2, 8, 32)}
    for edge in _edges_to_check(graph, by_steps[32], k=3)[:4]:
        integral = sum(w * directional_derivative(small.model, small.batch, caches, edge, 1e-2, a) for a, w in zip(alphas, weights))
        errors = [abs(by_steps[m][graph.edge(edge)] - integral) for m in (2, 8, 32)]
        assert errors[2] <= 0.05 * abs(integral) + 1e-3, (edge, integral, errors)
        assert errors[2] < errors[0] or errors[0] < 1e-3, (edge, errors)


def test_full_and_empty_circuits_are_the_clean_and_corrupted_runs(small, small_prep):
    model, batch = small.model, small.batch
    graph = small_prep.graph
    full, empty = scoring.evaluate(model, small_prep, [graph.full(), graph.empty()])
    with torch.no_grad():
        clean = float(logit_diff_metric(batch)(model(torch.as_tensor(batch.clean_tokens))))
        corrupt = float(logit_diff_metric(batch)(model(torch.as_tensor(batch.corrupt_tokens))))
    assert full == pytest.approx(clean, abs=1e-5) and empty == pytest.approx(corrupt, abs=1e-5)
    assert abs(clean - corrupt) > 0.1
    assert faithfulness([full, empty], full, empty).tolist() == [1.0, 0.0]


def _hand_built_circuit_run(model, batch, caches, graph, kept: set[str]):
    """Clean run where each receiver gets, from each sender not joined to it in ``kept``, the
    sender's corrupted output instead of its output in this run: plain hooks and loops."""
    _clean, corrupt = caches
    L = model.cfg.n_layers
    current: dict[str, torch.Tensor] = {}
    parts: dict[str, torch.Tensor] = {}

    def record_embed(name):
        def hook(act, hook):
            parts[name] = act
            if len(parts) == 2:
                current["input"] = parts["hook_embed"] + parts["hook_pos_embed"]
            return act
        return hook

    def record_heads(layer):
        def hook(act, hook):
            for h in range(act.shape[2]):
                current[f"a{layer}.h{h}"] = act[:, :, h]
            return act
        return hook

    def record_mlp(layer):
        def hook(act, hook):
            current[f"m{layer}"] = act
            return act
        return hook

    hooks = [("hook_embed", record_embed("hook_embed")), ("hook_pos_embed", record_embed("hook_pos_embed"))]
    for layer in range(L):
        hooks += [(f"blocks.{layer}.attn.hook_result", record_heads(layer)), (f"blocks.{layer}.hook_mlp_out", record_mlp(layer))]
    by_receiver: dict[str, list[str]] = {}
    for edge in graph.edge_names:
        sender, receiver = split(edge)
        by_receiver.setdefault(receiver, []).append(sender)

    def patch(receiver):
        hook_name, head = receiver_hook(receiver, L)

        def hook(act, hook):
            act = act.clone()
            for sender in by_receiver[receiver]:
                if f"{sender}->{receiver}" in kept:
                    continue
                change = sender_output(corrupt, sender) - current[sender]
                if head is None:
                    act += change
                else:
                    act[:, :, head] += change
            return act
        return hook

    hooks += [(receiver_hook(r, L)[0], patch(r)) for r in by_receiver]
    return run_metric(model, batch, hooks)


def test_evaluation_of_a_circuit_equals_a_hand_built_hooked_run(small, small_prep, caches):
    graph = small_prep.graph
    rng = np.random.default_rng(0)
    names = list(graph.edge_names)
    for fraction in (0.3, 0.7):
        kept = {n for n in names if rng.random() < fraction}
        mask = graph.empty()
        for n in kept:
            mask[graph.edge(n)] = True
        (got,) = scoring.evaluate(small.model, small_prep, [mask])
        expected = _hand_built_circuit_run(small.model, small.batch, caches, graph, kept)
        assert got == pytest.approx(expected, abs=2e-5), fraction
        assert abs(got - small_prep.full) > 1e-3 and abs(got - small_prep.empty) > 1e-3


def test_cutting_all_edges_of_a_node_is_activation_patching(small, small_prep, caches):
    """All edges into a receiver cut = its input patched with the corrupted run's; all edges out
    of a head cut = that head's output patched with its corrupted output."""
    model, batch = small.model, small.batch
    _clean, corrupt = caches
    graph = small_prep.graph
    cut_in = graph.full()
    cut_in[:, graph.receivers.index("a2.h1<k>")] = False
    cut_out = graph.full()
    cut_out[graph.senders.index("a0.h1")] = False
    got_in, got_out = scoring.evaluate(model, small_prep, [cut_in, cut_out])

    def set_k_input(act, hook):
        act = act.clone()
        act[:, :, 1] = corrupt["blocks.2.attn.hook_k_input"][:, :, 1]
        return act

    def set_result(act, hook):
        act = act.clone()
        act[:, :, 1] = corrupt["blocks.0.attn.hook_result"][:, :, 1]
        return act

    assert got_in == pytest.approx(run_metric(model, batch, [("blocks.2.attn.hook_k_input", set_k_input)]), abs=2e-5)
    assert got_out == pytest.approx(run_metric(model, batch, [("blocks.0.attn.hook_result", set_result)]), abs=2e-5)


def test_node_ablation_is_patching_each_senders_output(small, small_prep, caches):
    model, batch = small.model, small.batch
    _clean, corrupt = caches
    graph = small_prep.graph
    ablation = scoring.node_ablation(model, small_prep)
    assert ablation.shape == (graph.n_senders,)
    base = run_metric(model, batch, [])
    checks = {"a1.h0": ("blocks.1.attn.hook_result", 0), "m2": ("blocks.2.hook_mlp_out", None),
              "input": ("hook_embed", None)}
    for node, (hook_name, head) in checks.items():
        def patch(act, hook, head=head, hook_name=hook_name):
            act = act.clone()
            if head is None:
                act[:] = corrupt[hook_name]
            else:
                act[:, :, head] = corrupt[hook_name][:, :, head]
            return act

        expected = run_metric(model, batch, [(hook_name, patch)]) - base
        assert ablation[graph.senders.index(node)] == pytest.approx(expected, abs=2e-5), node
    assert ablation[0] == pytest.approx(small_prep.empty - small_prep.full, abs=1e-5)


def test_many_circuits_in_one_forward_equal_one_at_a_time(small, small_prep):
    graph = small_prep.graph
    scores = scoring.eap_scores(small.model, small_prep)
    masks = [graph.circuit(scores, n) for n in (5, 20, 60)]
    together = scoring.evaluate(small.model, small_prep, masks)
    alone = [scoring.evaluate(small.model, small_prep, [m])[0] for m in masks]
    np.testing.assert_allclose(together, alone, atol=1e-5)


# ------------------------------------------------------------------ bad input


def test_misaligned_prompts_are_refused_in_one_sentence(small):
    from types import SimpleNamespace

    batch = small.batch
    bad = SimpleNamespace(**vars(batch))
    bad.corrupt_str_tokens = [list(t) for t in batch.corrupt_str_tokens]
    bad.corrupt_str_tokens[2] = bad.corrupt_str_tokens[2] + ["x"]
    with pytest.raises(AnalysisError, match="Pair 2: the clean prompt is") as info:
        scoring.prepare(small.model, bad)
    assert info.value.message.count(". ") == 0
    bad.corrupt_tokens = batch.corrupt_tokens[:, :-1]
    with pytest.raises(AnalysisError, match="not aligned token for token"):
        scoring.prepare(small.model, bad)


def test_ig_steps_below_one_and_unaffordable_exact_scoring_are_refused(small, small_prep):
    for steps in (0, -2):
        with pytest.raises(AnalysisError, match="at least 1 integration step"):
            scoring.eap_ig_scores(small.model, small_prep, steps)
    with pytest.raises(AnalysisError, match=r"100 forward passes .* more than the limit of 50\.") as info:
        scoring.check_exact_affordable(small_prep, 50)
    assert "eap or eap_ig" in info.value.hint
    scoring.check_exact_affordable(small_prep, 100)


def test_a_residual_stream_that_is_not_a_sum_is_refused():
    graph = Graph(1, 1)
    out = torch.randn(2, 3, graph.n_senders, 4)
    lengths = np.array([3, 3])
    scoring.check_residual_is_a_sum(graph, out, out.sum(dim=2) + 0.5, lengths)  # a constant bias is fine
    with pytest.raises(AnalysisError, match="not a sum of its components"):
        scoring.check_residual_is_a_sum(graph, out, torch.tanh(out.sum(dim=2)), lengths)


@pytest.mark.parametrize("layer_norm_before", [False, True])
def test_models_without_per_head_inputs_are_refused_in_one_sentence(tmp_path, layer_norm_before):
    """OPT (post-LN when do_layer_norm_before is false): refused before any work, settings unchanged."""
    from transformers import OPTConfig, OPTForCausalLM

    from tests.support.circuit_fixtures import ABC_PAIRS
    from tests.support.patching_helpers import boot_processed_bridge, tokenized_pairs
    from tests.support.tiny_models import make_word_tokenizer

    tokenizer = make_word_tokenizer()
    torch.manual_seed(0)
    config = OPTConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, ffn_dim=64,
                       num_attention_heads=2, max_position_embeddings=64, word_embed_proj_dim=32,
                       do_layer_norm_before=layer_norm_before, bos_token_id=0, eos_token_id=0, pad_token_id=1)
    OPTForCausalLM(config).eval().save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model = boot_processed_bridge(tmp_path, refactor_factored_attn_matrices=False)
    with pytest.raises(AnalysisError, match=r"^This model's attention \(\w+\) cannot give each head") as info:
        scoring.prepare(model, tokenized_pairs(ABC_PAIRS, tokenizer))
    assert info.value.message.count(". ") == 0 and "Traceback" not in str(info.value)
    assert not (model.cfg.use_split_qkv_input or model.cfg.use_attn_result)
