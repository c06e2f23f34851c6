"""Soak test: many consecutive full-suite runs and model load/unload cycles, watching RSS.

A leak (cached activations, hooks left on the model, bridges kept alive by a
reference cycle) shows up as resident memory that keeps growing run after run.
This script

1. loads the bundled model once and runs every analysis on the TransformerLens
   demo's 8 prompt pairs ``--runs`` times through the core :class:`Runner`,
   clearing the runner's cache before each run so every run really recomputes
   the forward passes and every analysis;
2. loads and drops the bundled model ``--cycles`` times (each handle deleted and
   garbage-collected before the next load);

and records the process's resident set size after each step (psutil when it
is installed, else ``VmRSS`` from ``/proc/self/status``).

Plateau rule (runs): the mean RSS of the last 10 runs is compared with the
mean of runs 10-20 (1-based, inclusive of 11..20); memory has plateaued when
the growth is under ``--tolerance-mib`` (default 32 MiB). The same rule is
applied to the load cycles with their last 5 against cycles 5-10. With fewer
steps than the rule needs, the two halves of the series are compared.

    python -m benchmarks.soak [--runs 50] [--cycles 20] [--json FILE] [--threads 1]

Exit status: 0 when both series plateau, 1 when either grows.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


MIB = 2**20


def rss_bytes() -> int:
    """Resident set size of this process in bytes."""
    try:
        import psutil
    except ImportError:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("cannot read this process's resident memory (no psutil, no /proc/self/status)")
    return int(psutil.Process().memory_info().rss)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def plateau(series: list[int], early: tuple[int, int], late_count: int, tolerance_bytes: int) -> dict:
    """Compare the mean of ``series[early[0]:early[1]]`` with the mean of the last ``late_count`` entries.

    Falls back to first half against second half when the series is too short
    for the windows to be distinct.
    """
    begin, end = early
    if len(series) >= end + late_count:
        early_values, late_values = series[begin:end], series[-late_count:]
        rule = f"mean of steps {begin + 1}-{end} vs mean of the last {late_count}"
    else:
        half = max(1, len(series) // 2)
        early_values, late_values = series[:half], series[half:] or series[:half]
        rule = "mean of the first half vs mean of the second half (series too short for the full rule)"
    early_mean, late_mean = _mean(early_values), _mean(late_values)
    growth = late_mean - early_mean
    return {
        "rule": rule,
        "early_mean_mib": round(early_mean / MIB, 2),
        "late_mean_mib": round(late_mean / MIB, 2),
        "growth_mib": round(growth / MIB, 2),
        "tolerance_mib": round(tolerance_bytes / MIB, 2),
        "plateau": growth < tolerance_bytes,
    }


def soak_runs(n_runs: int, report) -> list[dict]:
    """``n_runs`` full-suite runs on one loaded bundled model, recomputing each time."""
    from ioi_desktop.core.analyses import analysis_names
    from ioi_desktop.core.models import ModelSpec, load_model
    from ioi_desktop.core.pairs import notebook_prompt_set
    from ioi_desktop.core.runner import Runner

    handle = load_model(ModelSpec(source="bundled", device="cpu"))
    prompt_set = notebook_prompt_set()
    names = analysis_names()
    runner = Runner()
    rows = []
    for index in range(n_runs):
        runner.clear_cache()
        started = time.perf_counter()
        results = runner.run(handle, prompt_set, names)
        seconds = time.perf_counter() - started
        if results.meta["cached"]:
            raise RuntimeError(f"run {index + 1} reused cached analyses {results.meta['cached']}; the soak must recompute")
        del results
        gc.collect()
        row = {"run": index + 1, "seconds": round(seconds, 3), "rss_bytes": rss_bytes(),
               "forward_passes": runner.forward_count}
        rows.append(row)
        report(f"run {row['run']:3d}  {row['seconds']:7.2f} s  RSS {row['rss_bytes'] / MIB:8.1f} MiB")
    del runner, handle
    gc.collect()
    return rows


def soak_loads(n_cycles: int, report) -> list[dict]:
    """Load the bundled model and drop it ``n_cycles`` times."""
    from ioi_desktop.core.models import ModelSpec, load_model

    rows = []
    for index in range(n_cycles):
        started = time.perf_counter()
        handle = load_model(ModelSpec(source="bundled", device="cpu"))
        seconds = time.perf_counter() - started
        del handle
        gc.collect()
        row = {"cycle": index + 1, "seconds": round(seconds, 3), "rss_bytes": rss_bytes()}
        rows.append(row)
        report(f"load {row['cycle']:3d}  {row['seconds']:7.2f} s  RSS {row['rss_bytes'] / MIB:8.1f} MiB")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="full-suite runs (default 50)")
    parser.add_argument("--cycles", type=int, default=20, help="model load/unload cycles (default 20)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--tolerance-mib", type=float, default=32.0,
                        help="largest RSS growth still called a plateau (default 32 MiB)")
    parser.add_argument("--json", metavar="FILE", help="also write every measurement as JSON")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    os.environ["IOI_DESKTOP_THREADS"] = str(args.threads)
    tolerance = int(args.tolerance_mib * MIB)
    baseline = rss_bytes()

    def report(line: str) -> None:
        print(line, flush=True)

    started = time.perf_counter()
    runs = soak_runs(args.runs, report)
    loads = soak_loads(args.cycles, report)
    run_verdict = plateau([row["rss_bytes"] for row in runs], (10, 20), 10, tolerance)
    load_verdict = plateau([row["rss_bytes"] for row in loads], (4, 10), 5, tolerance)

    print()
    print(f"{'series':<8} {'steps':>5} {'first MiB':>10} {'max MiB':>9} {'last MiB':>9} "
          f"{'early mean':>11} {'late mean':>10} {'growth':>8}  plateau")
    for label, rows, verdict in (("runs", runs, run_verdict), ("loads", loads, load_verdict)):
        if not rows:
            continue
        values = [row["rss_bytes"] / MIB for row in rows]
        print(f"{label:<8} {len(rows):>5} {values[0]:>10.1f} {max(values):>9.1f} {values[-1]:>9.1f} "
              f"{verdict['early_mean_mib']:>11.1f} {verdict['late_mean_mib']:>10.1f} "
              f"{verdict['growth_mib']:>8.1f}  {'yes' if verdict['plateau'] else 'NO'}")
        print(f"         ({verdict['rule']})")
    total = time.perf_counter() - started
    print(f"\nbaseline RSS before loading {baseline / MIB:.1f} MiB; total {total:.0f} s")

    if args.json:
        document = {
            "runs": runs,
            "loads": loads,
            "plateau": {"runs": run_verdict, "loads": load_verdict},
            "baseline_rss_bytes": baseline,
            "seconds": round(total, 1),
            "threads": args.threads,
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        }
        Path(args.json).write_text(json.dumps(document, indent=1), encoding="utf-8")
        print(f"wrote {args.json}")
    ok = (not runs or run_verdict["plateau"]) and (not loads or load_verdict["plateau"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
