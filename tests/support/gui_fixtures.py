"""The app-shell fixtures: an isolated QSettings, one tiny model for the session, the real window.

The app-shell tests (tests/gui) and the GUI recovery tests (tests/robustness)
import these into their conftest or test module::

    from tests.support.gui_fixtures import loaded_window, settings, tiny_handle, tiny_model_dir, window  # noqa: F401

The model is a tiny random GPT-2 saved as a Hugging Face folder with a closed
word-level tokenizer that knows the TransformerLens demo's words, so the
notebook prompt set validates and every analysis runs in seconds on a CPU. It
is loaded once per session (``tiny_handle``) and handed to every
``loaded_window`` the way the worker hands over a model it loaded (its
``model_loaded`` signal); tests about loading itself use ``window`` and load
through the worker.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.tiny_models import save_tiny_gpt2

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("IOI_DESKTOP_THREADS", "1")

MODEL_LOAD_TIMEOUT_MS = 120_000


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random 2-layer, 4-head GPT-2 (d_model 32) with the demo-word tokenizer."""
    import torch

    torch.set_num_threads(1)
    return save_tiny_gpt2(tmp_path_factory.mktemp("gui-model") / "tiny-gpt2", n_layer=2, n_head=4, n_embd=32)


@pytest.fixture(scope="session")
def tiny_handle(tiny_model_dir):
    """``tiny_model_dir`` loaded once by core.models (CPU, the notebook's weight processing)."""
    from ioi_desktop.core.models import ModelSpec, load_model

    return load_model(ModelSpec(source=str(tiny_model_dir), device="cpu"))


@pytest.fixture
def settings(tmp_path):
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)


@pytest.fixture
def window(qtbot, settings):
    """The real main window (not yet loading a model), closed and its worker joined after the test."""
    from ioi_desktop.gui.app import create_application
    from ioi_desktop.gui.main_window import MainWindow

    create_application()
    main = MainWindow(settings=settings)
    qtbot.addWidget(main)
    main.show()
    qtbot.waitExposed(main)
    yield main
    main.close()
    assert not main.worker.thread.isRunning(), "the worker thread outlived its window"


@pytest.fixture
def loaded_window(qtbot, window, tiny_handle):
    """The window with the notebook set and the session's tiny model, delivered as the worker delivers one."""
    window.start(load_model=False)
    window.worker.model_loaded.emit(tiny_handle)
    assert window.handle is tiny_handle
    qtbot.waitUntil(lambda: window.prompt_editor.valid, timeout=5000)
    return window


def load_through_worker(qtbot, window, model_dir) -> None:
    """Load ``model_dir`` the way the user does: through the worker thread, waiting for it."""
    from ioi_desktop.core.models import ModelSpec

    with qtbot.waitSignal(window.worker.model_loaded, timeout=MODEL_LOAD_TIMEOUT_MS):
        assert window.load_model(ModelSpec(source=str(model_dir), device="cpu"))
