"""Logit difference: how strongly the model prefers the correct name at END.

The IOI metric (Wang et al. 2022, TransformerLens's demo) is the logit
difference ``logit(correct) - logit(incorrect)`` at each prompt's last token
(END), where correct is the indirect object (IO) and incorrect the subject (S).
It is computed on the clean prompts and on the corrupted prompts with the same
answers, so the corrupted value shows how far the corruption moves the model.

Also reported per prompt: whether the correct answer beats the incorrect one
(accuracy), the probability of the correct answer, and the top next tokens with
their probabilities. This module also holds the small helpers the other
analyses share to read values at END and project onto the answer direction.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int

from ioi_desktop.core.analyses.base import AnalysisContext, AnalysisResult, Progress

NAME = "logit_diff"
DEFAULT_TOP_K = 5


# ------------------------------------------------------------------ shared helpers


def end_index(batch: Any, device: torch.device) -> Int[torch.Tensor, "prompt"]:
    """Each prompt's END position (prompts may differ in length)."""
    return torch.as_tensor(np.asarray(batch.end_pos, dtype=np.int64), device=device)


def at_end(activation: Float[torch.Tensor, "prompt pos ..."], end: Int[torch.Tensor, "prompt"]) -> torch.Tensor:
    """``activation[p, end[p], ...]`` for every prompt ``p``."""
    return activation[torch.arange(activation.shape[0], device=activation.device), end]


def answer_ids(batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    correct = torch.as_tensor(np.asarray(batch.correct_ids, dtype=np.int64), device=device)
    incorrect = torch.as_tensor(np.asarray(batch.incorrect_ids, dtype=np.int64), device=device)
    return correct, incorrect


def logit_diff_directions(model: Any, batch: Any) -> Float[torch.Tensor, "prompt d_model"]:
    """``W_U[:, correct] - W_U[:, incorrect]`` per prompt: the residual direction of the metric."""
    W_U = model.W_U
    correct, incorrect = answer_ids(batch, W_U.device)
    return (W_U[:, correct] - W_U[:, incorrect]).T.float()


def unembed_bias_diff(model: Any, batch: Any) -> Float[torch.Tensor, "prompt"]:
    """``b_U[correct] - b_U[incorrect]``: the part of the logit difference no component writes."""
    b_U = getattr(model, "b_U", None)
    correct, incorrect = answer_ids(batch, model.W_U.device)
    if b_U is None:
        return torch.zeros(correct.shape[0], device=correct.device)
    return (b_U[correct] - b_U[incorrect]).float()


def logit_diff_at_end(logits: Float[torch.Tensor, "prompt pos d_vocab"], batch: Any) -> Float[torch.Tensor, "prompt"]:
    """The metric from full logits."""
    end_logits = at_end(logits, end_index(batch, logits.device))
    correct, incorrect = answer_ids(batch, logits.device)
    rows = torch.arange(end_logits.shape[0], device=logits.device)
    return end_logits[rows, correct] - end_logits[rows, incorrect]


def as_float32(tensor: torch.Tensor) -> np.ndarray:
    """A float32 C-contiguous numpy copy (how results leave ``core``)."""
    return np.ascontiguousarray(tensor.detach().float().cpu().numpy(), dtype=np.float32)


def token_text(tokenizer: Any, ids: np.ndarray) -> dict[str, str]:
    """``{str(id): decoded text}`` for every distinct non-negative id, for labelling top-k tokens."""
    distinct = sorted({int(i) for i in np.asarray(ids).ravel() if i >= 0})
    return {str(i): tokenizer.decode([i]) for i in distinct}


def prompt_labels(batch: Any) -> list[str]:
    """One label per prompt: its text without the BOS token."""
    return ["".join(tokens[1:]) for tokens in batch.str_tokens]


def rank_labels(k: int) -> list[str]:
    return [f"top {i + 1}" for i in range(k)]


def top_k_option(options: Any, d_vocab: int) -> int:
    from ioi_desktop.core.errors import AnalysisError

    k = options.get("top_k", DEFAULT_TOP_K)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= min(100, d_vocab):
        raise AnalysisError(
            f"The number of top tokens must be a whole number from 1 to {min(100, d_vocab)}, not {k!r}.",
            "Set top_k to 5, say.",
        )
    return k


# ------------------------------------------------------------------ the analysis


def hooks_needed(ctx: AnalysisContext) -> set[str]:
    """Only the logits of the shared runs."""
    return set()


def count_units(ctx: AnalysisContext) -> int:
    return 2


def run(ctx: AnalysisContext, progress: Progress) -> AnalysisResult:
    batch = ctx.batch
    k = top_k_option(ctx.options, int(ctx.handle.info.d_vocab))
    progress.set_total(2)
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"top_k": k}
    all_ids = []
    for which in ("clean", "corrupt"):
        progress.check_cancelled()
        logits = ctx.runs.logits(which)
        end_logits = at_end(logits, end_index(batch, logits.device))
        correct, incorrect = answer_ids(batch, logits.device)
        rows = torch.arange(end_logits.shape[0], device=logits.device)
        diff = end_logits[rows, correct] - end_logits[rows, incorrect]
        probs = torch.softmax(end_logits.float(), dim=-1)
        top_probs, top_ids = probs.topk(k, dim=-1)
        arrays[f"logit_diff_{which}"] = as_float32(diff)
        arrays[f"logit_diff_p_correct_{which}"] = as_float32(probs[rows, correct])
        arrays[f"logit_diff_top_ids_{which}"] = np.ascontiguousarray(top_ids.cpu().numpy(), dtype=np.int32)
        arrays[f"logit_diff_top_probs_{which}"] = as_float32(top_probs)
        meta[f"mean_{which}"] = float(diff.mean())
        meta[f"accuracy_{which}"] = float((diff > 0).float().mean())
        all_ids.append(arrays[f"logit_diff_top_ids_{which}"])
        progress.advance(1, f"logit difference on the {which} prompts")
    meta["token_text"] = token_text(ctx.handle.tokenizer, np.concatenate(all_ids, axis=None))
    axes = {name: ("prompt",) for name in arrays}
    for which in ("clean", "corrupt"):
        axes[f"logit_diff_top_ids_{which}"] = ("prompt", "rank")
        axes[f"logit_diff_top_probs_{which}"] = ("prompt", "rank")
    return AnalysisResult(
        name=NAME,
        arrays=arrays,
        axes=axes,
        labels={"prompt": prompt_labels(batch), "rank": rank_labels(k)},
        meta=meta,
    )
