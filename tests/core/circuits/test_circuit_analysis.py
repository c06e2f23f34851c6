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


def test_a_set_without_a_circuit_gives_only_the_problem_and_it_round_trips(small, tmp_path):
    """Corrupted = clean: no gap, so no faithfulness; the Result says so (the run's other analyses go on)."""
    from ioi_desktop.core.results import RunResults, load_results, save_results
    from tests.support.circuit_fixtures import ABC_PAIRS
    from tests.support.patching_helpers import tokenized_pairs
    from tests.support.tiny_models import make_word_tokenizer

    same = [(clean, clean, correct, incorrect) for clean, _corrupt, correct, incorrect in ABC_PAIRS]
    progress = RecordingProgress()
    result = circuit.run(context(small.model, tokenized_pairs(same, make_word_tokenizer())), circuit.Options(), progress)
    assert "so faithfulness cannot be normalised" in result.problem and "ABC corruption" in result.problem
    assert result.arrays == {} and result.cpr is None
    loaded = load_results(save_results(RunResults({"circuit": result}), tmp_path / "r").parent)
    assert loaded["circuit"].problem == result.problem and loaded["circuit"].circuit_scores is None
    # Too costly exact scoring is a problem too, with the estimate.
    costly = circuit.run(context(small.model, small.batch), circuit.Options(methods=("exact",), exact_limit=10),
                         RecordingProgress())
    assert "100 forward passes" in costly.problem and costly.circuit_scores is None
