"""Edge scores and exact circuit evaluation on a processed TransformerBridge (imports torch).

Conventions (issue 15; EAP-IG's graph, see :mod:`.graph`):

- the metric m is the mean over prompts of logit(correct) - logit(incorrect)
  at each prompt's END;
- a sender's output is ``hook_embed + hook_pos_embed`` (``input``), a head's
  ``hook_result`` (bias-free per-head output), an MLP's ``hook_mlp_out``; a
  receiver's input is a head's ``hook_{q,k,v}_input`` (its own copy of the
  residual stream before LayerNorm), an MLP's ``hook_mlp_in`` (before ln2),
  and ``blocks.{L-1}.hook_resid_post`` for ``logits``. With LayerNorm folded
  (``fold_ln``) a receiver's input is the sum of its upstream senders' outputs
  plus biases, so corrupting edge (s, r) means adding (corrupted - current
  output of s) to r's input only;
- every score estimates m(that edge corrupted) - m(clean) (noising form):
  ``eap`` = (corrupted - clean output of s) . dm/d(input of r) on the clean run,
  summed over positions and d_model (dm of the prompt mean, so averaged over
  prompts); ``eap_ig`` the same with the gradient averaged over ``ig_steps``
  runs whose input embeddings are corrupted + k/steps (clean - corrupted),
  k = 0..steps-1 (EAP-IG "inputs"); ``exact`` really runs the clean prompts
  with that one edge corrupted (batched: many edges per forward pass);
- evaluating a circuit runs the clean prompts with every edge outside it
  corrupted, exactly: each receiver gets, from every sender whose edge is not
  in the circuit, the sender's corrupted output in place of its output in this
  run.

The model's settings (split q/k/v inputs, per-head results, ``hook_mlp_in``)
are switched on only while this module runs and restored afterwards.

Gradients (``eap``, ``eap_ig``) come from one plain forward + backward without
split inputs (:func:`unsplit_gradients`): the gradients at ``hook_q/k/v``
([prompt, pos, head, d_head]) are mapped back to each head's own input
exactly, through the head's projection (``W_Q/W_K/W_V``) and ln1's backward
given its input x (LayerNorm: dx = (g - mean(g) - x_hat mean(g x_hat)) / sigma
with g = dy * w; RMSNorm without the mean), and the forward stops at the final
residual stream when the metric recomputed from it (ln_final, the answers'
unembedding columns at END) matched the clean logits in :func:`prepare`. The
split q/k/v inputs path (:func:`split_gradients`) is the fallback for models
whose ``hook_q/k/v`` are not ln1(x) @ W + b per head (checked per layer on the
first prompt): e.g. q/k hooked after a rotary map or a q/k norm, key/value
heads fewer than query heads, norms the bridge runs natively, no ``W_Q``.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ioi_desktop.core.circuits.graph import Graph
from ioi_desktop.core.errors import AnalysisError

# The receivers' per-row budget of activations in one batched forward (rows x pos x d_model floats).
ROW_BUDGET = 2 ** 24


@contextmanager
def graph_hooks(model):
    """Switch on what the graph needs (split q/k/v inputs, ``hook_result``, ``hook_mlp_in``), restore after."""
    cfg = model.cfg
    saved = {name: bool(getattr(cfg, name, False))
             for name in ("use_attn_in", "use_split_qkv_input", "use_attn_result", "use_hook_mlp_in")}
    try:
        if saved["use_attn_in"]:
            model.set_use_attn_in(False)
        model.set_use_split_qkv_input(True)
        model.set_use_attn_result(True)
        model.set_use_hook_mlp_in(True)
    except (ValueError, NotImplementedError, AttributeError, RuntimeError) as exc:
        _restore(model, saved)
        kind = type(getattr(getattr(model, "blocks", [None])[0], "attn", None)).__name__
        raise AnalysisError(
            f"This model's attention ({kind}) cannot give each head its own query, key and value inputs, "
            "which circuit discovery needs.",
            "Use a GPT-2-style model, or head-level analyses such as patching.",
        ) from exc
    try:
        yield
    finally:
        _restore(model, saved)


def _restore(model, saved: dict[str, bool]) -> None:
    model.set_use_hook_mlp_in(saved["use_hook_mlp_in"])
    model.set_use_attn_result(saved["use_attn_result"])
    model.set_use_split_qkv_input(saved["use_split_qkv_input"])
    if saved["use_attn_in"]:
        model.set_use_attn_in(True)


def receiver_hooks(graph: Graph) -> list[tuple[str, str, int]]:
    """(hook name, kind, layer) of every receiver hook, in forward order; kind is q, k, v, mlp or logits."""
    found = []
    for layer in range(graph.n_layers):
        found += [(f"blocks.{layer}.attn.hook_{w}_input", w, layer) for w in ("q", "k", "v")]
        found.append((f"blocks.{layer}.hook_mlp_in", "mlp", layer))
    found.append((f"blocks.{graph.n_layers - 1}.hook_resid_post", "logits", graph.n_layers - 1))
    return found


def receiver_slice(graph: Graph, kind: str, layer: int) -> slice:
    """The receivers a hook's activation holds (heads along its head axis)."""
    if kind in ("q", "k", "v"):
        start = graph.qkv_receiver(layer, 0, kind)
        return slice(start, start + graph.n_heads)
    index = graph.mlp_receiver(layer) if kind == "mlp" else graph.logits_receiver
    return slice(index, index + 1)


