"""Graph JSON / edges CSV round trips and refusals; the faithfulness curve's ends and chosen circuit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ioi_desktop.core.circuits import discovery, scoring
from ioi_desktop.core.circuits.files import read_edges_csv, read_graph_json, write_edges_csv, write_graph_json
from ioi_desktop.core.circuits.graph import MIB_PERCENTS, Graph
from ioi_desktop.core.errors import AnalysisError, FileFormatError


def _random(graph, seed=0):
    rng = np.random.default_rng(seed)
    scores = (rng.standard_normal(graph.adjacency.shape) * graph.adjacency).astype(np.float32)
    return scores, graph.circuit(scores, graph.n_edges // 5)


def test_graph_json_round_trips_in_eap_ig_form(tmp_path):
    graph = Graph(4, 4, d_model=96)
    scores, mask = _random(graph)
    path = write_graph_json(tmp_path / "graph.json", graph, scores, mask)
    data = json.loads(path.read_text())
    assert data["cfg"] == {"n_layers": 4, "n_heads": 4, "parallel_attn_mlp": False, "d_model": 96}
    assert len(data["edges"]) == 479 and len(data["nodes"]) == 1 + 4 * 5 + 1
    assert set(data["edges"]["a0.h0->a3.h3<v>"]) == {"score", "in_graph"}
    assert data["nodes"]["logits"]["in_graph"] is True
    back_graph, back_scores, back_mask = read_graph_json(path)
    assert back_graph == graph
    np.testing.assert_array_equal(back_scores, scores)
    np.testing.assert_array_equal(back_mask, mask)


def test_edges_csv_round_trips(tmp_path):
    graph = Graph(2, 3)
    scores, mask = _random(graph, 1)
    path = write_edges_csv(tmp_path / "edges.csv", graph, scores, mask)
    assert path.read_text().splitlines()[0] == "edge,sender,receiver,score,in_graph"
    back_scores, back_mask = read_edges_csv(path, graph)
    np.testing.assert_array_equal(back_scores, scores)
    np.testing.assert_array_equal(back_mask, mask)


@pytest.mark.parametrize("text, words", [
    ("{not json", "invalid JSON at line 1"),
    ("[]", "the top level is not an object"),
    ('{"cfg": {"n_layers": 2, "n_heads": 2}}', "the key 'edges' is missing"),
    ('{"cfg": {"n_layers": 0, "n_heads": 2}, "edges": {}}', "cfg.n_layers must be"),
    ('{"cfg": {"n_layers": 2, "n_heads": 2}, "edges": {"m5->logits": {"score": 1, "in_graph": true}}}',
     "the edge 'm5->logits' is not in a 2-layer 2-head graph"),
    ('{"cfg": {"n_layers": 2, "n_heads": 2}, "edges": {"m0->logits": {"score": "big", "in_graph": true}}}',
     "the edge 'm0->logits' has a score that is not a finite number"),
    ('{"cfg": {"n_layers": 2, "n_heads": 2}, "edges": {"m0->logits": {"score": 1, "in_graph": 1}}}',
     "the edge 'm0->logits' has an in_graph that is not true or false"),
    ('{"cfg": {"n_layers": 2, "n_heads": 2}, "edges": {}, "nodes": {"a9.h0": {"in_graph": true}}}',
     "the node 'a9.h0' is not in"),
])
def test_malformed_graph_files_are_refused_in_one_sentence(tmp_path, text, words):
    path = tmp_path / "graph.json"
    path.write_text(text)
    with pytest.raises(FileFormatError) as info:
        read_graph_json(path)
    assert words in info.value.message
    assert info.value.message.startswith("graph.json is not an EAP-IG graph file")


def test_missing_and_bad_csv_files_are_refused(tmp_path):
    graph = Graph(1, 1)
    with pytest.raises(FileFormatError, match="There is no file"):
        read_graph_json(tmp_path / "none.json")
    bad = tmp_path / "edges.csv"
    bad.write_text("edge,sender,receiver,score,in_graph\nm0->logits,m0,logits,nan,true\n")
    with pytest.raises(FileFormatError, match="line 2: the edge 'm0->logits' needs a finite score"):
        read_edges_csv(bad, graph)
    bad.write_text("a,b\n")
    with pytest.raises(FileFormatError, match="first row must be"):
        read_edges_csv(bad, graph)


def test_the_curve_ends_at_exactly_one_and_starts_from_the_empty_circuit(small, small_prep):
    scores = scoring.exact_scores(small.model, small_prep)
    curve = discovery.faithfulness_curve(small.model, small_prep, scores)
    assert curve.percent == list(MIB_PERCENTS)
    assert curve.faithfulness[-1] == 1.0 and curve.edges[-1] == small_prep.graph.n_edges
    assert curve.edges[0] == 0 and curve.faithfulness[0] == 0.0  # 0.1% of 100 edges rounds to none
    assert curve.full == pytest.approx(small_prep.full, abs=1e-5)
    assert curve.empty == pytest.approx(small_prep.empty, abs=1e-5)
    assert 0 < curve.cpr < 1.5 and curve.cmd >= 0
    # Each point is the exact evaluation of its pruned top-n circuit.
    graph = small_prep.graph
    for percent, edges, metric in zip(curve.percent, curve.edges, curve.metric):
        mask = graph.circuit(scores, graph.size_for_percent(percent))
        assert mask.sum() == edges
        assert scoring.evaluate(small.model, small_prep, [mask])[0] == pytest.approx(metric, abs=1e-5)
    chosen = discovery.chosen_circuit(graph, scores, curve, None)
    first = next(i for i, f in enumerate(curve.faithfulness) if f >= 0.9)
    assert chosen.sum() == curve.edges[first]
    assert discovery.chosen_circuit(graph, scores, curve, 7).sum() <= 7


def test_requested_sizes_are_checked():
    graph = Graph(2, 2)
    assert discovery.requested_size(graph, None, None) is None
    assert discovery.requested_size(graph, 3, None) == 3
    assert discovery.requested_size(graph, None, 100.0) == graph.n_edges
    with pytest.raises(AnalysisError, match=f"has {graph.n_edges} edges"):
        discovery.requested_size(graph, graph.n_edges + 1, None)
    with pytest.raises(AnalysisError, match="not both"):
        discovery.requested_size(graph, 3, 5.0)
    with pytest.raises(AnalysisError, match="no scoring method 'acdc'"):
        discovery.check_method("acdc")
