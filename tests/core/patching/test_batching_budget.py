"""GPU batching arithmetic: how many patch settings share one forward, from the free memory.

Pure functions (no GPU needed): on a GPU the budget is a share of the free
memory, so a large GPU runs many settings per pass; on the CPU the budget is
fixed, as before.
"""

from __future__ import annotations

import torch

from ioi_desktop.core.engine import batching

MiB, GiB = 2**20, 2**30


def test_cpu_budget_is_fixed_and_gpu_budget_is_a_share_of_free_memory():
    assert batching.memory_budget(None) == batching.CPU_BUDGET_BYTES == 256 * MiB
    assert batching.memory_budget(80 * GiB) == int(80 * GiB * batching.DEVICE_SHARE) == 40 * GiB
    assert batching.memory_budget(-5) == 0


def test_row_bytes_by_hand():
    # 4 bytes x 15 positions x (8*768 + 2*3072 + 2*12*15)
    assert batching.bytes_per_row(15, 768, 3072, 12) == 4 * 15 * (6144 + 6144 + 360) == 758_880
    assert batching.bytes_per_row(15, 768, 3072, 12, element_bytes=2) == 379_440


def test_settings_per_pass_from_the_budget():
    row = batching.bytes_per_row(15, 768, 3072, 12)
    # CPU: 256 MiB / 758,880 B = 353 sequences -> 44 settings of 8 prompts.
    assert batching.chunk_settings(batching.memory_budget(None), row, 8) == 44
    # A GPU with 100 GiB free: 50 GiB / row = 70,745 sequences -> 8,843 settings; capped at the 144 heads.
    assert batching.chunk_settings(batching.memory_budget(100 * GiB), row, 8) == 8843
    assert batching.chunk_settings(batching.memory_budget(100 * GiB), row, 8, n_settings=144) == 144
    # An explicit batch size wins: 16 sequences per pass = 2 settings of 8 prompts; never below 1.
    assert batching.chunk_settings(10 * GiB, row, 8, batch_size=16) == 2
    assert batching.chunk_settings(0, row, 8) == 1


def test_cpu_devices_keep_the_cpu_budget():
    assert batching.free_bytes(torch.device("cpu")) == batching.CPU_BUDGET_BYTES
    assert batching.free_bytes([torch.device("cpu"), torch.device("cpu")]) == batching.CPU_BUDGET_BYTES
    assert batching.settings_per_chunk(None, 8, 1 * MiB, torch.device("cpu")) == 32


def test_a_split_model_is_sized_by_its_tightest_gpu(monkeypatch):
    from ioi_desktop.core import devices

    free = {0: 60 * GiB, 1: 10 * GiB}
    monkeypatch.setattr(devices, "free_memory", lambda d: free[torch.device(d).index])
    assert batching.free_bytes([torch.device("cuda", 0), torch.device("cuda", 1)]) == 5 * GiB
    assert batching.settings_per_chunk(None, 8, GiB // 8, [torch.device("cuda", 0), torch.device("cuda", 1)]) == 5
