"""Logit difference: how strongly the model prefers the correct name at END.

The IOI metric (Wang et al. 2022, TransformerLens's demo) is the logit
difference ``logit(correct) - logit(incorrect)`` at each prompt's last token
(END), where correct is the indirect object (IO) and incorrect the subject (S).
It is computed on the clean prompts and on the corrupted prompts with the same
answers, so the corrupted value shows how far the corruption moves the model.

Also reported per prompt: whether the correct answer beats the incorrect one
(accuracy), the probability of the correct answer, and the top next tokens with
their probabilities.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from jaxtyping import Float32, Int32

from ioi_desktop.core.analyses.base import AnalysisContext, AnalysisOptions, AnalysisResult, Progress, array, labels, meta, option
from ioi_desktop.core.errors import AnalysisError

NAME = "logit_diff"
MAX_TOP_K = 100


class Options(AnalysisOptions, analysis=NAME):
    top_k: int = option(5, "How many most likely next tokens to keep per prompt", low=1, high=MAX_TOP_K)


class Result(AnalysisResult, analysis=NAME, title="Logit difference"):
    logit_diff_clean: Float32[np.ndarray, "prompt"] | None = array("logit(correct) - logit(incorrect) at END, clean prompts")
    logit_diff_p_correct_clean: Float32[np.ndarray, "prompt"] | None = array("p(correct) at END, clean prompts")
    logit_diff_top_ids_clean: Int32[np.ndarray, "prompt rank"] | None = array("top-k next-token ids at END, clean prompts")
    logit_diff_top_probs_clean: Float32[np.ndarray, "prompt rank"] | None = array("their probabilities")
    logit_diff_corrupt: Float32[np.ndarray, "prompt"] | None = array("the same logit difference on the corrupted prompts (clean answers)")
    logit_diff_p_correct_corrupt: Float32[np.ndarray, "prompt"] | None = array("p(correct) at END, corrupted prompts")
    logit_diff_top_ids_corrupt: Int32[np.ndarray, "prompt rank"] | None = array("top-k next-token ids at END, corrupted prompts")
    logit_diff_top_probs_corrupt: Float32[np.ndarray, "prompt rank"] | None = array("their probabilities")
    prompt_labels: tuple[str, ...] | None = labels("prompt", "each prompt's text without BOS")
    rank_labels: tuple[str, ...] | None = labels("rank", "'top 1', 'top 2', ...")
    top_k: int | None = meta("how many top tokens were kept")
    mean_clean: float | None = meta("mean clean logit difference")
    accuracy_clean: float | None = meta("share of clean prompts with logit difference > 0")
    mean_corrupt: float | None = meta("mean corrupted logit difference")
    accuracy_corrupt: float | None = meta("share of corrupted prompts with logit difference > 0")
    mean_p_correct_clean: float | None = meta("mean p(correct) at END, clean prompts")
    mean_p_correct_corrupt: float | None = meta("mean p(correct) at END, corrupted prompts")
    token_text: dict | None = meta("decoded text of every top-k token id, keyed by the id as a string")


def check_top_k(k: int, d_vocab: int) -> int:
    """``k``, refused when the vocabulary is smaller."""
    if k > d_vocab:
        raise AnalysisError(f"The option top_k is {k}, more than the model's vocabulary of {d_vocab} tokens.",
                            f"Set top_k to {min(5, d_vocab)}, say.")
    return k


def hooks_needed(ctx: AnalysisContext, options: Options) -> set[str]:
    """Only the logits of the shared runs."""
    return set()


def count_units(ctx: AnalysisContext, options: Options) -> int:
    return 2


def run(ctx: AnalysisContext, options: Options, progress: Progress) -> Result:
    import torch

    from ioi_desktop.core.analyses.metrics import (
        answer_ids,
        as_float32,
        as_int32,
        at_end,
        end_index,
        prompt_labels,
        rank_labels,
        token_text,
    )

    batch = ctx.batch
    k = check_top_k(options.top_k, int(ctx.handle.info.d_vocab))
    progress.set_total(2)
    fields: dict[str, Any] = {"top_k": k}
    for which in ("clean", "corrupt"):
        progress.check_cancelled()
        logits = ctx.runs.logits(which)
        end_logits = at_end(logits, end_index(batch, logits.device))
        correct, incorrect = answer_ids(batch, logits.device)
        rows = torch.arange(end_logits.shape[0], device=logits.device)
        diff = end_logits[rows, correct] - end_logits[rows, incorrect]
        probs = torch.softmax(end_logits.float(), dim=-1)
        top_probs, top_ids = probs.topk(k, dim=-1)
        fields[f"logit_diff_{which}"] = as_float32(diff)
        fields[f"logit_diff_p_correct_{which}"] = as_float32(probs[rows, correct])
        fields[f"logit_diff_top_ids_{which}"] = as_int32(top_ids)
        fields[f"logit_diff_top_probs_{which}"] = as_float32(top_probs)
        fields[f"mean_{which}"] = float(diff.mean())
        fields[f"accuracy_{which}"] = float((diff > 0).float().mean())
        fields[f"mean_p_correct_{which}"] = float(probs[rows, correct].mean())
        progress.advance(1, f"logit difference on the {which} prompts")
    ids = np.concatenate([fields["logit_diff_top_ids_clean"], fields["logit_diff_top_ids_corrupt"]], axis=None)
    return Result(**fields, token_text=token_text(ctx.handle.tokenizer, ids),
                  prompt_labels=prompt_labels(batch), rank_labels=rank_labels(k))
