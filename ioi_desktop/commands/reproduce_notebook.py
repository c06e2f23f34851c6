"""``ioi-desktop reproduce-notebook``: the Exploratory Analysis Demo's published numbers beside ours.

Loads GPT-2 small from the local Hugging Face cache (or ``--model FOLDER``),
runs the demo's steps on its 8 prompt pairs and prints one table row per
published number: published, ours, difference, PASS/FAIL (see
:mod:`ioi_desktop.core.notebook_check`). Exit status: 0 all agree, 1 some
differ, 2 the model or reference could not be used.
"""

from __future__ import annotations

import argparse
import json
import sys

HELP = ("Reproduce TransformerLens's Exploratory Analysis Demo on GPT-2 small and print every published number "
        "beside ours (exit 0: all agree at 2 decimals, 1: some differ).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="gpt2",
                        help="'gpt2' (default: GPT-2 small from the local Hugging Face cache) or a model folder")
    parser.add_argument("--reference", metavar="FILE",
                        help="published numbers (default: resources/reference/notebook_gpt2_small.json)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N, mps, or all (split across every GPU)")
    parser.add_argument("--json", metavar="FILE", help="also write the comparison to this JSON file")


def run(args: argparse.Namespace) -> int:
    from ioi_desktop.core.atomic import write_text_atomic
    from ioi_desktop.core.notebook_check import format_table, load_reference, missing_model_message, reproduce

    reference = load_reference(args.reference)
    message = missing_model_message(args.model)
    if message is not None:
        print(f"ioi-desktop reproduce-notebook: {message}", file=sys.stderr)
        return 2
    from ioi_desktop.core.models import ModelSpec, load_model

    print(f"Loading {args.model} ...", file=sys.stderr)
    handle = load_model(ModelSpec(source=args.model, device=args.device))
    print(f"Running the demo's steps on its 8 prompt pairs with {handle.info.name} ...", file=sys.stderr)
    comparison, _results = reproduce(handle, reference)
    print(f"{reference.get('title', 'Exploratory Analysis Demo')} — published vs {handle.info.name}")
    print(f"Source: {comparison.source}")
    print()
    print(format_table(comparison))
    if args.json:
        write_text_atomic(args.json, json.dumps({"model": handle.info.name, "passed": comparison.passed,
                                                 "rows": [row.to_dict() for row in comparison.rows],
                                                 "not_compared": list(comparison.not_compared)}, indent=1))
    return 0 if comparison.passed else 1
