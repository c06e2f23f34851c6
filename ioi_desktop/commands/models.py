"""``ioi-desktop models``: list the models this machine can analyse offline."""

from __future__ import annotations

import argparse

HELP = "List the bundled model and the TransformerLens-supported models in the local Hugging Face cache."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--load",
        metavar="MODEL",
        help="also load MODEL ('bundled', a folder, or a cached hub name) and print its summary",
    )
    parser.add_argument("--device", default="auto", help="device for --load: auto, cpu, cuda, cuda:N, mps, or all (split across every GPU)")
    parser.add_argument("--dtype", default="float32", help="dtype for --load: float32, float16 or bfloat16")
    parser.add_argument("--all", action="store_true", help="also list cached models TransformerLens cannot analyse")


def run(args: argparse.Namespace) -> int:
    from ioi_desktop.core.models import ModelSpec, format_bytes, hf_cache_dir, list_local_models, load_model

    models = list_local_models()
    shown = [m for m in models if m.supported or args.all]
    print(f"Hugging Face cache: {hf_cache_dir()}")
    if not shown:
        print("No models found.")
    width = max([len(m.name) for m in shown] + [4])
    for model in shown:
        status = "" if model.supported else f"  [{model.note}]"
        print(f"{model.name:<{width}}  {model.source:<7}  {format_bytes(model.size_bytes):>9}  {model.architecture:<24}  {model.path}{status}")
    if args.load:
        handle = load_model(ModelSpec(source=args.load, device=args.device, dtype=args.dtype))
        print(handle.info.summary())
        print(f"loaded in {handle.info.load_seconds:.1f} s from {handle.info.path}")
    return 0
