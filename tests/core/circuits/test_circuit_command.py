"""``ioi-desktop circuit``: the files it writes agree with the core; bad input is one line, exit 2, nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ioi_desktop.cli import main
from ioi_desktop.core.circuits.files import read_edges_csv, read_graph_json
from ioi_desktop.core.pairfiles import write_pairs
from ioi_desktop.core.prompts import PromptPair, PromptSet

from tests.support.circuit_fixtures import ABC_PAIRS


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs")
    return write_pairs(folder / "abc.json", PromptSet(tuple(PromptPair(*p) for p in ABC_PAIRS)))


def _circuit(small, pairs_file, out, *extra):
    return main(["circuit", "--model", str(small.folder), "--pairs", str(pairs_file), "--out", str(out),
                 "--device", "cpu", "--quiet", *extra])


def test_discovery_writes_graph_edges_and_curves_then_evaluate_reads_them_back(small, small_prep, pairs_file, tmp_path, capsys):
    out = tmp_path / "circuit"
    code = _circuit(small, pairs_file, out, "--method", "exact,eap", "--ig-steps", "2")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads((out / "faithfulness.json").read_text())
    assert report["full"] == pytest.approx(small_prep.full, abs=1e-5)
    assert report["empty"] == pytest.approx(small_prep.empty, abs=1e-5)
    assert list(report["methods"]) == ["exact", "eap"]
    exact = report["methods"]["exact"]
    assert exact["percent"] == [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
    assert exact["faithfulness"][-1] == 1.0 and exact["edges"][-1] == 100
    assert set(exact) == {"percent", "edges", "metric", "faithfulness", "cpr", "cmd"}
    graph, scores, mask = read_graph_json(out / "graph.json")
    assert graph.n_edges == 100
    first = next(i for i, f in enumerate(exact["faithfulness"]) if f >= 0.9)
    assert mask.sum() == exact["edges"][first]  # the default circuit: the smallest with f >= 0.9
    csv_scores, csv_mask = read_edges_csv(out / "edges.csv", graph)
    np.testing.assert_array_equal(csv_scores, scores)
    np.testing.assert_array_equal(csv_mask, mask)
    assert f"circuit of {int(mask.sum())} edges" in captured.out

    code = _circuit(small, pairs_file, out, "--evaluate", str(out / "graph.json"))
    assert code == 0, capsys.readouterr().err
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["edges"] == int(mask.sum())
    assert evaluation["faithfulness"] == pytest.approx(exact["faithfulness"][first], abs=1e-6)
    assert evaluation["metric"] == pytest.approx(exact["metric"][first], abs=1e-5)


def test_edges_option_sets_the_circuit_in_graph_json(small, pairs_file, tmp_path, capsys):
    out = tmp_path / "c"
    assert _circuit(small, pairs_file, out, "--method", "eap", "--edges", "12") == 0, capsys.readouterr().err
    graph, scores, mask = read_graph_json(out / "graph.json")
    assert 0 < mask.sum() <= 12
    np.testing.assert_array_equal(mask, graph.circuit(scores, 12))
    assert _circuit(small, pairs_file, out, "--method", "eap", "--edges", "12", "--selection", "greedy") == 0
    graph, scores, mask = read_graph_json(out / "graph.json")
    np.testing.assert_array_equal(mask, graph.circuit(scores, 12, "greedy"))


@pytest.mark.parametrize("extra, words", [
    (["--method", "eap_ig", "--ig-steps", "0"], "at least 1 integration step"),
    (["--method", "acdc"], "no scoring method 'acdc'"),
    (["--edges", "101"], "has 100 edges"),
    (["--percent", "120"], "--percent must be from 0 to 100"),
    (["--edges", "5", "--percent", "5"], "not both"),
    (["--method", "exact", "--exact-limit", "10"], "more than the limit of 10"),
    (["--selection", "best"], "--selection must be topn or greedy"),
])
def test_bad_options_give_one_line_and_write_nothing(small, pairs_file, tmp_path, capsys, extra, words):
    out = tmp_path / "c"
    assert _circuit(small, pairs_file, out, *extra) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_misaligned_pairs_and_a_malformed_graph_file_are_refused(small, tmp_path, capsys):
    pairs = write_pairs(tmp_path / "bad.json", PromptSet((PromptPair(
        "When John and Mary went to the shops, John gave the bag to",
        "When John and Mary went to the park and the shops, John gave the bag to", " Mary", " John"),)))
    assert _circuit(small, pairs, tmp_path / "c") == 2
    assert "length" in capsys.readouterr().err
    bad = tmp_path / "graph.json"
    bad.write_text('{"cfg": {"n_layers": 3, "n_heads": 2}, "edges": {"x->y": {}}}')
    assert _circuit(small, pairs, tmp_path / "c", "--evaluate", str(bad)) == 2
    err = capsys.readouterr().err
    assert "the edge 'x->y' is not in a 3-layer 2-head graph" in err and err.count("\n") == 1
    assert not (tmp_path / "c").exists()
