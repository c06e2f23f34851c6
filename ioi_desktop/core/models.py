"""Loading language models for analysis, offline by default.

A :class:`ModelSpec` says which model (``source``), where it runs (``device``,
``dtype``) and how its weights are processed; :func:`load_model` turns it into a
:class:`ModelHandle`: a TransformerLens ``TransformerBridge`` with the
notebook's weight processing applied (``enable_compatibility_mode``), its
tokenizer, and a :class:`ModelInfo` that results carry so they can say how they
were computed.

Sources:
- ``"bundled"``: the small IOI model shipped in ``resources/models/``;
- a folder in Hugging Face format (``config.json``, ``*.safetensors``, tokenizer files);
- a hub name (``"gpt2"``, ``"EleutherAI/pythia-70m"``) found in the local
  Hugging Face cache. Nothing is downloaded unless ``allow_download=True``.

The model and tokenizer are read by this module (safetensors only, unless the
user allows pickle files) and handed to ``TransformerBridge.boot_transformers``
so TransformerLens never reaches for the network.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ioi_desktop.core.errors import DeviceError, ModelLoadError
from ioi_desktop.core.paths import BUNDLED_MODEL_NAME, bundled_model_dir

# Set before transformers / huggingface_hub are imported anywhere (they read it at import).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TQDM_DISABLE", "1")

DEVICES = ("auto", "cuda", "mps", "cpu", "all")
DTYPES = ("float32", "float16", "bfloat16")
PROCESSING_FLAGS = (
    "fold_ln",
    "center_writing_weights",
    "center_unembed",
    "fold_value_biases",
    "refactor_factored_attn_matrices",
)
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
_HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


@dataclass(frozen=True)
class ModelSpec:
    """Which model to load, where, and how its weights are processed."""

    source: str = "bundled"
    device: str = "auto"
    dtype: str = "float32"
    fold_ln: bool = True
    center_writing_weights: bool = True
    center_unembed: bool = True
    fold_value_biases: bool = True
    refactor_factored_attn_matrices: bool = True
    allow_download: bool = False
    allow_pickle: bool = False
    # None: the model's convention (TransformerLens's cfg.default_prepend_bos, if the tokenizer has a BOS token).
    prepend_bos: bool | None = None

    def processing(self) -> dict[str, bool]:
        return {name: bool(getattr(self, name)) for name in PROCESSING_FLAGS}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class ModelInfo:
    """What was loaded and how: shown in the app and written into results."""

    name: str
    source: str
    path: str
    architecture: str
    n_layers: int
    n_heads: int
    d_model: int
    d_head: int
    d_mlp: int
    d_vocab: int
    n_ctx: int
    n_params: int
    device: str
    dtype: str
    processing: dict[str, bool]
    closed_vocab: bool
    load_seconds: float = 0.0
    # Whether prompts start with BOS, and why (the model's convention or the user's choice).
    prepend_bos: bool = True
    bos_choice: str = ""
    # What loading changed on its own, e.g. a weight-processing step turned off and why.
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        steps = [name for name, on in self.processing.items() if on] or ["none"]
        return (
            f"{self.name} ({self.architecture}): {self.n_layers} layers x {self.n_heads} heads, "
            f"d_model {self.d_model}, vocab {self.d_vocab}, context {self.n_ctx}, "
            f"{format_count(self.n_params)} parameters on {self.device} ({self.dtype}); "
            f"weight processing: {', '.join(steps)}; "
            f"prompts {'start with BOS' if self.prepend_bos else 'have no BOS'}"
            f"{' (' + self.bos_choice + ')' if self.bos_choice else ''}"
            + "".join(f"; {note}" for note in self.notes)
        )


@dataclass
class ModelHandle:
    """A loaded model: the processed TransformerBridge, its tokenizer, and its info."""

    model: Any
    tokenizer: Any
    info: ModelInfo
    spec: ModelSpec = field(default_factory=ModelSpec)


@dataclass(frozen=True)
class LocalModel:
    """A model found on this machine (bundled or in the Hugging Face cache)."""

    name: str
    source: str
    path: str
    size_bytes: int
    architecture: str
    supported: bool
    note: str = ""


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    label: str
    total_bytes: int = 0
    free_bytes: int = 0


# ---------------------------------------------------------------- sources


def looks_like_path(source: str) -> bool:
    """Whether ``source`` names a folder (a path, or anything that is not a hub name) rather than a hub model."""
    return (
        source.startswith(("/", ".", "~", "\\"))
        or bool(_WINDOWS_DRIVE.match(source))
        or os.path.exists(os.path.expanduser(source))
        or not _HUB_NAME.match(source)
    )


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, honouring HF_HUB_CACHE / HF_HOME like huggingface_hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def _cache_snapshot(repo_dir: Path) -> Path | None:
    """The snapshot folder ``refs/main`` points at, else the newest one with a config."""
    snapshots = repo_dir / "snapshots"
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        candidate = snapshots / ref.read_text(encoding="utf-8").strip()
        if (candidate / "config.json").is_file():
            return candidate
    if not snapshots.is_dir():
        return None
    found = [p for p in snapshots.iterdir() if (p / "config.json").is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def find_in_hf_cache(name: str) -> Path | None:
    """The local snapshot folder of hub model ``name``, or None. Never touches the network."""
    candidates = [name]
    if "/" not in name:
        # GPT-2 and friends moved under openai-community/ on the hub; caches hold either.
        candidates.append(f"openai-community/{name}")
    cache = hf_cache_dir()
    for repo_id in candidates:
        snapshot = _cache_snapshot(cache / ("models--" + repo_id.replace("/", "--")))
        if snapshot is not None:
            return snapshot
    return None


def _download(name: str) -> Path:
    """Fetch a hub model on the user's explicit request (the only network access)."""
    os.environ["HF_HUB_OFFLINE"] = "0"
    try:
        import huggingface_hub
        from huggingface_hub import constants

        constants.HF_HUB_OFFLINE = False
        folder = huggingface_hub.snapshot_download(
            repo_id=name,
            allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*", "merges*", "vocab*"],
        )
    except Exception as exc:  # huggingface_hub raises many types for network/auth/404
        raise ModelLoadError(
            f"Downloading '{name}' failed: {exc}.",
            "Check the model name and the network connection, or copy the model folder onto this machine.",
        ) from exc
    finally:
        os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            from huggingface_hub import constants

            constants.HF_HUB_OFFLINE = True
        except ImportError:
            pass
    return Path(folder)


