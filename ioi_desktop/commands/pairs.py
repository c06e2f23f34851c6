"""``ioi-desktop pairs``: build a clean/corrupted IOI prompt set (or a preset) and save it as JSON or CSV.

Examples::

    ioi-desktop pairs --preset notebook --out notebook.json
    ioi-desktop pairs --family BABA --n 64 --corruption abc --seed 1 --out baba.json
    ioi-desktop pairs --family custom --template "After [B] and [A] left, [B] thanked [A]" \\
        --n 16 --corruption s2-io --seed 0 --model gpt2 --out mine.csv

The model's tokenizer (default: the bundled model) keeps only names that are
single tokens and validates every pair; only the tokenizer is loaded.
Options are checked here rather than by argparse so that every mistake is one
line on stderr (an IOIError), never a usage dump or a traceback.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ioi_desktop.core.errors import ModelLoadError, PromptError

HELP = "Build IOI clean/corrupted prompt pairs (or the notebook preset) and save them as JSON or CSV."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ioi_desktop.core.pairs import CORRUPTIONS, FAMILIES, PRESETS

    parser.add_argument("--preset", metavar="NAME", help="a ready-made set: " + ", ".join(PRESETS))
    parser.add_argument("--family", metavar="FAMILY", help="template family: " + ", ".join(FAMILIES))
    parser.add_argument("--template", metavar="TEXT", action="append", default=[],
                        help="a template for --family custom, with [A] [B] [C] [PLACE] [OBJECT] slots (repeatable)")
    parser.add_argument("--n", metavar="N", help="number of pairs to build")
    parser.add_argument("--corruption", metavar="SCHEME", help="corruption scheme: " + ", ".join(CORRUPTIONS))
    parser.add_argument("--seed", metavar="S", help="random seed (an integer); the same seed gives the same file")
    parser.add_argument("--symmetric", action="store_true", help="add each prompt also with IO and S exchanged")
    parser.add_argument("--model", metavar="MODEL", default="bundled",
                        help="whose tokenizer validates the pairs: 'bundled' (default), a model folder, or a cached hub name")
    parser.add_argument("--out", metavar="FILE", help="where to write the set (.json, or .csv for CSV)")


def _integer(value: str | None, option: str) -> int:
    if value is None:
        raise PromptError(f"--family needs {option}.", "Give --n N, --corruption SCHEME and --seed S.")
    try:
        return int(value)
    except ValueError:
        raise PromptError(f"{option} must be a whole number, not {value!r}.", f"For example {option} 8.") from None


def load_tokenizer(model: str):
    """The tokenizer of a model (bundled, folder or cached hub name) and its context length, without the weights."""
    from ioi_desktop.core.models import ModelSpec, resolve_source

    _, folder, name = resolve_source(ModelSpec(source=model))
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # transformers raises OSError/ValueError/JSON errors for bad folders
        raise ModelLoadError(
            f"The tokenizer of {name} in {folder} could not be read ({type(exc).__name__}).",
            "The model folder needs its tokenizer files (tokenizer.json or vocab/merges): copy the model again.",
        ) from exc
    n_ctx = None
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        n_ctx = next((config[k] for k in ("n_positions", "max_position_embeddings", "n_ctx") if isinstance(config.get(k), int)), None)
    except (OSError, ValueError, AttributeError):
        pass  # the context length is only an extra check; the tokenizer is what validates
    return tokenizer, n_ctx


def _settings(args: argparse.Namespace):
    from ioi_desktop.core.pairs import BuilderSettings, check_settings

    if args.corruption is None:
        raise PromptError("--family needs --corruption.", "Give --n N, --corruption SCHEME and --seed S.")
    settings = BuilderSettings(
        family=args.family,
        n=_integer(args.n, "--n"),
        corruption=args.corruption,
        seed=_integer(args.seed, "--seed"),
        symmetric=args.symmetric,
        templates=tuple(args.template),
    )
    check_settings(settings)
    return settings


def run(args: argparse.Namespace) -> int:
    from ioi_desktop.core.pairfiles import write_pairs
    from ioi_desktop.core.pairs import build_pairs, preset_prompt_set
    from ioi_desktop.core.prompts import PromptSet, first_error, validate

    if not args.out:
        raise PromptError("No output file was given.", "Add --out FILE (.json or .csv).")
    if bool(args.preset) == bool(args.family):
        raise PromptError("Give either --preset or --family.", "For example --preset notebook, or --family BABA --n 8 --corruption abc --seed 0.")
    if args.preset and (args.n or args.corruption or args.seed or args.symmetric or args.template):
        raise PromptError("--preset takes no builder options.", "Drop --n/--corruption/--seed/--symmetric/--template, or use --family.")
    # Settings are checked before the (slow) tokenizer load, so mistakes fail at once.
    preset = preset_prompt_set(args.preset) if args.preset else None
    settings = None if preset else _settings(args)
    tokenizer, n_ctx = load_tokenizer(args.model)
    rejected_names = ()
    if preset is not None:
        prompt_set = preset
        error = first_error(validate(prompt_set, tokenizer, n_ctx))
        if error is not None:
            raise PromptError(f"The preset does not suit the model {args.model}: {error.message}", error.hint)
    else:
        report = build_pairs(settings, tokenizer, n_ctx)
        prompt_set = report.prompt_set
        rejected_names = report.rejected_names
    prompt_set = PromptSet(prompt_set.pairs, {**prompt_set.meta, "model": args.model})
    path = write_pairs(Path(args.out), prompt_set)
    note = f"; {len(rejected_names)} names are not single tokens for this model" if rejected_names else ""
    print(f"Wrote {len(prompt_set)} pairs to {path}{note}.")
    return 0
