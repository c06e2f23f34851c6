"""Head types: previous-token, duplicate-token and induction scores on repeated random tokens.

As in the TransformerLens demo: a batch of random token sequences, each
repeated twice (``[t_0 .. t_{n-1}, t_0 .. t_{n-1}]``, no BOS), is run once and
every head's attention pattern is scored by its average weight on one
diagonal (query ``q``, key ``k``, sequence half-length ``n``):

- previous token: ``k = q - 1`` (attends to the token just before);
- duplicate token: ``k = q - n`` (attends to the earlier copy of the same token);
- induction: ``k = q - n + 1`` (attends to the token after the earlier copy).

Scores are in [0, 1]; 1 means the head puts all its attention there. The
random tokens come from a seeded generator, so a run is reproducible. Token
ids are drawn from [100, 20000) like the demo, clipped to the vocabulary.
This analysis does its own forward pass; it needs nothing from the prompt set.
"""

from __future__ import annotations


import numpy as np
from jaxtyping import Float32

from ioi_desktop.core import hooks
from ioi_desktop.core.analyses.base import AnalysisContext, AnalysisOptions, AnalysisResult, Progress, array, meta, option
from ioi_desktop.core.errors import AnalysisError

NAME = "head_scores"
MAX_SEQ_LEN = 4096


class Options(AnalysisOptions, analysis=NAME):
    seq_len: int = option(100, "Length of each half of the repeated random sequence (clipped to half the "
                          "model's context)", low=2, high=MAX_SEQ_LEN)
    batch: int = option(2, "How many random sequences to score on", low=1, high=1024)
    seed: int = option(0, "Seed of the random token sequences", low=0, high=2**31 - 1)


class Result(AnalysisResult, analysis=NAME, title="Head types"):
    head_score_prev: Float32[np.ndarray, "layer head"] | None = array("previous-token score: mean attention q -> q-1")
    head_score_dup: Float32[np.ndarray, "layer head"] | None = array("duplicate-token score: mean attention q -> q-n")
    head_score_induction: Float32[np.ndarray, "layer head"] | None = array("induction score: mean attention q -> q-n+1")
    seq_len: int | None = meta("half-length n of the repeated sequences used (after clipping)")
    batch: int | None = meta("number of sequences")
    seed: int | None = meta("random seed")
    token_range: list | None = meta("[low, high) of the random token ids")


def hooks_needed(ctx: AnalysisContext, options: Options) -> set[str]:
    """None from the shared runs: the scores use their own random sequences."""
    return set()


def count_units(ctx: AnalysisContext, options: Options) -> int:
    return 1 + ctx.handle.info.n_layers


def settings(options: Options, n_ctx: int) -> dict[str, int]:
    """Sequence half-length (clipped to half the context), batch size and seed."""
    if n_ctx < 4:
        raise AnalysisError(f"The model's context of {n_ctx} tokens is too short for head scores.",
                            "Head scores need a context of at least 4 tokens.")
    return {"seq_len": min(options.seq_len, n_ctx // 2), "batch": options.batch, "seed": options.seed}


def token_range(d_vocab: int) -> tuple[int, int]:
    """The demo's [100, 20000), shrunk to fit small vocabularies (low ids are often special tokens)."""
    high = min(20_000, d_vocab)
    return min(100, high // 2), high


def repeated_random_tokens(d_vocab: int, seq_len: int, batch: int, seed: int) -> "torch.Tensor":
    """[batch, 2 * seq_len] int64: seeded random tokens followed by the same tokens again."""
    import torch

    low, high = token_range(d_vocab)
    generator = torch.Generator().manual_seed(seed)
    first = torch.randint(low, high, (batch, seq_len), generator=generator)
    return torch.cat([first, first], dim=1)


def diagonal_score(pattern: "torch.Tensor", offset: int) -> "torch.Tensor":
    """[head]: mean over batch and positions of ``pattern[..., q, q - offset]``."""
    diagonal = pattern.diagonal(offset=offset, dim1=-1, dim2=-2)
    return diagonal.float().mean(dim=(0, -1))


def run(ctx: AnalysisContext, options: Options, progress: Progress) -> Result:
    import torch

    from ioi_desktop.core.analyses.metrics import as_float32
    from ioi_desktop.core.devices import model_device

    model = ctx.handle.model
    info = ctx.handle.info
    chosen = settings(options, int(info.n_ctx))
    n = chosen["seq_len"]
    progress.set_total(1 + int(info.n_layers))
    tokens = repeated_random_tokens(int(info.d_vocab), n, chosen["batch"], chosen["seed"]).to(model_device(model))
    names = hooks.hook_names("pattern", info.n_layers)
    progress.check_cancelled()
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=names)
    progress.advance(1, "attention on repeated random tokens")
    scores = {"prev": [], "dup": [], "induction": []}
    for layer, name in enumerate(names):
        progress.check_cancelled()
        pattern = cache[name]
        scores["prev"].append(diagonal_score(pattern, 1))
        scores["dup"].append(diagonal_score(pattern, n))
        scores["induction"].append(diagonal_score(pattern, n - 1))
        for kind in scores:
            progress.rows(f"head_score_{kind}", layer, as_float32(scores[kind][-1]), (len(names), *scores[kind][-1].shape))
        progress.advance(1, f"head scores of layer {layer}")
    return Result(
        **{f"head_score_{kind}": as_float32(torch.stack(rows)) for kind, rows in scores.items()},
        **chosen,
        token_range=list(token_range(int(info.d_vocab))),
    )
