"""``ioi-desktop circuit``: edge attribution, faithfulness curves and circuit files, headless.

Examples::

    ioi-desktop circuit --pairs abc.json --method eap_ig --ig-steps 5 --out circuit/
    ioi-desktop circuit --pairs abc.json --method eap,eap_ig,exact --percent 5 --out circuit/
    ioi-desktop circuit --evaluate circuit/graph.json --pairs abc.json --out circuit/

Discovery writes ``graph.json`` (EAP-IG's format: every edge's score, ``in_graph``
for the chosen circuit), ``edges.csv`` and ``faithfulness.json`` (one curve per
method over MIB's sizes). With several methods, graph.json and edges.csv hold
the first one's scores. The chosen circuit is ``--edges``/``--percent`` top
edges (pruned), by default the smallest size on the curve with f >= 0.9, else
the largest. ``--evaluate`` evaluates a given graph file's ``in_graph`` edges
(pruned the same way) and writes ``evaluation.json``. Nothing is written until
everything is computed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "Find circuits: score every edge (eap, eap_ig, exact), draw faithfulness curves, write EAP-IG graph files."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="bundled",
                        help="'bundled' (default), a model folder, or a model name in the Hugging Face cache")
    parser.add_argument("--pairs", metavar="FILE", help="prompt pairs (.json or .csv), clean and corrupted of equal token length")
    parser.add_argument("--method", default="eap", metavar="M[,M...]",
                        help="edge scores: eap (default), eap_ig or exact; several comma-separated give curves side by side")
    parser.add_argument("--ig-steps", default="5", metavar="N", help="EAP-IG integration steps (default 5)")
    parser.add_argument("--edges", metavar="N", help="the circuit in graph.json: the top N edges (pruned)")
    parser.add_argument("--percent", metavar="P", help="the circuit in graph.json: the top P%% of edges (pruned)")
    parser.add_argument("--selection", default="topn", metavar="S",
                        help="how circuits are chosen from the scores: topn (default: the largest |score|) or greedy "
                        "(EAP-IG's: grown from logits)")
    parser.add_argument("--exact-limit", default="5000", metavar="N",
                        help="refuse exact scoring above N forward passes of the prompt set (default 5000)")
    parser.add_argument("--evaluate", metavar="GRAPH_JSON", help="evaluate this graph file's circuit instead of discovering one")
    parser.add_argument("--out", metavar="DIR", help="folder to write the files into")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N, mps, or all (split across every GPU)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def _number(value: str | None, option: str, kind=int):
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        from ioi_desktop.core.errors import AnalysisError

        raise AnalysisError(f"{option} must be a {'whole ' if kind is int else ''}number, not {value!r}.",
                            f"For example {option} {'5' if kind is int else '2.5'}.") from None


class _Lines:
    """Progress as short lines on stderr."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.total = 0
        self.done = 0

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr)

    def set_total(self, units: int) -> None:
        self.total, self.done = units, 0

    def advance(self, units: int = 1, message: str = "") -> None:
        self.done += units

    def check_cancelled(self) -> None:
        pass

    def rows(self, *args) -> None:
        pass


def _prepare(args, lines: _Lines):
    from ioi_desktop.core.circuits import scoring
    from ioi_desktop.core.models import ModelSpec, load_model
    from ioi_desktop.core.pairfiles import read_pairs
    from ioi_desktop.core.prompts import tokenize_set

    prompt_set = read_pairs(args.pairs)
    lines.say(f"Loading {args.model} ...")
    handle = load_model(ModelSpec(source=args.model, device=args.device))
    batch = tokenize_set(prompt_set, handle.tokenizer, n_ctx=handle.info.n_ctx,
                            prepend_bos=getattr(handle.info, "prepend_bos", None))
    return handle.model, scoring.prepare(handle.model, batch)


def _check_out(args):
    from ioi_desktop.core.errors import AnalysisError

    for flag in ("pairs", "out"):
        if getattr(args, flag) is None:
            raise AnalysisError(f"circuit needs --{flag}.",
                                "For example: ioi-desktop circuit --pairs pairs.json --method eap --out circuit")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise AnalysisError(f"--out {out} is a file, not a folder.", "Give a folder name; it is created if needed.")
    return out


def _write_json(path: Path, data) -> None:
    from ioi_desktop.core.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=1) + "\n")


