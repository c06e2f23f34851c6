"""Exact activation patching: our engines against ``transformer_lens.patching``, same work, same run.

Models (random, built locally, GPT-2's 50,257-token vocabulary), processed with
the notebook's flags (fold_ln, center_writing_weights, center_unembed,
fold_value_biases; refactor_factored_attn_matrices where the model allows it,
i.e. not for rotary models):

- ``gpt2``: GPT-2-small-shaped (12 layers x 12 heads, d_model 768);
- ``llama``: Llama-shaped (8 layers x 8 query heads / 2 key-value heads,
  d_model 512, d_mlp 1376 (Llama's 2.6875 x d_model), RoPE, RMSNorm, gated SiLU MLP);
- ``neox``: Pythia-shaped (GPT-NeoX: 6 layers x 8 heads, d_model 512, d_mlp
  2048, parallel attention/MLP, LayerNorm, rotary on 25% of each head);
- ``gptj``: GPT-J-shaped (the same sizes as ``neox``; parallel attention/MLP
  sharing one LayerNorm, GPT-J's adjacent-pair rotary on half of each head).

Prompts: the Exploratory Analysis Demo's 8 pairs (15 tokens with BOS).
``--quick``: smaller models of the same shapes (2 layers, d_model 128).

Measured, with the clean cache computed beforehand for both sides (TL's
functions take it as input) and our side also paying for its corrupted run:
- ``head_z``: the every-head z sweep (``get_act_patch_attn_head_out_all_pos``);
- ``suite``: the notebook's six sweeps (resid_pre, attn_out, mlp_out, head z, v,
  pattern) for ``gpt2`` and ``llama``;
- ``bridge_head_z``: the head z sweep on the bridge-blocks engine (``gpt2``).
Speedup = TransformerLens time / our time. ``max_abs_diff`` is the largest
difference in the patched mean logit difference (before normalization) over
every cell compared, over all models; ``max_abs_diff_<model>`` per model.
JSON keys: ``speedup_head_z``, ``speedup_suite``, ``speedup_bridge_head_z``
(gpt2), ``speedup_head_z_llama``, ``speedup_suite_llama``,
``speedup_head_z_neox``, ``speedup_head_z_gptj``.

    python -m benchmarks.bench_patching [--quick] [--head-z-only] [--models gpt2,llama,neox,gptj] [--json FILE]
        [--threads 1] [--device cuda]

``--device cuda``: both sides on the GPU (model, tokens, caches), ratios against
``transformer_lens.patching`` on the same GPU; our engines then batch as many
patch settings per forward as half the free GPU memory holds.

``--head-z-only`` skips the six-sweep suites: a re-measurement of the head z
numbers in a few minutes. Run it from the repository root as a module, so
``tests.support`` is importable.
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

# The model and prompt builders are shared with the patching tests (tests.support).

SUITE = ("resid_pre", "attn_out", "mlp_out", "head_z", "head_v", "head_pattern")
MODELS = ("gpt2", "llama", "neox", "gptj")
FULL_SHAPE = {"n_layer": 12, "n_head": 12, "n_embd": 768}
QUICK_SHAPE = {"n_layer": 2, "n_head": 4, "n_embd": 128}
SHAPES = {
    "gpt2": (FULL_SHAPE, QUICK_SHAPE),
    "llama": ({"n_layers": 8, "n_heads": 8, "n_kv_heads": 2, "d_model": 512, "d_mlp": 1376},
              {"n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "d_model": 128, "d_mlp": 384}),
    "neox": ({"n_layers": 6, "n_heads": 8, "d_model": 512, "d_mlp": 2048},
             {"n_layers": 2, "n_heads": 4, "d_model": 128, "d_mlp": 512}),
    "gptj": ({"n_layers": 6, "n_heads": 8, "d_model": 512, "d_mlp": 2048},
             {"n_layers": 2, "n_heads": 4, "d_model": 128, "d_mlp": 512}),
}
WITH_SUITE = {"gpt2": True, "llama": True, "neox": False, "gptj": False}
KV_KINDS = ("v", "k")


class _Quiet:
    """A ``Progress`` that ignores reports."""

    def set_total(self, units): ...
    def advance(self, units=1, message=""): ...
    def check_cancelled(self): ...
    def rows(self, array, index, values, shape): ...


def _ours(model, batch, sweeps, engine):
    """(seconds, raw grids, meta) for our patching, including the corrupted run it needs.

    With grouped-query attention the k/v grids have fewer heads than the others,
    so they run as a second analysis over the same cached runs.
    """
    import torch

    from ioi_desktop.core.analyses import patching
    from ioi_desktop.core.engine import hooks_for_kinds  # imported before timing, like TL's module
    from tests.support.patching_helpers import context

    ctx = context(model, batch)
    names = hooks_for_kinds({patching.SWEEPS[s].kind for s in sweeps}, int(model.cfg.n_layers))
    grouped = (getattr(model.cfg, "n_key_value_heads", None) or model.cfg.n_heads) != model.cfg.n_heads
    kv = [s for s in sweeps if grouped and patching.SWEEPS[s].kind in KV_KINDS]
    groups = [g for g in ([s for s in sweeps if s not in kv], kv) if g]
    ctx.runs.declare(names)
    ctx.runs.require("clean", names)
    grids, meta = {}, {}
    began = time.perf_counter()
    with torch.no_grad():
        ctx.runs.require("corrupt", names)
        for group in groups:
            result = patching.run(ctx, patching.Options(sweeps=tuple(group), engine=engine), _Quiet())
            grids.update({s: result.arrays[patching.SWEEPS[s].array + "_raw"] for s in group})
            meta = meta or result.meta
    return time.perf_counter() - began, grids, meta


def _tl(model, batch, sweep, clean_cache, device=None):
    from tests.support.patching_helpers import tl_reference

    began = time.perf_counter()
    grid = tl_reference(model, batch, sweep, clean_cache, device)
    return time.perf_counter() - began, grid


def _model(name: str, quick: bool):
    from tests.support.patching_helpers import random_gpt2_bridge
    from tests.support.rotary_models import random_bridge

    shape = SHAPES[name][1 if quick else 0]
    if name == "gpt2":
        return random_gpt2_bridge(**shape, attn_gain=1.0), shape
    return random_bridge(name, **shape, attn_gain=1.0, logit_gain=1.0), shape


def _measure(name, model, batch, head_z_only: bool, device) -> dict:
    """Timings, speedups and differences for one model."""
    import numpy as np
    import torch

    with torch.no_grad():
        _logits, clean_cache = model.run_with_cache(torch.as_tensor(batch.clean_tokens, device=device))
    measured = ("head_z",) if head_z_only or not WITH_SUITE[name] else SUITE
    tl_seconds, tl_grids = {}, {}
    for sweep in measured:
        tl_seconds[sweep], tl_grids[sweep] = _tl(model, batch, sweep, clean_cache, device)
        print(f"[{name}] transformer_lens {sweep:>13}: {tl_seconds[sweep]:8.2f} s", flush=True)
    head_z_s, head_z, meta = _ours(model, batch, ["head_z"], "auto")
    out = {"engine_auto": meta["engine"], "engine_reason": meta["engine_reason"],
           "seconds": {"tl_head_z": tl_seconds["head_z"], "tl_per_sweep": tl_seconds, "fast_head_z": head_z_s},
           "speedup_head_z": tl_seconds["head_z"] / head_z_s}
    diffs = {"fast_head_z": float(np.abs(head_z["head_z"] - tl_grids["head_z"]).max())}
    print(f"[{name}] fast   head z : {head_z_s:7.2f} s  speedup {out['speedup_head_z']:6.1f}x "
          f"(engine {meta['engine']})", flush=True)
    if name == "gpt2":
        bridge_s, bridge, _ = _ours(model, batch, ["head_z"], "bridge")
        diffs["bridge_head_z"] = float(np.abs(bridge["head_z"] - tl_grids["head_z"]).max())
        out["seconds"]["bridge_head_z"] = bridge_s
        out["speedup_bridge_head_z"] = tl_seconds["head_z"] / bridge_s
        print(f"[{name}] bridge head z : {bridge_s:7.2f} s  speedup {out['speedup_bridge_head_z']:6.1f}x", flush=True)
    if len(measured) > 1:
        suite_s, suite, _ = _ours(model, batch, SUITE, "auto")
        diffs.update({f"fast_suite_{s}": float(np.abs(suite[s] - tl_grids[s]).max()) for s in SUITE})
        out["seconds"].update({"tl_suite": sum(tl_seconds.values()), "fast_suite": suite_s})
        out["speedup_suite"] = out["seconds"]["tl_suite"] / suite_s
        print(f"[{name}] fast   suite  : {suite_s:7.2f} s  speedup {out['speedup_suite']:6.1f}x", flush=True)
    out["max_abs_diff"] = max(diffs.values())
    out["max_abs_diff_by_grid"] = diffs
    print(f"[{name}] max_abs_diff  : {out['max_abs_diff']:.3g} (patched mean logit difference)", flush=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller models of the same shapes (a smoke test)")
    parser.add_argument("--json", type=Path, help="write the measurements to this file")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--head-z-only", action="store_true", help="only the head z sweeps")
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated subset of {', '.join(MODELS)} (default: all)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda / cuda:N: both sides on that device")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        parser.error(f"unknown model {unknown[0]!r}; use some of {', '.join(MODELS)}")

    import torch
    import transformer_lens.patching as tl_patching

    from tests.support.patching_helpers import notebook_pairs, tokenized_pairs

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA GPU and a CUDA build of torch")
    # TL's sweeps draw a progress bar per call; keep the output to the numbers.
    tl_patching.tqdm = lambda iterable, *a, **k: iterable
    batch = tokenized_pairs(notebook_pairs())
    report = {
        "prompts": {"n": int(batch.clean_tokens.shape[0]), "n_pos": int(batch.clean_tokens.shape[1])},
        "threads": args.threads,
        "device": str(device) if device.type == "cpu" else f"{device} ({torch.cuda.get_device_name(device)})",
        "quick": args.quick,
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
    }
    worst = []
    for name in names:
        model, shape = _model(name, args.quick)
        if device.type != "cpu":
            model.to(device)
        measured = _measure(name, model, batch, args.head_z_only, device)
        worst.append(measured["max_abs_diff"])
        model_info = {"shape": shape, "d_vocab": 50257, "architecture": model.cfg.architecture}
        if name == "gpt2":
            # The GPT-2 keys keep their names from before the other models were added.
            report.update({"model": {**model_info, "quick": args.quick}, **measured})
        else:
            report[f"model_{name}"] = model_info
            report[f"engine_auto_{name}"] = measured["engine_auto"]
            report[f"seconds_{name}"] = measured["seconds"]
            report[f"speedup_head_z_{name}"] = measured["speedup_head_z"]
            if "speedup_suite" in measured:
                report[f"speedup_suite_{name}"] = measured["speedup_suite"]
            report[f"max_abs_diff_{name}"] = measured["max_abs_diff"]
            report[f"max_abs_diff_by_grid_{name}"] = measured["max_abs_diff_by_grid"]
        del model
    if "gpt2" in names:
        report["max_abs_diff_gpt2"] = report["max_abs_diff"]
    report["max_abs_diff"] = max(worst)
    if hasattr(os, "getloadavg"):
        report["machine"]["load_average_at_end"] = list(os.getloadavg())
    print(f"max_abs_diff over all models: {report['max_abs_diff']:.3g}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
