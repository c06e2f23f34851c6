"""Fixtures for the app-shell tests: an isolated QSettings, a tiny model, the real window.

The tests drive the real ``MainWindow`` with its real worker thread. The model
is a tiny random GPT-2 saved as a Hugging Face folder with a closed
word-level tokenizer that knows the TransformerLens demo's words, so the
notebook prompt set validates and every analysis runs in seconds on a CPU.
Screenshots go to ``artifacts/screenshots/`` for people to look at.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("IOI_DESKTOP_THREADS", "1")

SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
MODEL_LOAD_TIMEOUT_MS = 120_000
RUN_TIMEOUT_MS = 120_000

DEMO_WORDS = (
    "When Then After and went to the store shops park , . gave a an bag ball drink apple bottle of milk "
    "John Mary Tom James Dan Sid Martin Amy"
).split()


def _word_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|endoftext|>": 0, "<unk>": 1}
    for word in DEMO_WORDS:
        for form in (word, "Ġ" + word):
            vocab.setdefault(form, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<unk>"
    )


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random 2-layer, 4-head GPT-2 (d_model 32) with the demo-word tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("gui-model") / "tiny-gpt2"
    tokenizer = _word_tokenizer()
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=32, n_embd=32, n_layer=2, n_head=4,
                        bos_token_id=0, eos_token_id=0)
    GPT2LMHeadModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


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
def loaded_window(qtbot, window, tiny_model_dir):
    """The window with the notebook set and the tiny model loaded through the worker."""
    from ioi_desktop.core.models import ModelSpec

    window.start(load_model=False)
    with qtbot.waitSignal(window.worker.model_loaded, timeout=MODEL_LOAD_TIMEOUT_MS):
        assert window.load_model(ModelSpec(source=str(tiny_model_dir), device="cpu"))
    qtbot.waitUntil(lambda: window.prompt_editor.valid, timeout=5000)
    return window


def save_screenshot(widget, name: str) -> Path:
    """Save ``widget.grab()`` as artifacts/screenshots/app_<name>.png; checks it is not blank."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"app_{name}.png"
    image = widget.grab().toImage()
    assert image.width() > 100 and image.height() > 100, f"{name}: screenshot is {image.width()}x{image.height()}"
    # Non-blank: more than one colour among a grid of sampled pixels.
    colours = {image.pixel(x, y) for x in range(0, image.width(), 37) for y in range(0, image.height(), 37)}
    assert len(colours) > 3, f"{name}: the screenshot looks blank"
    assert image.save(str(path))
    return path