def run_evaluate(args, lines: _Lines) -> int:
    from ioi_desktop.core.circuits import discovery
    from ioi_desktop.core.circuits.files import read_graph_json
    from ioi_desktop.core.errors import AnalysisError

    out = _check_out(args)
    if args.edges is not None or args.percent is not None:
        raise AnalysisError("--evaluate takes the circuit from the graph file.", "Drop --edges/--percent.")
    file_graph, _scores, mask = read_graph_json(args.evaluate)
    model, prep = _prepare(args, lines)
    graph = prep.graph
    if (file_graph.n_layers, file_graph.n_heads, file_graph.parallel_attn_mlp) != (
            graph.n_layers, graph.n_heads, graph.parallel_attn_mlp):
        raise AnalysisError(
            f"{Path(args.evaluate).name} is a graph of a {file_graph.n_layers}-layer {file_graph.n_heads}-head model, "
            f"but {args.model} has {graph.n_layers} layers of {graph.n_heads} heads.",
            "Evaluate it with the model it was made for.")
    result = discovery.evaluate_circuit(model, prep, mask)
    _write_json(out / "evaluation.json", result)
    print(f"Wrote {out / 'evaluation.json'}: {result['edges']} edges, faithfulness {result['faithfulness']:.3f}.")
    return 0


def run(args: argparse.Namespace) -> int:
    from ioi_desktop.core.circuits import discovery, scoring
    from ioi_desktop.core.circuits.files import write_edges_csv, write_graph_json
    from ioi_desktop.core.errors import AnalysisError

    lines = _Lines(args.quiet)
    if args.evaluate:
        return run_evaluate(args, lines)
    out = _check_out(args)
    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    if not methods:
        raise AnalysisError("--method names no method.", "Give eap, eap_ig or exact.")
    for method in methods:
        discovery.check_method(method)
    if args.selection not in ("topn", "greedy"):
        raise AnalysisError(f"--selection must be topn or greedy, not {args.selection!r}.", "For example --selection greedy.")
    ig_steps = _number(args.ig_steps, "--ig-steps")
    scoring.check_ig_steps(ig_steps)
    exact_limit = _number(args.exact_limit, "--exact-limit")
    edges, percent = _number(args.edges, "--edges"), _number(args.percent, "--percent", float)
    if percent is not None and not 0 <= percent <= 100:
        raise AnalysisError(f"--percent must be from 0 to 100, not {args.percent}.", "For example --percent 5.")
    if edges is not None and edges < 0:
        raise AnalysisError(f"--edges must be at least 0, not {edges}.", "For example --edges 50.")
    model, prep = _prepare(args, lines)
    size = discovery.requested_size(prep.graph, edges, percent)
    if "exact" in methods:
        scoring.check_exact_affordable(prep, exact_limit)
    curves, first_scores = {}, None
    for method in methods:
        cost = discovery.method_cost(prep, method, ig_steps)
        passes = {"eap": "1 forward and backward pass", "eap_ig": f"{cost} forward and backward passes",
                  "exact": f"{cost} forward passes"}[method]
        lines.say(f"Scoring {prep.graph.n_edges} edges with {method}: {passes} of the prompt set "
                  f"(about {max(1, round(cost * prep.forward_seconds * (3 if method != 'exact' else 1)))} s) ...")
        scores = discovery.score_edges(model, prep, method, ig_steps=ig_steps, exact_limit=exact_limit, progress=lines)
        lines.say(f"Evaluating the {method} faithfulness curve ...")
        curves[method] = (scores, discovery.faithfulness_curve(model, prep, scores, selection=args.selection))
        first_scores = first_scores if first_scores is not None else scores
    first_curve = curves[methods[0]][1]
    mask = discovery.chosen_circuit(prep.graph, first_scores, first_curve, size, args.selection)
    report = {"full": first_curve.full, "empty": first_curve.empty,
              "methods": {method: curve.to_dict() for method, (_s, curve) in curves.items()}}
    out.mkdir(parents=True, exist_ok=True)
    write_graph_json(out / "graph.json", prep.graph, first_scores, mask)
    write_edges_csv(out / "edges.csv", prep.graph, first_scores, mask)
    _write_json(out / "faithfulness.json", report)
    summary = "; ".join(f"{m}: CPR {c.cpr:.3f}, CMD {c.cmd:.3f}" for m, (_s, c) in curves.items())
    print(f"Wrote graph.json, edges.csv and faithfulness.json to {out} (circuit of {int(mask.sum())} edges; {summary}).")
    return 0
