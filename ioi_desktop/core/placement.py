"""Where a model's weights go before loading: does it fit, and how is it split across GPUs.

Used by ``core.models.load_model`` for the GPU choices (``cuda``, ``cuda:N`` and
``all``, "all GPUs"). Before any weight is read it estimates the memory a run
needs and refuses with one sentence giving the numbers when the chosen GPUs
cannot hold it. For ``all`` it builds the ``device_map`` that accelerate (via
``transformers.from_pretrained``) dispatches the model with, so TransformerLens's
``TransformerBridge`` sees a model split across devices (its ``cfg.n_devices``).

Convention (bytes throughout, GiB = 2**30 in messages):

- weights: the element count of the checkpoint (read from the safetensors
  headers; for pickle weights the file size divided by the stored dtype's size;
  for a folder without weights ``12 L d^2 + 2 V d``) times the size of the
  dtype the model is loaded in;
- activations (:func:`activation_bytes`): the clean and corrupted runs' caches
  of every hook the analyses read, the logits of both runs, and one forward
  and backward pass of a batch; all of it lives on the *home* device (the
  device of the embedding and the unembedding, where the app keeps caches);
- a GPU may fill at most ``GPU_SHARE`` of the memory free when the check runs.

The split (:func:`split_blocks`): everything but the transformer blocks
(embeddings, final norm, unembedding, which may share tied weights) stays on
the home device (the first GPU) together with the activations; the blocks are
cut into contiguous runs, one per GPU, as evenly as the GPUs' room allows.
Nothing here imports torch or Qt at import time.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ioi_desktop.core.errors import DeviceError

GiB = 2**30
# Share of each GPU's free memory a load may plan to fill (the rest: CUDA context,
# allocator fragmentation, the other programs' growth).
GPU_SHARE = 0.9
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int8": 1, "uint8": 1}
_SAFETENSORS_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                      "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
# How many positions a prompt set is assumed to take when only its text is known.
DEFAULT_POSITIONS = 32


@dataclass(frozen=True)
class Workload:
    """What a run will push through the model: prompt pairs, positions and batch size.

    ``n_pairs`` pairs mean ``2 * n_pairs`` sequences (clean and corrupted) of
    ``n_pos`` positions; ``batch_size`` sequences go through one forward
    (None: all of a run's prompts at once, as ``Runner`` does).
    """

    n_pairs: int = 8
    n_pos: int = DEFAULT_POSITIONS
    batch_size: int | None = None

    @classmethod
    def for_prompts(cls, prompt_set, batch_size: int | None = None) -> "Workload":
        """A workload for a prompt set before tokenization: about 2 tokens per word, plus BOS."""
        pairs = tuple(prompt_set)
        words = max((len(text.split()) for p in pairs for text in (p.clean, p.corrupt)), default=0)
        return cls(n_pairs=max(1, len(pairs)), n_pos=max(8, 2 * words + 2), batch_size=batch_size)


@dataclass(frozen=True)
class Shape:
    """The sizes of a model that memory depends on (from its Hugging Face config)."""

    n_layers: int
    d_model: int
    n_heads: int
    d_mlp: int
    d_vocab: int

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Shape":
        text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
        get = lambda *names, default=0: next((int(text[n]) for n in names if isinstance(text.get(n), int)), default)
        d_model = get("hidden_size", "n_embd", "d_model", "dim", default=0)
        return cls(
            n_layers=get("num_hidden_layers", "n_layer", "num_layers", "n_layers", default=1),
            d_model=d_model,
            n_heads=get("num_attention_heads", "n_head", "num_heads", "n_heads", default=1),
            d_mlp=get("intermediate_size", "n_inner", "ffn_dim", "d_ff", default=4 * d_model) or 4 * d_model,
            d_vocab=get("vocab_size", "padded_vocab_size", default=0),
        )

    def parameter_guess(self) -> int:
        """``12 L d^2 + 2 V d``: a GPT-style block count plus untied embedding and unembedding."""
        return 12 * self.n_layers * self.d_model**2 + 2 * self.d_vocab * self.d_model


@dataclass(frozen=True)
class Estimate:
    """The memory a load and a run need, in bytes (see the module docstring)."""

    weights: int
    activations: int
    weights_source: str  # "safetensors headers", "pickle file sizes" or "config parameter count"
    workload: Workload = field(default_factory=Workload)

    @property
    def total(self) -> int:
        return self.weights + self.activations


@dataclass(frozen=True)
class Placement:
    """Where a model goes: the home device, accelerate's device map (None: one device), the plan."""

    home: str
    device_map: dict[str, Any] | None
    estimate: Estimate
    planned: dict[str, int] = field(default_factory=dict)  # device -> bytes planned there
    free: dict[str, int] = field(default_factory=dict)  # device -> free bytes when checked

    def summary(self) -> str:
        parts = [f"{name}: {gib(self.planned.get(name, 0))} of {gib(free)} free"
                 for name, free in self.free.items()]
        return (f"needs about {gib(self.estimate.total)} ({gib(self.estimate.weights)} weights + "
                f"{gib(self.estimate.activations)} activations); " + "; ".join(parts))


def gib(n: int) -> str:
    """Bytes as GiB (MiB below a tenth of a GiB), one decimal."""
    return f"{n / GiB:.1f} GiB" if n >= GiB / 10 else f"{n / 2**20:.1f} MiB"


# ---------------------------------------------------------------- estimate


def dtype_bytes(dtype: Any) -> int:
    """Bytes per element of a dtype given by name (``"bfloat16"``) or as a torch dtype."""
    name = str(dtype).replace("torch.", "")
    if name not in DTYPE_BYTES:
        raise DeviceError(f"Unknown dtype '{name}'.", "Choose float32, float16 or bfloat16.")
    return DTYPE_BYTES[name]


def safetensors_elements(path: Path) -> int:
    """Elements stored in one safetensors file, from its JSON header alone (no tensor is read)."""
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    total = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        count = 1
        for size in entry["shape"]:
            count *= int(size)
        total += count
    return total


def checkpoint_elements(folder: Path, config: dict[str, Any]) -> tuple[int, str]:
    """(element count of the checkpoint, how it was found); see the module docstring."""
    tensors = sorted(folder.glob("*.safetensors"))
    if tensors:
        try:
            return sum(safetensors_elements(p) for p in tensors), "safetensors headers"
        except (OSError, ValueError, KeyError, struct.error):
            pass  # a damaged header: the loader reports it; estimate from the config meanwhile
    pickles = sorted(folder.glob("*.bin")) + sorted(folder.glob("*.pt"))
    if pickles:
        stored = str(config.get("torch_dtype") or config.get("dtype") or "float32")
        size = DTYPE_BYTES.get(stored, 4)
        return sum(p.stat().st_size for p in pickles) // size, "pickle file sizes"
    return Shape.from_config(config).parameter_guess(), "config parameter count"


def activation_bytes(shape: Shape, workload: Workload, element_bytes: int) -> int:
    """Activations a run keeps and computes, in bytes (a generous estimate).

    Cached per sequence, position and layer for both runs: about ``12 d_model``
    (residual stream points, attention and MLP outputs, q/k/v/z, head results),
    ``2 d_mlp`` (MLP hidden pre/post) and ``n_heads n_pos`` (pattern and scores);
    plus float32 logits of every sequence; plus a forward and backward of one
    batch (attribution patching, EAP): twice its cache.
    """
    sequences = 2 * workload.n_pairs
    n_pos = workload.n_pos
    per_layer = 12 * shape.d_model + 2 * shape.d_mlp + 2 * shape.n_heads * n_pos
    cache = sequences * n_pos * shape.n_layers * per_layer * element_bytes
    logits = sequences * n_pos * shape.d_vocab * 4
    batch = min(sequences, workload.batch_size or sequences)
    working = 2 * batch * n_pos * (shape.n_layers * per_layer + shape.d_vocab) * element_bytes
    return int(cache + logits + working)


def estimate(folder: Path, config: dict[str, Any], dtype: Any, workload: Workload | None = None) -> Estimate:
    """Weights and activations of loading ``folder`` in ``dtype`` and running ``workload`` on it."""
    size = dtype_bytes(dtype)
    elements, source = checkpoint_elements(folder, config)
    shape = Shape.from_config(config)
    workload = workload or Workload()
    return Estimate(elements * size, activation_bytes(shape, workload, size), source, workload)


# ---------------------------------------------------------------- split


def split_blocks(block_bytes: Sequence[int], rooms: Sequence[int]) -> list[int]:
    """The device index of each block: contiguous runs, as even as the rooms allow.

    ``rooms[i]`` is what device ``i`` can still take for blocks (the home
    device's room already has its other weights and the activations taken off).
    Device ``i`` aims at an equal share of what is left for it and the devices
    after it, takes less when its room is smaller and never more than its room;
    the last device takes the rest. Raises ValueError when the blocks do not fit.
    """
    if not rooms:
        raise ValueError("no devices")
    owner: list[int] = []
    index, n = 0, len(block_bytes)
    for device, room in enumerate(rooms):
        if index == n:
            break
        remaining = sum(block_bytes[index:])
        later_room = sum(max(0, r) for r in rooms[device + 1:])
        last = device == len(rooms) - 1
        target = remaining if last else max(remaining / (len(rooms) - device), remaining - later_room)
        load = 0
        while index < n:
            size = block_bytes[index]
            if load + size > room:
                break
            # Stop at the block boundary nearest the target (but take all if this is the last device).
            if not last and load > 0 and load + size / 2 > target:
                break
            owner.append(device)
            load += size
            index += 1
    if index < n:
        raise ValueError("blocks do not fit")
    return owner


def block_list(meta_model) -> tuple[str, list[int], list[str]]:
    """(prefix of the block list, bytes per element count of each block, the other top-level modules).

    The block list is the ``nn.ModuleList`` holding the most parameters
    (``transformer.h``, ``model.layers``, ``gpt_neox.layers``, ...); the other
    modules are the siblings of it and of its parents that own parameters or
    buffers, so that the map covers every weight.
    """
    import torch

    lists = [(name, module) for name, module in meta_model.named_modules() if isinstance(module, torch.nn.ModuleList)]
    if not lists:
        raise ValueError("no block list")
    count = lambda m: sum(p.numel() for p in m.parameters())
    prefix, blocks = max(lists, key=lambda item: count(item[1]))
    sizes = [count(block) for block in blocks]
    others: list[str] = []
    path = prefix.split(".")
    for depth in range(len(path)):
        parent_name = ".".join(path[:depth])
        parent = meta_model.get_submodule(parent_name) if parent_name else meta_model
        for child_name, child in parent.named_children():
            full = f"{parent_name}.{child_name}" if parent_name else child_name
            if full == ".".join(path[: depth + 1]):
                continue
            if any(True for _ in child.parameters()) or any(True for _ in child.buffers()):
                others.append(full)
        own = [n for n, _ in parent.named_parameters(recurse=False)] + [n for n, _ in parent.named_buffers(recurse=False)]
        others += [f"{parent_name}.{n}" if parent_name else n for n in own]
    return prefix, sizes, others


def build_device_map(prefix: str, owners: Sequence[int], others: Sequence[str], targets: Sequence[Any]) -> dict[str, Any]:
    """accelerate's ``device_map``: the other modules on ``targets[0]``, block ``i`` on ``targets[owners[i]]``."""
    device_map: dict[str, Any] = {name: targets[0] for name in others}
    device_map.update({f"{prefix}.{i}": targets[device] for i, device in enumerate(owners)})
    return device_map


def meta_model(folder: Path, dtype: Any):
    """The model of ``folder`` built on the meta device (shapes only, no memory, no weights read)."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    with init_empty_weights():
        return AutoModelForCausalLM.from_config(config, dtype=dtype)


# ---------------------------------------------------------------- plans


def refuse(name: str, need: Estimate, where: str, free: int, split: bool = False) -> DeviceError:
    """The one-sentence refusal with the numbers (``free``: bytes free there); ``split``: the GPUs
    together were already too small."""
    other = "" if split else "Choose 'all' to split it across every GPU, or "
    return DeviceError(
        f"{name} does not fit on {where}: it needs about {gib(need.total)} ({gib(need.weights)} weights + "
        f"{gib(need.activations)} activations for {_workload_words(need)}) but only {gib(int(free * GPU_SHARE))} "
        f"can be used there ({GPU_SHARE:.0%} of the {gib(free)} free).",
        f"{other or 'Choose '}float16/bfloat16, fewer prompts or a smaller --batch-size, or a smaller model.",
    )


def _workload_words(need: Estimate) -> str:
    w = need.workload
    batch = "all at once" if w.batch_size is None else f"{w.batch_size} per forward"
    return f"{w.n_pairs} pairs of about {w.n_pos} tokens, {batch}"


def plan_one(name: str, need: Estimate, device: str, free: int) -> Placement:
    """One GPU: the whole estimate must fit in ``GPU_SHARE`` of its free memory."""
    if need.total > int(free * GPU_SHARE):
        raise refuse(name, need, device, free)
    return Placement(device, None, need, {device: need.total}, {device: free})


def plan_split(name: str, need: Estimate, folder: Path, dtype: Any, gpus: Sequence[tuple[Any, int]]) -> Placement:
    """Several devices: ``gpus`` is ``[(target, free bytes), ...]``, the first one the home device.

    ``target`` is what accelerate's map names (a GPU index, or ``"cpu"`` for a
    map that only exercises the split, as the tests do).
    """
    rooms = [int(free * GPU_SHARE) for _, free in gpus]
    total_free = sum(free for _, free in gpus)
    if need.total > sum(rooms):
        raise refuse(name, need, f"the {len(gpus)} GPUs together", total_free, split=True)
    model = meta_model(folder, dtype)
    prefix, elements, others = block_list(model)
    size = dtype_bytes(dtype)
    block_bytes = [e * size for e in elements]
    home_weights = max(0, need.weights - sum(block_bytes))
    home_room = rooms[0] - home_weights - need.activations
    if home_room < 0:
        raise DeviceError(
            f"{name} does not fit across the GPUs: the first GPU must hold the embeddings and unembedding "
            f"({gib(home_weights)}) and the activations ({gib(need.activations)}) but only {gib(rooms[0])} "
            f"can be used there ({GPU_SHARE:.0%} of the {gib(gpus[0][1])} free).",
            "Free memory on the first GPU, use fewer prompts or a smaller --batch-size, or float16/bfloat16.",
        )
    try:
        owners = split_blocks(block_bytes, [home_room] + rooms[1:])
    except ValueError:
        raise refuse(name, need, f"the {len(gpus)} GPUs together", total_free, split=True) from None
    targets = [target for target, _ in gpus]
    labels = [_label(t) for t in targets]
    if len(set(labels)) < len(labels):  # a map over one device named twice (tests): one key per slot
        labels = [f"{label}#{i}" for i, label in enumerate(labels)]
    planned = dict.fromkeys(labels, 0)
    planned[labels[0]] = home_weights + need.activations
    for i, device in enumerate(owners):
        planned[labels[device]] += block_bytes[i]
    free = {label: f for label, (_, f) in zip(labels, gpus)}
    device_map = build_device_map(prefix, owners, others, targets)
    return Placement(_label(targets[0]), device_map, need, planned, free)


def _label(target: Any) -> str:
    return f"cuda:{target}" if isinstance(target, int) else str(target)


def plan(name: str, folder: Path, config: dict[str, Any], device: str, dtype: Any,
         workload: Workload | None = None) -> Placement | None:
    """The placement of a model on a GPU choice (``cuda``, ``cuda:N``, ``all``), refusing what does not fit;
    None for the CPU and MPS (no check: their memory is shared with the rest of the machine)."""
    from ioi_desktop.core import devices

    if device != devices.ALL_GPUS and not device.startswith("cuda"):
        return None
    need = estimate(folder, config, dtype, workload)
    if device == devices.ALL_GPUS:
        gpus = devices.gpu_targets()
        if len(gpus) == 1:
            target, free = gpus[0]
            return plan_one(name, need, _label(target), free)
        return plan_split(name, need, folder, dtype, gpus)
    import torch

    index = torch.device(device).index
    free = devices.free_memory(torch.device("cuda", torch.cuda.current_device() if index is None else index))
    return plan_one(name, need, device, int(free or 0))


def device_label(model, device: str) -> str:
    """``device``, or ``"cuda:0+cuda:1"`` (home first) for a model split across devices."""
    from ioi_desktop.core import devices

    if not devices.is_split(model):
        return str(device)
    return "+".join(str(d) for d in devices.model_devices(model))
