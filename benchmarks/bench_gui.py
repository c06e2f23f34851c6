"""Timings the tests check only as behaviour: how fast a missing model is refused, how responsive the GUI stays.

1. ``refuse_uncached_s``: seconds for ``core.models.load_model`` to refuse a
   hub name that is not in the (empty) local Hugging Face cache. The test
   (tests/core/test_models.py) checks that nothing is loaded before the refusal;
   this measures the time (it should be well under a second: no network, no
   weights).
2. The real window and worker thread (offscreen) on a tiny random GPT-2 (2
   layers, 4 heads, d_model 32, the demo-word tokenizer from tests.support) run
   every analysis on the notebook's 8 pairs repeated ``--repeat`` times, with
   a 20 ms timer on the GUI thread. ``run_s`` is the time from the first to the
   last progress report; ``longest_gap_s`` the longest stretch in it without a
   timer tick (a blocked GUI thread shows as a gap as long as the run);
   ``ticks`` the ticks in between. The test
   (tests/gui/test_main_window.py) checks that a GUI-thread timer fires while an
   analysis computes in the worker thread.

    python -m benchmarks.bench_gui [--repeat 32] [--json FILE] [--threads 1]

Run it from the repository root as a module, so ``tests.support`` is importable.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

TIMER_MS = 20
RUN_TIMEOUT_S = 600


def refuse_uncached_seconds(folder: Path) -> float:
    """Seconds until ``load_model`` refuses a hub name missing from an empty cache."""
    from ioi_desktop.core.errors import ModelLoadError
    from ioi_desktop.core.models import ModelSpec, load_model

    os.environ["HF_HUB_CACHE"] = str(folder / "empty-cache")
    began = time.perf_counter()
    try:
        load_model(ModelSpec(source="gpt2", device="cpu"))
    except ModelLoadError:
        return time.perf_counter() - began
    raise RuntimeError("loading 'gpt2' from an empty cache did not fail")


def gui_responsiveness(folder: Path, repeat: int) -> dict:
    """Run every analysis through the real window; the GUI timer's longest gap during the run."""
    from PySide6.QtCore import QSettings, QTimer

    from ioi_desktop.core.models import ModelSpec, load_model
    from ioi_desktop.core.prompts import PromptSet
    from ioi_desktop.gui.app import create_application
    from ioi_desktop.gui.main_window import MainWindow
    from ioi_desktop.gui.tools.screenshots import wait_until

    from tests.support.tiny_models import save_tiny_gpt2

    model_dir = save_tiny_gpt2(folder / "tiny-gpt2", n_layer=2, n_head=4, n_embd=32)
    handle = load_model(ModelSpec(source=str(model_dir), device="cpu"))
    app = create_application()
    window = MainWindow(settings=QSettings(str(folder / "settings.ini"), QSettings.IniFormat))
    window.show()
    window.start(load_model=False)
    window.worker.model_loaded.emit(handle)
    notebook = window.prompt_editor.prompt_set()
    window.set_prompt_set(PromptSet(notebook.pairs * repeat, notebook.meta))
    wait_until(app, lambda: window.prompt_editor.valid, "the prompt set to validate", RUN_TIMEOUT_S)

    ticks, reports = [], []
    timer = QTimer()
    timer.setInterval(TIMER_MS)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    window.worker.progress_changed.connect(lambda *args: reports.append(time.perf_counter()))
    timer.start()
    if not window.run():
        raise RuntimeError(f"the run did not start: {window.run_blocked_reason()}")
    wait_until(app, lambda: not window.worker.busy, "the run to finish", RUN_TIMEOUT_S)
    timer.stop()
    if window.results is None:
        raise RuntimeError(f"the run failed: {window.step_label.text()}")
    window.close()
    during = [t for t in ticks if reports[0] < t < reports[-1]]
    marks = [reports[0], *during, reports[-1]]
    return {
        "prompts": len(notebook.pairs) * repeat,
        "run_s": reports[-1] - reports[0],
        "longest_gap_s": max(b - a for a, b in zip(marks, marks[1:])),
        "ticks": len(during),
        "progress_reports": len(reports),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=32,
                        help="the notebook's 8 pairs repeated this often (default 32, as the test)")
    parser.add_argument("--json", type=Path, help="write the measurements to this file")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    os.environ["IOI_DESKTOP_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory(prefix="ioi-bench-gui-") as scratch:
        folder = Path(scratch)
        gui = gui_responsiveness(folder, args.repeat)
        refuse_s = refuse_uncached_seconds(folder)
    report = {
        "refuse_uncached_s": refuse_s,
        "gui": gui,
        "threads": args.threads,
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None},
    }
    print(f"refuse uncached hub name : {refuse_s * 1000:6.2f} ms")
    print(f"GUI during a run         : {gui['run_s']:6.2f} s run, longest gap without a tick "
          f"{gui['longest_gap_s']:.3f} s, {gui['ticks']} ticks ({gui['prompts']} prompts)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