def resolve_source(spec: ModelSpec) -> tuple[str, Path, str]:
    """(kind, folder, display name) for a spec; kind is 'bundled', 'folder' or 'hub'."""
    source = spec.source.strip()
    if not source:
        raise ModelLoadError("No model was given.", "Choose the bundled model, a model folder, or a cached hub name.")
    if source == "bundled" or source == BUNDLED_MODEL_NAME:
        folder = bundled_model_dir()
        if not folder.is_dir():
            raise ModelLoadError(
                f"The bundled model is missing from {folder}.",
                "Reinstall IOI Desktop, or train it with 'python -m ioi_desktop.bundled.train'.",
            )
        return "bundled", folder, BUNDLED_MODEL_NAME
    if looks_like_path(source):
        folder = Path(source).expanduser()
        if not folder.exists():
            raise ModelLoadError(
                f"The model folder {folder} does not exist.",
                "Check the path, or choose the folder that holds config.json.",
            )
        if not folder.is_dir():
            raise ModelLoadError(
                f"{folder} is a file, not a model folder.",
                "Choose the folder that holds config.json and the weights.",
            )
        return "folder", folder.resolve(), folder.resolve().name
    cached = find_in_hf_cache(source)
    if cached is not None:
        return "hub", cached, source
    if spec.allow_download:
        return "hub", _download(source), source
    raise ModelLoadError(
        f"The model '{source}' is not in the local Hugging Face cache ({hf_cache_dir()}).",
        "On a machine with network access run "
        f"'huggingface-cli download {source}' and copy its cache folder (or the model folder) here, "
        "or allow downloading explicitly.",
    )


