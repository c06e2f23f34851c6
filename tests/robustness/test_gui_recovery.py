"""The bad-input matrix and fault recovery through the real window (offscreen, real worker thread).

Each case asserts what a user sees (the message box's text, the Run button's
reason, the status line), that the window's state is unchanged (same model,
same prompt set, previous file intact) and that the app still works after.
The window fixtures are the app-shell tests' own (tests/support/gui_fixtures.py).
"""

from __future__ import annotations

import json
import os

import pytest

from ioi_desktop.core.prompts import PromptPair, PromptSet

from tests.support.gui_fixtures import loaded_window, settings, tiny_handle, tiny_model_dir, window  # noqa: F401
from tests.support.gui_helpers import RUN_TIMEOUT_MS, run_and_wait, open_session_and_wait, save_session_and_wait
from tests.support.robustness_inputs import GOOD_PAIR


def one_pair(**changes) -> PromptSet:
    fields = {**GOOD_PAIR, **changes}
    return PromptSet((PromptPair(fields["clean"], fields["corrupt"], fields["correct"], fields["incorrect"]),))


GUI_CASES = [
    ("empty set", PromptSet(()), "no pairs"),
    ("whitespace prompt", one_pair(clean="   "), "clean prompt is empty"),
    ("length mismatch", one_pair(corrupt=GOOD_PAIR["corrupt"].replace("a bag", "a bag of milk")),
     "clean prompt is 15 tokens but the corrupted one is 17"),
    ("answer not one token", one_pair(correct=" Mary Mary"), "is not a single token"),
    ("longer than the context", one_pair(clean=GOOD_PAIR["clean"] + " and the bag" * 6,
                                         corrupt=GOOD_PAIR["corrupt"] + " and the bag" * 6),
     "longer than the model's context of 32"),
    ("unknown word", one_pair(clean=GOOD_PAIR["clean"].replace("store", "zorgplex")), "'zorgplex'"),
    ("emoji", one_pair(clean=GOOD_PAIR["clean"].replace("went", "went 🎉")), "'🎉'"),
]


@pytest.mark.parametrize("prompt_set, fragment", [case[1:] for case in GUI_CASES], ids=[case[0] for case in GUI_CASES])
def test_invalid_sets_block_run_with_the_finding(qtbot, loaded_window, prompt_set, fragment):
    window = loaded_window
    handle = window.handle
    window.set_prompt_set(prompt_set)
    qtbot.waitUntil(lambda: not window.prompt_editor.valid and not window.prompt_editor.checking, timeout=5000)
    assert fragment in window.run_blocked_reason()
    assert not window.actions_by_name["run"].isEnabled()
    assert not window.run() and fragment in window.step_label.text()
    assert window.handle is handle and not window.worker.busy


def test_a_bug_in_a_run_shows_the_cause_logs_the_traceback_and_copies_it(qtbot, loaded_window, monkeypatch,
                                                                        isolated_user_data):
    import ioi_desktop.core.analyses.dla as dla
    from PySide6.QtWidgets import QApplication, QMessageBox

    window = loaded_window
    handle, prompt_set = window.handle, window.prompt_editor.prompt_set()
    real_run = dla.run

    def broken(ctx, options, progress):
        raise KeyError("simulated bug inside dla")

    monkeypatch.setattr(dla, "run", broken)  # a fresh window: nothing is cached yet
    # One failing analysis does not stop the run: the others finish and the message names the cause.
    with qtbot.waitSignal(window.worker.run_finished, timeout=RUN_TIMEOUT_MS):
        assert window.run()
    box = window.message_box
    assert box.isVisible() and "KeyError" in box.text() and "simulated bug inside dla" in box.text()
    assert "\n" not in box.text() and "logit_diff" in window.results.analyses and "dla" not in window.results.analyses
    # No traceback on screen; it is in the log in the user's data folder.
    assert box.detailedText() == "" and "Traceback" not in box.text() + box.informativeText()
    log = isolated_user_data / "logs" / "ioi-desktop.log"
    assert str(log) in box.informativeText()
    logged = log.read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" in logged and "simulated bug inside dla" in logged and "broken" in logged
    box.close()
    # State unchanged, and the next Run works.
    assert window.handle is handle and window.prompt_editor.prompt_set() == prompt_set
    monkeypatch.setattr(dla, "run", real_run)
    assert "dla" in run_and_wait(qtbot, window).analyses