def _upstream_end(graph: Graph, kind: str, layer: int) -> int:
    """Senders with an index below this may have an edge into that receiver hook (none above)."""
    if kind in ("q", "k", "v"):
        return graph.head_sender(layer, 0)
    return graph.mlp_sender(layer) if kind == "mlp" else graph.n_senders


def _sender_hooks(model, graph: Graph) -> list[tuple[str, slice]]:
    """(hook name, senders it writes) for the heads and MLPs; ``input`` is handled apart."""
    found = []
    for layer in range(graph.n_layers):
        first = graph.head_sender(layer, 0)
        found.append((f"blocks.{layer}.attn.hook_result", slice(first, first + graph.n_heads)))
        found.append((f"blocks.{layer}.hook_mlp_out", slice(graph.mlp_sender(layer), graph.mlp_sender(layer) + 1)))
    return found


def _input_hooks(model) -> list[str]:
    names = ["hook_embed"]
    if "hook_pos_embed" in model.hook_dict:
        names.append("hook_pos_embed")
    return names


@dataclass
class Prepared:
    """The clean and corrupted runs a scoring or evaluation needs (2 forward passes)."""

    graph: Graph
    clean_tokens: torch.Tensor
    corrupt_tokens: torch.Tensor
    end: torch.Tensor
    correct: torch.Tensor
    incorrect: torch.Tensor
    clean_out: torch.Tensor  # [prompt, pos, sender, d_model]
    corrupt_out: torch.Tensor
    clean_embed: torch.Tensor  # hook_embed [prompt, pos, d_model]
    corrupt_embed: torch.Tensor
    clean_metric: torch.Tensor  # [prompt]
    corrupt_metric: torch.Tensor
    forward_seconds: float
    # True where the metric recomputed from the final residual stream (ln_final and the unembedding's
    # columns of the two answers at END, see :func:`final_metric`) matched the clean run's logits.
    metric_from_resid: bool = False

    @property
    def n_prompts(self) -> int:
        return int(self.clean_tokens.shape[0])

    @property
    def full(self) -> float:
        return float(self.clean_metric.mean())

    @property
    def empty(self) -> float:
        return float(self.corrupt_metric.mean())

    def metric(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-row logit difference at END; rows are groups of the prompts, repeated."""
        rows = torch.arange(logits.shape[0], device=logits.device)
        reps = logits.shape[0] // self.n_prompts
        end, correct, incorrect = (t.repeat(reps) for t in (self.end, self.correct, self.incorrect))
        at_end = logits[rows, end]
        return at_end[rows, correct] - at_end[rows, incorrect]


def check_batch(batch: Any) -> None:
    """One sentence for sets the graph cannot use: clean/corrupted prompts not aligned token for token."""
    clean, corrupt = np.asarray(batch.clean_tokens), np.asarray(batch.corrupt_tokens)
    if clean.shape != corrupt.shape or clean.ndim != 2 or clean.shape[0] == 0:
        raise AnalysisError("The clean and corrupted prompts are not aligned token for token.",
                            "Circuit discovery needs corrupted prompts of the same token length as their clean ones.")
    for i, (a, b) in enumerate(zip(batch.str_tokens, batch.corrupt_str_tokens)):
        if len(a) != len(b):
            raise AnalysisError(
                f"Pair {i}: the clean prompt is {len(a)} tokens but the corrupted one is {len(b)}, so edges "
                "have no aligned positions.",
                "Make the corrupted prompts tokenize to the same length as the clean ones (e.g. swap single-token names).",
            )


def _device(model) -> torch.device:
    """The home device (see ``core.devices``): every tensor this module keeps lives there."""
    from ioi_desktop.core.devices import model_device

    return model_device(model)


def _run_capture(model, graph: Graph, tokens: torch.Tensor):
    """One forward: logits, sender outputs [prompt, pos, sender, d_model], hook_embed, final residual."""
    captured: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook_fn(act, hook):
            captured[name] = act.detach()
            return act
        return hook_fn

    names = _input_hooks(model) + [n for n, _ in _sender_hooks(model, graph)] + [receiver_hooks(graph)[-1][0]]
    with torch.no_grad(), model.hooks(fwd_hooks=[(n, keep(n)) for n in names]):
        logits = model(tokens)
    missing = [n for n in names if n not in captured]
    if missing:
        raise AnalysisError(f"This model does not report {missing[0]}, which circuit discovery needs.",
                            "Use a GPT-2-style model, or head-level analyses such as patching.")
    out = torch.zeros(*tokens.shape, graph.n_senders, graph.d_model or captured["hook_embed"].shape[-1],
                      dtype=captured["hook_embed"].dtype, device=tokens.device)
    home = out.device  # a model split across GPUs reports each layer on its own GPU
    out[:, :, 0] = sum(captured[n].to(home) for n in _input_hooks(model))
    for name, senders in _sender_hooks(model, graph):
        act = captured[name].to(home)
        out[:, :, senders] = act if act.dim() == 4 else act[:, :, None]
    return logits, out, captured["hook_embed"].to(home), captured[receiver_hooks(graph)[-1][0]].to(home)


def check_residual_is_a_sum(graph: Graph, out: torch.Tensor, resid: torch.Tensor, lengths: np.ndarray) -> None:
    """Refuse models whose final residual stream is not the sum of the senders' outputs plus constants."""
    rest = (resid - out.sum(dim=2)).double()
    valid = torch.zeros(rest.shape[:2], dtype=torch.bool, device=rest.device)
    for i, n in enumerate(lengths):
        valid[i, : int(n)] = True
    values = rest[valid]
    spread = float((values - values[0]).abs().max()) if values.numel() else 0.0
    scale = float(resid[valid].double().abs().max()) if values.numel() else 1.0
    if spread > 1e-3 * max(scale, 1.0):
        raise AnalysisError(
            "This model's residual stream is not a sum of its components' outputs (e.g. LayerNorm after each "
            "block), so its edges are not defined.",
            "Use a pre-LayerNorm model (GPT-2, Pythia, ...) loaded with fold_ln.",
        )


def prepare(model, batch) -> Prepared:
    """The clean and corrupted runs: sender outputs, embeddings and metrics (2 forward passes)."""
    check_batch(batch)
    graph = Graph.of_model(model)
    device = _device(model)
    as_long = lambda a: torch.as_tensor(np.asarray(a, dtype=np.int64), device=device)
    clean_tokens, corrupt_tokens = as_long(batch.clean_tokens), as_long(batch.corrupt_tokens)
    end, correct, incorrect = as_long(batch.end_pos), as_long(batch.correct_ids), as_long(batch.incorrect_ids)
    with graph_hooks(model):
        started = time.perf_counter()
        clean_logits, clean_out, clean_embed, clean_resid = _run_capture(model, graph, clean_tokens)
        seconds = time.perf_counter() - started
        corrupt_logits, corrupt_out, corrupt_embed, _ = _run_capture(model, graph, corrupt_tokens)
    check_residual_is_a_sum(graph, clean_out, clean_resid, np.asarray(batch.lengths))
    prep = Prepared(graph, clean_tokens, corrupt_tokens, end, correct, incorrect, clean_out, corrupt_out,
                    clean_embed, corrupt_embed, clean_logits.new_zeros(0), clean_logits.new_zeros(0), seconds)
    prep.clean_metric = prep.metric(clean_logits).float()
    prep.corrupt_metric = prep.metric(corrupt_logits).float()
    prep.metric_from_resid = _final_metric_matches(model, prep, clean_resid)
    return prep


def final_metric(model, prep: Prepared, resid: torch.Tensor) -> torch.Tensor:
    """Per-prompt metric from the final residual stream [prompt, pos, d_model]: ln_final at END, then
    only the unembedding's columns of the correct and incorrect answers (no full vocabulary)."""
    parts = norm_parameters(getattr(model, "ln_final", None))
    if parts is None:
        raise ValueError("no recognised ln_final")
    weight, bias, eps, rms = parts
    rows = torch.arange(prep.n_prompts, device=resid.device)
    x_hat, _ = _normalize(resid[rows, prep.end.to(resid.device)], eps, rms)
    y = x_hat * weight.to(resid.device) + (0.0 if bias is None else bias.to(resid.device))
    W_U = model.W_U.detach()
    correct, incorrect = prep.correct.to(W_U.device), prep.incorrect.to(W_U.device)
    direction = (W_U[:, correct] - W_U[:, incorrect]).float().T.to(resid.device)  # [prompt, d_model]
    found = (y * direction).sum(dim=-1)
    b_U = getattr(model, "b_U", None)
    if b_U is not None:
        found = found + (b_U.detach()[correct] - b_U.detach()[incorrect]).float().to(resid.device)
    return found


def _final_metric_matches(model, prep: Prepared, resid: torch.Tensor) -> bool:
    try:
        again = final_metric(model, prep, resid).detach()
    except (ValueError, AttributeError, TypeError, IndexError, RuntimeError):
        return False
    expected = prep.clean_metric.to(again.device)
    scale = max(1.0, float(expected.abs().max()))
    return again.shape == expected.shape and float((again - expected).abs().max()) <= 1e-4 * scale


# ------------------------------------------------------------------ gradient scores


@contextmanager
def _mlp_in_hook(model):
    """Switch on ``hook_mlp_in`` only (the unsplit gradient run), restore after."""
    saved = bool(getattr(model.cfg, "use_hook_mlp_in", False))
    model.set_use_hook_mlp_in(True)
    try:
        yield
    finally:
        model.set_use_hook_mlp_in(saved)


def layer_norm_parameters(model, layer: int):
    """(weight, bias, eps, rms) of block ``layer``'s ln1 as the forward pass applies it, or None."""
    return norm_parameters(getattr(model.blocks[layer], "ln1", None))


def norm_parameters(ln):
    """(weight, bias, eps, rms) of a bridge LayerNorm/RMSNorm as its forward applies it, or None."""
    component = getattr(ln, "original_component", None)
    weight = getattr(ln, "weight", None)
    if ln is None or component is None or weight is None or getattr(ln, "use_native_layernorm_autograd", False):
        return None
    rms = bool(getattr(ln, "uses_rms_norm", False))
    if getattr(ln, "uses_weight_offset", False):
        weight = 1.0 + weight
    bias = None if rms else getattr(component, "bias", None)
    eps = getattr(component, "eps", None)
    if eps is None:
        eps = getattr(component, "variance_epsilon", getattr(getattr(ln, "config", None), "eps", 1e-5))
    return weight.detach().float(), None if bias is None else bias.detach().float(), float(eps), rms


def _normalize(x: torch.Tensor, eps: float, rms: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_hat, sigma) of LayerNorm (centred) or RMSNorm over the last axis, in float32."""
    x = x.float()
    if not rms:
        x = x - x.mean(dim=-1, keepdim=True)
    sigma = (x.pow(2).mean(dim=-1, keepdim=True) + eps).sqrt()
    return x / sigma, sigma


class _StopForward(Exception):
    """Raised by a hook to end a forward pass whose remaining layers the metric does not need."""


def qkv_fold(model, graph: Graph, home: torch.device):
    """Per layer: ln1's (weight, bias, eps, rms); and per q, k, v: W [layer, head, d_model, d_head],
    b [layer, head, d_head], and per layer the projection with ln1's weight folded in as a
    [head, d_head, d_model] view plus (LayerNorm) its mean over d_model [head, d_head]; None where
    the model has no such parts."""
    L, H = graph.n_layers, graph.n_heads
    try:
        norms = [layer_norm_parameters(model, layer) for layer in range(L)]
        if any(n is None for n in norms):
            return None
        weights = [getattr(model, w).detach().to(home) for w in ("W_Q", "W_K", "W_V")]
        biases = [getattr(model, b).detach().to(home) for b in ("b_Q", "b_K", "b_V")]
    except (AttributeError, IndexError, TypeError, RuntimeError):
        return None
    d_head = weights[0].shape[-1] if weights[0].dim() == 4 else -1
    if any(w.shape[:2] != (L, H) or w.dim() != 4 or w.shape[-1] != d_head for w in weights) or \
            any(b.shape != (L, H, d_head) for b in biases):
        return None
    folded = []
    for layer, (weight, _, _, rms) in enumerate(norms):
        weight = weight.to(home)
        ones = bool((weight == 1).all())  # a folded LayerNorm's weight is 1
        per_kind = []
        for W in weights:
            A = W[layer].float() if ones else W[layer].float() * weight[None, :, None]  # [head, d_model, d_head]
            per_kind.append((A.transpose(1, 2), None if rms else A.mean(dim=1)))
        folded.append(per_kind)
    return norms, weights, biases, folded


def unsplit_gradients(model, prep: Prepared, embed: torch.Tensor | None, fold=None) -> dict[str, torch.Tensor] | None:
    """dm/d(receiver input) from one plain forward + backward, or None where this model is not covered.

    The gradients at ``hook_q/k/v`` ([prompt, pos, head, d_head]) are mapped back to each head's own
    copy of the residual stream exactly: dy_h = dq_h @ W_Q[h]^T through the head's projection, then
    ln1's backward given its input x (linear in dy for fixed x). Covered: blocks whose ln1 is a
    LayerNorm or RMSNorm read by separate per-head q/k/v projections with ``W_Q/W_K/W_V`` of shape
    [head, d_model, d_head] (GPT-2, GPT-J, GPT-NeoX without rotary, ...); checked on the first
    prompt of every layer by recomputing q, k and v from ln1's input. Not covered (None, the caller
    splits the inputs instead): any block where that recomputation does not match (q/k hooked after
    a rotary map or a q/k norm), key/value heads fewer than query heads, norms the bridge runs
    natively, models without ``W_Q/W_K/W_V``.
    """
    graph = prep.graph
    L, H = graph.n_layers, graph.n_heads
    fold = qkv_fold(model, graph, prep.clean_tokens.device) if fold is None else fold
    if fold is None:
        return None
    norms, weights, biases, folded = fold
    qkv = [(f"blocks.{layer}.attn.hook_{w}", layer) for layer in range(L) for w in ("q", "k", "v")]
    inputs = [f"blocks.{layer}.ln1.hook_in" for layer in range(L)]
    others = [(name, kind) for name, kind, _ in receiver_hooks(graph) if kind in ("mlp", "logits")]
    captured: dict[str, torch.Tensor] = {}

    def start(act, hook):
        value = act if embed is None else embed.to(act.dtype)
        return value.detach().requires_grad_(True)

    def keep(name, detach=False):
        # A copy: the gradient must be this receiver's input's alone (not the residual path around it).
        def hook_fn(act, hook):
            if detach:
                captured[name] = act.detach()
                return act
            captured[name] = act = act.clone()
            return act
        return hook_fn

    last = others[-1][0]  # the final residual stream (the logits receiver)

    def stop(act, hook):
        # The metric needs only ln_final and two unembedding columns at END: stop the forward here.
        captured[last] = act.clone()
        raise _StopForward

    fwd = [("hook_embed", start)] + [(n, keep(n, detach=True)) for n in inputs]
    fwd += [(n, keep(n)) for n, _ in qkv] + [(n, keep(n)) for n, _ in others[:-1]]
    fwd.append((last, stop if prep.metric_from_resid else keep(last)))
    try:
        with _mlp_in_hook(model), torch.enable_grad(), model.hooks(fwd_hooks=fwd):
            try:
                logits = model(prep.clean_tokens)
            except _StopForward:
                logits = None
            names = [n for n, _ in qkv] + [n for n, _ in others]
            if any(n not in captured for n in names + inputs):
                return None
            metric = (prep.metric(logits) if logits is not None else final_metric(model, prep, captured[last])).mean()
            grads = torch.autograd.grad(metric, [captured[n] for n in names], allow_unused=True)
    except (ValueError, KeyError, NotImplementedError, AttributeError):
        return None
    home = prep.clean_tokens.device
    grad_of = {n: (torch.zeros_like(captured[n]) if g is None else g.detach()) for n, g in zip(names, grads)}
    found: dict[str, torch.Tensor] = {}
    for layer in range(L):
        weight, bias, eps, rms = norms[layer]
        x = captured[inputs[layer]].to(home)
        P, n_pos, D = x.shape
        # The check: q, k and v of the first prompt recomputed from ln1's input.
        x_hat0, _ = _normalize(x[0], eps, rms)
        y0 = x_hat0 * weight.to(home) + (0.0 if bias is None else bias.to(home))
        for kind, W, B in zip("qkv", weights, biases):
            act = captured[f"blocks.{layer}.attn.hook_{kind}"][0].detach().to(home).float()
            if act.shape != (n_pos, H, W.shape[-1]):
                return None
            again = torch.einsum("pd,hde->phe", y0, W[layer].float()) + B[layer].float()
            if float((again - act).abs().max()) > 1e-4 * max(1.0, float(act.abs().max())):
                return None
        x_hat, sigma = _normalize(x.reshape(P * n_pos, D), eps, rms)  # [token, d_model], [token, 1]
        # ln1's backward folded into the projection: g = (dq / sigma) W^T * w, one bmm per q, k, v,
        # then dx = g - mean(g) - x_hat * mean(g * x_hat) (LayerNorm; RMSNorm has no mean(g)).
        grad_in = torch.empty(3 * H, P * n_pos, D, dtype=torch.float32, device=home)  # [3 * head, token, d]
        mean_g = None if rms else torch.empty(3 * H, P * n_pos, dtype=torch.float32, device=home)
        for i, (kind, (A_t, A_mean)) in enumerate(zip("qkv", folded[layer])):
            d_act = grad_of[f"blocks.{layer}.attn.hook_{kind}"].to(home).float()  # [prompt, pos, head, d_head]
            d_act = d_act.permute(2, 0, 1, 3).reshape(H, P * n_pos, -1) / sigma
            torch.bmm(d_act, A_t, out=grad_in[i * H:(i + 1) * H])
            if mean_g is not None:
                mean_g[i * H:(i + 1) * H] = torch.einsum("hne,he->hn", d_act, A_mean)
        if mean_g is not None:
            grad_in.sub_(mean_g[:, :, None])
        along = torch.einsum("rnd,nd->rn", grad_in, x_hat)  # x_hat has mean 0: the same with g centred
        grad_in.addcmul_(along[:, :, None], x_hat[None], value=-1.0 / D)
        found[f"layer{layer}.qkv"] = grad_in.view(3 * H, P, n_pos, D)
    for name, _ in others:
        found[name] = grad_of[name].to(home)
    return found


def split_gradients(model, prep: Prepared, embed: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """dm/d(receiver input) with each head's q/k/v input split off (``use_split_qkv_input``): the fallback."""
    graph = prep.graph
    hooks = receiver_hooks(graph)
    captured: dict[str, torch.Tensor] = {}

    def start(act, hook):
        value = act if embed is None else embed.to(act.dtype)
        return value.detach().requires_grad_(True)

    def keep(name):
        # A copy: hook_mlp_in shows the residual stream itself, and the gradient must be the MLP's
        # input's alone (not also the residual path around the MLP).
        def hook_fn(act, hook):
            captured[name] = act = act.clone()
            return act
        return hook_fn

    fwd = [("hook_embed", start)] + [(name, keep(name)) for name, _, _ in hooks]
    with graph_hooks(model), torch.enable_grad(), model.hooks(fwd_hooks=fwd):
        logits = model(prep.clean_tokens)
        metric = prep.metric(logits).mean()
        acts = [captured[name] for name, _, _ in hooks]
        grads = torch.autograd.grad(metric, acts, allow_unused=True)
    home = prep.clean_tokens.device
    raw = {name: (torch.zeros_like(a) if g is None else g).detach().to(home)
           for (name, _, _), a, g in zip(hooks, acts, grads)}
    found = {}
    for name, kind, layer in hooks:
        if kind in ("q", "k", "v"):
            key = f"layer{layer}.qkv"
            if key not in found:
                both = torch.cat([raw[f"blocks.{layer}.attn.hook_{w}_input"] for w in "qkv"], dim=2).float()
                found[key] = both.permute(2, 0, 1, 3).contiguous()
        else:
            found[name] = raw[name]
    return found