# ---------------------------------------------------------------- checks


def _read_config(folder: Path) -> dict[str, Any]:
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelLoadError(
            f"{folder} is not a model folder: it has no config.json.",
            "Choose the folder of a Hugging Face model (with config.json, weights and tokenizer files).",
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(
            f"The model's config.json in {folder} is not valid JSON ({exc}).",
            "The folder may be half-copied: copy the model again.",
        ) from exc
    if not isinstance(config, dict):
        raise ModelLoadError(f"The model's config.json in {folder} is not a JSON object.", "Copy the model again.")
    return config


def architecture_of(config: dict[str, Any]) -> str:
    """The architecture name TransformerLens would pick for this config ('' if none)."""
    from transformer_lens.model_bridge.sources._hf_format import determine_architecture_from_hf_config

    try:
        return determine_architecture_from_hf_config(SimpleNamespace(**config))
    except (ValueError, TypeError, AttributeError):
        archs = config.get("architectures") or []
        return str(archs[0]) if archs else ""


def supported_architectures() -> set[str]:
    from transformer_lens.factories.architecture_adapter_factory import SUPPORTED_ARCHITECTURES

    return set(SUPPORTED_ARCHITECTURES)


def _check_architecture(folder: Path, config: dict[str, Any]) -> str:
    architecture = architecture_of(config)
    if not architecture:
        raise ModelLoadError(
            f"The config.json in {folder} names no architecture.",
            "Add an 'architectures' entry to config.json or copy the model again.",
        )
    if architecture not in supported_architectures():
        raise ModelLoadError(
            f"TransformerLens {_tl_version()} does not support the architecture {architecture}.",
            "Choose a model of a supported family (GPT-2, Pythia/GPT-NeoX, Llama, Mistral, Gemma, Qwen, ...).",
        )
    return architecture


def _weights_format(folder: Path, allow_pickle: bool) -> bool:
    """True to load safetensors, False for pickle (only with consent); raises otherwise."""
    if any(folder.glob("*.safetensors")):
        return True
    if any(folder.glob("*.bin")) or any(folder.glob("*.pt")):
        if allow_pickle:
            return False
        raise ModelLoadError(
            f"The weights in {folder} are pickle files (pytorch_model.bin), which can run arbitrary code when read.",
            "Convert them to safetensors, or allow pickle weights explicitly if you trust where the model came from.",
        )
    raise ModelLoadError(
        f"{folder} has a config.json but no weights (*.safetensors).",
        "The folder may be incomplete: copy the model again.",
    )


# ---------------------------------------------------------------- devices


def set_torch_threads() -> int:
    """Use about half the logical cores (at least 1): on busy small machines, more threads is slower."""
    import torch

    wanted = os.environ.get("IOI_DESKTOP_THREADS")
    threads = int(wanted) if wanted and wanted.isdigit() and int(wanted) > 0 else max(1, min(8, (os.cpu_count() or 2) // 2))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def available_devices() -> list[DeviceInfo]:
    """The devices torch can use here, GPUs with their name and memory."""
    import torch

    devices = [DeviceInfo("cpu", f"CPU ({os.cpu_count() or '?'} logical cores)")]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            name = torch.cuda.get_device_name(index)
            devices.append(
                DeviceInfo(f"cuda:{index}", f"{name} ({free / 2**30:.1f} of {total / 2**30:.1f} GiB free)", total, free)
            )
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append(DeviceInfo("mps", "Apple GPU (MPS)"))
    return devices


def resolve_device(name: str) -> str:
    """'auto' -> cuda, then mps, then cpu; an explicit GPU that is absent is an error."""
    import torch

    name = (name or "auto").strip().lower()
    cuda_ok = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None)
    mps_ok = mps is not None and mps.is_available()
    if name == "auto":
        return "cuda" if cuda_ok else "mps" if mps_ok else "cpu"
    if name == "cpu":
        return "cpu"
    if name == "all":  # all GPUs: the model is split across them (core.placement)
        from ioi_desktop.core.devices import resolve_all

        return resolve_all()
    if name.startswith("cuda"):
        if not cuda_ok:
            raise DeviceError(
                "CUDA was selected but no CUDA GPU is available (or this torch build has no CUDA support).",
                "Choose 'auto' or 'cpu', or install a CUDA build of torch on a machine with an NVIDIA GPU.",
            )
        if ":" in name:
            index = name.split(":", 1)[1]
            if not index.isdigit() or int(index) >= torch.cuda.device_count():
                raise DeviceError(
                    f"There is no GPU {name}; this machine has {torch.cuda.device_count()}.",
                    "Choose 'cuda' or one of the listed GPUs.",
                )
        return name
    if name == "mps":
        if not mps_ok:
            raise DeviceError("MPS (Apple GPU) was selected but is not available here.", "Choose 'auto' or 'cpu'.")
        return "mps"
    raise DeviceError(f"Unknown device '{name}'.", f"Choose one of {', '.join(DEVICES)}.")


def resolve_dtype(name: str, device: str):
    import torch

    name = (name or "float32").strip().lower()
    table = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if name not in table:
        raise DeviceError(f"Unknown dtype '{name}'.", f"Choose one of {', '.join(DTYPES)}.")
    if name == "float16" and device == "cpu":
        raise DeviceError(
            "float16 is not supported for analysis on the CPU.", "Use float32 (or bfloat16) on the CPU, float16 on a GPU."
        )
    if name == "bfloat16" and device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        raise DeviceError("This GPU does not support bfloat16.", "Use float16 or float32.")
    return table[name]


# ---------------------------------------------------------------- loading


def _tl_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("transformer-lens")
    except PackageNotFoundError:
        return "?"


def _is_closed_vocab(tokenizer) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    kind = json.loads(backend.to_str()).get("model", {}).get("type", "")
    return kind in ("WordLevel", "WordPiece")


def _load_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # transformers raises OSError/ValueError/JSON errors for bad folders
        raise ModelLoadError(
            f"The tokenizer in {folder} could not be read ({type(exc).__name__}: {exc}).",
            "The folder needs tokenizer.json (or vocab/merges files) saved with the model: copy the model again.",
        ) from exc


def _load_hf_model(folder: Path, use_safetensors: bool, torch_dtype, device_map=None):
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    # A progress bar on stderr would break the CLI's one-line errors and clutter logs.
    hf_logging.disable_progress_bar()
    try:
        placed = {} if device_map is None else {"device_map": device_map}
        model, loading = AutoModelForCausalLM.from_pretrained(
            str(folder), local_files_only=True, use_safetensors=use_safetensors, dtype=torch_dtype,
            output_loading_info=True, **placed,
        )
    except torch.OutOfMemoryError as exc:
        raise DeviceError("The machine ran out of memory while loading the model.", "Close other programs or choose a smaller model.") from exc
    except Exception as exc:  # safetensors/transformers raise several types for corrupt files
        text = str(exc)
        if "ignore_mismatched_sizes" in text or "size mismatch" in text.lower():
            raise ModelLoadError(
                f"The config.json in {folder} does not match its weights: some weights have other shapes than "
                "the config describes.",
                "Use the config.json that came with these weights, or copy the model again.",
            ) from exc
        if "safetensors" in text.lower() or "header" in text.lower() or "deserializ" in text.lower() or "incomplete" in text.lower():
            raise ModelLoadError(
                f"The weights in {folder} are corrupt or incomplete ({text.splitlines()[0][:200]}).",
                "Copy the model again; the file may have been cut off while copying.",
            ) from exc
        raise ModelLoadError(
            f"The model in {folder} could not be loaded ({type(exc).__name__}: {text.splitlines()[0][:200] if text else ''}).",
            "Check that the folder holds a complete Hugging Face causal language model.",
        ) from exc
    _check_weights_fit_config(folder, model, loading)
    return model


def _check_weights_fit_config(folder: Path, model, loading: dict) -> None:
    """A ModelLoadError when the weights are not the ones config.json describes.

    transformers fills weights it does not find with random values (and only
    warns): weights of other shapes, or parameters missing from the files
    (beyond an output layer tied to the embedding), mean the config and the
    weights disagree, and every number would be meaningless.
    """
    mismatched = [str(item[0] if isinstance(item, (tuple, list)) else item)
                  for item in loading.get("mismatched_keys") or []]
    parameters = {name for name, _ in model.named_parameters()}
    missing = [key for key in loading.get("missing_keys") or [] if key in parameters
               and not key.endswith(("lm_head.weight", "embed_out.weight"))]
    if mismatched or missing:
        example = (mismatched or missing)[0]
        count = len(mismatched) + len(missing)
        raise ModelLoadError(
            f"The config.json in {folder} does not match its weights: {count} weight"
            f"{'s are' if count != 1 else ' is'} {'of another shape than' if mismatched else 'missing from the files for'} "
            f"the {model.config.architectures[0] if model.config.architectures else 'model'} the config describes "
            f"(e.g. {example}).",
            "Use the config.json that came with these weights, or copy the model again.",
        )


def load_model(spec: ModelSpec | None = None, progress=None, workload=None) -> ModelHandle:
    """Load and process a model; every expected failure is a ModelLoadError/DeviceError.

    ``progress(message)`` is called before each step when given. On a GPU choice
    the memory of weights plus ``workload`` (a ``core.placement.Workload``; None:
    its default) is checked before loading, and ``all`` splits the model across
    the GPUs (``core.placement``).
    """
    spec = spec or ModelSpec()
    report = progress or (lambda message: None)
    started = time.perf_counter()
    kind, folder, name = resolve_source(spec)
    report(f"Reading {name} from {folder}")
    config = _read_config(folder)
    architecture = _check_architecture(folder, config)
    use_safetensors = _weights_format(folder, spec.allow_pickle)

    import torch

    set_torch_threads()
    device = resolve_device(spec.device)
    from ioi_desktop.core import placement

    placed = placement.plan(name, folder, config, device, spec.dtype, workload)
    if placed is not None:
        device = placed.home
        report(f"Memory: {placed.summary()}")
    device_map = None if placed is None else placed.device_map
    torch_dtype = resolve_dtype(spec.dtype, device)
    tokenizer = _load_tokenizer(folder)
    # The folder's own BOS, before TransformerLens may install a stand-in on the tokenizer.
    folder_bos = SimpleNamespace(bos_token_id=getattr(tokenizer, "bos_token_id", None))
    report("Loading weights")
    hf_model = _load_hf_model(folder, use_safetensors, torch_dtype, device_map)
    n_params = sum(p.numel() for p in hf_model.parameters())
    processing = spec.processing()
    notes: list[str] = []

    def report_and_note(message: str) -> None:
        if message.startswith(("Skipping", "refactor_factored_attn_matrices turned off")):
            notes.append(message)
        report(message)

    try:
        bridge, processing = _prepare(folder, name, architecture, hf_model, tokenizer, device, torch_dtype,
                                      processing, report_and_note,
                                      reload=lambda: _load_hf_model(folder, use_safetensors, torch_dtype, device_map),
                                      placed=device_map is not None)
    except torch.OutOfMemoryError as exc:
        raise DeviceError(
            f"The {device} device ran out of memory while preparing {name}.",
            "Choose a smaller model, float16/bfloat16, or the CPU.",
        ) from exc
    for parameter in bridge.parameters():
        parameter.requires_grad_(False)
    cfg = bridge.cfg
    prepend_bos, bos_choice = bos_convention(cfg, folder_bos, spec.prepend_bos)
    info = ModelInfo(
        name=name,
        source=kind,
        path=str(folder),
        architecture=architecture,
        n_layers=int(cfg.n_layers),
        n_heads=int(cfg.n_heads),
        d_model=int(cfg.d_model),
        d_head=int(cfg.d_head),
        d_mlp=int(getattr(cfg, "d_mlp", 0) or 0),
        d_vocab=int(cfg.d_vocab),
        n_ctx=int(cfg.n_ctx),
        n_params=int(n_params),
        device=placement.device_label(bridge, device),
        dtype=str(spec.dtype),
        processing=processing,
        closed_vocab=_is_closed_vocab(tokenizer),
        load_seconds=round(time.perf_counter() - started, 3),
        prepend_bos=prepend_bos,
        bos_choice=bos_choice,
        notes=tuple(notes),
    )
    return ModelHandle(model=bridge, tokenizer=bridge.tokenizer, info=info, spec=spec)


def bos_convention(cfg: Any, tokenizer: Any, override: bool | None = None) -> tuple[bool, str]:
    """(prepend BOS?, why in words) for a model: the user's choice, else the model's convention.

    The convention is TransformerLens's ``cfg.default_prepend_bos`` for the
    architecture (False for GPT-NeoX/Pythia, Phi, Qwen2/3, Granite, GLM, ...),
    and only when the tokenizer read from the model folder has a BOS token
    (Qwen ships none: then none is added). ``tokenizer`` must be the folder's
    own tokenizer, not the bridge's (TransformerLens may install a stand-in BOS).
    """
    has_bos = getattr(tokenizer, "bos_token_id", None) is not None
    if override is not None:
        if override and not has_bos:
            raise ModelLoadError(
                "BOS was asked for, but the model's tokenizer has no beginning-of-sequence (BOS) token.",
                "Leave the BOS setting on the model's default, or turn it off.",
            )
        return bool(override), "chosen by the user" + ("" if override == _default_bos(cfg, has_bos) else
                                                       f"; the model's convention is {'BOS' if not override else 'no BOS'}")
    if not has_bos:
        return False, "the tokenizer has no BOS token"
    if _default_bos(cfg, has_bos):
        return True, "the model's convention (TransformerLens default_prepend_bos)"
    return False, "the model's convention (TransformerLens default_prepend_bos is False for this architecture)"


def _default_bos(cfg: Any, has_bos: bool) -> bool:
    return has_bos and bool(getattr(cfg, "default_prepend_bos", True))


# Words in TransformerLens/transformers errors that mean the weights' shapes are not the config's.
_SHAPE_WORDS = ("size mismatch", "cannot split", "perlayergeometry")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200].rstrip('.')}" if text else type(exc).__name__


