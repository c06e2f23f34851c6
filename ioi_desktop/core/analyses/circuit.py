"""Circuit discovery: edge scores on EAP-IG's graph, faithfulness curves, and the chosen circuit.

The graph, the scores and the evaluation are those of :mod:`ioi_desktop.core.circuits`
(EAP-IG / MIB convention: senders ``input``, ``a{L}.h{H}``, ``m{L}``; receivers
each head's ``<q>``/``<k>``/``<v>`` input, each MLP's input and ``logits``).
Every score estimates m(that edge corrupted) - m(clean), m the mean END logit
difference: ``eap`` (one backward pass on the clean run), ``eap_ig`` (gradients
averaged over ``ig_steps`` input interpolations corrupted -> clean), ``exact``
(each edge really corrupted; refused above ``exact_limit`` forward passes).
For each method the pruned top-n circuits at MIB's sizes are evaluated with
every other edge corrupted exactly; f = (m(C) - m(empty)) / (m(full) - m(empty)),
CPR the area under f and CMD the area between f and 1 (trapezoids over the
fraction of edges). ``circuit_edges`` marks the circuit of the first method:
``circuit_percent`` of the edges, by default the smallest size on its curve
with f >= 0.9, else the largest.

A prompt set or model that cannot have a circuit (see :func:`run`) gives a
Result with only ``problem`` (one sentence and what to do), so the other
analyses of a run still finish.

This analysis does its own forward passes (each head's q/k/v input needs a
split residual stream), so it asks nothing of the shared runs.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float32, Int32

from ioi_desktop.core.analyses.base import AnalysisContext, AnalysisOptions, AnalysisResult, Progress, array, labels, meta, option
from ioi_desktop.core.errors import AnalysisError

NAME = "circuit"
METHODS = ("eap", "eap_ig", "exact")


class Options(AnalysisOptions, analysis=NAME):
    methods: tuple[str, ...] = option(("eap",), "The edge-scoring methods, each with its faithfulness curve "
                                      "(the circuit is the first one's)", choices=METHODS)
    ig_steps: int = option(5, "EAP-IG integration steps", low=1, high=200)
    selection: str = option("topn", "How circuits are chosen from the scores: the largest |score| (topn) or "
                            "EAP-IG's greedy growth from logits", choices=("topn", "greedy"))
    exact_limit: int = option(5000, "Refuse exact scoring above this many forward passes of the prompt set",
                              low=1, high=10_000_000)
    circuit_percent: float | None = option(None, "The circuit's size in % of the edges (top edges, pruned)",
                                           low=0.0, high=100.0,
                                           none_text="the smallest size on the curve with faithfulness >= 0.9")
    node_ablation: bool = option(False, "Also score every node exactly: its output corrupted everywhere "
                                 "downstream (one evaluation per node)")


class Result(AnalysisResult, analysis=NAME, title="Circuit discovery"):
    circuit_scores: Float32[np.ndarray, "method sender receiver"] | None = array(
        "each method's edge scores (estimates of m(edge corrupted) - m(clean)); 0 where no edge exists")
    circuit_edges: Int32[np.ndarray, "sender receiver"] | None = array(
        "1 for the edges of the chosen circuit (the first method's), else 0")
    circuit_adjacency: Int32[np.ndarray, "sender receiver"] | None = array("1 where the graph has an edge")
    circuit_node_scores: Float32[np.ndarray, "method sender"] | None = array(
        "each sender's outgoing edge scores summed")
    circuit_node_ablation: Float32[np.ndarray, "sender"] | None = array(
        "exact node scores: m(the node's output corrupted everywhere) - m(clean) (option node_ablation)")
    curve_percent: Float32[np.ndarray, "size"] | None = array("circuit sizes of the curves, % of all edges (MIB's)")
    curve_edges: Int32[np.ndarray, "method size"] | None = array("edges of each curve circuit after pruning")
    curve_metric: Float32[np.ndarray, "method size"] | None = array("m(circuit): mean END logit difference")
    curve_faithfulness: Float32[np.ndarray, "method size"] | None = array(
        "(m(circuit) - m(empty)) / (m(full) - m(empty))")
    method_labels: tuple[str, ...] | None = labels("method", "the scoring methods, in the order run")
    sender_labels: tuple[str, ...] | None = labels("sender", "input, a0.h0, ..., m0, ...")
    receiver_labels: tuple[str, ...] | None = labels("receiver", "a0.h0<q>, ..., a0.h0<k>, ..., m0, ..., logits")
    full: float | None = meta("m(full graph): the clean mean logit difference")
    empty: float | None = meta("m(empty graph): the corrupted mean logit difference")
    cpr: dict | None = meta("method -> area under the faithfulness curve")
    cmd: dict | None = meta("method -> area between the faithfulness curve and 1")
    n_edges: int | None = meta("edges in the graph")
    chosen_size: int | None = meta("edges requested for the chosen circuit (its top n, before pruning)")
    chosen_edges: int | None = meta("edges in the chosen circuit")
    chosen_faithfulness: float | None = meta("faithfulness of the chosen circuit")
    ig_steps: int | None = meta("EAP-IG steps used")
    selection: str | None = meta("how circuits were chosen: topn or greedy")
    convention: str | None = meta("the graph and score convention")
    problem: str | None = meta("why no circuit was found for this prompt set or model (then nothing else is set)")


CONVENTION = ("EAP-IG/MIB graph; scores estimate m(edge corrupted) - m(clean) with m the mean END logit "
              "difference (noising); evaluation corrupts every edge outside the circuit exactly")


def hooks_needed(ctx: AnalysisContext, options: Options) -> set[str]:
    """None: the analysis runs the model itself with split q/k/v inputs."""
    return set()


def count_units(ctx: AnalysisContext, options: Options) -> int:
    """Prepare (2 passes), each method's work, then each curve."""
    from ioi_desktop.core.circuits.graph import Graph

    n_edges = Graph.of_model(ctx.handle.model).n_edges
    cost = {"eap": 1, "eap_ig": options.ig_steps, "exact": n_edges}
    return 1 + sum(cost[m] + 1 for m in options.methods) + (1 if options.node_ablation else 0)