def receiver_gradients(model, prep: Prepared, embed: torch.Tensor | None, split: bool = False,
                       fold=None) -> dict[str, torch.Tensor]:
    """dm/d(receiver input) on the clean tokens (embeddings replaced by ``embed``), keyed
    ``layer{L}.qkv`` ([3 * head, prompt, pos, d_model]: q heads, k heads, v heads) and by the MLP
    and logits receivers' hook names. Unsplit (one plain forward + backward) where the model is
    covered, else (or with ``split``) with split q/k/v inputs."""
    found = None if split else unsplit_gradients(model, prep, embed, fold)
    return split_gradients(model, prep, embed) if found is None else found


def _gradient_groups(graph: Graph):
    """(gradient key, receivers it holds, senders upstream of them) in forward order."""
    for layer in range(graph.n_layers):
        first = graph.qkv_receiver(layer, 0, "q")
        yield f"layer{layer}.qkv", slice(first, first + 3 * graph.n_heads), graph.head_sender(layer, 0)
        yield f"blocks.{layer}.hook_mlp_in", slice(graph.mlp_receiver(layer), graph.mlp_receiver(layer) + 1), \
            graph.mlp_sender(layer)
    yield (f"blocks.{graph.n_layers - 1}.hook_resid_post",
           slice(graph.logits_receiver, graph.logits_receiver + 1), graph.n_senders)


