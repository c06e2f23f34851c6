"""What the Circuit panel draws, computed here so the panel only renders (numpy only).

Layout convention: one row per stage of the residual stream, ``input`` at the
bottom (y = 0), layer L's heads ``a{L}.h{H}`` at x = H and its MLP ``m{L}``
beside them (x = n_heads + 0.5) on row y = L + 1, ``logits`` on top
(y = n_layers + 1); ``input`` and ``logits`` are centred. An edge is drawn
from just above its sender to just below its receiver's node; a head's q, k and
v inputs enter it left, centre and right, so the three edges into one head stay
apart. Widths grow with |score| relative to the largest |score| of the method
(so sizes compare across circuit sizes); the sign picks the colour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ioi_desktop.core.circuits.graph import Graph

WIDTHS: tuple[float, ...] = (1.0, 2.0, 3.5, 5.5)  # pen widths in pixels, smallest |score| first
_QKV_OFFSET = {"q": -0.22, "k": 0.0, "v": 0.22}
_END_GAP = 0.12


@dataclass(frozen=True)
class NodeLayout:
    """Per node of ``Graph.nodes``: its position, kind (input, head, mlp, logits) and (layer, head) for heads."""

    names: tuple[str, ...]
    x: np.ndarray
    y: np.ndarray
    kinds: tuple[str, ...]
    heads: tuple[tuple[int, int] | None, ...]
    row_ticks: tuple[tuple[float, str], ...]
    column_ticks: tuple[tuple[float, str], ...]

    def index_of_head(self, layer: int, head: int) -> int | None:
        try:
            return self.heads.index((layer, head))
        except ValueError:
            return None


def node_layout(graph: Graph) -> NodeLayout:
    """Node positions by layer (see the module docstring)."""
    H = graph.n_heads
    middle = (H + 0.5) / 2.0
    x, y, kinds, heads = [middle], [0.0], ["input"], [None]
    for layer in range(graph.n_layers):
        for head in range(H):
            x.append(float(head)), y.append(layer + 1.0), kinds.append("head"), heads.append((layer, head))
        x.append(H + 0.5), y.append(layer + 1.0), kinds.append("mlp"), heads.append(None)
    x.append(middle), y.append(graph.n_layers + 1.0), kinds.append("logits"), heads.append(None)
    rows = ((0.0, "input"),) + tuple((layer + 1.0, f"layer {layer}") for layer in range(graph.n_layers)) + (
        (graph.n_layers + 1.0, "logits"),)
    columns = tuple((float(h), f"h{h}") for h in range(H)) + ((H + 0.5, "MLP"),)
    return NodeLayout(graph.nodes, np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64),
                      tuple(kinds), tuple(heads), rows, columns)


@dataclass(frozen=True)
class LineGroup:
    """Edges drawn with one pen: sign, width, and x/y pairs (``connect="pairs"``)."""

    positive: bool
    width: float
    x: np.ndarray
    y: np.ndarray


@dataclass(frozen=True)
class DrawnCircuit:
    """A circuit ready to draw: its edges (largest |score| first) with names, scores and segments."""

    requested: int
    kept: int
    n_edges: int
    percent: float  # requested / all edges, in %
    senders: np.ndarray
    receivers: np.ndarray
    names: tuple[str, ...]
    scores: np.ndarray
    segments: np.ndarray  # [edge, 2 (start, end), 2 (x, y)]
    groups: tuple[LineGroup, ...]
    nodes_in: np.ndarray  # bool per node

    def incident(self, node: int, graph: Graph) -> tuple[np.ndarray, np.ndarray]:
        """x, y pairs of the drawn edges that start or end at ``node`` (an index into ``Graph.nodes``)."""
        touches = (self.senders == node) | (graph.receiver_node[self.receivers] == node)
        return _pairs(self.segments[touches])

    def nearest(self, x: float, y: float, tolerance: float) -> int | None:
        """Index of the drawn edge whose segment passes nearest (x, y), if within ``tolerance`` (view units)."""
        if not len(self.names):
            return None
        start, end = self.segments[:, 0], self.segments[:, 1]
        d = end - start
        length2 = np.maximum((d ** 2).sum(axis=1), 1e-12)
        t = np.clip(((np.array([x, y]) - start) * d).sum(axis=1) / length2, 0.0, 1.0)
        closest = start + t[:, None] * d
        distance = np.sqrt(((closest - np.array([x, y])) ** 2).sum(axis=1))
        best = int(np.argmin(distance))
        return best if distance[best] <= tolerance else None

    def describe(self, index: int) -> str:
        """``a0.h0->a3.h3<v>: +0.123`` (the score estimates m(edge corrupted) - m(clean))."""
        return f"{self.names[index]}: {self.scores[index]:+.4g}"


def _pairs(segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (np.ascontiguousarray(segments[:, :, 0].reshape(-1)),
            np.ascontiguousarray(segments[:, :, 1].reshape(-1)))


def edge_segments(graph: Graph, layout: NodeLayout, senders: np.ndarray, receivers: np.ndarray) -> np.ndarray:
    """[edge, 2, 2]: from just above the sender to just below the receiver's node (q/k/v side by side)."""
    node = graph.receiver_node[receivers]
    offsets = np.zeros(len(receivers))
    for i, j in enumerate(receivers):
        name = graph.receivers[int(j)]
        if name.endswith(">"):
            offsets[i] = _QKV_OFFSET[name[-2]]
    start = np.stack([layout.x[senders], layout.y[senders] + _END_GAP], axis=1)
    end = np.stack([layout.x[node] + offsets, layout.y[node] - _END_GAP], axis=1)
    return np.stack([start, end], axis=1) if len(senders) else np.zeros((0, 2, 2))


