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
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps")
    parser.add_argument("--json", metavar="FILE", help="also write the comparison to this JSON file")


def missing_model_message(name: str) -> str | None:
    """One sentence on bringing a hub model onto an offline machine; None when it is cached or ``name`` is a folder."""
    from ioi_desktop.core.models import find_in_hf_cache, hf_cache_dir, looks_like_path

    if looks_like_path(name) or find_in_hf_cache(name) is not None:
        return None
    return (f"{name} is not in this machine's Hugging Face cache ({hf_cache_dir()}): on a machine with network access "
            f"run 'huggingface-cli download {name}', copy the folder models--{name.replace('/', '--')} from its "
            f"Hugging Face hub cache into {hf_cache_dir()} here (or pass --model with a saved model folder), "
            "then run this command again.")


def run(args: argparse.Namespace) -> int:
    from ioi_desktop.core.atomic import write_text_atomic
    from ioi_desktop.core.notebook_check import format_table, load_reference, reproduce

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