def _scores_from_gradients(prep: Prepared, grads: dict[str, torch.Tensor]) -> np.ndarray:
    """(corrupted - clean sender output) . gradient, summed over prompts, positions and d_model [sender, receiver]."""
    graph = prep.graph
    # One matrix product per layer's q/k/v receivers (and per MLP, and logits):
    # [sender, prompt*pos*d_model] @ [prompt*pos*d_model, receiver]; the difference written sender-major.
    corrupt, clean = (t.permute(2, 0, 1, 3) for t in (prep.corrupt_out, prep.clean_out))
    flat_delta = torch.empty(corrupt.shape, dtype=corrupt.dtype, device=corrupt.device)
    torch.sub(corrupt, clean, out=flat_delta)
    flat_delta = flat_delta.reshape(graph.n_senders, -1).float()
    scores = torch.zeros(graph.n_senders, graph.n_receivers, dtype=torch.float32, device=flat_delta.device)
    for key, block, upto in _gradient_groups(graph):
        grad = grads[key].float()
        flat_grad = grad.reshape(1, -1) if grad.dim() == 3 else grad.reshape(grad.shape[0], -1)
        scores[:upto, block] = flat_delta[:upto] @ flat_grad.T  # later senders have no edge here
    found = scores.double().cpu().numpy() * graph.adjacency
    return np.ascontiguousarray(found, dtype=np.float32)


