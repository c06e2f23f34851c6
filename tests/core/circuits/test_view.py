"""What the Circuit panel draws: node layout, circuit segments, hover lookup, size marker (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from ioi_desktop.core.circuits.graph import Graph
from ioi_desktop.core.circuits.view import (WIDTHS, curve_marker, draw_circuit, edge_segments, graph_of_result, head_of,
                                            nearest_curve_point, node_layout)


@pytest.fixture
def graph():
    return Graph(4, 4)


def test_layout_puts_input_at_the_bottom_layers_in_rows_and_logits_on_top(graph):
    layout = node_layout(graph)
    assert layout.names == graph.nodes
    at = {name: (layout.x[i], layout.y[i]) for i, name in enumerate(layout.names)}
    assert at["input"][1] == 0 and at["logits"][1] == 5
    assert at["a2.h3"] == (3.0, 3.0) and at["m2"] == (4.5, 3.0)
    assert head_of(layout, layout.names.index("a2.h3")) == (2, 3)
    assert head_of(layout, layout.names.index("m2")) is None
    assert layout.index_of_head(1, 0) == graph.head_sender(1, 0)
    assert [text for _, text in layout.row_ticks] == ["input", "layer 0", "layer 1", "layer 2", "layer 3", "logits"]


def test_drawn_circuit_is_the_pruned_top_n_with_one_segment_per_edge(graph):
    rng = np.random.default_rng(0)
    scores = (rng.normal(size=graph.adjacency.shape) * graph.adjacency).astype(np.float32)
    layout = node_layout(graph)
    drawn = draw_circuit(graph, layout, scores, 40)
    expected = graph.prune(graph.top_edges(scores, 40))
    assert set(zip(drawn.senders.tolist(), drawn.receivers.tolist())) == set(zip(*np.nonzero(expected)))
    assert drawn.kept == int(expected.sum()) and drawn.requested == 40
    assert drawn.percent == pytest.approx(100 * 40 / graph.n_edges)
    assert list(np.abs(drawn.scores)) == sorted(np.abs(drawn.scores), reverse=True)
    # Every edge is in exactly one pen group, of its sign.
    assert sum(len(g.x) // 2 for g in drawn.groups) == drawn.kept
    assert {g.width for g in drawn.groups} <= set(WIDTHS)
    first = drawn.segments[0]
    s, r = drawn.senders[0], drawn.receivers[0]
    assert first[0][0] == layout.x[s] and first[0][1] > layout.y[s]
    assert first[1][1] < layout.y[graph.receiver_node[r]]
    assert drawn.names[0] == f"{graph.senders[s]}->{graph.receivers[r]}"
    # The edges into one head's q, k and v end at different points.
    sender = np.full(3, graph.senders.index("a0.h0"))
    receivers = np.asarray([graph.receivers.index(f"a3.h1<{which}>") for which in "qkv"])
    ends = edge_segments(graph, layout, sender, receivers)[:, 1, 0]
    assert ends[0] < layout.x[graph.head_sender(3, 1)] == ends[1] < ends[2]


def test_hover_finds_the_edge_under_the_pointer_and_nothing_far_away(graph):
    scores = np.zeros(graph.adjacency.shape, dtype=np.float32)
    scores[graph.senders.index("input"), graph.receivers.index("logits")] = -2.0
    scores[graph.senders.index("a0.h0"), graph.receivers.index("logits")] = 1.0
    scores[graph.senders.index("input"), graph.receivers.index("a0.h0<v>")] = 0.5
    layout = node_layout(graph)
    drawn = draw_circuit(graph, layout, scores, 3)
    assert drawn.names == ("input->logits", "a0.h0->logits", "input->a0.h0<v>")
    middle = drawn.segments[1].mean(axis=0)
    assert drawn.nearest(*middle, tolerance=0.05) == 1
    assert drawn.describe(1) == "a0.h0->logits: +1"
    assert drawn.nearest(-5.0, -5.0, tolerance=0.05) is None
    x, y = drawn.incident(graph.head_sender(0, 0), graph)
    assert len(x) == 4  # two edges touch a0.h0, two points each
    groups = {(g.positive, g.width) for g in drawn.groups}
    assert (False, WIDTHS[-1]) in groups and (True, WIDTHS[2]) in groups


def test_size_marker_and_nearest_curve_point():
    percents, f = [0.1, 1.0, 10.0, 100.0], [0.0, 0.5, 0.9, 1.0]
    assert curve_marker(10.0, percents) == pytest.approx(1.0)
    assert curve_marker(0.0, percents) == pytest.approx(-1.0)  # empty circuit: at the smallest size
    assert nearest_curve_point(percents, f, 7.0) == (10.0, 0.9)


@pytest.mark.parametrize("parallel", [False, True])
def test_the_graph_is_rebuilt_from_a_results_labels(parallel):
    graph = Graph(3, 5, parallel)
    rebuilt = graph_of_result(graph.senders, graph.adjacency.astype(np.int32))
    assert (rebuilt.n_layers, rebuilt.n_heads, rebuilt.parallel_attn_mlp) == (3, 5, parallel)
