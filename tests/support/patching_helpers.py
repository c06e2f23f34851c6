"""Shared builders for the patching tests and benchmark: models, prompt sets, TL references."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

# The Exploratory Analysis Demo's prompts: 4 templates x 2 name orders; the
# corrupted prompt of a pair is its neighbour's clean prompt (S2 swapped).
SWEEP_NAMES = (
    "resid_pre", "attn_out", "mlp_out", "head_z", "head_v", "head_pattern", "head_q", "head_k", "head_z_by_pos",
)
TEMPLATES = (
    ("When John and Mary went to the shops,{} gave the bag to", " Mary", " John"),
    ("When Tom and James went to the park,{} gave the ball to", " Tom", " James"),
    ("When Dan and Sid went to the shops,{} gave an apple to", " Dan", " Sid"),
    ("After Martin and Amy went to the park,{} gave a drink to", " Martin", " Amy"),
)


def notebook_pairs() -> list[tuple[str, str, str, str]]:
    """(clean, corrupt, correct, incorrect) of the demo's 8 prompts."""
    cleans, answers = [], []
    for template, first, second in TEMPLATES:
        for correct, incorrect in ((first, second), (second, first)):
            cleans.append(template.format(incorrect))
            answers.append((correct, incorrect))
    corrupts = [cleans[i ^ 1] for i in range(len(cleans))]
    return [(c, k, a, b) for c, k, (a, b) in zip(cleans, corrupts, answers)]


def gpt2_tokenizer():
    """GPT-2's real BPE tokenizer from the files in tests/data (no network)."""
    from tests.support.tiny_models import make_gpt2_tokenizer

    return make_gpt2_tokenizer()


def random_gpt2_bridge(n_layer=2, n_head=4, n_embd=32, seed=0, attn_gain=6.0, folder: Path | None = None):
    """A random GPT-2 with GPT-2's vocabulary, booted offline into a processed TransformerBridge.

    Random initialization gives near-uniform attention; ``attn_gain`` scales the
    query/key/value weights so patching effects are far from zero in tests.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(n_layer=n_layer, n_head=n_head, n_embd=n_embd, vocab_size=50257, n_positions=64)
    hf_model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name, param in hf_model.named_parameters():
            if name.endswith("c_attn.weight"):
                param.mul_(attn_gain)
    folder = Path(folder or tempfile.mkdtemp(prefix="ioi-patching-"))
    hf_model.save_pretrained(folder)
    gpt2_tokenizer().save_pretrained(folder)
    return boot_processed_bridge(folder)


def boot_processed_bridge(folder: Path, refactor_factored_attn_matrices: bool = True):
    """The model saved in ``folder`` as a TransformerBridge with the notebook's weight processing.

    Rotary models cannot refactor the QK circuit: pass
    ``refactor_factored_attn_matrices=False`` for them (the other flags apply).
    """
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(str(folder), device="cpu")
    bridge.enable_compatibility_mode(
        fold_ln=True, center_writing_weights=True, center_unembed=True,
        fold_value_biases=True, refactor_factored_attn_matrices=refactor_factored_attn_matrices,
    )
    bridge.eval()
    return bridge


def tokenized_pairs(pairs, tokenizer=None) -> SimpleNamespace:
    """A ``TokenizedSet``-shaped object from (clean, corrupt, correct, incorrect) tuples.

    Tokenized as TransformerLens does by default (BOS prepended); roles are
    found from the two names: S is the incorrect answer, IO the correct one.
    """
    tokenizer = tokenizer or gpt2_tokenizer()
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False)
    bos = tokenizer.bos_token_id
    rows = [[bos] + encode(c) for c, _k, _a, _b in pairs]
    corrupt_rows = [[bos] + encode(k) for _c, k, _a, _b in pairs]
    lengths = np.array([len(r) for r in rows])
    width = int(lengths.max())
    pad = tokenizer.eos_token_id
    clean = np.full((len(rows), width), pad, dtype=np.int64)
    corrupt = np.full((len(rows), width), pad, dtype=np.int64)
    roles = {name: np.full(len(rows), -1, dtype=np.int64) for name in ("IO", "S1", "S2", "END")}
    for i, (row, crow) in enumerate(zip(rows, corrupt_rows)):
        assert len(row) == len(crow)
        clean[i, : len(row)] = row
        corrupt[i, : len(crow)] = crow
        io = encode(pairs[i][2])[0]
        s = encode(pairs[i][3])[0]
        s_positions = [p for p, t in enumerate(row) if t == s]
        roles["IO"][i] = row.index(io)
        roles["S1"][i], roles["S2"][i] = s_positions[0], s_positions[-1]
        roles["END"][i] = len(row) - 1
    return SimpleNamespace(
        clean_tokens=clean,
        corrupt_tokens=corrupt,
        correct_ids=np.array([encode(p[2])[0] for p in pairs], dtype=np.int64),
        incorrect_ids=np.array([encode(p[3])[0] for p in pairs], dtype=np.int64),
        lengths=lengths,
        end_pos=lengths - 1,
        roles=roles,
        str_tokens=[tokenizer.convert_ids_to_tokens(r) for r in rows],
        corrupt_str_tokens=[tokenizer.convert_ids_to_tokens(r) for r in corrupt_rows],
        equal_length=bool((lengths == width).all()),
        pad_id=pad,
    )


class RecordingProgress:
    """A ``Progress`` that records what an analysis reports."""

    def __init__(self, cancel_after: int | None = None) -> None:
        self.total = 0
        self.done = 0
        self.received: list[tuple[str, object, np.ndarray]] = []
        self.cancel_after = cancel_after
        self.checks = 0

    def set_total(self, units: int) -> None:
        self.total = units

    def advance(self, units: int = 1, message: str = "") -> None:
        self.done += units

    def check_cancelled(self) -> None:
        from ioi_desktop.core.errors import Cancelled

        self.checks += 1
        if self.cancel_after is not None and self.done >= self.cancel_after:
            raise Cancelled()

    def rows(self, array, index, values, shape) -> None:
        self.received.append((array, index, np.array(values)))


def context(model, batch, batch_size=None, handle=None):
    """An ``AnalysisContext`` over ``model`` with the runner's shared cached runs."""
    from ioi_desktop.core.analyses.base import AnalysisContext
    from ioi_desktop.core.runner import SharedRuns

    handle = handle or SimpleNamespace(model=model, tokenizer=model.tokenizer, info=None)
    runs = SharedRuns(model, batch)
    return AnalysisContext(handle=handle, batch=batch, runs=runs, batch_size=batch_size)