def eap_scores(model, prep: Prepared, split: bool = False) -> np.ndarray:
    """EAP [sender, receiver]: one forward + backward pass on the clean run (``split``: force the
    split q/k/v inputs path, see :func:`receiver_gradients`)."""
    return _scores_from_gradients(prep, receiver_gradients(model, prep, None, split))


def eap_ig_scores(model, prep: Prepared, steps: int, progress=None, split: bool = False) -> np.ndarray:
    """EAP-IG "inputs" [sender, receiver]: gradients averaged over ``steps`` interpolated input embeddings."""
    check_ig_steps(steps)
    total: dict[str, torch.Tensor] = {}
    fold = None if split else qkv_fold(model, prep.graph, prep.clean_tokens.device)  # once for every step
    split = split or fold is None
    for k in range(steps):
        if progress is not None:
            progress.check_cancelled()
        alpha = k / steps
        embed = prep.corrupt_embed + alpha * (prep.clean_embed - prep.corrupt_embed)
        for name, grad in receiver_gradients(model, prep, embed, split, fold).items():
            total[name] = total[name] + grad if name in total else grad
        if progress is not None:
            progress.advance(1, f"EAP-IG step {k + 1} of {steps}")
    return _scores_from_gradients(prep, {name: g / steps for name, g in total.items()})