class _Forward:
    """Progress of a sub-step, passed on (advance counted by the caller's units)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def check_cancelled(self) -> None:
        self.progress.check_cancelled()

    def advance(self, units: int = 1, message: str = "") -> None:
        self.progress.advance(units, message)


def run(ctx: AnalysisContext, options: Options, progress: Progress) -> Result:
    """The circuit, or, when this prompt set or model cannot have one (clean and corrupted prompts not
    aligned token for token, a clean-corrupt gap near 0, exact scoring over its limit, a model whose
    residual stream is not a sum of components), a Result with only ``problem`` saying why in one
    sentence and what to do: the other analyses of the run go on, and the Circuit panel shows it."""
    try:
        return _discover(ctx, options, progress)
    except AnalysisError as error:
        return Result(problem=str(error), convention=CONVENTION)


def _discover(ctx: AnalysisContext, options: Options, progress: Progress) -> Result:
    from ioi_desktop.core.circuits import discovery, scoring
    from ioi_desktop.core.circuits.graph import faithfulness_span

    model = ctx.handle.model
    progress.set_total(count_units(ctx, options))
    progress.check_cancelled()
    prep = scoring.prepare(model, ctx.batch)
    graph = prep.graph
    faithfulness_span(prep.full, prep.empty)  # before any scoring: without a gap there is no curve
    if "exact" in options.methods:
        scoring.check_exact_affordable(prep, options.exact_limit)
    size = discovery.requested_size(graph, None, options.circuit_percent)
    progress.advance(1, "circuit: clean and corrupted runs")
    all_scores, curves = [], []
    for method in options.methods:
        progress.check_cancelled()
        sub = _Forward(progress) if method != "eap" else None
        scores = discovery.score_edges(model, prep, method, ig_steps=options.ig_steps,
                                       exact_limit=options.exact_limit, progress=sub)
        if method == "eap":
            progress.advance(1, "circuit: EAP scores")
        curve = discovery.faithfulness_curve(model, prep, scores, selection=options.selection)
        progress.advance(1, f"circuit: {method} faithfulness curve")
        all_scores.append(scores)
        curves.append(curve)
    ablation = None
    if options.node_ablation:
        progress.check_cancelled()
        ablation = scoring.node_ablation(model, prep)
        progress.advance(1, "circuit: node ablation")
    mask = discovery.chosen_circuit(graph, all_scores[0], curves[0], size, options.selection)
    chosen = discovery.evaluate_circuit(model, prep, mask)
    return Result(
        circuit_scores=np.ascontiguousarray(np.stack(all_scores), dtype=np.float32),
        circuit_edges=mask.astype(np.int32),
        circuit_adjacency=graph.adjacency.astype(np.int32),
        circuit_node_scores=np.stack([graph.node_scores(s) for s in all_scores]).astype(np.float32),
        circuit_node_ablation=ablation,
        curve_percent=np.asarray(curves[0].percent, dtype=np.float32),
        curve_edges=np.asarray([c.edges for c in curves], dtype=np.int32),
        curve_metric=np.asarray([c.metric for c in curves], dtype=np.float32),
        curve_faithfulness=np.asarray([c.faithfulness for c in curves], dtype=np.float32),
        method_labels=tuple(options.methods),
        sender_labels=graph.senders,
        receiver_labels=graph.receivers,
        full=curves[0].full,
        empty=curves[0].empty,
        cpr={m: c.cpr for m, c in zip(options.methods, curves)},
        cmd={m: c.cmd for m, c in zip(options.methods, curves)},
        n_edges=graph.n_edges,
        chosen_size=discovery.chosen_size(graph, curves[0], size),
        chosen_edges=chosen["edges"],
        chosen_faithfulness=chosen["faithfulness"],
        ig_steps=options.ig_steps,
        selection=options.selection,
        convention=CONVENTION,
    )
