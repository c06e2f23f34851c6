"""Path patching and ablation: our analyses against TransformerLens, same work, same run.

Model: a random GPT-2-small-shaped model (12 layers, 12 heads, d_model 768,
GPT-2's vocabulary) processed with the notebook's flags; prompts: the
Exploratory Analysis Demo's 8 pairs. ``--quick``: a smaller model of the same
family.

Measured, with both cached runs computed beforehand for both sides (TL's
function takes them as input):
- ``forward``: one sender (``--sender``, default 5.5) into every later head's
  q, k and v: ours (``path_patching``, receivers q,k,v) against
  ``transformer_lens.patching.get_act_patch_direct_path`` for each of q, k, v;
- ``reverse``: every earlier head into one receiver's q (``--receiver``,
  default 9.9): ours (``receiver_head``) against the same TransformerLens hook
  (the sender's clean-minus-corrupted write added to the receiver's
  ``hook_q_input``), one forward per sender as ``get_act_patch_direct_path``
  does per cell (TL has no reverse sweep);
- ``ablation``: the backup preset (zero-ablate the strongest DLA head at END)
  with DLA before and after, in forward-equivalents = its time / the time of
  one plain forward pass of the clean prompts.
``max_abs_diff``: the largest difference in the patched mean logit difference.

    python -m benchmarks.bench_ablation [--quick] [--json FILE] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

FULL_SHAPE = {"n_layer": 12, "n_head": 12, "n_embd": 768}
QUICK_SHAPE = {"n_layer": 4, "n_head": 4, "n_embd": 128}


class _Quiet:
    def set_total(self, units): ...
    def advance(self, units=1, message=""): ...
    def check_cancelled(self): ...
    def rows(self, array, index, values, shape): ...


def _context(model, batch):
    from ioi_desktop.core.analyses import path_patching
    from ioi_desktop.core.analyses.base import AnalysisContext
    from tests.support.patching_helpers import context

    ctx = context(model, batch)
    # The runner declares every analysis's hooks up front; so does the benchmark, then caches both runs.
    probe = AnalysisContext(handle=ctx.handle, batch=batch, runs=ctx.runs)
    names = path_patching.hooks_needed(probe, path_patching.Options(receivers=("q", "k", "v", "logits")))
    ctx.runs.declare(names)
    ctx.runs.require("clean", names)
    ctx.runs.require("corrupt", names)
    return ctx


def _tl_reverse_q(model, batch, clean, corrupt, receiver):
    """Every earlier head alone into ``receiver``'s q input, one hooked forward per sender (TL's hook point)."""
    import numpy as np
    import torch

    from tests.support.patching_helpers import logit_diff_metric

    layer, head = receiver
    metric = logit_diff_metric(batch)
    tokens = torch.as_tensor(batch.corrupt_tokens)
    grid = np.zeros((layer, int(model.cfg.n_heads)))
    model.set_use_split_qkv_input(True)
    try:
        for s_layer in range(layer):
            name = f"blocks.{s_layer}.attn.hook_z"
            for s_head in range(int(model.cfg.n_heads)):
                W_O = model.blocks[s_layer].attn.W_O[s_head]
                delta = (clean[name][:, :, s_head] - corrupt[name][:, :, s_head]) @ W_O

                def hook(fork, hook, delta=delta):
                    fork = fork.clone()
                    fork[:, :, head] += delta
                    return fork

                with torch.no_grad():
                    logits = model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_q_input", hook)])
                grid[s_layer, s_head] = float(metric(logits))
    finally:
        model.set_use_split_qkv_input(False)
    return grid


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller model of the same family")
    parser.add_argument("--json", type=Path, help="write the measurements to this file")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--sender", default=None, help="sender head L.H (default 5.5; --quick 1.1)")
    parser.add_argument("--receiver", default=None, help="receiver head L.H (default 9.9; --quick 3.3)")
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    import transformer_lens.patching as tl_patching

    from ioi_desktop.core.analyses import ablation, path_patching
    from tests.support.patching_helpers import logit_diff_metric, notebook_pairs, random_gpt2_bridge, tokenized_pairs

    torch.set_num_threads(args.threads)
    tl_patching.tqdm = lambda iterable, *a, **k: iterable
    shape = QUICK_SHAPE if args.quick else FULL_SHAPE
    sender = tuple(int(v) for v in (args.sender or ("1.1" if args.quick else "5.5")).split("."))
    receiver = tuple(int(v) for v in (args.receiver or ("3.3" if args.quick else "9.9")).split("."))
    model = random_gpt2_bridge(**shape, attn_gain=1.0)
    batch = tokenized_pairs(notebook_pairs())
    ctx = _context(model, batch)
    clean, corrupt = ctx.runs.cache("clean"), ctx.runs.cache("corrupt")
    tokens = torch.as_tensor(batch.corrupt_tokens)

    # --- forward: one sender -> every later head's q, k, v
    tl_grids, tl_seconds = {}, 0.0
    for component in "qkv":
        began = time.perf_counter()
        with torch.no_grad():
            tl_grids[component] = tl_patching.get_act_patch_direct_path(
                model, tokens, clean, corrupt, logit_diff_metric(batch), sender[0], sender[1], component,
                verbose=False).numpy()
        tl_seconds += time.perf_counter() - began
        print(f"transformer_lens direct path {sender} -> * [{component}]: {time.perf_counter() - began:7.2f} s",
              flush=True)
    began = time.perf_counter()
    result = path_patching.run(ctx, path_patching.Options(senders=f"{sender[0]}.{sender[1]}",
                                                          receivers=("q", "k", "v")), _Quiet())
    ours_forward = time.perf_counter() - began
    later = slice(sender[0] + 1, None)
    forward_diff = max(float(np.abs(result.arrays[f"path_patch_{c}_raw"][later] - tl_grids[c][later]).max())
                       for c in "qkv")
    print(f"ours forward (q, k, v): {ours_forward:7.2f} s  speedup {tl_seconds / ours_forward:6.1f}x  "
          f"max_abs_diff {forward_diff:.2e}", flush=True)

    # --- reverse: every earlier head -> one receiver's q
    began = time.perf_counter()
    tl_reverse = _tl_reverse_q(model, batch, clean, corrupt, receiver)
    tl_reverse_s = time.perf_counter() - began
    began = time.perf_counter()
    reverse = path_patching.run(ctx, path_patching.Options(receiver_head=f"{receiver[0]}.{receiver[1]}",
                                                           receivers=("q",)), _Quiet())
    ours_reverse = time.perf_counter() - began
    reverse_diff = float(np.abs(reverse.arrays["path_patch_q_raw"][: receiver[0]] - tl_reverse).max())
    print(f"reverse * -> {receiver} [q]: transformer_lens {tl_reverse_s:7.2f} s, ours {ours_reverse:7.2f} s, "
          f"speedup {tl_reverse_s / ours_reverse:6.1f}x, max_abs_diff {reverse_diff:.2e}", flush=True)

    # --- ablation with DLA after, in forward-equivalents
    clean_tokens = torch.as_tensor(batch.clean_tokens)
    with torch.no_grad():
        model(clean_tokens)  # warm
        forwards = []
        for _ in range(3):
            began = time.perf_counter()
            model(clean_tokens)
            forwards.append(time.perf_counter() - began)
    forward_s = min(forwards)
    times = []
    for _ in range(3):
        began = time.perf_counter()
        ablated = ablation.run(ctx, ablation.Options(), _Quiet())
        times.append(time.perf_counter() - began)
    ablation_s = min(times)
    print(f"ablation (preset, heads {ablated.meta['heads']}) with DLA before/after: {ablation_s:.3f} s = "
          f"{ablation_s / forward_s:.2f} forward-equivalents (one forward {forward_s:.3f} s)", flush=True)

    report = {
        "model": {"shape": shape, "d_vocab": 50257, "quick": args.quick},
        "prompts": {"n": int(batch.clean_tokens.shape[0]), "n_pos": int(batch.clean_tokens.shape[1])},
        "threads": args.threads,
        "machine": {"python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform()},
        "forward": {"sender": list(sender), "transformer_lens_s": tl_seconds, "ours_s": ours_forward,
                    "speedup": tl_seconds / ours_forward, "max_abs_diff": forward_diff,
                    "engine": result.meta.get("engine")},
        "reverse": {"receiver": list(receiver), "component": "q", "transformer_lens_hook_s": tl_reverse_s,
                    "ours_s": ours_reverse, "speedup": tl_reverse_s / ours_reverse, "max_abs_diff": reverse_diff},
        "ablation": {"seconds": ablation_s, "forward_s": forward_s, "forward_equivalents": ablation_s / forward_s},
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