def test_out_of_memory_in_a_run_is_explained_without_details(qtbot, loaded_window, monkeypatch):
    import torch

    import ioi_desktop.core.analyses.logit_lens as logit_lens

    def out_of_memory(ctx, options, progress):
        raise torch.OutOfMemoryError("simulated")

    monkeypatch.setattr(logit_lens, "run", out_of_memory)
    window = loaded_window  # fresh: nothing is cached, so the patched run is reached
    with qtbot.waitSignal(window.worker.run_finished, timeout=RUN_TIMEOUT_MS):
        assert window.run()
    box = window.message_box
    assert box.text().startswith("The device ran out of memory during logit_lens.")
    assert "smaller batch size" in box.text() + box.informativeText()
    assert "Details were written" not in box.informativeText()
    assert not [b for b in box.buttons() if b.text() == "Copy details"]
    box.close()


def test_cancel_during_each_analysis_and_the_next_run_works(qtbot, loaded_window, monkeypatch):
    """Cancel as each analysis starts (the token the Cancel button sets): the run stops there,
    the analyses before it were delivered, and a full run afterwards works."""
    from ioi_desktop.core.analyses import get_analysis

    window = loaded_window
    names = window.selected_analyses()
    assert len(names) >= 5
    delivered = []
    window.worker.result_ready.connect(lambda name, value: delivered.append(name))
    for target in names:
        module = get_analysis(target)
        real_run = module.run

        def cancel_then_run(ctx, options, progress, real_run=real_run):
            progress.cancel_token.cancel()
            progress.check_cancelled()
            return real_run(ctx, options, progress)

        # The analyses before ``target`` finished in earlier rounds and come from the runner's
        # cache; ``target`` itself never finished, so its (patched) run is called.
        monkeypatch.setattr(module, "run", cancel_then_run)
        delivered.clear()
        with qtbot.waitSignal(window.worker.run_cancelled, timeout=RUN_TIMEOUT_MS):
            assert window.run()
        monkeypatch.setattr(module, "run", real_run)
        # Run re-runs only what is not already current: the delivered ones are the rest of those before.
        assert set(delivered) <= set(names[: names.index(target)]), target
        assert "cancelled" in window.step_label.text().lower()
        # The analyses that finished before the cancel are kept and shown; nothing else.
        finished = window.results.analyses if window.results is not None else []
        assert sorted(finished) == sorted(names[: names.index(target)]) and window.actions_by_name["run"].isEnabled()
    assert run_and_wait(qtbot, window).analyses == names


def test_cancel_while_the_model_loads(qtbot, window, tiny_model_dir, monkeypatch):
    """Cancel between loading steps: no model, the picker can load again, and a later load works."""
    import time

    import transformers

    from ioi_desktop.core.models import ModelSpec

    real_from_pretrained = transformers.AutoTokenizer.from_pretrained

    def slow_tokenizer(*args, **kwargs):
        time.sleep(1.0)  # time for the Cancel press to arrive mid-load
        return real_from_pretrained(*args, **kwargs)

    def press_cancel(*args):
        window.cancel()

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", slow_tokenizer)
    window.start(load_model=False)
    window.worker.progress_changed.connect(press_cancel)
    with qtbot.waitSignal(window.worker.model_load_failed, timeout=RUN_TIMEOUT_MS) as failed:
        assert window.load_model(ModelSpec(source=str(tiny_model_dir), device="cpu"))
    assert failed.args[0].cancelled and window.handle is None
    assert window.model_picker.load_button.isEnabled()
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", real_from_pretrained)
    window.worker.progress_changed.disconnect(press_cancel)
    with qtbot.waitSignal(window.worker.model_loaded, timeout=RUN_TIMEOUT_MS):
        assert window.load_model(ModelSpec(source=str(tiny_model_dir), device="cpu"))
    assert window.handle is not None


def test_run_pressed_twice_starts_one_run(qtbot, loaded_window):
    window = loaded_window
    finished = []
    window.worker.run_finished.connect(finished.append)
    assert window.run()
    assert not window.actions_by_name["run"].isEnabled()
    window.actions_by_name["run"].trigger()  # a disabled action ignores the second press
    assert not window.run()
    qtbot.waitUntil(lambda: not window.worker.busy, timeout=RUN_TIMEOUT_MS)
    qtbot.wait(100)
    assert len(finished) == 1


