"""Our analyses against TransformerLens 4.3's own tools where both compute the same thing: time and agreement.

Model: a random GPT-2-shaped model (default GPT-2 small's shape: 12 layers,
12 heads, d_model 768, GPT-2's 50,257-token vocabulary), processed as the
notebook does; prompts: the Exploratory Analysis Demo's 8 pairs. Each pair
of rows computes the same numbers from the same clean cache:

- ``lens_recompute``: the logit-difference lens with LayerNorm recomputed
  (ours: one dot product with the answer direction per point; TL:
  ``tools.analysis.logit_lens`` reading the answer logits through the full
  unembedding);
- ``lens_grid``: top-5 tokens, logit difference and p(correct) at every layer
  and position (ours: one unembedding per block; TL: ``logit_lens`` once per
  selector: top-k, the correct logits, the incorrect logits, p(correct));
- ``dla``: per-component and per-head DLA (ours vs ``direct_logit_attribution``);
- ``head_scores``: previous-token, duplicate and induction scores on 2
  sequences of 2 x 100 word tokens with BOS (ours: one batched forward; TL:
  ``detect_head`` once per head type);
- ``attribution_patching``: head z and MLP-out estimates (ours: one batched
  forward + backward; TL: ``attribution_patch``, two forwards and a backward per pair).

    python -m benchmarks.bench_tl_tools [--small] [--json FILE] [--threads 1]

Run it from the repository root as a module, so ``tests.support`` is importable.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


FULL_SHAPE = {"n_layer": 12, "n_head": 12, "n_embd": 768}
SMALL_SHAPE = {"n_layer": 3, "n_head": 4, "n_embd": 64}


def _timed(function, repeats: int = 1):
    best, value = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        value = function()
        best = min(best, time.perf_counter() - started)
    return best, value


class _Quiet:
    def set_total(self, units): ...
    def advance(self, units=1, message=""): ...
    def check_cancelled(self): ...
    def rows(self, array, index, values, shape): ...


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="a 3-layer model of the same family (seconds)")
    parser.add_argument("--json", type=Path, help="write the measurements to this file")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from transformer_lens.head_detector import detect_head
    from transformer_lens.tools.analysis import attribution_patch, direct_logit_attribution, logit_lens

    from tests.support.analysis_fixtures import notebook_batch, save_random_gpt2
    from tests.support.tiny_models import make_gpt2_tokenizer

    from ioi_desktop.core.analyses import dla as dla_module
    from ioi_desktop.core.analyses import logit_lens as lens_module
    from ioi_desktop.core.analyses.attribution_patching import Options as AtpOptions
    from ioi_desktop.core.analyses.attribution_patching import run as atp_run
    from ioi_desktop.core.analyses.base import AnalysisContext
    from ioi_desktop.core.analyses.head_scores import Options as HeadOptions
    from ioi_desktop.core.analyses.head_scores import make_sequences, model_prepends_bos, score_heads, settings
    from ioi_desktop.core.models import ModelSpec, load_model
    from ioi_desktop.core.runner import SharedRuns

    torch.set_num_threads(args.threads)
    shape = SMALL_SHAPE if args.small else FULL_SHAPE
    with tempfile.TemporaryDirectory() as folder:
        save_random_gpt2(Path(folder) / "model", make_gpt2_tokenizer(), **shape)
        handle = load_model(ModelSpec(source=str(Path(folder) / "model"), device="cpu"))
    model, batch = handle.model, notebook_batch(handle)
    n_layers, n_heads = handle.info.n_layers, handle.info.n_heads
    tokens = torch.as_tensor(np.asarray(batch.clean_tokens))
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    correct = torch.as_tensor(np.asarray(batch.correct_ids))
    incorrect = torch.as_tensor(np.asarray(batch.incorrect_ids))
    rows = torch.arange(len(correct))
    bias = (model.b_U[correct] - model.b_U[incorrect]).float()
    seconds, diffs = {}, {}

    with torch.no_grad():
        ours_s, ours = _timed(lambda: lens_module.logit_diff_lens(model, cache, batch, n_layers, "recompute")[0], 3)
        vocab = sorted(set(correct.tolist()) | set(incorrect.tolist()))
        where = {token: k for k, token in enumerate(vocab)}
        tl_s, tl = _timed(lambda: logit_lens(model, cache=cache, incl_mid=True, positions=-1, vocab=vocab).values, 3)
        tl_diff = (tl[:, rows, [where[int(c)] for c in correct]] - tl[:, rows, [where[int(i)] for i in incorrect]]).T - bias[:, None]
        seconds["lens_recompute"] = {"ours": ours_s, "transformer_lens": tl_s}
        diffs["lens_recompute"] = float((ours - tl_diff).abs().max())

        names = [name for _, name in lens_module.grid_point_names(n_layers)]
        ours_s, _ = _timed(lambda: [lens_module._grid_row(model, cache[name], batch, 5) for name in names])
        per_row = lambda ids: ids[:, None].expand(-1, tokens.shape[1])  # noqa: E731
        tl_s, _ = _timed(lambda: (
            logit_lens(model, cache=cache, positions=None, top_k=5, return_type="probs"),
            logit_lens(model, cache=cache, positions=None, targets=per_row(correct)),
            logit_lens(model, cache=cache, positions=None, targets=per_row(incorrect)),
            logit_lens(model, cache=cache, positions=None, targets=per_row(correct), return_type="probs"),
        ))
        seconds["lens_grid"] = {"ours": ours_s, "transformer_lens": tl_s}

    ctx = AnalysisContext(handle=handle, batch=batch, runs=SharedRuns(model, batch))
    ctx.runs.declare(dla_module.hooks_needed(ctx, dla_module.Options()))
    ctx.runs.cache("clean")
    ours_s, ours = _timed(lambda: dla_module.run(ctx, dla_module.Options(), _Quiet()), 3)
    tl_s, tl = _timed(lambda: (
        direct_logit_attribution(model, answer_tokens=correct, incorrect_tokens=incorrect, unit="component", cache=cache),
        direct_logit_attribution(model, answer_tokens=correct, incorrect_tokens=incorrect, unit="head", cache=cache)), 3)
    seconds["dla"] = {"ours": ours_s, "transformer_lens": tl_s}
    diffs["dla"] = float(max(np.abs(ours.arrays["dla_components_by_prompt"] - tl[0].attribution.T.numpy()).max(),
                             np.abs(ours.arrays["dla_head_by_prompt"].reshape(len(rows), -1)
                                    - tl[1].attribution[: n_layers * n_heads].T.numpy()).max()))

    options = HeadOptions(seq_len=100, batch=2)
    ours_s, (scores, _) = _timed(lambda: score_heads(model, handle.tokenizer, options))
    chosen = settings(options, handle.info.n_ctx, model_prepends_bos(model, handle.tokenizer))
    sequences, _ = make_sequences(handle.tokenizer, handle.info.d_vocab, chosen)
    texts = [handle.tokenizer.decode(row[1:].tolist()) for row in sequences]
    round_trip = bool(torch.equal(model.to_tokens(texts).cpu(), sequences))
    tl_s, tl = _timed(lambda: [detect_head(model, texts, name) for name in
                               ("previous_token_head", "duplicate_token_head", "induction_head")])
    n = chosen["seq_len"]
    seconds["head_scores"] = {"ours": ours_s, "transformer_lens": tl_s}
    if round_trip:
        diffs["head_scores"] = float(max((scores[kind] - t * (2 * n + 1) / scored).abs().max() for kind, t, scored in
                                         zip(("prev", "dup", "induction"), tl, (2 * n, n, n))))

    atp_ctx = AnalysisContext(handle=handle, batch=batch, runs=SharedRuns(model, batch))
    atp_options = AtpOptions(sweeps=("head_z", "mlp_out"))
    ours_s, ours = _timed(lambda: atp_run(atp_ctx, atp_options, _Quiet()))
    corrupt = torch.as_tensor(np.asarray(batch.corrupt_tokens))
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(True)
    try:
        tl_s, tl = _timed(lambda: [attribution_patch(model, tokens[p:p + 1], corrupt[p:p + 1],
                                                     lambda logits, c=int(correct[p]), i=int(incorrect[p]): logits[0, -1, c] - logits[0, -1, i])
                                   for p in range(len(rows))])
    finally:
        for parameter, flag in zip(model.parameters(), flags):
            parameter.requires_grad_(flag)
    head_z = np.zeros((n_layers, n_heads))
    for found in tl:
        for node, score in found.node_scores.items():
            if node.kind == "attn_head_out":
                head_z[node.layer, node.head] += score / len(rows)
    span = ours.meta["clean_logit_diff"] - ours.meta["corrupt_logit_diff"]
    seconds["attribution_patching"] = {"ours": ours_s, "transformer_lens": tl_s}
    diffs["attribution_patching_head_z"] = float(np.abs(ours.arrays["atp_head_z"] * span - head_z).max())

    report = {
        "model": {"shape": shape, "d_vocab": int(handle.info.d_vocab), "small": args.small},
        "prompts": {"n": int(tokens.shape[0]), "n_pos": int(tokens.shape[1])},
        "threads": args.threads,
        "seconds": seconds,
        "ratio_tl_over_ours": {k: v["transformer_lens"] / v["ours"] for k, v in seconds.items()},
        "max_abs_diff": diffs,
        "head_scores_round_trip": round_trip,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count()},
    }
    for name, value in seconds.items():
        print(f"{name:>22}: ours {value['ours']:8.3f} s   transformer_lens {value['transformer_lens']:8.3f} s   "
              f"ratio {value['transformer_lens'] / value['ours']:6.1f}x   max |diff| {diffs.get(name, diffs.get(name + '_head_z', float('nan'))):.2e}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