def draw_circuit(graph: Graph, layout: NodeLayout, scores: np.ndarray, requested: int,
                 selection: str = "topn") -> DrawnCircuit:
    """The pruned circuit of ``requested`` edges (``selection``) as segments grouped by sign and width."""
    mask = graph.circuit(scores, requested, selection)
    s, r = np.nonzero(mask)
    values = np.asarray(scores, dtype=np.float64)[s, r]
    order = np.argsort(-np.abs(values), kind="stable")
    s, r, values = s[order], r[order], values[order]
    segments = edge_segments(graph, layout, s, r)
    peak = float(np.abs(np.asarray(scores, dtype=np.float64)[graph.adjacency]).max()) if graph.n_edges else 0.0
    share = np.abs(values) / peak if peak > 0 else np.zeros_like(values)
    bins = np.minimum((share * len(WIDTHS)).astype(int), len(WIDTHS) - 1)
    groups = []
    for positive in (False, True):
        for b, width in enumerate(WIDTHS):
            chosen = (bins == b) & ((values >= 0) == positive)
            if chosen.any():
                x, y = _pairs(segments[chosen])
                groups.append(LineGroup(positive, width, x, y))
    percent = 100.0 * requested / graph.n_edges if graph.n_edges else 0.0
    return DrawnCircuit(int(requested), int(mask.sum()), graph.n_edges, percent, s, r,
                        tuple(f"{graph.senders[i]}->{graph.receivers[j]}" for i, j in zip(s, r)),
                        values.astype(np.float32), segments, tuple(groups), graph.nodes_in(mask))


def curve_marker(percent: float, curve_percents) -> float:
    """x of the size marker on a log-percent axis: log10 of the size, at least the smallest curve size."""
    low = float(np.min(curve_percents)) if len(curve_percents) else 0.1
    return float(np.log10(max(float(percent), low)))


def head_of(layout: NodeLayout, node: int) -> tuple[int, int] | None:
    """(layer, head) of a node, None for input, MLPs and logits."""
    return layout.heads[node] if 0 <= node < len(layout.heads) else None


def nearest_curve_point(curve_percents, faithfulness, percent: float) -> tuple[float, float] | None:
    """The evaluated point of a curve whose size is nearest ``percent`` on the log axis: (percent, f)."""
    p = np.asarray(curve_percents, dtype=np.float64)
    if not p.size:
        return None
    i = int(np.argmin(np.abs(np.log10(p) - np.log10(max(float(percent), 1e-9)))))
    return float(p[i]), float(np.asarray(faithfulness)[i])


def graph_of_result(sender_labels, adjacency: np.ndarray | None) -> Graph:
    """The graph a circuit result was computed on, from its sender labels (``input, a0.h0, ..., m0, ...``)
    and adjacency (parallel attention/MLP blocks: MLP 0 receives no edge from layer 0's heads)."""
    senders = list(sender_labels)
    n_layers = sum(1 for name in senders if name.startswith("m"))
    n_heads = sum(1 for name in senders if name.startswith("a0."))
    serial = Graph(n_layers, n_heads)
    parallel = adjacency is not None and not adjacency[serial.head_sender(0, 0), serial.mlp_receiver(0)]
    return Graph(n_layers, n_heads, bool(parallel))