# ---------------------------------------------------------------- files through the window


def _disk_full_in(folder):
    """An ``os.fsync`` that fails with ENOSPC for files under ``folder`` (Linux: /proc/self/fd)."""
    import errno

    real_fsync = os.fsync

    def fsync(fd):
        if folder is None or os.readlink(f"/proc/self/fd/{fd}").startswith(str(folder)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    return fsync


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
@pytest.mark.parametrize("full", ["output folder", "everywhere"])
def test_saving_a_session_to_a_full_disk_keeps_the_previous_file(qtbot, loaded_window, tmp_path, monkeypatch, full):
    import ioi_desktop.core.atomic as atomic

    window = loaded_window
    run_and_wait(qtbot, window)
    folder = tmp_path / "out"
    path = folder / "kept.ioisession"
    assert save_session_and_wait(qtbot, window, path)
    before = path.read_bytes()
    real_fsync = os.fsync
    monkeypatch.setattr(atomic.os, "fsync", _disk_full_in(folder if full == "output folder" else None))
    assert not save_session_and_wait(qtbot, window, path)
    box = window.message_box
    if full == "output folder":
        assert box.text() == "Saving kept.ioisession failed: No space left on device; the previous file is unchanged."
    else:
        assert box.text() == ("Saving kept.ioisession failed while preparing its results (No space left on device); "
                              "the previous file is unchanged.")
    assert "Free some disk space" in box.informativeText()
    assert path.read_bytes() == before
    assert [p.name for p in folder.iterdir()] == ["kept.ioisession"]  # no temporary file left behind
    monkeypatch.setattr(atomic.os, "fsync", real_fsync)
    assert save_session_and_wait(qtbot, window, path) and path.read_bytes() != b""


def test_saving_into_a_read_only_folder_keeps_the_previous_file(qtbot, loaded_window, tmp_path, monkeypatch):
    """A folder the user cannot write to (chmod 555; as root, where permissions do not bind, the
    same refusal is simulated where the temporary file is created)."""
    import errno

    import ioi_desktop.core.atomic as atomic

    window = loaded_window
    folder = tmp_path / "read-only"
    path = folder / "kept.ioisession"
    assert save_session_and_wait(qtbot, window, path)
    before = path.read_bytes()
    folder.chmod(0o555)
    if os.geteuid() == 0:
        def refused(*args, **kwargs):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

        monkeypatch.setattr(atomic.tempfile, "mkstemp", refused)
    try:
        assert not save_session_and_wait(qtbot, window, path)
        assert window.message_box.text() == f"Cannot write to the folder {folder}: Permission denied."
        assert window.message_box.informativeText() == "Choose a folder you can write to."
        assert path.read_bytes() == before
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"PK\x03\x04 truncated", "is not a session file"),
        (b"hello", "is not a session file"),
    ],
    ids=["truncated zip", "not a zip"],
)
def test_opening_a_bad_session_shows_why_and_changes_nothing(qtbot, loaded_window, tmp_path, content, fragment):
    window = loaded_window
    handle, prompt_set = window.handle, window.prompt_editor.prompt_set()
    path = tmp_path / "bad.ioisession"
    path.write_bytes(content)
    assert not open_session_and_wait(qtbot, window, path)
    assert fragment in window.message_box.text()
    assert window.handle is handle and window.prompt_editor.prompt_set() == prompt_set


def test_opening_a_session_from_a_newer_app_is_refused(qtbot, loaded_window, tmp_path):
    import zipfile

    window = loaded_window
    path = tmp_path / "newer.ioisession"
    assert save_session_and_wait(qtbot, window, path)
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read("session.json"))
    manifest["version"] = 7
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("session.json", json.dumps(manifest))
    assert not open_session_and_wait(qtbot, window, path)
    assert "format version 7; this IOI Desktop reads version 1" in window.message_box.text()
    assert "update IOI Desktop" in window.message_box.informativeText()


def test_importing_a_csv_without_a_column_shows_why(qtbot, loaded_window, tmp_path):
    window = loaded_window
    prompt_set = window.prompt_editor.prompt_set()
    path = tmp_path / "pairs.csv"
    path.write_text("clean,corrupt,correct\na,b,c\n", encoding="utf-8")
    assert not window.import_pairs(path)
    assert "has no 'incorrect' column" in window.message_box.text()
    assert window.prompt_editor.prompt_set() == prompt_set
