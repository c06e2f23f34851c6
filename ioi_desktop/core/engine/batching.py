"""How many patch settings go through one pass: sized to free memory, shrunk on OOM."""

from __future__ import annotations

from typing import Callable

import torch

from ioi_desktop.core.errors import DeviceError

# On the CPU the working set of a chunk stays well inside cache-friendly sizes;
# bigger chunks give no speed there (the work is compute-bound).
CPU_BUDGET_BYTES = 256 * 2**20
# On an accelerator use at most this share of the memory free at the start.
DEVICE_SHARE = 0.5


def _out_of_memory_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = []
    for owner, attr in ((torch, "OutOfMemoryError"), (torch.cuda, "OutOfMemoryError")):
        error = getattr(owner, attr, None)
        if isinstance(error, type) and error not in errors:
            errors.append(error)
    return tuple(errors)


OUT_OF_MEMORY = _out_of_memory_errors()


def memory_budget(free: int | None) -> int:
    """Bytes a sweep's chunk may use, given the free bytes of its device (None: the CPU).

    On a GPU: ``DEVICE_SHARE`` of what is free when the sweep starts (the
    chunk's activations come on top of the caches already there); on the CPU a
    fixed ``CPU_BUDGET_BYTES`` (bigger chunks give no speed there).
    """
    return CPU_BUDGET_BYTES if free is None else int(max(0, free) * DEVICE_SHARE)


def chunk_settings(budget: int, row_bytes: int, n_prompts: int, n_settings: int | None = None,
                   batch_size: int | None = None) -> int:
    """Patch settings per pass: each setting runs ``n_prompts`` sequences of ``row_bytes`` each.

    ``batch_size`` (sequences per pass) overrides the budget; at least one
    setting, at most ``n_settings`` (all of them in one pass) when given.
    """
    rows = batch_size if batch_size is not None else budget // max(row_bytes, 1)
    chunk = max(1, int(rows) // max(n_prompts, 1))
    return chunk if n_settings is None else max(1, min(chunk, int(n_settings)))


def free_bytes(device) -> int:
    """Memory a sweep may use on ``device``, or on the tightest of several devices (a model split across GPUs)."""
    from ioi_desktop.core.devices import free_memory

    targets = device if isinstance(device, (list, tuple)) else [device]
    frees = [free_memory(d) for d in targets]
    gpu = [f for f in frees if f is not None]
    return memory_budget(min(gpu) if gpu else None)


def bytes_per_row(n_pos: int, d_model: int, d_mlp: int, n_heads: int, element_bytes: int = 4) -> int:
    """A generous estimate of the working memory of one sequence in a pass (``element_bytes`` per value)."""
    return element_bytes * n_pos * (8 * d_model + 2 * d_mlp + 2 * n_heads * n_pos)


def settings_per_chunk(batch_size: int | None, n_prompts: int, row_bytes: int, device,
                       n_settings: int | None = None) -> int:
    """Patch settings per pass: ``batch_size`` sequences if given, else what fits in free memory
    (on a GPU, many settings per forward; ``device`` may be a list: every GPU of a split model)."""
    return chunk_settings(free_bytes(device), row_bytes, n_prompts, n_settings, batch_size)


def map_chunks(fn: Callable[[slice], torch.Tensor], n_settings: int, chunk: int) -> tuple[torch.Tensor, int]:
    """``fn`` over consecutive slices of settings, concatenated; halves the chunk on OOM.

    Returns the result and the chunk size that worked (reused for the next layer).
    """
    parts: list[torch.Tensor] = []
    begin = 0
    while begin < n_settings:
        part = slice(begin, min(begin + chunk, n_settings))
        try:
            parts.append(fn(part))
        except OUT_OF_MEMORY as error:
            if chunk == 1:
                raise DeviceError(
                    "The device ran out of memory while patching even one setting at a time.",
                    "Use a smaller prompt set or model, or run on the CPU.",
                ) from error
            chunk = max(1, chunk // 2)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        begin = part.stop
    return torch.cat(parts, dim=0), chunk
