"""The computation graph of EAP-IG (Hanna et al. 2024, ``src/eap/graph.py``) and MIB, and circuits on it.

Convention (exactly EAP-IG's):

- senders (index order): ``input`` (token + position embeddings), then per
  layer ``L`` its heads ``a{L}.h{H}`` (each head's output, ``hook_result``) and
  its MLP ``m{L}`` (``hook_mlp_out``): ``1 + L (H + 1)`` senders;
- receivers (index order): per layer its heads' query inputs ``a{L}.h{H}<q>``,
  then key ``<k>`` and value ``<v>`` inputs, then its MLP's input ``m{L}``;
  then ``logits`` (the residual stream after the last block): ``L (3H + 1) + 1``;
- an edge runs from every sender to every receiver later in the residual
  stream: a head of layer L receives from ``input`` and every head and MLP of
  layers < L; MLP L also from the heads of layer L (not for parallel
  attention/MLP blocks, GPT-J / NeoX); ``logits`` from every sender. Edge
  names are ``"{sender}->{receiver}"``: ``a0.h0->a3.h3<v>``, ``m2->logits``.
  GPT-2 small (12 x 12) has 32,491 edges, a 4-layer 4-head model 479.

Scores and circuits are ``[sender, receiver]`` arrays (0 / False where no edge
exists). A circuit is the top-n edges by |score| (``topn``) or EAP-IG's
``greedy`` selection (grown from ``logits``: each step the best edge into a node
already in the circuit), pruned so that every kept edge lies on a path from
``input`` to ``logits``. Faithfulness f = (m(C) - m(empty)) / (m(full) -
m(empty)); the faithfulness curve uses MIB's sizes (:data:`MIB_PERCENTS`, % of
all edges, n = round(P/100 x edges)), CPR is the trapezoid area under f over
the fraction of edges and CMD the trapezoid area of |1 - f| (Mueller et al. 2025).

This module needs numpy only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ioi_desktop.core.errors import AnalysisError

MIB_PERCENTS: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
METHODS: tuple[str, ...] = ("eap", "eap_ig", "exact")
SELECTIONS: tuple[str, ...] = ("topn", "greedy")
QKV = ("q", "k", "v")
_HEAD = re.compile(r"a(\d+)\.h(\d+)")


@dataclass(frozen=True)
class Graph:
    """The sender/receiver graph of a model with ``n_layers`` blocks of ``n_heads`` heads."""

    n_layers: int
    n_heads: int
    parallel_attn_mlp: bool = False
    d_model: int = 0

    def __post_init__(self) -> None:
        if self.n_layers < 1 or self.n_heads < 1:
            raise ValueError("a graph needs at least one layer and one head")

    @classmethod
    def of_model(cls, model) -> Graph:
        """The graph of a TransformerBridge (or anything with a TransformerLens ``cfg``)."""
        cfg = model.cfg
        return cls(int(cfg.n_layers), int(cfg.n_heads), bool(getattr(cfg, "parallel_attn_mlp", False)),
                   int(cfg.d_model))

    def cfg(self) -> dict:
        """EAP-IG's ``cfg`` block."""
        return {"n_layers": self.n_layers, "n_heads": self.n_heads, "parallel_attn_mlp": self.parallel_attn_mlp,
                "d_model": self.d_model}

    # ---- indices

    def head_sender(self, layer: int, head: int) -> int:
        return 1 + layer * (self.n_heads + 1) + head

    def mlp_sender(self, layer: int) -> int:
        return 1 + layer * (self.n_heads + 1) + self.n_heads

    def qkv_receiver(self, layer: int, head: int, which: str) -> int:
        return layer * (3 * self.n_heads + 1) + QKV.index(which) * self.n_heads + head

    def mlp_receiver(self, layer: int) -> int:
        return layer * (3 * self.n_heads + 1) + 3 * self.n_heads

    @property
    def logits_receiver(self) -> int:
        return self.n_layers * (3 * self.n_heads + 1)

    @property
    def n_senders(self) -> int:
        return 1 + self.n_layers * (self.n_heads + 1)

    @property
    def n_receivers(self) -> int:
        return self.n_layers * (3 * self.n_heads + 1) + 1

    # ---- names

    @cached_property
    def senders(self) -> tuple[str, ...]:
        names = ["input"]
        for layer in range(self.n_layers):
            names += [f"a{layer}.h{head}" for head in range(self.n_heads)] + [f"m{layer}"]
        return tuple(names)

    @cached_property
    def receivers(self) -> tuple[str, ...]:
        names = []
        for layer in range(self.n_layers):
            for which in QKV:
                names += [f"a{layer}.h{head}<{which}>" for head in range(self.n_heads)]
            names.append(f"m{layer}")
        return tuple(names + ["logits"])

    @cached_property
    def nodes(self) -> tuple[str, ...]:
        """EAP-IG's nodes: every sender, then ``logits``."""
        return self.senders + ("logits",)

    @cached_property
    def receiver_node(self) -> np.ndarray:
        """For each receiver, the index in :attr:`nodes` of the node it feeds (a head's q/k/v -> the head)."""
        found = np.empty(self.n_receivers, dtype=np.int64)
        for layer in range(self.n_layers):
            for which in QKV:
                for head in range(self.n_heads):
                    found[self.qkv_receiver(layer, head, which)] = self.head_sender(layer, head)
            found[self.mlp_receiver(layer)] = self.mlp_sender(layer)
        found[self.logits_receiver] = self.n_senders
        return found

    # ---- edges

    @cached_property
    def adjacency(self) -> np.ndarray:
        """bool [sender, receiver]: True where an edge exists."""
        H = self.n_heads
        sender_stage = np.zeros(self.n_senders, dtype=np.int64)
        for layer in range(self.n_layers):
            sender_stage[self.head_sender(layer, 0): self.head_sender(layer, 0) + H] = 2 * layer + 1
            sender_stage[self.mlp_sender(layer)] = 2 * layer + (1 if self.parallel_attn_mlp else 2)
        limit = np.full(self.n_receivers, np.iinfo(np.int64).max, dtype=np.int64)
        for layer in range(self.n_layers):
            start = self.qkv_receiver(layer, 0, "q")
            limit[start: start + 3 * H] = 2 * layer + 1
            limit[self.mlp_receiver(layer)] = 2 * layer + (1 if self.parallel_attn_mlp else 2)
        matrix = sender_stage[:, None] < limit[None, :]
        matrix.flags.writeable = False
        return matrix

    @property
    def n_edges(self) -> int:
        return int(self.adjacency.sum())

    @cached_property
    def edge_index(self) -> tuple[np.ndarray, np.ndarray]:
        """(sender, receiver) index arrays of every edge, in EAP-IG order (sender-major)."""
        s, r = np.nonzero(self.adjacency)
        return s, r

    @cached_property
    def edge_names(self) -> tuple[str, ...]:
        s, r = self.edge_index
        return tuple(f"{self.senders[i]}->{self.receivers[j]}" for i, j in zip(s, r))

    @cached_property
    def _edge_lookup(self) -> dict[str, tuple[int, int]]:
        s, r = self.edge_index
        return {name: (int(i), int(j)) for name, i, j in zip(self.edge_names, s, r)}

    def edge(self, name: str) -> tuple[int, int] | None:
        """(sender, receiver) of the edge called ``name``, or None if the graph has no such edge."""
        return self._edge_lookup.get(name)

    def full(self) -> np.ndarray:
        """The circuit holding every edge."""
        return self.adjacency.copy()

    def empty(self) -> np.ndarray:
        return np.zeros_like(self.adjacency)

    # ---- circuits

    def top_edges(self, scores: np.ndarray, n: int) -> np.ndarray:
        """The ``n`` edges of largest |score| (ties: EAP-IG edge order), before pruning."""
        self.check_scores(scores)
        if not 0 <= n <= self.n_edges:
            raise AnalysisError(
                f"A circuit of {n} edges was asked for, but this model's graph has {self.n_edges} edges.",
                f"Choose a size from 0 to {self.n_edges} edges (or a percentage up to 100).",
            )
        s, r = self.edge_index
        values = np.abs(np.asarray(scores, dtype=np.float64)[s, r])
        order = np.argsort(-values, kind="stable")[:n]
        mask = self.empty()
        mask[s[order], r[order]] = True
        return mask

    def greedy_edges(self, scores: np.ndarray, n: int) -> np.ndarray:
        """EAP-IG's greedy selection: grow from ``logits``, each step adding the edge of largest |score|
        whose receiver's node is already in the circuit (ties: EAP-IG edge order), ``n`` edges, before pruning."""
        import heapq

        self.top_edges(scores, 0)  # checks the scores' shape
        if not 0 <= n <= self.n_edges:
            self.top_edges(scores, n)  # the same refusal as top-n
        values = np.abs(np.asarray(scores, dtype=np.float64))
        node = self.receiver_node
        s_all, r_all = self.edge_index
        order = {(int(i), int(j)): k for k, (i, j) in enumerate(zip(s_all, r_all))}
        into: dict[int, list[tuple[int, int]]] = {}
        for i, j in zip(s_all, r_all):
            into.setdefault(int(node[j]), []).append((int(i), int(j)))
        mask = self.empty()
        heap: list[tuple[float, int, int, int]] = []

        def open_node(n_index: int) -> None:
            for i, j in into.get(n_index, ()):
                heapq.heappush(heap, (-values[i, j], order[(i, j)], i, j))

        in_circuit = {self.n_senders}
        open_node(self.n_senders)
        count = 0
        while heap and count < n:
            _, _, i, j = heapq.heappop(heap)
            mask[i, j] = True
            count += 1
            if i not in in_circuit:
                in_circuit.add(i)
                open_node(i)
        return mask

    def prune(self, mask: np.ndarray) -> np.ndarray:
        """``mask`` without the edges that lie on no path from ``input`` to ``logits``."""
        mask = np.asarray(mask, dtype=bool) & self.adjacency
        node = self.receiver_node
        n_nodes = self.n_senders + 1
        reach = np.zeros(n_nodes, dtype=bool)
        reach[0] = True
        # Senders in index order are topologically sorted; a node is reached through a kept edge
        # from a reached sender.
        into = [np.nonzero(node == n)[0] for n in range(n_nodes)]
        for n in range(1, n_nodes):
            if into[n].size:
                reach[n] = bool((mask[:, into[n]] & reach[:self.n_senders, None]).any())
        alive = np.zeros(n_nodes, dtype=bool)
        alive[self.n_senders] = True
        for n in range(self.n_senders - 1, -1, -1):
            alive[n] = bool((mask[n] & alive[node]).any())
        return mask & reach[:self.n_senders, None] & alive[node][None, :]

    def circuit(self, scores: np.ndarray, n: int, selection: str = "topn") -> np.ndarray:
        """``n`` edges chosen by ``selection`` (:data:`SELECTIONS`: top-n by |score|, or greedy), pruned."""
        if selection not in SELECTIONS:
            raise AnalysisError(f"There is no circuit selection {selection!r}.", f"Choose {' or '.join(SELECTIONS)}.")
        chosen = self.top_edges(scores, n) if selection == "topn" else self.greedy_edges(scores, n)
        return self.prune(chosen)

    def size_for_percent(self, percent: float) -> int:
        """round(percent/100 x edges), the MIB convention; AnalysisError outside 0..100."""
        if not (np.isfinite(percent) and 0 <= percent <= 100):
            raise AnalysisError(f"A circuit of {percent}% of the edges was asked for.",
                                "Give a percentage from 0 to 100.")
        return int(round(percent / 100.0 * self.n_edges))

    def check_scores(self, scores: np.ndarray) -> None:
        if np.shape(scores) != self.adjacency.shape:
            raise ValueError(f"scores have shape {np.shape(scores)}, the graph {self.adjacency.shape}")

    def nodes_in(self, mask: np.ndarray) -> np.ndarray:
        """bool per node of :attr:`nodes`: True where a kept edge starts or ends there."""
        mask = np.asarray(mask, dtype=bool)
        found = np.zeros(self.n_senders + 1, dtype=bool)
        found[: self.n_senders] |= mask.any(axis=1)
        found[np.unique(self.receiver_node[mask.any(axis=0)])] = True
        return found

    def node_scores(self, scores: np.ndarray) -> np.ndarray:
        """Each sender's outgoing edge scores summed [sender] (logits has none)."""
        self.check_scores(scores)
        return np.where(self.adjacency, scores, 0).sum(axis=1).astype(np.float32)


