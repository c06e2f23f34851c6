"""How many patch settings go through one pass: sized to free memory, shrunk on OOM."""

from __future__ import annotations

from typing import Callable

import torch

from ioi_desktop.core.errors import DeviceError

# On the CPU the working set of a chunk stays well inside cache-friendly sizes;
# bigger chunks give no speed there (the work is compute-bound).
_CPU_BUDGET_BYTES = 256 * 2**20
# On an accelerator use at most this share of the memory free at the start.
_DEVICE_SHARE = 0.5


def _out_of_memory_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = []
    for owner, attr in ((torch, "OutOfMemoryError"), (torch.cuda, "OutOfMemoryError")):
        error = getattr(owner, attr, None)
        if isinstance(error, type) and error not in errors:
            errors.append(error)
    return tuple(errors)


OUT_OF_MEMORY = _out_of_memory_errors()


def free_bytes(device: torch.device) -> int:
    """Memory a sweep may use on ``device``."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * _DEVICE_SHARE)
    return _CPU_BUDGET_BYTES


def bytes_per_row(n_pos: int, d_model: int, d_mlp: int, n_heads: int) -> int:
    """A generous estimate of the float32 working memory of one sequence in a pass."""
    return 4 * n_pos * (8 * d_model + 2 * d_mlp + 2 * n_heads * n_pos)


def settings_per_chunk(batch_size: int | None, n_prompts: int, row_bytes: int, device: torch.device) -> int:
    """Patch settings per pass: ``batch_size`` sequences if given, else what fits in free memory."""
    rows = batch_size if batch_size is not None else free_bytes(device) // max(row_bytes, 1)
    return max(1, int(rows) // max(n_prompts, 1))


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
