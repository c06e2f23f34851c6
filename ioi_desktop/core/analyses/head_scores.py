"""Head types: previous-token, duplicate-token and induction scores on repeated random tokens.

As in the TransformerLens demo, a batch of random token runs, each repeated
twice (``[t_0 .. t_{n-1}, t_0 .. t_{n-1}]``), is run once and every head's
attention pattern is scored by its average weight on the key a head of that
type attends to (sequence half-length ``n``):

- previous token: key ``q - 1`` (the token just before);
- duplicate token: key ``q - n`` (the earlier copy of the same token);
- induction: key ``q - n + 1`` (the token after the earlier copy).

Scores are in [0, 1]; 1 means the head puts all its attention there.

How the sequences are made (options, each recorded in ``meta``):

- ``prepend_bos`` (auto, yes or no; default auto): with auto, BOS first when
  the loaded model's prompts get one (``ModelInfo.prepend_bos``: the
  architecture's ``cfg.default_prepend_bos``, none when the model folder's
  tokenizer has no BOS token, or the user's choice at load), the same
  convention as every other analysis; without a handle (``score_heads`` called
  directly) BOS first when the model's ``to_tokens`` prepends one.
- ``token_pool`` ("words" or "id_range"; default "words"): "words" draws ids
  from the tokenizer's ordinary word tokens (a space marker followed by
  letters, e.g. " Mary"; no special tokens; for the bundled word-level
  tokenizer that is its word vocabulary), without replacement within a run,
  so each token's earlier copy is unique (a tokenizer with fewer word tokens
  than a run needs falls back to "id_range", noted in ``meta``); "id_range" is the demo's
  ``torch.randint(100, 20000)`` (clipped to the vocabulary), with replacement.
- ``seq_len`` (default the demo's 100, clipped so BOS and both copies fit
  the context), ``batch`` (default 2) and ``seed`` (default 0).

Which queries are scored: with BOS, the second copy's queries for duplicate
and induction scores and every query after BOS for previous-token scores,
i.e. exactly the rows where ``transformer_lens.head_detector.detect_head``'s
detection pattern has its 1; our score is detect_head's "mul" score times
(sequence length / scored rows) (tested). Without BOS (the demo's own
convention, used by ``reproduce-notebook``) the scores are the demo's
``pattern.diagonal(offset)`` means over every query that has such a key.

Ours rather than ``detect_head``, because detect_head takes strings and
re-tokenizes them (random BPE ids do not survive decode + encode), runs one
forward per sequence, and divides by every query row, including the first
copy's rows where a duplicate or induction head has nothing to find (so its
duplicate score cannot exceed n / (2n + 1)); one batched forward here scores
token ids directly (measured on a GPT-2-small-shaped model, 2 x 201 tokens:
0.32 s vs 1.20 s for the three types, ``benchmarks/bench_tl_tools.py``).
This analysis does its own forward pass and needs nothing from the prompt set.

Hybrid models (attention in some layers, a recurrent, convolution or
linear-attention mixer in the others) are scored over their attention layers
only: the ``layer`` axis then holds those layers in order, ``layer_labels``
name each row's real layer index and ``attention_layers`` lists them (None when
every layer has attention).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from jaxtyping import Float32

from ioi_desktop.core import hooks
from ioi_desktop.core.analyses.base import (
    AnalysisContext,
    AnalysisOptions,
    AnalysisResult,
    Progress,
    array,
    labels,
    meta,
    option,
)
from ioi_desktop.core.errors import AnalysisError

NAME = "head_scores"
MAX_SEQ_LEN = 4096
TOKEN_POOLS = ("words", "id_range")
BOS_CHOICES = ("auto", "yes", "no")
KINDS = ("prev", "dup", "induction")
# A space marker (GPT-2's byte-level "Ġ", SentencePiece's "▁") followed by ASCII letters only.
_WORD_TOKEN = re.compile(r"[Ġ▁][A-Za-z]+")


class Options(AnalysisOptions, analysis=NAME):
    seq_len: int = option(100, "Length of each half of the repeated random sequence (clipped so BOS and both "
                          "copies fit the model's context)", low=2, high=MAX_SEQ_LEN)
    batch: int = option(2, "How many random sequences to score on", low=1, high=1024)
    seed: int = option(0, "Seed of the random token sequences", low=0, high=2**31 - 1)
    prepend_bos: str = option("auto", "Put BOS first: auto (when the loaded model's prompts get one), yes or no",
                              choices=BOS_CHOICES)
    token_pool: str = option("words", "Where the random tokens come from: words, distinct ordinary word tokens "
                             "(no special tokens), or id_range, the demo's ids 100..20000 with replacement",
                             choices=TOKEN_POOLS)


class Result(AnalysisResult, analysis=NAME, title="Head types"):
    head_score_prev: Float32[np.ndarray, "layer head"] | None = array("previous-token score: mean attention q -> q-1")
    head_score_dup: Float32[np.ndarray, "layer head"] | None = array("duplicate-token score: mean attention q -> q-n")
    head_score_induction: Float32[np.ndarray, "layer head"] | None = array("induction score: mean attention q -> q-n+1")
    layer_labels: tuple[str, ...] | None = labels(
        "layer", "hybrids: the real layer index of each row (their attention layers only); None: every layer")
    attention_layers: list | None = meta("hybrids: the layers with attention, one per row; None: every layer")
    seq_len: int | None = meta("half-length n of the repeated sequences used (after clipping)")
    batch: int | None = meta("number of sequences")
    seed: int | None = meta("random seed")
    prepend_bos: bool | None = meta("whether BOS came first")
    bos_choice: str | None = meta("why BOS was or was not first, in words")
    token_pool: str | None = meta("where the tokens came from: words or id_range")
    token_pool_size: int | None = meta("how many ordinary word tokens the tokenizer has (token_pool words)")
    token_pool_note: str | None = meta("why the id range was used instead of words, when it was")
    token_range: list | None = meta("[low, high) of the random token ids (token_pool id_range)")
    sampling: str | None = meta("how the tokens were drawn, in words")
    scored_queries: dict | None = meta("which queries each score averages over, in words")


def hooks_needed(ctx: AnalysisContext, options: Options) -> set[str]:
    """None from the shared runs: the scores use their own random sequences."""
    return set()


def count_units(ctx: AnalysisContext, options: Options) -> int:
    return 1 + len(hooks.attention_layers(ctx.handle.model))


def model_prepends_bos(model: Any, tokenizer: Any) -> bool:
    """Whether ``to_tokens`` would put BOS first for this model."""
    return bool(getattr(model.cfg, "default_prepend_bos", True)) and getattr(tokenizer, "bos_token_id", None) is not None


def settings(options: Options, n_ctx: int, model_bos: bool = False) -> dict[str, Any]:
    """seq_len (clipped to the context), batch, seed, prepend_bos (resolved) and token_pool."""
    bos = model_bos if options.prepend_bos == "auto" else options.prepend_bos == "yes"
    room = n_ctx - int(bos)
    if room < 4:
        raise AnalysisError(f"The model's context of {n_ctx} tokens is too short for head scores.",
                            "Head scores need a context of at least 4 tokens.")
    return {"seq_len": min(options.seq_len, room // 2), "batch": options.batch, "seed": options.seed,
            "prepend_bos": bos, "token_pool": options.token_pool}


def token_range(d_vocab: int) -> tuple[int, int]:
    """The demo's [100, 20000), shrunk to fit small vocabularies (low ids are often special tokens)."""
    high = min(20_000, d_vocab)
    return min(100, high // 2), high


def word_token_ids(tokenizer: Any, d_vocab: int) -> list[int]:
    """Ids of ordinary word tokens (space marker + letters), without special tokens, below ``d_vocab``."""
    size = min(int(d_vocab), len(tokenizer))
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    strings = tokenizer.convert_ids_to_tokens(list(range(size)))
    return [i for i, text in enumerate(strings) if i not in special and isinstance(text, str) and _WORD_TOKEN.fullmatch(text)]


def repeated_random_tokens(d_vocab: int, seq_len: int, batch: int, seed: int) -> "torch.Tensor":
    """The demo's sequences: [batch, 2 * seq_len] int64 ids from ``token_range``, then the same again."""
    import torch

    low, high = token_range(d_vocab)
    generator = torch.Generator().manual_seed(seed)
    first = torch.randint(low, high, (batch, seq_len), generator=generator)
    return torch.cat([first, first], dim=1)


def repeated_word_tokens(pool: list[int], seq_len: int, batch: int, seed: int) -> "torch.Tensor":
    """[batch, 2 * seq_len]: each run ``seq_len`` distinct ids from ``pool``, then the same again."""
    if len(pool) < seq_len:
        raise AnalysisError(
            f"The tokenizer has {len(pool)} ordinary word tokens, fewer than the {seq_len} distinct tokens a run needs.",
            "Set a shorter head-score sequence length, or token_pool 'id_range'.",
        )
    import torch

    ids = torch.as_tensor(pool, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    first = torch.stack([ids[torch.randperm(len(pool), generator=generator)[:seq_len]] for _ in range(batch)])
    return torch.cat([first, first], dim=1)


def make_sequences(tokenizer: Any, d_vocab: int, chosen: dict[str, Any]) -> tuple["torch.Tensor", dict[str, Any]]:
    """The scored token ids [batch, (1 +) 2 * seq_len] and a description of how they were drawn."""
    import torch

    n, batch, seed = chosen["seq_len"], chosen["batch"], chosen["seed"]
    pool = word_token_ids(tokenizer, d_vocab) if chosen["token_pool"] == "words" else []
    if chosen["token_pool"] == "words" and len(pool) >= n:
        tokens = repeated_word_tokens(pool, n, batch, seed)
        drawn = {"token_pool_size": len(pool), "sampling": "distinct ordinary word tokens within a run"}
    elif chosen["token_pool"] == "words":
        # A tokenizer without enough space-marked word tokens (byte- or character-level, say): the demo's ids.
        tokens = repeated_random_tokens(d_vocab, n, batch, seed)
        chosen["token_pool"] = "id_range"
        drawn = {"token_range": list(token_range(d_vocab)), "sampling": "torch.randint over the id range, with replacement",
                 "token_pool_note": f"the tokenizer has {len(pool)} ordinary word tokens, fewer than the {n} a run "
                 "needs, so the ids were drawn from the demo's id range instead"}
    else:
        tokens = repeated_random_tokens(d_vocab, n, batch, seed)
        drawn = {"token_range": list(token_range(d_vocab)), "sampling": "torch.randint over the id range, with replacement"}
    if chosen["prepend_bos"]:
        tokens = torch.cat([torch.full((batch, 1), int(tokenizer.bos_token_id), dtype=torch.long), tokens], dim=1)
    return tokens, drawn


def diagonal_score(pattern: "torch.Tensor", offset: int) -> "torch.Tensor":
    """[head]: mean over batch and positions of ``pattern[..., q, q - offset]``."""
    diagonal = pattern.diagonal(offset=offset, dim1=-1, dim2=-2)
    return diagonal.float().mean(dim=(0, -1))


def layer_scores(pattern: "torch.Tensor", n: int, bos: bool) -> dict[str, "torch.Tensor"]:
    """{kind: [head]} for one layer's pattern [batch, head, query_pos, key_pos] (see the module docstring)."""
    import torch

    if not bos:
        return {"prev": diagonal_score(pattern, 1), "dup": diagonal_score(pattern, n), "induction": diagonal_score(pattern, n - 1)}
    second = torch.arange(n + 1, 2 * n + 1, device=pattern.device)
    after_bos = torch.arange(1, 2 * n + 1, device=pattern.device)
    return {
        "prev": pattern[:, :, after_bos, after_bos - 1].float().mean(dim=(0, 2)),
        "dup": pattern[:, :, second, second - n].float().mean(dim=(0, 2)),
        "induction": pattern[:, :, second, second - n + 1].float().mean(dim=(0, 2)),
    }


def score_heads(model: Any, tokenizer: Any, options: Options, on_layer=None,
                check_cancelled=None, model_bos: bool | None = None,
                bos_reason: str = "") -> tuple[dict[str, "torch.Tensor"], dict[str, Any]]:
    """({kind: [layer, head]}, meta) for ``model``: the whole analysis, without the runner (a hybrid's
    rows are its attention layers only, ``meta["attention_layers"]``).

    The bundled model's evaluation calls this too, so its card quotes the
    numbers the Head types panel shows. ``on_layer(layer, {kind: [head]})``
    is called after each layer. ``model_bos``: the model's BOS convention that
    ``prepend_bos="auto"`` follows (``ModelInfo.prepend_bos``, with
    ``bos_reason`` its ``bos_choice``); None: whether ``to_tokens`` prepends one.
    ``on_layer`` gets the row index (the layer itself unless the model is a hybrid).
    """
    import torch

    from ioi_desktop.core.devices import model_device

    cfg = model.cfg
    if model_bos is None:
        model_bos, bos_reason = model_prepends_bos(model, tokenizer), "the model's to_tokens convention"
    chosen = settings(options, int(cfg.n_ctx), bool(model_bos))
    tokens, drawn = make_sequences(tokenizer, int(cfg.d_vocab), chosen)
    with_heads = hooks.attention_layers(model)
    names = [hooks.hook_name("pattern", layer) for layer in with_heads]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens.to(model_device(model)), names_filter=names)
    rows: dict[str, list[torch.Tensor]] = {kind: [] for kind in KINDS}
    for layer, name in enumerate(names):
        if check_cancelled is not None:
            check_cancelled()
        found = layer_scores(cache[name], chosen["seq_len"], chosen["prepend_bos"])
        for kind in KINDS:
            rows[kind].append(found[kind])
        if on_layer is not None:
            on_layer(layer, found)
    scored = {"prev": "every query after BOS" if chosen["prepend_bos"] else "the demo's diagonal, every query with a key at q - 1",
              "dup": "the second copy's queries" if chosen["prepend_bos"] else "the demo's diagonal (the second copy's queries)",
              "induction": "the second copy's queries" if chosen["prepend_bos"] else "the demo's diagonal, queries n - 1 .. 2n - 1"}
    meta = {**chosen, **drawn, "scored_queries": scored,
            "bos_choice": _bos_choice(options.prepend_bos, chosen["prepend_bos"], bos_reason),
            "attention_layers": None if len(with_heads) == int(cfg.n_layers) else list(with_heads)}
    return {kind: torch.stack(value) for kind, value in rows.items()}, meta


def _bos_choice(option_value: str, bos: bool, reason: str) -> str:
    """Why BOS was or was not first, in words."""
    first = "BOS first" if bos else "no BOS"
    if option_value != "auto":
        return f"{first}, as the prepend_bos option says"
    return f"{first} ({reason})" if reason else first


def run(ctx: AnalysisContext, options: Options, progress: Progress) -> Result:
    from ioi_desktop.core.analyses.metrics import as_float32

    info = ctx.handle.info
    n_layers = len(hooks.attention_layers(ctx.handle.model))  # rows: a hybrid's attention layers only
    progress.set_total(1 + n_layers)
    progress.check_cancelled()

    def on_layer(layer: int, found: dict) -> None:
        if layer == 0:
            progress.advance(1, "attention on repeated random tokens")
        for kind in KINDS:
            values = as_float32(found[kind])
            progress.rows(f"head_score_{kind}", layer, values, (n_layers, *values.shape))
        progress.advance(1, f"head scores of layer {layer}")

    scores, found = score_heads(ctx.handle.model, ctx.handle.tokenizer, options, on_layer, progress.check_cancelled,
                                model_bos=getattr(info, "prepend_bos", None), bos_reason=getattr(info, "bos_choice", ""))
    layers = found.get("attention_layers")
    return Result(**{f"head_score_{kind}": as_float32(values) for kind, values in scores.items()},
                  layer_labels=None if layers is None else tuple(str(layer) for layer in layers), **found)
