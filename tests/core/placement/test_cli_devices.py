"""The CLI's ``--device all`` and the memory check before loading: one line, exit 2, with the numbers."""

from __future__ import annotations

import torch

from ioi_desktop.cli import main
from ioi_desktop.core import devices
from ioi_desktop.core.pairfiles import write_pairs
from ioi_desktop.core.pairs import notebook_prompt_set

MiB = 2**20


def _analyze(capsys, tmp_path, device):
    pairs = write_pairs(tmp_path / "pairs.json", notebook_prompt_set())
    out = tmp_path / "out"
    code = main(["analyze", "--model", "bundled", "--pairs", str(pairs), "--out", str(out), "--quiet",
                 "--analyses", "logit_diff", "--device", device])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("ioi-desktop analyze: ") and not (out / "results.json").exists()
    return err[0]


def test_all_without_a_gpu_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "gpu_targets", lambda: [])
    assert "'all' (all GPUs) was selected but no CUDA GPU is available" in _analyze(capsys, tmp_path, "all")


def test_all_on_gpus_too_small_refuses_with_the_numbers(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "gpu_targets", lambda: [(0, MiB), (1, MiB)])
    line = _analyze(capsys, tmp_path, "all")
    assert "does not fit on the 2 GPUs together: it needs about" in line
    assert "activations for 8 pairs of about" in line and "but only 1.8 MiB can be used there (90% of the 2.0 MiB free)" in line
    assert "Choose float16/bfloat16" in line and "'all'" not in line.split("free).")[1]


def test_one_gpu_too_small_refuses_before_loading(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(devices, "free_memory", lambda device: 2 * MiB)
    line = _analyze(capsys, tmp_path, "cuda")
    assert "does not fit on cuda: it needs about" in line and "but only 1.8 MiB can be used there" in line
    assert "Choose 'all'" in line
