"""Where a model lives: the device of its weights, and the GPUs a split model may use.

A model loaded with the device choice ``all`` ("all GPUs", see
``core.placement``) is split across GPUs by accelerate: its blocks' weights and
activations live on different devices. The app keeps every cached activation,
metric and gradient on the model's *home* device (that of the embedding and
unembedding, TransformerLens's ``cfg.device``); :func:`to_device` moves a
per-layer tensor there, and hooks that write into a block move their
replacement to the activation's own device. On one device all of it is a no-op.
"""

from __future__ import annotations

from typing import Any

from ioi_desktop.core.errors import DeviceError

ALL_GPUS = "all"


def model_device(model: Any):
    """The model's home device: TransformerLens's ``cfg.device`` for a split model, else its weights' device
    (CPU for a model without parameters)."""
    import torch

    if is_split(model):
        return torch.device(str(model.cfg.device))
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


def is_split(model: Any) -> bool:
    """Whether the model is dispatched across several devices (TransformerLens's ``cfg.n_devices > 1``)."""
    cfg = getattr(model, "cfg", None)
    return int(getattr(cfg, "n_devices", 1) or 1) > 1 and getattr(cfg, "device", None) is not None


def module_device(module: Any, default=None):
    """The device of a module's first parameter (``default`` when it has none)."""
    for parameter in module.parameters():
        return parameter.device
    return default


def to_device(tensor, device):
    """``tensor`` on ``device`` (the same tensor when it is there already)."""
    return tensor if device is None or tensor.device == device else tensor.to(device)


def gpu_targets() -> list[tuple[Any, int]]:
    """``[(GPU index, free bytes), ...]`` of every CUDA GPU here, for accelerate's device map."""
    import torch

    if not torch.cuda.is_available():
        return []
    return [(index, int(torch.cuda.mem_get_info(index)[0])) for index in range(torch.cuda.device_count())]


def resolve_all() -> str:
    """The device choice ``all``; an error where there is no CUDA GPU."""
    if not gpu_targets():
        raise DeviceError(
            "'all' (all GPUs) was selected but no CUDA GPU is available (or this torch build has no CUDA support).",
            "Choose 'auto' or 'cpu', or install a CUDA build of torch on a machine with NVIDIA GPUs.",
        )
    return ALL_GPUS


def free_memory(device) -> int | None:
    """Free bytes on a CUDA device (None elsewhere: the CPU's budget is set by its callers)."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return None
    return int(torch.cuda.mem_get_info(device)[0])


def model_devices(model: Any) -> list:
    """The distinct devices of a model's weights, in order of first use."""
    seen: list = []
    for parameter in model.parameters():
        if parameter.device not in seen:
            seen.append(parameter.device)
    return seen


def all_gpus_choice(device_infos) -> tuple[str, str, bool]:
    """(label, tooltip, enabled) of the model picker's 'all GPUs' entry, from ``models.DeviceInfo`` rows.

    The tooltip lists every GPU's free and total memory (GiB = 2**30); without a
    CUDA GPU the entry is disabled.
    """
    gpus = [d for d in device_infos if str(d.name).startswith("cuda")]
    if not gpus:
        return "All GPUs (no NVIDIA GPU found)", "No CUDA GPU is available here.", False
    free = sum(d.free_bytes for d in gpus) / 2**30
    total = sum(d.total_bytes for d in gpus) / 2**30
    lines = [f"{d.name}: {d.free_bytes / 2**30:.1f} of {d.total_bytes / 2**30:.1f} GiB free" for d in gpus]
    label = f"All GPUs ({len(gpus)}, {free:.1f} of {total:.1f} GiB free)"
    tooltip = ("Split the model's layers across every GPU (accelerate's device_map); the memory a run needs "
               "is checked before loading.\n" + "\n".join(lines))
    return label, tooltip, True
