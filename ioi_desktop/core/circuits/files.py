"""Circuit files: EAP-IG's graph JSON and an edges CSV (numpy only).

Graph JSON, as EAP-IG's ``Graph.to_json`` writes it and MIB submissions use::

    {"cfg": {"n_layers": 4, "n_heads": 4, "parallel_attn_mlp": false, "d_model": 96},
     "nodes": {"input": {"in_graph": true}, "a0.h0": {"in_graph": true}, ...},
     "edges": {"input->a0.h0<q>": {"score": -0.31, "in_graph": true}, ...}}

A node is ``in_graph`` when an in-graph edge starts or ends at it. Edges the
file leaves out are read as score 0, not in the graph; unknown edges, wrong
types and non-finite scores are refused with one sentence naming the key or
the edge. The CSV has one row per edge: ``edge,sender,receiver,score,in_graph``.
Writes are atomic (a failed save leaves the previous file).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from ioi_desktop.core.atomic import write_text_atomic
from ioi_desktop.core.circuits.graph import Graph
from ioi_desktop.core.errors import FileFormatError

MAX_BYTES = 256 * 1024 * 1024
CSV_COLUMNS = ("edge", "sender", "receiver", "score", "in_graph")


def graph_dict(graph: Graph, scores: np.ndarray, mask: np.ndarray) -> dict:
    graph.check_scores(scores)
    mask = np.asarray(mask, dtype=bool) & graph.adjacency
    nodes = graph.nodes_in(mask)
    s, r = graph.edge_index
    return {
        "cfg": graph.cfg(),
        "nodes": {name: {"in_graph": bool(nodes[i])} for i, name in enumerate(graph.nodes)},
        "edges": {name: {"score": float(scores[i, j]), "in_graph": bool(mask[i, j])}
                  for name, i, j in zip(graph.edge_names, s, r)},
    }


def write_graph_json(path, graph: Graph, scores: np.ndarray, mask: np.ndarray) -> Path:
    return write_text_atomic(path, json.dumps(graph_dict(graph, scores, mask), indent=1) + "\n")


def write_edges_csv(path, graph: Graph, scores: np.ndarray, mask: np.ndarray) -> Path:
    graph.check_scores(scores)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    s, r = graph.edge_index
    for name, i, j in zip(graph.edge_names, s, r):
        writer.writerow([name, graph.senders[i], graph.receivers[j], repr(float(scores[i, j])),
                         "true" if mask[i, j] else "false"])
    return write_text_atomic(path, buffer.getvalue())


def _read_text(path) -> str:
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise FileFormatError(f"{path.name} is {size // 2**20} MiB, too large for a circuit file.",
                                  "Give a graph JSON or edges CSV written by IOI Desktop or EAP-IG.")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileFormatError(f"There is no file {path}.", "Check the path.") from None
    except IsADirectoryError:
        raise FileFormatError(f"{path} is a folder, not a circuit file.", "Give the graph.json file inside it.") from None
    except UnicodeDecodeError:
        raise FileFormatError(f"{path.name} is not a text file.", "Give a graph JSON or edges CSV.") from None
    except OSError as exc:
        raise FileFormatError(f"{path.name} cannot be read: {exc.strerror or exc}.", "Check the file's permissions.") from exc


def _bad(path: Path, what: str) -> FileFormatError:
    return FileFormatError(f"{path.name} is not an EAP-IG graph file: {what}.",
                           "Give a graph.json written by IOI Desktop or EAP-IG's Graph.to_json.")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_graph_json(path) -> tuple[Graph, np.ndarray, np.ndarray]:
    """(graph, scores [sender, receiver] float32, in_graph mask) of an EAP-IG graph file."""
    path = Path(path)
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise _bad(path, f"invalid JSON at line {exc.lineno}") from None
    if not isinstance(data, dict):
        raise _bad(path, "the top level is not an object")
    for key in ("cfg", "edges"):
        if not isinstance(data.get(key), dict):
            raise _bad(path, f"the key {key!r} is missing or not an object")
    cfg = data["cfg"]
    for key in ("n_layers", "n_heads"):
        if not _is_int(cfg.get(key)) or cfg[key] < 1:
            raise _bad(path, f"cfg.{key} must be a whole number of at least 1")
    parallel = cfg.get("parallel_attn_mlp", False)
    if not isinstance(parallel, bool):
        raise _bad(path, "cfg.parallel_attn_mlp must be true or false")
    d_model = cfg.get("d_model", 0)
    if not _is_int(d_model) or d_model < 0:
        raise _bad(path, "cfg.d_model must be a whole number")
    graph = Graph(cfg["n_layers"], cfg["n_heads"], parallel, d_model)
    scores = np.zeros(graph.adjacency.shape, dtype=np.float32)
    mask = graph.empty()
    for name, entry in data["edges"].items():
        where = graph.edge(name)
        if where is None:
            raise _bad(path, f"the edge {name!r} is not in a {graph.n_layers}-layer {graph.n_heads}-head graph")
        if not isinstance(entry, dict):
            raise _bad(path, f"the edge {name!r} is not an object")
        score = entry.get("score", 0.0)
        if score is None:
            score = 0.0
        if not _is_number(score):
            raise _bad(path, f"the edge {name!r} has a score that is not a finite number")
        in_graph = entry.get("in_graph", False)
        if not isinstance(in_graph, bool):
            raise _bad(path, f"the edge {name!r} has an in_graph that is not true or false")
        scores[where] = score
        mask[where] = in_graph
    nodes = data.get("nodes", {})
    if not isinstance(nodes, dict):
        raise _bad(path, "the key 'nodes' is not an object")
    known = set(graph.nodes)
    for name, entry in nodes.items():
        if name not in known:
            raise _bad(path, f"the node {name!r} is not in a {graph.n_layers}-layer {graph.n_heads}-head graph")
        if not isinstance(entry, dict) or not isinstance(entry.get("in_graph", False), bool):
            raise _bad(path, f"the node {name!r} has an in_graph that is not true or false")
    return graph, scores, mask


def read_edges_csv(path, graph: Graph) -> tuple[np.ndarray, np.ndarray]:
    """(scores, in_graph mask) of an edges CSV for ``graph``."""
    path = Path(path)
    rows = list(csv.reader(io.StringIO(_read_text(path))))
    if not rows or tuple(c.strip() for c in rows[0][: len(CSV_COLUMNS)]) != CSV_COLUMNS:
        raise FileFormatError(f"{path.name} is not an edges CSV: its first row must be {','.join(CSV_COLUMNS)}.",
                              "Give an edges.csv written by IOI Desktop.")
    scores = np.zeros(graph.adjacency.shape, dtype=np.float32)
    mask = graph.empty()
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) < len(CSV_COLUMNS):
            raise FileFormatError(f"{path.name} line {number} has {len(row)} columns, not {len(CSV_COLUMNS)}.",
                                  "Give an edges.csv written by IOI Desktop.")
        where = graph.edge(row[0])
        if where is None:
            raise FileFormatError(f"{path.name} line {number}: the edge {row[0]!r} is not in this model's graph.",
                                  "Use an edges file written for this model.")
        try:
            score = float(row[3])
        except ValueError:
            score = math.nan
        if not math.isfinite(score) or row[4] not in ("true", "false"):
            raise FileFormatError(f"{path.name} line {number}: the edge {row[0]!r} needs a finite score and "
                                  "in_graph true or false.", "Give an edges.csv written by IOI Desktop.")
        scores[where] = score
        mask[where] = row[4] == "true"
    return scores, mask