def preparation_error(name: str, architecture: str, exc: BaseException) -> ModelLoadError:
    """One sentence for a model TransformerLens could not prepare (shape disagreements named as such)."""
    text = f"{type(exc).__name__} {exc}".lower()
    if any(word in text for word in _SHAPE_WORDS):
        return ModelLoadError(
            f"The config.json of {name} does not match its weights: TransformerLens could not lay out the "
            f"{architecture} weights with the sizes the config gives ({_first_line(exc)}).",
            "Check that config.json belongs to these weights (architecture, hidden size, heads), or copy the model again.",
        )
    return ModelLoadError(
        f"TransformerLens {_tl_version()} could not prepare {name} ({architecture}): {_first_line(exc)}.",
        "This architecture or configuration may not be supported by this TransformerLens version; "
        "try another model of the family, or turn off weight processing.",
    )


def _smoke_forward(bridge, device: str) -> None:
    """Run the prepared model on two tokens: a bridge whose forward fails is refused at load time."""
    import torch

    with torch.no_grad():
        bridge(torch.zeros((1, 2), dtype=torch.long, device=device))


def _prepare(folder: Path, name: str, architecture: str, hf_model, tokenizer, device: str, torch_dtype,
             processing: dict[str, bool], report, reload, placed: bool = False) -> tuple[Any, dict[str, bool]]:
    """Boot the TransformerBridge and apply ``processing``; the bridge and the processing applied.

    When weight processing fails with ``refactor_factored_attn_matrices`` on,
    the model is prepared again without that step (TransformerLens runs some
    architectures, MPT for one, only so) and the retry is reported; any other
    failure is one sentence naming the architecture and the problem. A model
    ``placed`` across devices by a device map stays where accelerate put it.
    """
    import torch
    from transformer_lens.model_bridge import TransformerBridge

    processing = dict(processing)
    first_failure: BaseException | None = None
    for attempt in range(2):
        try:
            if not placed:
                hf_model.to(device)
            report("Building the TransformerLens bridge")
            bridge = TransformerBridge.boot_transformers(
                str(folder), hf_model=hf_model, tokenizer=tokenizer, device=device, dtype=torch_dtype
            )
        except torch.OutOfMemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - TransformerLens raises many types for unsupported configs
            raise preparation_error(name, architecture, exc) from exc
        report("Processing weights (fold LayerNorm, center, ...)")
        if processing["refactor_factored_attn_matrices"] and bridge.cfg.positional_embedding_type == "rotary":
            # TransformerLens cannot refactor W_Q/W_K when rotary embeddings sit between them.
            processing["refactor_factored_attn_matrices"] = False
            report("Skipping refactor_factored_attn_matrices: not defined for rotary position embeddings")
        try:
            if any(processing.values()):
                bridge.enable_compatibility_mode(disable_warnings=True, **processing)
            else:
                bridge.enable_compatibility_mode(disable_warnings=True, no_processing=True)
            bridge.eval()
            _smoke_forward(bridge, device)
            if first_failure is not None:
                report(f"refactor_factored_attn_matrices turned off: weight processing failed with it "
                       f"({_first_line(first_failure)})")
            return bridge, processing
        except torch.OutOfMemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - see the docstring
            if attempt == 0 and processing["refactor_factored_attn_matrices"]:
                first_failure = exc
                processing["refactor_factored_attn_matrices"] = False
                report(f"Weight processing failed ({_first_line(exc)}); "
                       "preparing the model again without refactor_factored_attn_matrices")
                del bridge
                hf_model = reload()
                continue
            raise preparation_error(name, architecture, exc) from exc
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- listing


