"""Screenshots of the app's panels on a model folder, for its model card.

``python -m ioi_desktop.gui.tools.screenshots resources/models/ioi-mini``

Drives the real window and worker offscreen. It first writes the folder's
``roles.json`` from its ``eval.json``, so the panels overlay the roles, then
loads the model folder, runs every analysis on the TransformerLens demo's 8
prompts, selects the heads ``eval.json`` points to (the mover with the
largest direct effect and the best duplicate-token candidate) and saves PNGs
of the window and of the attention, attribution, patching, logit-lens and
head-types panels into ``<folder>/screenshots/``, with ``screenshots.json`` listing
each file and its caption, so the card shows only pictures this run took.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ioi_desktop.bundled import card, evaluate

WINDOW_SIZE = (1280, 800)
PANEL_SIZE = (900, 560)
ATTENTION_SIZE = (900, 720)
TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Shot:
    file: str
    caption: str


class ScreenshotError(RuntimeError):
    """The app did not reach the state a screenshot needs."""


def wait_until(app, condition, what: str, timeout: float = TIMEOUT_S) -> None:
    """Process events until ``condition()``; ScreenshotError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise ScreenshotError(f"timed out after {timeout:.0f} s waiting for {what}")
        app.processEvents()
        time.sleep(0.01)
    app.processEvents()


def _save(widget, path: Path) -> None:
    image = widget.grab().toImage()
    colours = {image.pixel(x, y) for x in range(0, image.width(), 23) for y in range(0, image.height(), 23)}
    if image.width() < 100 or image.height() < 100 or len(colours) <= 3:
        raise ScreenshotError(f"{path.name}: the grab is blank ({image.width()}x{image.height()})")
    if not image.save(str(path)):
        raise ScreenshotError(f"could not write {path}")


def circuit_heads(folder: Path) -> dict[str, tuple[int, int]]:
    """The heads to show: the mover with the largest |DLA| and the best duplicate-token candidate, from eval.json."""
    circuit = json.loads((folder / "eval.json").read_text(encoding="utf-8"))["circuit"]
    dla = circuit["dla"]
    heads: dict[str, tuple[int, int]] = {}
    movers = circuit["criteria"]["mover_heads"] or circuit["criteria"]["name_mover_heads"]
    if movers:
        heads["mover"] = tuple(max(movers, key=lambda lh: abs(dla[lh[0]][lh[1]])))
    # The best duplicate-token candidate before the last layer, by its weaker name order (see evaluate.duplicate_scores).
    scores = evaluate.duplicate_scores(circuit["attention"])[:-1]
    if scores.size:
        heads["duplicate"] = tuple(int(i) for i in np.unravel_index(int(scores.argmax()), scores.shape))
    return heads