def faithfulness_span(full: float, empty: float) -> float:
    """m(full) - m(empty), refused when (nearly) 0: faithfulness cannot be normalised then."""
    span = float(full) - float(empty)
    if not np.isfinite(span) or abs(span) < 1e-3 * max(1.0, abs(float(full)), abs(float(empty))):
        raise AnalysisError(
            f"The clean and corrupted prompts give nearly the same mean logit difference "
            f"({float(full):.4g} and {float(empty):.4g}), so faithfulness cannot be normalised.",
            "Use corrupted prompts the model answers differently (e.g. the ABC corruption).",
        )
    return span


def faithfulness(metric, full: float, empty: float):
    """(m(C) - m(empty)) / (m(full) - m(empty)), elementwise."""
    span = faithfulness_span(full, empty)
    return (np.asarray(metric, dtype=np.float64) - float(empty)) / span


def curve_areas(percents, faithfulnesses) -> tuple[float, float]:
    """(CPR, CMD): trapezoid areas of f and of |1 - f| over the fraction of edges (percent / 100)."""
    x = np.asarray(percents, dtype=np.float64) / 100.0
    f = np.asarray(faithfulnesses, dtype=np.float64)
    if x.size < 2:
        return 0.0, 0.0
    order = np.argsort(x, kind="stable")
    x, f = x[order], f[order]
    return float(np.trapezoid(f, x)), float(np.trapezoid(np.abs(1.0 - f), x))


def parse_head(node: str) -> tuple[int, int] | None:
    """(layer, head) of a head node name ``a{L}.h{H}``, else None."""
    match = _HEAD.fullmatch(node)
    return (int(match.group(1)), int(match.group(2))) if match else None