def _folder_size(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size  # follows cache symlinks to the blobs
        except OSError:
            continue
    return total


def list_local_models() -> list[LocalModel]:
    """The bundled model and the causal LMs in the local Hugging Face cache."""
    supported = supported_architectures()
    found: list[LocalModel] = []
    bundled = bundled_model_dir()
    if (bundled / "config.json").is_file():
        config = _read_config(bundled)
        found.append(
            LocalModel(BUNDLED_MODEL_NAME, "bundled", str(bundled), _folder_size(bundled), architecture_of(config), True, "default")
        )
    cache = hf_cache_dir()
    if cache.is_dir():
        for repo_dir in sorted(cache.glob("models--*")):
            snapshot = _cache_snapshot(repo_dir)
            if snapshot is None:
                continue
            name = repo_dir.name[len("models--") :].replace("--", "/")
            try:
                config = _read_config(snapshot)
            except ModelLoadError as error:
                found.append(LocalModel(name, "hub", str(snapshot), _folder_size(snapshot), "", False, error.message))
                continue
            architecture = architecture_of(config)
            ok = architecture in supported
            has_weights = any(snapshot.glob("*.safetensors")) or any(snapshot.glob("*.bin"))
            note = "" if ok and has_weights else ("no weights in the cache" if ok else "not supported by TransformerLens")
            found.append(LocalModel(name, "hub", str(snapshot), _folder_size(snapshot), architecture, ok and has_weights, note))
    return found


def format_count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def format_bytes(n: int) -> str:
    for unit, size in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
