"""Exact activation patching: our engines against ``transformer_lens.patching``, same work, same run.

Model: a random GPT-2-small-shaped model (12 layers, 12 heads, d_model 768,
GPT-2's 50,257-token vocabulary) built locally, processed with the notebook's
flags (fold_ln, center_writing_weights, center_unembed, fold_value_biases,
refactor_factored_attn_matrices); prompts: the Exploratory Analysis Demo's 8
pairs (15 tokens with BOS). ``--quick``: a smaller model of the same family.

Measured, with the clean cache computed beforehand for both sides (TL's
functions take it as input) and our side also paying for its corrupted run:
- ``head_z``: the 144-head z sweep (``get_act_patch_attn_head_out_all_pos``);
- ``suite``: the notebook's six sweeps (resid_pre, attn_out, mlp_out, head z, v, pattern);
- ``bridge_head_z``: the head z sweep on the bridge-blocks engine.
Speedup = TransformerLens time / our time. ``max_abs_diff`` is the largest
difference in the patched mean logit difference (before normalization) over
every cell compared.

    python -m benchmarks.bench_patching [--quick] [--head-z-only] [--json FILE] [--threads 1] [--device cuda]

``--device cuda``: both sides on the GPU (model, tokens, caches), ratios against
``transformer_lens.patching`` on the same GPU; our engines then batch as many
patch settings per forward as half the free GPU memory holds.

``--head-z-only`` skips the six-sweep suite (no ``speedup_suite``): a
re-measurement of the head z numbers in a few minutes. Run it from the
repository root as a module, so ``tests.support`` is importable.
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

# The model and prompt builders are shared with the patching tests (tests.support.patching_helpers).

SUITE = ("resid_pre", "attn_out", "mlp_out", "head_z", "head_v", "head_pattern")
FULL_SHAPE = {"n_layer": 12, "n_head": 12, "n_embd": 768}
QUICK_SHAPE = {"n_layer": 2, "n_head": 4, "n_embd": 128}


class _Quiet:
    """A ``Progress`` that ignores reports."""

    def set_total(self, units): ...
    def advance(self, units=1, message=""): ...
    def check_cancelled(self): ...
    def rows(self, array, index, values, shape): ...


def _ours(model, batch, sweeps, engine):
    """(seconds, raw grids) for our patching, including the corrupted run it needs."""
    import torch

    from ioi_desktop.core.analyses import patching
    from ioi_desktop.core.engine import hooks_for_kinds  # imported before timing, like TL's module
    from tests.support.patching_helpers import context

    ctx = context(model, batch)
    options = patching.Options(sweeps=tuple(sweeps), engine=engine)
    names = hooks_for_kinds({patching.SWEEPS[s].kind for s in sweeps}, int(model.cfg.n_layers))
    ctx.runs.declare(names)
    ctx.runs.require("clean", names)
    began = time.perf_counter()
    with torch.no_grad():
        ctx.runs.require("corrupt", names)
        result = patching.run(ctx, options, _Quiet())
    seconds = time.perf_counter() - began
    return seconds, {s: result.arrays[patching.SWEEPS[s].array + "_raw"] for s in sweeps}, result.meta


def _tl(model, batch, sweep, clean_cache, device=None):
    from tests.support.patching_helpers import tl_reference

    began = time.perf_counter()
    grid = tl_reference(model, batch, sweep, clean_cache, device)
    return time.perf_counter() - began, grid


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller model of the same family (< 60 s)")
    parser.add_argument("--json", type=Path, help="write the measurements to this file")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--head-z-only", action="store_true", help="only the head z sweep on both engines")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda / cuda:N: both sides on that device")
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    import transformer_lens.patching as tl_patching

    from tests.support.patching_helpers import notebook_pairs, random_gpt2_bridge, tokenized_pairs

    torch.set_num_threads(args.threads)
    # TL's sweeps draw a progress bar per call; keep the output to the numbers.
    tl_patching.tqdm = lambda iterable, *a, **k: iterable
    shape = QUICK_SHAPE if args.quick else FULL_SHAPE
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA GPU and a CUDA build of torch")
    model = random_gpt2_bridge(**shape, attn_gain=1.0)
    if device.type != "cpu":
        model.to(device)
    batch = tokenized_pairs(notebook_pairs())
    with torch.no_grad():
        _logits, clean_cache = model.run_with_cache(torch.as_tensor(batch.clean_tokens, device=device))

    measured = ("head_z",) if args.head_z_only else SUITE
    tl_seconds, tl_grids = {}, {}
    for sweep in measured:
        tl_seconds[sweep], tl_grids[sweep] = _tl(model, batch, sweep, clean_cache, device)
        print(f"transformer_lens {sweep:>13}: {tl_seconds[sweep]:8.2f} s", flush=True)

    head_z_s, head_z, meta = _ours(model, batch, ["head_z"], "auto")
    bridge_s, bridge, _ = _ours(model, batch, ["head_z"], "bridge")
    diffs = {
        "fast_head_z": float(np.abs(head_z["head_z"] - tl_grids["head_z"]).max()),
        "bridge_head_z": float(np.abs(bridge["head_z"] - tl_grids["head_z"]).max()),
    }
    report = {
        "model": {"shape": shape, "d_vocab": 50257, "quick": args.quick},
        "prompts": {"n": int(batch.clean_tokens.shape[0]), "n_pos": int(batch.clean_tokens.shape[1])},
        "threads": args.threads,
        "device": str(device) if device.type == "cpu" else f"{device} ({torch.cuda.get_device_name(device)})",
        "engine_auto": meta["engine"],
        "seconds": {"tl_head_z": tl_seconds["head_z"], "tl_per_sweep": tl_seconds,
                    "fast_head_z": head_z_s, "bridge_head_z": bridge_s},
        "speedup_head_z": tl_seconds["head_z"] / head_z_s,
        "speedup_bridge_head_z": tl_seconds["head_z"] / bridge_s,
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
    }
    if not args.head_z_only:
        suite_s, suite, _ = _ours(model, batch, SUITE, "auto")
        diffs.update({f"fast_suite_{s}": float(np.abs(suite[s] - tl_grids[s]).max()) for s in SUITE})
        report["seconds"].update({"tl_suite": sum(tl_seconds.values()), "fast_suite": suite_s})
        report["speedup_suite"] = report["seconds"]["tl_suite"] / suite_s
        print(f"fast   suite  : {suite_s:7.2f} s  speedup {report['speedup_suite']:6.1f}x")
    report["max_abs_diff"] = max(diffs.values())
    report["max_abs_diff_by_grid"] = diffs
    print(f"fast   head z : {head_z_s:7.2f} s  speedup {report['speedup_head_z']:6.1f}x")
    print(f"bridge head z : {bridge_s:7.2f} s  speedup {report['speedup_bridge_head_z']:6.1f}x")
    print(f"max_abs_diff  : {report['max_abs_diff']:.3g} (patched mean logit difference)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
