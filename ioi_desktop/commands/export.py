"""``ioi-desktop export SESSION --out DIR``: every figure and table of a saved session, headless.

The same files as the app's "Export figures and data": for every grid of
every analysis a vector SVG (one rectangle per cell, titled with analysis,
activation, model and prompt set) and a CSV with its labels, ``prompts.csv``
(prompt texts, answers, named positions, logit differences) and the
results files. PNGs are the SVGs rasterised at ``--dpi``: the command-line
tools import no Qt, so that step runs ``python -m
ioi_desktop.gui.tools.render_figures`` in a child process on Qt's offscreen
platform (``--no-png`` skips it).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HELP = "Write every figure (SVG, PNG) and table (CSV) of a saved session to a folder."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", metavar="SESSION", help="a session file saved by the app (.ioisession)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write into (created if missing)")
    parser.add_argument("--dpi", type=int, default=300, help="resolution of the PNGs (default 300)")
    parser.add_argument("--no-png", action="store_true", help="write SVG and CSV only")
    parser.add_argument("--markers", action="store_true",
                        help="mark heads with a known role on layer x head grids (off unless asked)")
    parser.add_argument("--prompts", default="0", metavar="LIST",
                        help="prompts whose per-prompt grids (the logit lens) are written, e.g. 0,3 (default 0)")


def run(args: argparse.Namespace) -> int:
    from ioi_desktop.core.errors import FileFormatError, IOIError
    from ioi_desktop.core.figures import write_figures
    from ioi_desktop.core.results import save_results
    from ioi_desktop.core.session import load_session

    if not 30 <= args.dpi <= 1200:
        raise FileFormatError(f"{args.dpi} DPI is not a usable resolution.", "Choose --dpi from 30 to 1200.")
    try:
        prompts = tuple(int(p) for p in str(args.prompts).split(",") if p.strip())
    except ValueError:
        raise FileFormatError(f"--prompts {args.prompts!r} is not a list of prompt numbers.",
                              "Give numbers separated by commas, e.g. --prompts 0,3.") from None
    session = load_session(args.session)
    if session.results is None:
        raise FileFormatError(f"{args.session} holds no results to export.",
                              "Run the analyses in the app and save the session, then export it.")
    roles = _roles(session.results) if args.markers else None
    out = Path(args.out)
    written = write_figures(session.results, out, roles=roles, markers=args.markers, prompts=prompts)
    json_path = save_results(session.results, out / "results")
    written += [json_path, json_path.with_name("results.npz")]
    pngs = 0
    if not args.no_png:
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
        done = subprocess.run([sys.executable, "-m", "ioi_desktop.gui.tools.render_figures", str(out),
                               "--dpi", str(args.dpi)], env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise IOIError(f"The PNGs could not be rendered: {done.stderr.strip().splitlines()[-1:] or ['no output']}",
                           "The SVGs and CSVs are written; run again with --no-png, or check that Qt is installed.")
        pngs = int(done.stdout.strip() or 0)
    print(f"Wrote {len(written) + pngs} files to {out} ({sum(p.suffix == '.svg' for p in written)} figures"
          f"{f', PNG at {args.dpi} DPI' if pngs else ''}).")
    return 0


def _roles(results):
    from ioi_desktop.core.errors import IOIError
    from ioi_desktop.core.roles import load_roles, roles_path_for_model

    model = (results.meta or {}).get("model") or {}
    path = roles_path_for_model(model.get("name", ""), model.get("path"))
    if path is None:
        return None
    try:
        return load_roles(path)
    except IOIError:
        return None
