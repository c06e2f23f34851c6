"""Circuit scores and evaluation on the bundled model against plain TransformerLens hooks (16 ABC pairs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ioi_desktop.core.circuits import scoring

from tests.support.circuit_fixtures import add_at, directional_derivative, run_metric, sender_output, split, tl_flags


@pytest.fixture(scope="module")
def bundled():
    from types import SimpleNamespace

    from ioi_desktop.core.models import ModelSpec, load_model
    from ioi_desktop.core.pairs import BuilderSettings, build_pairs
    from ioi_desktop.core.paths import bundled_model_dir
    from ioi_desktop.core.prompts import tokenize_set

    if not (bundled_model_dir() / "config.json").is_file():
        pytest.skip(f"the bundled model is not in {bundled_model_dir()}")
    torch.set_num_threads(1)
    handle = load_model(ModelSpec(source="bundled", device="cpu"))
    pairs = build_pairs(BuilderSettings(family="mixed", n=16, corruption="abc", seed=3), handle.tokenizer,
                        handle.info.n_ctx).prompt_set
    batch = tokenize_set(pairs, handle.tokenizer, n_ctx=handle.info.n_ctx)
    prep = scoring.prepare(handle.model, batch)
    with tl_flags(handle.model), torch.no_grad():
        _, clean = handle.model.run_with_cache(torch.as_tensor(batch.clean_tokens))
        _, corrupt = handle.model.run_with_cache(torch.as_tensor(batch.corrupt_tokens))
    return SimpleNamespace(model=handle.model, batch=batch, prep=prep, caches=(clean, corrupt))


def test_the_bundled_graph_has_479_edges_and_its_runs_are_the_clean_and_corrupted_ones(bundled):
    graph = bundled.prep.graph
    assert (graph.n_layers, graph.n_heads, graph.n_edges) == (4, 4, 479)
    full, empty = scoring.evaluate(bundled.model, bundled.prep, [graph.full(), graph.empty()])
    assert full == pytest.approx(run_metric(bundled.model, bundled.batch, []), abs=1e-4)
    with torch.no_grad():
        logits = bundled.model(torch.as_tensor(bundled.batch.corrupt_tokens))
    from tests.support.patching_helpers import logit_diff_metric

    assert empty == pytest.approx(float(logit_diff_metric(bundled.batch)(logits)), abs=1e-4)
    assert full - empty > 5  # the trained model does IOI


def test_bundled_exact_and_eap_scores_match_plain_hooks(bundled):
    model, batch, prep = bundled.model, bundled.batch, bundled.prep
    clean, corrupt = bundled.caches
    graph = prep.graph
    exact = scoring.exact_scores(model, prep)
    eap = scoring.eap_scores(model, prep)
    s, r = graph.edge_index
    order = np.argsort(-np.abs(exact[s, r]))
    rng = np.random.default_rng(0)
    picked = list(order[:6]) + list(rng.choice(len(s), 10, replace=False))
    base = run_metric(model, batch, [])
    for index in picked:
        edge = graph.edge_names[index]
        sender, receiver = split(edge)
        delta = sender_output(corrupt, sender) - sender_output(clean, sender)
        expected = run_metric(model, batch, [add_at(receiver, graph.n_layers, delta)]) - base
        assert exact[s[index], r[index]] == pytest.approx(expected, abs=1e-4, rel=1e-4), edge
    for index in picked[:4]:
        edge = graph.edge_names[index]
        derivative = directional_derivative(model, batch, bundled.caches, edge, 1e-3)
        assert eap[s[index], r[index]] == pytest.approx(derivative, abs=2e-3, rel=5e-3), edge
    assert abs(exact[s[order[0]], r[order[0]]]) > 1.0


def test_bundled_unsplit_gradients_equal_the_split_path(bundled):
    """The one-forward-one-backward gradients (hook_q/k/v mapped back through ln1) on the shipped model."""
    from tests.core.circuits.test_unsplit_gradients import check_parity

    check_parity(bundled.model, bundled.prep)
