"""``ioi-desktop ablate``: the ablation what-if headless; writes results.json + results.npz like analyze."""

from __future__ import annotations

import argparse

HELP = ("Ablate a set of heads (and MLP layers) and write the new logit difference and every head's DLA "
        "before and after (results.json + results.npz).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ioi_desktop.commands.analyze import add_run_arguments
    from ioi_desktop.core.analyses.ablation import METHODS

    add_run_arguments(parser)
    parser.add_argument("--heads", default="", metavar="L.H,...",
                        help="heads to ablate, e.g. 9.9,9.6 (default: the head with the largest DLA at END)")
    parser.add_argument("--mlps", default="", metavar="L,...", help="MLP layers to ablate too, e.g. 0,3")
    parser.add_argument("--method", default="zero", choices=METHODS, help="what replaces the outputs (default zero)")
    parser.add_argument("--positions", default="end", metavar="all|end|ROLE",
                        help="where to ablate: all, end (default) or a role such as S2")
    parser.add_argument("--reference", default="", metavar="FILE",
                        help="pairs file of the reference set (method reference; or resample from its corrupted prompts)")


def run(args: argparse.Namespace) -> int:
    from ioi_desktop.commands.analyze import run_and_save
    from ioi_desktop.core.analyses import ablation

    options = ablation.Options(heads=args.heads, mlp_layers=args.mlps, method=args.method,
                               positions=args.positions, reference=args.reference)
    return run_and_save(args, [ablation.NAME], {ablation.NAME: options}, command="ablate")
