"""Screenshots of the window with the Circuit panel showing, at laptop and desktop sizes.

``python -m ioi_desktop.gui.tools.circuit_screenshots PAIRS.json --out build/shots``

Drives the real window and worker offscreen on the bundled model: imports the
pairs, runs the logit difference, attention and circuit discovery (``--methods``,
default eap, eap_ig and exact), selects ``--head`` (default L3H3, the bundled
model's subject suppressor, so the attention viewer shows it and the graph rings
it) and saves ``circuit_<width>x<height>.png`` of the window at each size, and
``circuit_panel.png`` of the panel alone.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from ioi_desktop.gui.tools.screenshots import ScreenshotError, _save, wait_until

SIZES = ((1280, 800), (1920, 1080))


def take_circuit_screenshots(pairs: str | os.PathLike, out: str | os.PathLike, methods=("eap", "eap_ig", "exact"),
                             head: tuple[int, int] = (3, 3), log=print) -> list[Path]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from PySide6.QtCore import QSettings

    from ioi_desktop.core.models import ModelSpec
    from ioi_desktop.gui.app import create_application
    from ioi_desktop.gui.main_window import MainWindow

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    app = create_application()
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="ioi-shots-") as scratch:
        window = MainWindow(settings=QSettings(str(Path(scratch) / "settings.ini"), QSettings.Format.IniFormat))
        try:
            window.resize(*SIZES[0])
            window.show()
            window.start(load_model=False)
            if not window.load_model(ModelSpec(source="bundled", device="cpu")):
                raise ScreenshotError("the worker refused to load the model")
            wait_until(app, lambda: window.handle is not None and not window.worker.busy, "the model to load")
            if not window.import_pairs(pairs):
                raise ScreenshotError(f"could not import {pairs}: {window.step_label.text()}")
            wait_until(app, lambda: window.prompt_editor.valid, "the prompts to validate", timeout=30)
            window.workbench.set_options("circuit", type(window.workbench.options["circuit"])(methods=tuple(methods)))
            for name, action in window.analysis_actions.items():
                action.setChecked(name in ("logit_diff", "attention", "circuit"))
            if not window.run():
                raise ScreenshotError(f"Run was blocked: {window.run_blocked_reason()}")
            wait_until(app, lambda: not window.worker.busy, "the run to finish", timeout=1800)
            if window.results is None or "circuit" not in window.results:
                raise ScreenshotError(f"the run failed: {window.step_label.text()}")
            log(f"ran circuit discovery ({', '.join(methods)}) in {window.last_run_seconds:.1f} s")
            dock = window.docks["Circuit"]
            dock.show()
            dock.raise_()
            window.selection.select_head(*head)
            panel = next(p for p in window.panels if p.TITLE == "Circuit")
            for width, height in SIZES:
                window.resize(width, height)
                for _ in range(10):
                    app.processEvents()
                    time.sleep(0.02)
                path = out / f"circuit_{width}x{height}.png"
                _save(window, path)
                written.append(path)
                log(f"saved {path}")
            path = out / "circuit_panel.png"
            _save(panel, path)
            written.append(path)
            log(f"saved {path}")
        finally:
            window.close()
            app.processEvents()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ioi_desktop.gui.tools.circuit_screenshots",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("pairs", help="prompt pairs (.json or .csv) of equal token length")
    parser.add_argument("--out", default="build/shots", help="where to write the PNGs (default: build/shots)")
    parser.add_argument("--methods", default="eap,eap_ig,exact", help="scoring methods, comma-separated")
    parser.add_argument("--head", default="3.3", help="the head to select, LAYER.HEAD (default 3.3)")
    args = parser.parse_args(argv)
    layer, _, head = args.head.partition(".")
    try:
        take_circuit_screenshots(args.pairs, args.out, tuple(args.methods.split(",")), (int(layer), int(head)))
    except ScreenshotError as error:
        print(f"circuit screenshots: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