def take_screenshots(folder: str | os.PathLike, out: str | os.PathLike | None = None, log=print) -> list[Shot]:
    """Run the app on ``folder`` offscreen and save the card's screenshots; returns what was saved."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from PySide6.QtCore import QSettings

    from ioi_desktop.gui.app import create_application
    from ioi_desktop.gui.main_window import MainWindow

    folder = Path(folder).resolve()
    out = Path(out) if out is not None else folder / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    heads = circuit_heads(folder)
    # The panels overlay the roles file next to the weights: derive it from eval.json first.
    card.write_roles(folder)
    app = create_application()
    shots: list[Shot] = []
    with tempfile.TemporaryDirectory(prefix="ioi-shots-") as scratch:
        window = MainWindow(settings=QSettings(str(Path(scratch) / "settings.ini"), QSettings.Format.IniFormat))
        try:
            window.resize(*WINDOW_SIZE)
            window.show()
            _load_and_run(app, window, folder)
            if window.results is None:
                raise ScreenshotError(f"the run failed: {window.step_label.text()}")
            log(f"ran every analysis on {folder.name} in {window.last_run_seconds:.1f} s")
            panels = {panel.TITLE: panel for panel in window.panels}

            def settle() -> None:
                for _ in range(5):
                    app.processEvents()
                    time.sleep(0.02)

            def show(title: str, size: tuple[int, int] | None = None):
                """Raise a panel's dock; with ``size``, float it at that size so the picture has room."""
                dock = window.docks[title]
                dock.show()
                dock.raise_()
                if size is not None:
                    dock.setFloating(True)
                    dock.resize(*size)
                settle()
                return panels[title]

            def dock_again(title: str) -> None:
                window.docks[title].setFloating(False)
                settle()

            def save(widget, name: str, caption: str) -> None:
                app.processEvents()
                _save(widget, out / name)
                shots.append(Shot(name, caption))
                log(f"saved {out / name}")

            patching = show("Patching", PANEL_SIZE)
            patching.grid_combo.setCurrentIndex(patching.grid_combo.findData("head_z"))
            patching.roles_checkbox.setChecked(True)
            settle()
            save(patching, "patching_head_z.png",
                 "Patching panel: per-head z patching (clean into corrupted, the demo's name-swapped prompts), "
                 "1 = clean answer restored; known roles marked.")
            dock_again("Patching")
            attribution = show("Attribution", PANEL_SIZE)
            attribution.roles_checkbox.setChecked(True)
            settle()
            save(attribution, "attribution.png",
                 "Attribution panel: direct logit attribution per component and per head, mean over the demo's 8 "
                 "prompts; known roles marked.")
            dock_again("Attribution")
            lens = show("Logit lens", PANEL_SIZE)
            save(lens, "logit_lens.png", "Logit-lens panel: the top token read off the residual stream before "
                 "each layer, per position, on the first demo prompt (LayerNorm recomputed per cell); right, the "
                 "logit difference lens at END with the final LayerNorm's cached scale, as the notebook computes it.")
            dock_again("Logit lens")
            head_types = show("Head scores", PANEL_SIZE)
            head_types.roles_checkbox.setChecked(True)
            settle()
            save(head_types, "head_types.png", "Head types panel at its defaults (BOS, then random word runs "
                 "repeated): the strongest duplicate-token score is the duplicate-token head's; known roles marked.")
            dock_again("Head scores")

            attention = show("Attention", ATTENTION_SIZE)
            for kind, (layer, head) in heads.items():
                window.selection.select_head(layer, head)
                query = "S2" if kind == "duplicate" else "END"
                window.selection.select_query(attention.results.roles(0).get(query))
                settle()
                looks = "back to S1" if kind == "duplicate" else "to the names"
                save(attention, f"attention_{kind}_L{layer}H{head}.png",
                     f"Attention panel, L{layer}H{head} ({kind} head) on the first demo prompt; the token strip shows "
                     f"where the query at {query} looks ({looks}).")
            dock_again("Attention")
            if "mover" in heads:
                window.selection.select_head(*heads["mover"])
                window.selection.select_query(attention.results.roles(0).get("END"))
            show("Patching")
            save(window, "window.png",
                 f"The whole window at {WINDOW_SIZE[0]}x{WINDOW_SIZE[1]} after a run, the mover head selected.")
        finally:
            window.close()
            app.processEvents()
    (out / "screenshots.json").write_text(json.dumps([s.__dict__ for s in shots], indent=1) + "\n", encoding="utf-8")
    return shots


