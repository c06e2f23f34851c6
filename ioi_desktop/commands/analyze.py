"""``ioi-desktop analyze``: run analyses headless and write results.json + results.npz."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HELP = "Run analyses on a prompt-pairs file headless and write results.json + results.npz to a folder."

_BAR_WIDTH = 30


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments every headless run shares (analyze, ablate, path-patch)."""
    parser.add_argument("--model", default="bundled",
                        help="'bundled' (default), a model folder, or a model name in the Hugging Face cache")
    parser.add_argument("--pairs", metavar="FILE", help="prompt pairs (.json or .csv, see docs/pairs-format.md)")
    parser.add_argument("--out", metavar="DIR", help="folder to write results.json and results.npz into")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N, mps, or all (split across every GPU)")
    parser.add_argument("--dtype", default="float32", help="float32 (default), float16 or bfloat16")
    parser.add_argument("--batch-size", type=int, metavar="N", help="prompts per forward pass (default: all at once)")
    parser.add_argument("--prepend-bos", dest="prepend_bos", action=argparse.BooleanOptionalAction, default=None,
                        help="start every prompt with the BOS token, or not (default: the model's convention, "
                        "TransformerLens's default_prepend_bos; none when the tokenizer has no BOS token)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    parser.add_argument("--analyses", metavar="A,B,...",
                        help="comma-separated analyses (default: all): logit_diff, logit_lens, dla, attention, "
                        "patching, attribution_patching, ablation, path_patching, head_scores")
    parser.add_argument("--set", action="append", default=[], metavar="ANALYSIS.OPTION=VALUE",
                        help="set an analysis option, e.g. --set patching.sweeps=head_z,resid_pre "
                        "--set head_scores.seq_len=50 (repeatable; see --list-options)")
    parser.add_argument("--list-options", action="store_true",
                        help="print every analysis option with its default and help, and exit")


def list_options() -> str:
    """Every analysis's options: ``analysis.option = default`` with the allowed values and help."""
    from ioi_desktop.core.analyses import ANALYSES, options_type

    lines = []
    for info in ANALYSES:
        specs = options_type(info.name).specs()
        lines.append(f"{info.name} ({info.title}){'' if specs else ': no options'}")
        for spec in specs:
            lines.append(f"  {spec.key} = {spec.default_text()}")
            lines.append(f"      {spec.help}; {spec.allowed()}.")
    return "\n".join(lines)


class _ProgressBar:
    """One self-overwriting line on stderr: bar, percentage, current step."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.started = time.perf_counter()
        self.width = 0

    def __call__(self, event) -> None:
        filled = int(round(event.fraction * _BAR_WIDTH))
        line = (f"[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {event.fraction * 100:5.1f}% "
                f"{time.perf_counter() - self.started:6.1f}s  {event.analysis}: {event.message}")[:110]
        self.stream.write("\r" + line.ljust(self.width))
        self.width = len(line)
        self.stream.flush()

    def close(self) -> None:
        if self.width:
            self.stream.write("\n")
            self.stream.flush()


def run(args: argparse.Namespace) -> int:
    from ioi_desktop.core.analyses import option_types, parse_analysis_list
    from ioi_desktop.core.analyses.base import parse_assignments
    from ioi_desktop.core.errors import AnalysisError
    from ioi_desktop.core.pairfiles import read_pairs

    if args.list_options:
        print(list_options())
        return 0
    for flag in ("pairs", "out"):
        if getattr(args, flag) is None:
            raise AnalysisError(f"analyze needs --{flag}.", "For example: ioi-desktop analyze --pairs pairs.json --out results")
    names = parse_analysis_list(args.analyses)
    types = option_types()
    given = parse_assignments(args.set, types)
    unused = sorted(set(given) - set(names))
    if unused:
        raise AnalysisError(f"--set gives options of {unused[0]}, which this run does not include.",
                            f"Add {unused[0]} to --analyses, or drop that --set.")
    options = {name: types[name](**given.get(name, {})) for name in names}
    return run_and_save(args, names, options, command="analyze")


def run_and_save(args: argparse.Namespace, names: list[str], options: dict, command: str) -> int:
    """Check the shared arguments, load the model, run ``names`` and write the results files."""
    from ioi_desktop.core.errors import AnalysisError
    from ioi_desktop.core.pairfiles import read_pairs

    for flag in ("pairs", "out"):
        if getattr(args, flag) is None:
            raise AnalysisError(f"{command} needs --{flag}.",
                                f"For example: ioi-desktop {command} --pairs pairs.json --out results")
    if args.batch_size is not None and args.batch_size < 1:
        raise AnalysisError(f"--batch-size must be at least 1, not {args.batch_size}.", "Leave it out to use all prompts at once.")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise AnalysisError(f"--out {out} is a file, not a folder.", "Give a folder name; it is created if needed.")
    prompt_set = read_pairs(args.pairs)

    from ioi_desktop.core.models import ModelSpec, load_model
    from ioi_desktop.core.runner import Runner

    if not args.quiet:
        print(f"Loading {args.model} ...", file=sys.stderr)
    from ioi_desktop.core.placement import Workload  # the GPU memory check counts these prompts

    workload = Workload.for_prompts(prompt_set, args.batch_size)
    handle = load_model(ModelSpec(source=args.model, device=args.device, dtype=args.dtype,
                                  prepend_bos=getattr(args, "prepend_bos", None)), workload=workload)
    bar = None if args.quiet else _ProgressBar()
    try:
        results = Runner().run(handle, prompt_set, names, options, batch_size=args.batch_size, on_progress=bar)
    finally:
        if bar is not None:
            bar.close()
    failed = dict(results.meta.get("failed") or {})
    if not results.results:
        raise AnalysisError(f"No analysis could run on {handle.info.name}: " + " ".join(failed.values()),
                            "Choose analyses this model supports, or another model.")
    path = results.save(out)
    total = sum(results.meta["timings"].values())
    ran = [name for name in names if name not in failed]
    print(f"Wrote {path} and {path.with_name('results.npz')} ({', '.join(ran)}; {total:.1f} s).")
    if failed:
        print(f"{len(failed)} of {len(names)} analyses did not run:", file=sys.stderr)
        for name, sentence in failed.items():
            print(f"  {name}: {sentence}", file=sys.stderr)
        return 2
    return 0
