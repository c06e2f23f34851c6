"""The EAP-IG graph: counts, names, pruning, circuit sizes and curve areas (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from ioi_desktop.core.circuits.graph import Graph, curve_areas, faithfulness, faithfulness_span
from ioi_desktop.core.errors import AnalysisError


def test_gpt2_small_has_32491_edges_and_eap_ig_node_counts():
    graph = Graph(12, 12)
    assert graph.n_edges == 32491  # EAP-IG / MIB's count for GPT-2 small
    assert graph.n_senders == 1 + 12 * 13 and graph.n_receivers == 12 * 37 + 1
    assert len(graph.edge_names) == len(set(graph.edge_names)) == 32491


def test_a_four_by_four_model_has_479_edges():
    # heads: 3H receivers per layer from 1 + L(H+1) senders; MLPs also from their own layer's heads; logits from all.
    assert Graph(4, 4).n_edges == sum(12 * (1 + 5 * L) for L in range(4)) + sum(1 + 5 * L + 4 for L in range(4)) + 21 == 479


def test_edge_names_follow_the_convention():
    graph = Graph(4, 4)
    names = set(graph.edge_names)
    for present in ("a0.h0->a3.h3<v>", "m2->logits", "input->a0.h0<q>", "a1.h2->m1", "m0->a1.h3<k>", "input->logits"):
        assert present in names
    for absent in ("a3.h0->a3.h1<q>", "a1.h0->m0", "m1->a1.h0<q>", "m3->m3", "logits->m3", "a0.h0->a0.h0<q>"):
        assert absent not in names
    s, r = graph.edge("a0.h0->a3.h3<v>")
    assert graph.senders[s] == "a0.h0" and graph.receivers[r] == "a3.h3<v>"
    assert graph.edge("m3->a0.h0<q>") is None


def test_parallel_blocks_drop_the_edges_from_a_layers_heads_to_its_mlp():
    serial, parallel = Graph(12, 12), Graph(12, 12, parallel_attn_mlp=True)
    assert parallel.n_edges == serial.n_edges - 12 * 12
    assert "a3.h1->m3" in serial.edge_names and "a3.h1->m3" not in parallel.edge_names
    assert "a2.h1->m3" in parallel.edge_names and "m2->m3" in parallel.edge_names


def _mask(graph, names):
    mask = graph.empty()
    for name in names:
        mask[graph.edge(name)] = True
    return mask


def _names(graph, mask):
    s, r = np.nonzero(mask)
    return {f"{graph.senders[i]}->{graph.receivers[j]}" for i, j in zip(s, r)}


def test_pruning_keeps_exactly_the_edges_on_input_to_logits_paths():
    graph = Graph(3, 2)
    dangling_in = ["input->a0.h0<q>"]  # a0.h0 reaches nothing downstream
    dangling_out = ["a1.h1->logits"]  # nothing reaches a1.h1
    path = ["input->a0.h1<v>", "a0.h1->a2.h0<k>", "a2.h0->logits"]
    side = ["a0.h1->m1"]  # m1 has no way on to logits
    kept = graph.prune(_mask(graph, dangling_in + dangling_out + path + side))
    assert _names(graph, kept) == set(path)
    assert graph.prune(graph.full()).sum() == graph.n_edges
    assert graph.prune(graph.empty()).sum() == 0
    assert _names(graph, graph.prune(_mask(graph, ["input->logits"]))) == {"input->logits"}


def test_top_edges_take_the_largest_magnitudes_and_refuse_too_many():
    graph = Graph(2, 2)
    s, r = graph.edge_index
    scores = np.zeros(graph.adjacency.shape, np.float32)
    scores[s, r] = np.linspace(-1, 0.5, len(s))  # largest |score| first: the first edges
    mask = graph.top_edges(scores, 3)
    assert mask.sum() == 3 and mask[s[:3], r[:3]].all()
    with pytest.raises(AnalysisError, match=f"has {graph.n_edges} edges"):
        graph.top_edges(scores, graph.n_edges + 1)
    assert graph.size_for_percent(100) == graph.n_edges and graph.size_for_percent(0) == 0
    with pytest.raises(AnalysisError, match="from 0 to 100"):
        graph.size_for_percent(150)


def test_faithfulness_is_normalised_and_a_zero_gap_is_refused():
    assert faithfulness([3.0, 1.0, 2.0], full=3.0, empty=1.0).tolist() == [1.0, 0.0, 0.5]
    with pytest.raises(AnalysisError, match="cannot be normalised"):
        faithfulness_span(2.0, 2.0 + 1e-7)


def test_curve_areas_are_trapezoids_over_the_fraction_of_edges():
    cpr, cmd = curve_areas([0, 50, 100], [0.0, 1.0, 1.0])
    assert cpr == pytest.approx(0.75) and cmd == pytest.approx(0.25)
    cpr, cmd = curve_areas([0, 50, 100], [0.0, 1.0, 2.0])  # overshoot counts as distance from 1
    assert cpr == pytest.approx(1.0) and cmd == pytest.approx(0.5)


def test_greedy_grows_from_logits_and_differs_from_top_n():
    graph = Graph(2, 1)
    scores = np.zeros(graph.adjacency.shape, np.float32)
    for name, value in {"input->a0.h0<q>": 9.0, "a0.h0->a1.h0<v>": 8.0, "a1.h0->logits": 1.0,
                        "input->logits": 2.0, "m1->logits": 0.5, "input->m1": 0.4}.items():
        scores[graph.edge(name)] = value
    # top-2 takes the two largest, which connect to nothing that reaches logits: pruned away.
    assert graph.circuit(scores, 2).sum() == 0
    # greedy: only edges into logits are open at first; then the edges into each node it adds.
    assert _names(graph, graph.greedy_edges(scores, 1)) == {"input->logits"}
    assert _names(graph, graph.greedy_edges(scores, 4)) == {"input->logits", "a1.h0->logits", "a0.h0->a1.h0<v>",
                                                            "input->a0.h0<q>"}
    assert _names(graph, graph.circuit(scores, 4, "greedy")) == _names(graph, graph.greedy_edges(scores, 4))
    assert graph.greedy_edges(scores, graph.n_edges).sum() == graph.n_edges
    with pytest.raises(AnalysisError, match="no circuit selection 'best'"):
        graph.circuit(scores, 3, "best")
    with pytest.raises(AnalysisError, match=f"has {graph.n_edges} edges"):
        graph.greedy_edges(scores, graph.n_edges + 1)