def panel_screenshots(folder: str | os.PathLike, out: str | os.PathLike,
                      sizes: tuple[tuple[int, int], ...] = ((1280, 800), (1920, 1080)), log=print) -> list[Path]:
    """The whole window with each result panel raised, at each window size (docked, as a user sees it),
    plus the patching panel in each of its modes. Runs every analysis on the demo's 8 prompts first."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from PySide6.QtCore import QSettings

    from ioi_desktop.gui.app import create_application
    from ioi_desktop.gui.main_window import MainWindow

    folder = Path(folder).resolve()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    card.write_roles(folder)
    app = create_application()
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="ioi-shots-") as scratch:
        # A fresh settings file: a remembered dock layout would hide what a new user sees.
        window = MainWindow(settings=QSettings(str(Path(scratch) / "settings.ini"), QSettings.Format.IniFormat))
        try:
            window.resize(*sizes[0])
            window.show()
            _load_and_run(app, window, folder)
            heads = circuit_heads(folder)
            if "mover" in heads:
                window.selection.select_head(*heads["mover"])

            def settle() -> None:
                for _ in range(8):
                    app.processEvents()
                    time.sleep(0.02)

            for width, height in sizes:
                window.resize(width, height)
                settle()
                for panel in window.panels:
                    window.docks[panel.TITLE].show()
                    window.docks[panel.TITLE].raise_()
                    settle()
                    shots = [("", None)]
                    if panel.TITLE == "Patching":
                        shots = [(f"_{i}", i) for i in range(panel.mode_combo.count())]
                    for suffix, mode in shots:
                        if mode is not None:
                            panel.mode_combo.setCurrentIndex(mode)
                            settle()
                        path = out / f"{width}x{height}_{panel.TITLE.lower().replace(' ', '_')}{suffix}.png"
                        _save(window, path)
                        written.append(path)
                        log(f"saved {path}")
                    if panel.TITLE == "Patching":
                        panel.mode_combo.setCurrentIndex(0)
            # Stale results: another top-k for the logit lens greys its panel with the one-line banner.
            window.resize(*sizes[0])
            options = window.workbench.options["logit_lens"]
            window.workbench.set_options("logit_lens", type(options).from_dict(
                {**options.to_dict(), "top_k": options.top_k + 1}))
            window.docks["Logit lens"].raise_()
            settle()
            path = out / f"{sizes[0][0]}x{sizes[0][1]}_logit_lens_stale.png"
            _save(window, path)
            written.append(path)
            log(f"saved {path}")
            # 1000 prompts (the demo's 8 repeated): the overview's prompt axis stays readable.
            from dataclasses import replace

            base = window.prompt_editor.prompt_set()
            window.set_prompt_set(replace(base, pairs=tuple(base.pairs[i % len(base.pairs)] for i in range(1000))))
            wait_until(app, lambda: window.prompt_editor.valid, "1000 prompts to validate", timeout=120)
            for name, action in window.analysis_actions.items():
                action.setChecked(name == "logit_diff")
            if not window.run():
                raise ScreenshotError(f"Run was blocked: {window.run_blocked_reason()}")
            wait_until(app, lambda: not window.worker.busy, "the 1000-prompt run to finish")
            window.docks["Overview"].raise_()
            settle()
            path = out / f"{sizes[0][0]}x{sizes[0][1]}_overview_1000_prompts.png"
            _save(window, path)
            written.append(path)
            log(f"saved {path}")
        finally:
            window.close()
            app.processEvents()
    return written


def _load_and_run(app, window, folder: Path) -> None:
    """Start ``window``, load the model in ``folder`` on the CPU and run every analysis on the notebook set."""
    from ioi_desktop.core.models import ModelSpec

    window.start(load_model=False)
    if not window.load_model(ModelSpec(source=str(folder), device="cpu")):
        raise ScreenshotError("the worker refused to load the model")
    wait_until(app, lambda: window.handle is not None and not window.worker.busy, "the model to load")
    wait_until(app, lambda: window.prompt_editor.valid, "the prompts to validate", timeout=30)
    if not window.run():
        raise ScreenshotError(f"Run was blocked: {window.run_blocked_reason()}")
    wait_until(app, lambda: not window.worker.busy, "the run to finish")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ioi_desktop.gui.tools.screenshots", description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="model folder with eval.json (run evaluate first)")
    parser.add_argument("--out", help="where to write the PNGs (default: <folder>/screenshots)")
    parser.add_argument("--panels", action="store_true",
                        help="instead: the window with each panel raised at 1280x800 and 1920x1080 into --out")
    args = parser.parse_args(argv)
    try:
        if args.panels:
            panel_screenshots(args.folder, args.out or "build/shots")
        else:
            take_screenshots(args.folder, args.out)
    except ScreenshotError as error:
        print(f"Screenshots failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
