"""Circuit discovery end to end: score the edges, draw the faithfulness curve, pick a circuit (imports torch).

``score_edges`` runs one of :data:`~.graph.METHODS`; ``faithfulness_curve``
evaluates the top-n circuits (pruned) at MIB's sizes exactly, normalised by
the evaluated full and empty circuits (so f(full) = 1 and f(empty) = 0
exactly); ``chosen_circuit`` is the circuit a user asked for (``edges`` or
``percent``), by default the smallest size on the curve with f >= 0.9, else
the largest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ioi_desktop.core.circuits import scoring
from ioi_desktop.core.circuits.graph import METHODS, MIB_PERCENTS, Graph, curve_areas, faithfulness, faithfulness_span
from ioi_desktop.core.errors import AnalysisError

DEFAULT_IG_STEPS = 5
DEFAULT_EXACT_LIMIT = 5000  # forward passes of the prompt set exact scoring may take
TARGET_FAITHFULNESS = 0.9


def check_method(method: str) -> str:
    if method not in METHODS:
        raise AnalysisError(f"There is no scoring method {method!r}.", f"Choose one of {', '.join(METHODS)}.")
    return method


def score_edges(model, prep: scoring.Prepared, method: str, *, ig_steps: int = DEFAULT_IG_STEPS,
                exact_limit: int = DEFAULT_EXACT_LIMIT, progress=None) -> np.ndarray:
    """Edge scores [sender, receiver] by ``method``; cheap checks (steps, cost) come before any work."""
    check_method(method)
    if method == "eap":
        return scoring.eap_scores(model, prep)
    if method == "eap_ig":
        return scoring.eap_ig_scores(model, prep, ig_steps, progress)
    scoring.check_exact_affordable(prep, exact_limit)
    return scoring.exact_scores(model, prep, progress)


def method_cost(prep: scoring.Prepared, method: str, ig_steps: int = DEFAULT_IG_STEPS) -> int:
    """Progress units (and roughly forward+backward passes) a method takes."""
    return {"eap": 1, "eap_ig": ig_steps, "exact": scoring.exact_cost(prep)}[check_method(method)]


@dataclass
class Curve:
    """A faithfulness curve: per size its percent, edges after pruning, m(C) and f."""

    percent: list[float]
    edges: list[int]
    metric: list[float]
    faithfulness: list[float]
    full: float
    empty: float
    cpr: float = 0.0
    cmd: float = 0.0
    circuits: list[np.ndarray] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        return {"percent": self.percent, "edges": self.edges, "metric": self.metric,
                "faithfulness": self.faithfulness, "cpr": self.cpr, "cmd": self.cmd}


def faithfulness_curve(model, prep: scoring.Prepared, scores: np.ndarray, percents=MIB_PERCENTS,
                       progress=None, selection: str = "topn") -> Curve:
    """Evaluate the pruned circuits (``selection``: top-n or greedy) at ``percents`` (plus the full
    and empty graphs, for the normalisation)."""
    graph = prep.graph
    percents = [float(p) for p in percents]
    circuits = [graph.circuit(scores, graph.size_for_percent(p), selection) for p in percents]
    metrics = scoring.evaluate(model, prep, circuits + [graph.full(), graph.empty()], progress)
    full, empty = float(metrics[-2]), float(metrics[-1])
    faithfulness_span(full, empty)
    f = faithfulness(metrics[:-2], full, empty)
    cpr, cmd = curve_areas(percents, f)
    return Curve(percents, [int(c.sum()) for c in circuits], [float(m) for m in metrics[:-2]],
                 [float(x) for x in f], full, empty, cpr, cmd, circuits)


def evaluate_circuit(model, prep: scoring.Prepared, mask: np.ndarray) -> dict:
    """``{"edges", "metric", "faithfulness", "full", "empty"}`` of a circuit, pruned first."""
    graph = prep.graph
    pruned = graph.prune(mask)
    metric, full, empty = scoring.evaluate(model, prep, [pruned, graph.full(), graph.empty()])
    return {"edges": int(pruned.sum()), "metric": float(metric),
            "faithfulness": float(faithfulness(metric, full, empty)), "full": float(full), "empty": float(empty)}


def requested_size(graph: Graph, edges: int | None, percent: float | None) -> int | None:
    """The circuit size a user gave (``edges`` or ``percent``), checked; None when neither."""
    if edges is not None and percent is not None:
        raise AnalysisError("Both a number of edges and a percentage were given.", "Give --edges N or --percent P, not both.")
    if edges is not None:
        if not 0 <= edges <= graph.n_edges:
            raise AnalysisError(f"A circuit of {edges} edges was asked for, but this model's graph has "
                                f"{graph.n_edges} edges.", f"Give --edges from 0 to {graph.n_edges}.")
        return int(edges)
    if percent is not None:
        return graph.size_for_percent(percent)
    return None


def chosen_size(graph: Graph, curve: Curve, size: int | None) -> int:
    """Edges requested (top-n before pruning): ``size``, or the smallest curve size with f >= 0.9, else the largest."""
    if size is not None:
        return int(size)
    for percent, f in zip(curve.percent, curve.faithfulness):
        if f >= TARGET_FAITHFULNESS:
            return graph.size_for_percent(percent)
    return graph.size_for_percent(max(curve.percent))


def chosen_circuit(graph: Graph, scores: np.ndarray, curve: Curve, size: int | None,
                   selection: str = "topn") -> np.ndarray:
    """The circuit of ``size`` edges (``selection``, pruned), or the smallest on the curve with f >= 0.9, else the largest."""
    if size is not None:
        return graph.circuit(scores, size, selection)
    for circuit, f in zip(curve.circuits, curve.faithfulness):
        if f >= TARGET_FAITHFULNESS:
            return circuit
    return curve.circuits[int(np.argmax(curve.percent))]