def run_with(module, ctx, options=None, progress=None):
    """``module.run`` with its Options made from ``options`` (a dict; checked like the runner does)."""
    return module.run(ctx, module.Options.from_dict(options), progress or RecordingProgress())


def logit_diff_metric(batch, device=None):
    """TransformerLens patching metric: mean logit difference at each prompt's END."""
    import torch

    end = torch.as_tensor(batch.end_pos, device=device)
    correct = torch.as_tensor(batch.correct_ids, device=device)
    incorrect = torch.as_tensor(batch.incorrect_ids, device=device)

    def metric(logits):
        rows = torch.arange(logits.shape[0], device=logits.device)
        at_end = logits[rows, end]
        return (at_end[rows, correct] - at_end[rows, incorrect]).mean()

    return metric


# Our sweep name -> TransformerLens patching function name.
TL_FUNCTIONS = {
    "resid_pre": "get_act_patch_resid_pre",
    "attn_out": "get_act_patch_attn_out",
    "mlp_out": "get_act_patch_mlp_out",
    "head_z": "get_act_patch_attn_head_out_all_pos",
    "head_v": "get_act_patch_attn_head_v_all_pos",
    "head_pattern": "get_act_patch_attn_head_pattern_all_pos",
    "head_q": "get_act_patch_attn_head_q_all_pos",
    "head_k": "get_act_patch_attn_head_k_all_pos",
    "head_z_by_pos": "get_act_patch_attn_head_out_by_pos",
}


def tl_reference(model, batch, sweep: str, clean_cache=None, device=None) -> np.ndarray:
    """TransformerLens's own patched mean logit difference grid for ``sweep`` (tokens on ``device``)."""
    import torch
    from transformer_lens import patching

    clean_tokens = torch.as_tensor(batch.clean_tokens, device=device)
    corrupt_tokens = torch.as_tensor(batch.corrupt_tokens, device=device)
    if clean_cache is None:
        _logits, clean_cache = model.run_with_cache(clean_tokens)
    with torch.no_grad():
        grid = getattr(patching, TL_FUNCTIONS[sweep])(model, corrupt_tokens, clean_cache,
                                                      logit_diff_metric(batch, device))
    return grid.detach().cpu().numpy()


def tl_reference_cells(model, batch, sweep: str, clean_cache, positions,
                       layers=None) -> dict[tuple[int, ...], float]:
    """TransformerLens's patched mean logit difference at the grid cells whose pos is in ``positions``.

    Head sweeps over all positions are computed whole; sweeps with a ``pos``
    axis only at ``positions`` (``index_df``), to keep the tests fast.
    ``layers``: a hybrid's attention layers, the grid's rows (every cell through
    ``index_df``; TransformerLens's whole-grid sweep would visit the mixer layers).
    Returns {grid index tuple: value}, the first index the grid row.
    """
    import itertools

    import pandas as pd
    import torch
    from transformer_lens import patching

    function = getattr(patching, TL_FUNCTIONS[sweep])
    corrupt_tokens = torch.as_tensor(batch.corrupt_tokens)
    metric = logit_diff_metric(batch)
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    with torch.no_grad():
        if layers is not None and sweep.startswith("head_") and sweep != "head_z_by_pos":
            kv = sweep in ("head_k", "head_v")
            width = int(clean_cache[f"blocks.{layers[0]}.attn.hook_{sweep[5:]}"].shape[-2]) if kv else n_heads
            cells = list(itertools.product(layers, range(width)))
            values = function(model, corrupt_tokens, clean_cache, metric, index_axis_names=None,
                              index_df=pd.DataFrame(cells, columns=["layer", "head"])).cpu().numpy()
            return {(layers.index(l), h): float(v) for (l, h), v in zip(cells, values)}
        if sweep.startswith("head_") and sweep != "head_z_by_pos":
            grid = function(model, corrupt_tokens, clean_cache, metric).cpu().numpy()
            return {index: float(grid[index]) for index in np.ndindex(grid.shape)}
        if sweep == "head_z_by_pos":
            cells = list(itertools.product(range(n_layers), positions, range(n_heads)))
            names = ["layer", "pos", "head"]
        else:
            cells = list(itertools.product(range(n_layers) if layers is None else layers, positions))
            names = ["layer", "pos"]
        values = function(
            model, corrupt_tokens, clean_cache, metric,
            index_axis_names=None, index_df=pd.DataFrame(cells, columns=names),
        ).cpu().numpy()
    if layers is not None:
        return {(layers.index(cell[0]), *cell[1:]): float(value) for cell, value in zip(cells, values)}
    return {cell: float(value) for cell, value in zip(cells, values)}
