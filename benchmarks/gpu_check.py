"""The checks a lent GPU machine runs (under 5 minutes on one H200): one command, one JSON report.

1. The GPUs torch sees, with their free memory (what the model picker shows).
2. ``benchmarks.bench_patching --device cuda`` (GPT-2-small shape, the six-sweep
   suite): our engines against ``transformer_lens.patching`` on the same GPU.
3. The device choice ``all``: a random GPT-2-small-shaped model (12 layers,
   d_model 768) loaded with ``device="all"`` (split across the GPUs when there
   are two or more, one GPU otherwise), the memory estimate next to the peak
   memory actually allocated, and patching / attribution patching / path
   patching / EAP scores compared with the same model on one device
   (``cuda:0``). With one GPU ``all`` places the whole model on it (nothing
   is split): the check then records the placement and memory only.

    python -m benchmarks.gpu_check [--out DIR] [--skip-bench]

Run from the repository root (``tests.support`` builds the models). Writes
``DIR/gpu_check.json`` (default: the current folder) and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

ANALYSES = ["patching", "attribution_patching", "path_patching"]
OPTIONS = {
    "patching": {"sweeps": ("resid_pre", "head_z", "head_v")},
    "attribution_patching": {"sweeps": ("resid_pre", "head_z", "head_v")},
}


def gpus() -> list[dict]:
    import torch

    found = []
    for index in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(index)
        found.append({"index": index, "name": torch.cuda.get_device_name(index),
                      "free_gib": round(free / 2**30, 2), "total_gib": round(total / 2**30, 2)})
    return found


def bench(out: Path, timeout: float) -> dict:
    path = out / "bench_patching_cuda.json"
    began = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "benchmarks.bench_patching", "--device", "cuda",
                               "--models", "gpt2", "--json", str(path)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"bench_patching --device cuda took more than {timeout:.0f} s"}
    report = {"returncode": done.returncode, "seconds": round(time.perf_counter() - began, 1),
              "stdout": done.stdout[-4000:], "stderr": done.stderr[-2000:]}
    if path.is_file():
        report["json"] = json.loads(path.read_text())
    return report


def _arrays(result) -> dict:
    import numpy as np

    return {k: v for k, v in vars(result).items() if isinstance(v, np.ndarray) and v.dtype.kind == "f"}


def all_gpus(folder: Path) -> dict:
    import numpy as np
    import torch

    from ioi_desktop.core.circuits import scoring
    from ioi_desktop.core.models import ModelSpec, load_model
    from ioi_desktop.core.pairs import notebook_prompt_set
    from ioi_desktop.core.prompts import tokenize_set
    from ioi_desktop.core.runner import Runner

    report: dict = {}
    messages: list[str] = []
    for index in range(torch.cuda.device_count()):
        torch.cuda.reset_peak_memory_stats(index)
    began = time.perf_counter()
    split = load_model(ModelSpec(source=str(folder), device="all"), progress=messages.append)
    report["load_seconds"] = round(time.perf_counter() - began, 2)
    report["placement"] = [m for m in messages if m.startswith("Memory:")]
    report["device"] = split.info.device
    report["n_devices"] = int(getattr(split.model.cfg, "n_devices", 1))
    report["hf_device_map"] = {k: str(v) for k, v in (getattr(split.model.original_model, "hf_device_map", None) or {}).items()}
    prompts = notebook_prompt_set()
    began = time.perf_counter()
    got = Runner().run(split, prompts, ANALYSES, OPTIONS)
    batch = tokenize_set(prompts, split.tokenizer, n_ctx=split.info.n_ctx)
    eap_split = scoring.eap_scores(split.model, scoring.prepare(split.model, batch))
    report["analyses_seconds"] = round(time.perf_counter() - began, 2)
    report["peak_allocated_gib"] = {f"cuda:{i}": round(torch.cuda.max_memory_allocated(i) / 2**30, 3)
                                    for i in range(torch.cuda.device_count())}
    report["engine"] = got["patching"].engine
    one = "cuda:0"
    report["compared_with"] = one
    del split
    torch.cuda.empty_cache()
    single = load_model(ModelSpec(source=str(folder), device=one))
    on_one = {**OPTIONS, "patching": {**OPTIONS["patching"], "engine": "bridge"}}
    expected = Runner().run(single, prompts, ANALYSES, on_one)
    eap_single = scoring.eap_scores(single.model, scoring.prepare(single.model, batch))
    diffs = {}
    for name in ANALYSES:
        a, b = _arrays(got[name]), _arrays(expected[name])
        for key in sorted(set(a) & set(b)):
            diffs[f"{name}.{key}"] = float(np.nanmax(np.abs(a[key] - b[key])))
    diffs["eap_scores"] = float(np.abs(eap_split - eap_single).max())
    report["max_abs_diff"] = diffs
    report["max_abs_diff_overall"] = max(diffs.values())
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for gpu_check.json")
    parser.add_argument("--skip-bench", action="store_true", help="only the 'all' device check")
    args = parser.parse_args(argv)
    import torch

    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {"torch": torch.__version__, "cuda": torch.version.cuda, "gpus": gpus()}
    began = time.perf_counter()
    if not torch.cuda.is_available():
        report["error"] = "no CUDA GPU"
    else:
        from tests.support.analysis_fixtures import save_random_gpt2
        from tests.support.tiny_models import make_gpt2_tokenizer

        folder = save_random_gpt2(Path(tempfile.mkdtemp(prefix="ioi-gpu-")) / "gpt2-small-random",
                                  make_gpt2_tokenizer(), n_layer=12, n_head=12, n_embd=768)
        try:
            report["all_gpus"] = all_gpus(folder)
        except Exception as exc:  # the report must say what failed on the lent machine
            report["all_gpus"] = {"error": f"{type(exc).__name__}: {exc}"}
        if not args.skip_bench:  # what is left of 4.5 minutes
            report["bench_patching_cuda"] = bench(args.out, max(60.0, 270.0 - (time.perf_counter() - began)))
    path = args.out / "gpu_check.json"
    path.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "bench_patching_cuda"}, indent=2))
    bench_report = report.get("bench_patching_cuda", {})
    print(bench_report.get("stdout", ""))
    print(f"wrote {path}")
    return 0 if "error" not in report and "error" not in report.get("all_gpus", {}) else 1


if __name__ == "__main__":
    sys.exit(main())