def check_ig_steps(steps: int) -> None:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise AnalysisError(f"EAP-IG needs at least 1 integration step, not {steps!r}.",
                            "Give --ig-steps 1 or more (5 is the EAP-IG default).")


# ------------------------------------------------------------------ exact scores


def exact_cost(prep: Prepared) -> int:
    """Forward passes of the whole prompt set that exact scoring takes: one per edge."""
    return prep.graph.n_edges


def check_exact_affordable(prep: Prepared, limit: int) -> None:
    """Refuse exact scoring above ``limit`` forward-equivalents, with the estimate and the cheaper methods."""
    cost = exact_cost(prep)
    if cost > limit:
        hours = cost * prep.forward_seconds / 3600.0
        raise AnalysisError(
            f"Exact edge scoring would take {cost:,} forward passes of the prompt set (about {hours:.1f} hours "
            f"here), more than the limit of {limit:,}.",
            "Use the eap or eap_ig method (a few passes), fewer prompts, or raise the exact-scoring limit.",
        )


def _rows_per_forward(prep: Prepared) -> int:
    per_row = int(prep.clean_tokens.shape[1]) * int(prep.clean_out.shape[-1]) * max(4, prep.graph.n_heads)
    return max(prep.n_prompts, ROW_BUDGET // max(per_row, 1))


def exact_scores(model, prep: Prepared, progress=None, edges_per_forward: int | None = None) -> np.ndarray:
    """Exact [sender, receiver]: m(clean with that edge corrupted) - m(clean), many edges per forward."""
    graph = prep.graph
    senders, receivers = graph.edge_index
    per = edges_per_forward or max(1, _rows_per_forward(prep) // prep.n_prompts)
    delta = prep.corrupt_out - prep.clean_out  # the sender's output is clean: nothing upstream changes
    hooks = receiver_hooks(graph)
    scores = np.zeros(graph.adjacency.shape, dtype=np.float64)
    P = prep.n_prompts
    with graph_hooks(model):
        for start in range(0, len(senders), per):
            if progress is not None:
                progress.check_cancelled()
            s_chunk, r_chunk = senders[start: start + per], receivers[start: start + per]
            G = len(s_chunk)
            fwd = []
            for name, kind, layer in hooks:
                block = receiver_slice(graph, kind, layer)
                inside = np.nonzero((r_chunk >= block.start) & (r_chunk < block.stop))[0]
                if inside.size:
                    fwd.append((name, _edge_patch(G, P, inside, r_chunk[inside] - block.start,
                                                  s_chunk[inside], delta, kind in ("q", "k", "v"))))
            tokens = prep.clean_tokens.repeat(G, 1)
            with torch.no_grad(), model.hooks(fwd_hooks=fwd):
                logits = model(tokens)
            metric = prep.metric(logits).float().view(G, P).mean(dim=1).double().cpu().numpy()
            scores[s_chunk, r_chunk] = metric - prep.full
            if progress is not None:
                progress.advance(G, f"exact edge scores {min(start + per, len(senders))} of {len(senders)}")
    return np.ascontiguousarray(scores, dtype=np.float32)


def _edge_patch(G: int, P: int, groups, slots, senders, delta: torch.Tensor, per_head: bool) -> Callable:
    groups_t = torch.as_tensor(groups, device=delta.device)
    slots_t = torch.as_tensor(slots, device=delta.device)
    values = delta[:, :, torch.as_tensor(senders, device=delta.device)].permute(2, 0, 1, 3)  # [k, P, pos, d]

    def hook_fn(act, hook):
        act = act.clone()
        view = act.view(G, P, *act.shape[1:])
        where = act.device  # this receiver's GPU on a split model
        if per_head:
            view[groups_t.to(where), :, :, slots_t.to(where)] += values.to(where, act.dtype)
        else:
            view[groups_t.to(where)] += values.to(where, act.dtype)
        return act

    return hook_fn


# ------------------------------------------------------------------ evaluation


def evaluate(model, prep: Prepared, circuits: Sequence[np.ndarray], progress=None) -> np.ndarray:
    """m(C) for each circuit (bool [sender, receiver]) with every edge outside it corrupted exactly."""
    graph = prep.graph
    P = prep.n_prompts
    per = max(1, _rows_per_forward(prep) // (P * max(1, graph.n_senders // 8)))
    found = []
    with graph_hooks(model):
        for start in range(0, len(circuits), per):
            if progress is not None:
                progress.check_cancelled()
            chunk = circuits[start: start + per]
            corrupted = torch.as_tensor(
                np.stack([graph.adjacency & ~np.asarray(c, dtype=bool) for c in chunk]),
                dtype=prep.clean_out.dtype, device=prep.clean_out.device)  # [G, S, R]
            found.append(_evaluate_chunk(model, prep, corrupted))
            if progress is not None:
                progress.advance(len(chunk), f"evaluated {min(start + per, len(circuits))} of {len(circuits)} circuits")
    return np.concatenate(found) if found else np.zeros(0)


def _evaluate_chunk(model, prep: Prepared, corrupted: torch.Tensor) -> np.ndarray:
    graph = prep.graph
    G, P = corrupted.shape[0], prep.n_prompts
    S = graph.n_senders
    n_pos, D = prep.corrupt_out.shape[1], prep.corrupt_out.shape[-1]
    home = prep.corrupt_out.device
    # diff[g, s] = corrupted - current output of sender s in this run (flattened prompt, pos, d_model),
    # filled in as the senders fire; ``running`` is its sum over the senders fired so far.
    diff = torch.zeros(G, S, P * n_pos * D, dtype=prep.corrupt_out.dtype, device=home)
    running = torch.zeros(G, P * n_pos * D, dtype=diff.dtype, device=home)
    corrupt = prep.corrupt_out.permute(2, 0, 1, 3).reshape(S, -1)[None]  # [1, sender, prompt*pos*d]
    inputs: dict[str, torch.Tensor] = {}

    def record(senders: slice, current: torch.Tensor) -> None:
        """current: [G, senders, prompt*pos*d]."""
        new = corrupt[:, senders] - current
        diff[:, senders] = new
        running.add_(new.sum(dim=1))

    def input_part(name):
        def hook_fn(act, hook):
            inputs[name] = act
            if len(inputs) == len(_input_hooks(model)):
                current = sum(v.to(home) for v in inputs.values()).reshape(G, 1, -1)
                record(slice(0, 1), current)
            return act
        return hook_fn

    def sender(senders: slice):
        def hook_fn(act, hook):
            current = act.to(home).view(G, P, *act.shape[1:])
            if current.dim() == 5:  # per-head [G, P, pos, head, d] -> [G, head, P * pos * d]
                current = current.permute(0, 3, 1, 2, 4).reshape(G, current.shape[3], -1)
            else:
                current = current.reshape(G, 1, -1)
            record(senders, current)
            return act
        return hook_fn

    def receiver(kind: str, layer: int):
        block = receiver_slice(graph, kind, layer)
        upto = _upstream_end(graph, kind, layer)
        weight = corrupted[:, :upto, block]  # [G, s, r]: 1 = edge corrupted
        # sum_s w (corrupt - current) over the senders with a corrupted edge here, or, when fewer
        # senders keep an edge here, (sum over all upstream senders) - (sum over the kept edges).
        cut = torch.nonzero((weight > 0).any(dim=2).any(dim=0)).flatten()
        kept_weight = (1.0 - weight) * torch.as_tensor(graph.adjacency[:upto, block].copy(), dtype=weight.dtype,
                                                       device=weight.device)
        kept = torch.nonzero((kept_weight > 0).any(dim=2).any(dim=0)).flatten()
        complement = len(kept) < len(cut)
        adjacent = np.nonzero(graph.adjacency[:upto, block].any(axis=1))[0]
        # Every sender fired so far is upstream here (no parallel block skipping): the running sum is it.
        every_upstream = len(adjacent) == upto
        upstream_senders = torch.as_tensor(adjacent, device=weight.device)
        chosen, w = (kept, kept_weight[:, kept]) if complement else (cut, weight[:, cut])
        w_t = w.transpose(1, 2).contiguous()  # [G, r, s]

        def hook_fn(act, hook):
            update = torch.bmm(w_t, diff[:, chosen]) if len(chosen) else None  # [G, r, prompt*pos*d]
            if complement:
                upstream = running if every_upstream else diff[:, upstream_senders].sum(dim=1)
                update = upstream[:, None] if update is None else upstream[:, None] - update
            if update is None:
                return act
            update = update.view(G, -1, P, n_pos, D).to(act.device, act.dtype)
            view = act.view(G, P, *act.shape[1:])
            if view.dim() == 4:
                return (view + update[:, 0]).view_as(act)
            return (view + update.permute(0, 2, 3, 1, 4)).view_as(act)
        return hook_fn

    fwd = [(name, input_part(name)) for name in _input_hooks(model)]
    fwd += [(name, sender(senders)) for name, senders in _sender_hooks(model, graph)]
    fwd += [(name, receiver(kind, layer)) for name, kind, layer in receiver_hooks(graph)]
    with torch.no_grad(), model.hooks(fwd_hooks=fwd):
        logits = model(prep.clean_tokens.repeat(G, 1))
    return prep.metric(logits).float().view(G, P).mean(dim=1).double().cpu().numpy()


def node_ablation(model, prep: Prepared, progress=None) -> np.ndarray:
    """Exact node scores [sender]: m(every outgoing edge of the node corrupted) - m(clean), i.e. the
    node's output replaced by its corrupted output everywhere downstream (activation patching)."""
    graph = prep.graph
    circuits = []
    for sender in range(graph.n_senders):
        mask = graph.full()
        mask[sender] = False
        circuits.append(mask)
    return np.ascontiguousarray(evaluate(model, prep, circuits, progress) - prep.full, dtype=np.float32)
