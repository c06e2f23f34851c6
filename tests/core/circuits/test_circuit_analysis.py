"""The ``circuit`` analysis on the typed contract: its arrays are the core's numbers, progress adds up."""

from __future__ import annotations

import numpy as np
import pytest

from ioi_desktop.core.analyses import circuit
from ioi_desktop.core.circuits import discovery, scoring
from ioi_desktop.core.errors import AnalysisError

from tests.support.patching_helpers import RecordingProgress, context


def test_the_analysis_reports_the_cores_scores_curves_and_circuit(small, small_prep):
    progress = RecordingProgress()
    options = circuit.Options(methods=("eap", "exact"), circuit_percent=20.0, node_ablation=True)
    result = circuit.run(context(small.model, small.batch), options, progress)
    graph = small_prep.graph
    assert result.circuit_scores.shape == (2, graph.n_senders, graph.n_receivers)
    np.testing.assert_allclose(result.circuit_scores[0], scoring.eap_scores(small.model, small_prep), atol=1e-6)
    np.testing.assert_allclose(result.circuit_scores[1], scoring.exact_scores(small.model, small_prep), atol=1e-5)
    expected = discovery.faithfulness_curve(small.model, small_prep, result.circuit_scores[1])
    np.testing.assert_allclose(result.curve_faithfulness[1], expected.faithfulness, atol=1e-5)
    assert result.curve_faithfulness[:, -1].tolist() == [1.0, 1.0]
    mask = graph.circuit(result.circuit_scores[0], graph.size_for_percent(20.0))
    np.testing.assert_array_equal(result.circuit_edges, mask.astype(np.int32))
    assert result.chosen_edges == int(mask.sum())
    assert result.method_labels == ("eap", "exact") and result.sender_labels[0] == "input"
    assert result.receiver_labels[-1] == "logits" and result.n_edges == 100
    assert set(result.cpr) == {"eap", "exact"}
    np.testing.assert_allclose(result.circuit_node_ablation, scoring.node_ablation(small.model, small_prep), atol=1e-5)
    assert circuit.Options().node_ablation is False
    assert progress.total == progress.done == circuit.count_units(context(small.model, small.batch), options)
    assert circuit.hooks_needed(None, options) == set()


def test_options_are_checked():
    with pytest.raises(AnalysisError, match="circuit.ig_steps"):
        circuit.Options(ig_steps=0)
    with pytest.raises(AnalysisError, match="'acdc', which is not one of"):
        circuit.Options(methods=("acdc",))
    assert circuit.Options().methods == ("eap",)
