"""``ioi-desktop path-patch``: direct path patching headless; writes results.json + results.npz like analyze."""

from __future__ import annotations

import argparse

HELP = ("Path-patch from sender heads into every later head's q, k or v (or the logits), or with "
        "--receiver-head from every earlier head into one head (results.json + results.npz).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ioi_desktop.commands.analyze import add_run_arguments

    add_run_arguments(parser)
    parser.add_argument("--senders", default="", metavar="L.H,...",
                        help="sender heads, e.g. 7.3,7.9 (default, with no --receiver-head: every earlier head "
                        "into the head with the largest DLA at END)")
    parser.add_argument("--receivers", default="q", metavar="q|k|v|logits",
                        help="receiver inputs, comma-separated (default q)")
    parser.add_argument("--receiver-head", default="", metavar="L.H",
                        help="the reverse question: every earlier head into this head's q/k/v")


def run(args: argparse.Namespace) -> int:
    from ioi_desktop.commands.analyze import run_and_save
    from ioi_desktop.core.analyses import path_patching

    receivers = path_patching.Options.spec("receivers").parse(args.receivers)
    options = path_patching.Options(senders=args.senders, receivers=receivers, receiver_head=args.receiver_head)
    return run_and_save(args, [path_patching.NAME], {path_patching.NAME: options}, command="path-patch")
