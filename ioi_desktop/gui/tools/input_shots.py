"""Screenshots of the input side (prompt editor, pair builder, help) at laptop and desktop sizes.

``python -m ioi_desktop.gui.tools.input_shots --out build/shots``

Drives the real window offscreen on the bundled model with a fresh QSettings
file (no remembered geometry or layout), at 1280x800 and 1920x1080, and saves
``<out>/<width>x<height>/``: the whole window, the prompt editor with the
notebook set (and with 1000 built pairs), the pair builder and the three help
pages. For people to look at; see :mod:`ioi_desktop.gui.tools.screenshots`
for the model card's panel shots.
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


def take_input_shots(out: str | os.PathLike, sizes=SIZES, log=print) -> list[Path]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QDialogButtonBox

    from ioi_desktop.core.models import ModelSpec, load_model
    from ioi_desktop.core.paths import bundled_model_dir
    from ioi_desktop.gui.app import create_application
    from ioi_desktop.gui.main_window import MainWindow

    app = create_application()
    handle = load_model(ModelSpec(source=str(bundled_model_dir()), device="cpu"))
    written: list[Path] = []

    def settle() -> None:
        for _ in range(5):
            app.processEvents()
            time.sleep(0.02)

    for width, height in sizes:
        folder = Path(out) / f"{width}x{height}"
        folder.mkdir(parents=True, exist_ok=True)

        def save(widget, name: str) -> None:
            settle()
            _save(widget, folder / name)
            written.append(folder / name)
            log(f"saved {folder / name}")

        with tempfile.TemporaryDirectory(prefix="ioi-input-shots-") as scratch:
            window = MainWindow(settings=QSettings(str(Path(scratch) / "settings.ini"), QSettings.Format.IniFormat))
            try:
                window.resize(width, height)
                window.show()
                window.start(load_model=False)
                window.worker.model_loaded.emit(handle)
                editor = window.prompt_editor
                wait_until(app, lambda: editor.valid and not editor.checking, "the prompts to validate", 60)
                editor.select_row(0)
                save(window, "window.png")
                save(editor, "prompt_editor.png")
                window.open_pair_builder()
                dialog = window.pair_builder
                dialog.resize(min(1200, width - 80), min(700, height - 80))
                dialog.n_spin.setValue(1000)
                wait_until(app, lambda: not dialog.building, "the pairs to build", 60)
                save(dialog, "pair_builder.png")
                dialog.word_tabs.setCurrentIndex(dialog.word_tabs.count() - 1)
                save(dialog, "pair_builder_templates.png")
                dialog.buttons.button(QDialogButtonBox.Ok).click()
                wait_until(app, lambda: not editor.checking, "the built pairs to validate", 60)
                editor.select_row(3)
                save(editor, "prompt_editor_1000_pairs.png")
                for topic in ("guide", "glossary", "model_card"):
                    help_dialog = window.show_help(topic)
                    help_dialog.resize(min(900, width - 80), min(720, height - 80))
                    save(help_dialog, f"help_{topic}.png")
                help_dialog.close()
            finally:
                window.close()
                app.processEvents()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ioi_desktop.gui.tools.input_shots",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/shots", help="where to write the PNGs (default build/shots)")
    args = parser.parse_args(argv)
    try:
        take_input_shots(args.out)
    except ScreenshotError as error:
        print(f"Screenshots failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
