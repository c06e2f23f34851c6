"""The results of one run, and their files: ``results.json`` + ``results.npz``.

A :class:`RunResults` holds the typed ``Result`` (an
:class:`~ioi_desktop.core.analyses.base.AnalysisResult` dataclass) of every
analysis that ran (by name, in run order) and the run's metadata:
model name and config, weight-processing flags, the prompt set, the tokens of
every prompt as strings, role and position labels, analyses, options, library
versions, timings and the patching engine used.

On disk (format documented in ``docs/results-format.md``):

- ``results.npz`` holds every array under its own name (``logit_diff_clean``,
  ``dla_head``, ``patch_head_z``, ...; names are unique across analyses),
  written with numpy's ``savez_compressed`` and read with ``allow_pickle=False``;
- ``results.json`` holds the format tag and version, the metadata, and for
  every analysis its arrays (axis names, shape, dtype), axis labels and meta,
  plus the SHA-256 of the ``.npz`` so a mismatched pair of files is caught.

Files are written and read generically from the ``Result`` types' fields
(arrays, labels, metadata; see ``docs/results-format.md``, generated from the
types by :mod:`ioi_desktop.core.results_docs`). Version 2 adds, per analysis,
position labels as data (``positions``: index, token, role per entry); version
1 files (written before the typed contract) are still read, their position
labels parsed from text.

Both files are written atomically. :func:`load_results` checks the format,
version, checksum, and every array's dtype, shape and labels, and raises
:class:`~ioi_desktop.core.errors.FileFormatError` naming the first problem.
This module imports numpy only (no torch), so the GUI can open results files
before any model is loaded.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from ioi_desktop.core.analyses import analysis_names, result_type
from ioi_desktop.core.analyses.base import AnalysisResult, Positions
from ioi_desktop.core.atomic import write_bytes_atomic, write_text_atomic
from ioi_desktop.core.errors import FileFormatError

RESULTS_FORMAT = "ioi-desktop/results"
RESULTS_VERSION = 2
JSON_NAME = "results.json"
NPZ_NAME = "results.npz"
# Arrays are float32 (scores) or int32 (token ids, positions); nothing else is written or read.
ALLOWED_DTYPES = ("float32", "int32")
_MAX_JSON_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class RunResults:
    """Every analysis result of one run plus the run's metadata.

    ``results`` maps analysis name -> AnalysisResult in the order they ran;
    ``meta`` is plain JSON-able data (see :func:`run_metadata`).
    """

    results: Mapping[str, AnalysisResult]
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for name, result in self.results.items():
            for array in result.arrays:
                if array in seen:
                    raise ValueError(f"array {array!r} is produced by both {seen[array]!r} and {name!r}")
                seen[array] = name

    @property
    def analyses(self) -> list[str]:
        return list(self.results)

    def __contains__(self, analysis: object) -> bool:
        return analysis in self.results

    def __getitem__(self, analysis: str) -> AnalysisResult:
        return self.results[analysis]

    def get(self, analysis: str) -> AnalysisResult | None:
        return self.results.get(analysis)

    def of_type(self, cls: type) -> AnalysisResult | None:
        """The result of Result type ``cls`` (e.g. ``patching.Result``), or None."""
        result = self.results.get(cls.analysis)
        return result if isinstance(result, cls) else None

    def has_array(self, array: str) -> bool:
        return any(array in result.arrays for result in self.results.values())

    def array(self, array: str) -> np.ndarray:
        """The array called ``array`` whichever analysis made it (KeyError if none did)."""
        return self.result_of(array).arrays[array]

    def axes(self, array: str) -> tuple[str, ...]:
        """Axis names of ``array``."""
        return tuple(self.result_of(array).axes[array])

    def labels(self, array: str) -> list[list[str] | None]:
        """For each axis of ``array``, its entry labels, or None where the axis is unlabelled."""
        result = self.result_of(array)
        return [result.labels.get(axis) for axis in result.axes[array]]

    def result_of(self, array: str) -> AnalysisResult:
        """The AnalysisResult that holds ``array``."""
        for result in self.results.values():
            if array in result.arrays:
                return result
        raise KeyError(array)

    def iter_arrays(self) -> Iterator[tuple[str, np.ndarray]]:
        for result in self.results.values():
            yield from result.arrays.items()

    def save(self, folder: str | Path) -> Path:
        return save_results(self, folder)


# ------------------------------------------------------------------ metadata


def position_labels(batch: Any) -> list[str]:
    """Labels of the ``pos`` axis of a tokenized set as text (see ``Positions.text``).

    Equal-length sets: ``"<index>: <token of prompt 0>"`` plus the role name where
    every prompt has that role at that position (``"14: to (END)"``). Sets of
    unequal length have no shared absolute positions: the label says only the
    index and, where the prompts agree, the role.
    """
    return Positions.of_set(batch).texts()


def library_versions() -> dict[str, str]:
    """Versions of ioi_desktop and the libraries whose numerics the results depend on."""
    from importlib.metadata import PackageNotFoundError, version

    from ioi_desktop import __version__

    found = {"ioi_desktop": __version__}
    for package in ("torch", "transformer-lens", "transformers", "numpy"):
        try:
            found[package.replace("-", "_")] = version(package)
        except PackageNotFoundError:
            found[package.replace("-", "_")] = "not installed"
    return found


def prompt_set_metadata(batch: Any, tokenizer: Any = None, prompt_set: Any = None) -> dict[str, Any]:
    """The prompt set as results metadata: texts, answers, tokens, roles, lengths."""
    lengths = [int(n) for n in np.asarray(batch.lengths)]
    meta: dict[str, Any] = {
        "n_prompts": len(lengths),
        "str_tokens": [list(tokens) for tokens in batch.str_tokens],
        "corrupt_str_tokens": [list(tokens) for tokens in batch.corrupt_str_tokens],
        "lengths": lengths,
        "end_pos": [int(n) for n in np.asarray(batch.end_pos)],
        "equal_length": bool(batch.equal_length),
        "prepend_bos": bool(getattr(batch, "prepend_bos", True)),
        "roles": {role: [int(p) for p in np.asarray(pos)] for role, pos in batch.roles.items()},
        "correct_ids": [int(i) for i in np.asarray(batch.correct_ids)],
        "incorrect_ids": [int(i) for i in np.asarray(batch.incorrect_ids)],
        "position_labels": position_labels(batch),
    }
    if tokenizer is not None:
        meta["correct"] = [tokenizer.decode([i]) for i in meta["correct_ids"]]
        meta["incorrect"] = [tokenizer.decode([i]) for i in meta["incorrect_ids"]]
    if prompt_set is not None:
        from ioi_desktop.core.pairfiles import prompt_set_to_dict

        meta["prompt_set"] = prompt_set_to_dict(prompt_set)
    return meta


def run_metadata(
    handle: Any,
    batch: Any,
    analyses: list[str],
    options: Mapping[str, Any],
    timings: Mapping[str, float],
    results: Mapping[str, AnalysisResult],
    prompt_set: Any = None,
) -> dict[str, Any]:
    """The metadata written into ``results.json`` for one run."""
    info = handle.info
    model = info.to_dict() if hasattr(info, "to_dict") else dict(vars(info))
    engines = {name: result.meta["engine"] for name, result in results.items() if "engine" in result.meta}
    return _jsonable(
        {
            "model": model,
            "processing": dict(getattr(info, "processing", {}) or {}),
            "prompts": prompt_set_metadata(batch, getattr(handle, "tokenizer", None), prompt_set),
            "analyses": list(analyses),
            "options": dict(options),
            "versions": library_versions(),
            "timings": {name: round(float(seconds), 4) for name, seconds in timings.items()},
            "engine": engines,
        }
    )


def _jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars/arrays become numbers/lists, non-finite floats None."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Path):
        return str(value)
    return str(value)


# ------------------------------------------------------------------ save


def _check_array(name: str, array: np.ndarray) -> np.ndarray:
    if array.dtype.name not in ALLOWED_DTYPES:
        raise ValueError(f"array {name!r} has dtype {array.dtype}, expected one of {ALLOWED_DTYPES}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"array {name!r} contains NaN or infinity")
    return array if array.flags.c_contiguous else np.array(array, order="C")  # keeps 0-d arrays 0-d


def save_results(results: RunResults, folder: str | Path) -> Path:
    """Write ``results.npz`` then ``results.json`` into ``folder`` atomically; returns the JSON path."""
    folder = Path(folder)
    arrays = {name: _check_array(name, np.asarray(array)) for name, array in results.iter_arrays()}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    npz_bytes = buffer.getvalue()
    document = {
        "format": RESULTS_FORMAT,
        "version": RESULTS_VERSION,
        "npz": {"file": NPZ_NAME, "sha256": hashlib.sha256(npz_bytes).hexdigest()},
        "meta": _jsonable(results.meta),
        "analyses": {
            name: {
                "arrays": {
                    array: {
                        "axes": list(result.axes[array]),
                        "shape": list(arrays[array].shape),
                        "dtype": arrays[array].dtype.name,
                    }
                    for array in result.arrays
                },
                "labels": _jsonable({axis: list(entries) for axis, entries in result.labels.items()}),
                "positions": _jsonable({axis: p.to_dict() for axis, p in result.positions.items()}),
                "meta": _jsonable(result.meta),
            }
            for name, result in results.results.items()
        },
    }
    text = json.dumps(document, indent=1, ensure_ascii=False, allow_nan=False)
    write_bytes_atomic(folder / NPZ_NAME, npz_bytes)
    return write_text_atomic(folder / JSON_NAME, text)


# ------------------------------------------------------------------ load


def _problem(path: Path, what: str) -> FileFormatError:
    return FileFormatError(
        f"The results file {path} {what}.",
        "Save the results again with IOI Desktop (results.json and results.npz belong together).",
    )


def _read_document(path: Path) -> dict[str, Any]:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise FileFormatError(
            f"The results file {path} cannot be read ({exc.strerror or exc}).",
            "Choose a folder that contains results.json and results.npz.",
        ) from exc
    if size > _MAX_JSON_BYTES:
        raise _problem(path, f"is {size} bytes, too large for a results file")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _problem(path, f"is not valid UTF-8 JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise _problem(path, "is not a JSON object")
    if document.get("format") != RESULTS_FORMAT:
        raise _problem(path, f"has format {document.get('format')!r}, not '{RESULTS_FORMAT}'")
    version = document.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= RESULTS_VERSION:
        raise FileFormatError(
            f"The results file {path} has version {version!r}, which this version of IOI Desktop cannot read.",
            f"It reads versions 1 to {RESULTS_VERSION}; update IOI Desktop to open newer files.",
        )
    for key in ("analyses", "meta", "npz"):
        if not isinstance(document.get(key), dict):
            raise _problem(path, f"has no '{key}' object")
    return document


def _read_npz(path: Path, expected_sha256: object) -> dict[str, np.ndarray]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FileFormatError(
            f"The results arrays {path} cannot be read ({exc.strerror or exc}).",
            "results.npz must be next to results.json; copy both files together.",
        ) from exc
    if hashlib.sha256(data).hexdigest() != expected_sha256:
        raise _problem(path, "does not match its results.json (checksum differs)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise _problem(path, f"is not a readable .npz archive ({exc})") from exc


def _parse_analysis(
    path: Path, name: str, entry: object, arrays: dict[str, np.ndarray], claimed: set[str]
) -> AnalysisResult:
    where = f"analysis {name!r}"
    if name not in analysis_names():
        raise _problem(path, f"has an {where} this version of IOI Desktop does not know")
    if not isinstance(entry, dict) or not isinstance(entry.get("arrays"), dict):
        raise _problem(path, f"has an {where} without an 'arrays' object")
    labels = entry.get("labels", {})
    if not isinstance(labels, dict) or not all(
        isinstance(v, list) and all(isinstance(s, str) for s in v) for v in labels.values()
    ):
        raise _problem(path, f"has an {where} whose 'labels' are not lists of strings")
    meta = entry.get("meta", {})
    if not isinstance(meta, dict):
        raise _problem(path, f"has an {where} whose 'meta' is not an object")
    found: dict[str, np.ndarray] = {}
    axes: dict[str, tuple[str, ...]] = {}
    for array_name, spec in entry["arrays"].items():
        if array_name in claimed:
            raise _problem(path, f"lists the array {array_name!r} twice")
        claimed.add(array_name)
        if not isinstance(spec, dict) or not isinstance(spec.get("axes"), list) or not isinstance(spec.get("shape"), list):
            raise _problem(path, f"has no axes/shape for the array {array_name!r}")
        if not all(isinstance(axis, str) for axis in spec["axes"]):
            raise _problem(path, f"has axis names of the array {array_name!r} that are not text")
        if array_name not in arrays:
            raise _problem(path.with_name(NPZ_NAME), f"lacks the array {array_name!r}")
        array = arrays[array_name]
        if array.dtype.name not in ALLOWED_DTYPES or array.dtype.name != spec.get("dtype"):
            raise _problem(path.with_name(NPZ_NAME), f"has the array {array_name!r} as {array.dtype}, expected {spec.get('dtype')}")
        if list(array.shape) != spec["shape"] or len(spec["axes"]) != array.ndim:
            raise _problem(
                path.with_name(NPZ_NAME),
                f"has the array {array_name!r} with shape {list(array.shape)}, expected {spec['shape']} "
                f"over axes {spec['axes']}",
            )
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise _problem(path.with_name(NPZ_NAME), f"has NaN or infinite values in {array_name!r}")
        for axis, size in zip(spec["axes"], array.shape):
            if axis in labels and len(labels[axis]) != size:
                raise _problem(
                    path,
                    f"has {len(labels[axis])} labels for the axis {axis!r} but the array {array_name!r} has {size} entries on it",
                )
        found[array_name] = array
        axes[array_name] = tuple(str(a) for a in spec["axes"])
    positions = entry.get("positions", {})
    if not isinstance(positions, dict):
        raise _problem(path, f"has an {where} whose 'positions' is not an object")
    return _typed_result(path, name, found, axes, labels, positions, meta)


def _renamed_axes(axes: tuple[str, ...]) -> tuple[str, ...]:
    """Axes as this version names them: files before the kv_head axis held the k and v grids over
    'head' (the same thing for models without grouped-query attention, the only ones they could hold)."""
    return tuple("kv_head" if axis == "head" else axis for axis in axes)


def _typed_result(path: Path, name: str, arrays: dict[str, np.ndarray], axes: dict[str, tuple[str, ...]],
                  labels: dict[str, list[str]], positions: dict[str, Any], meta: dict[str, Any]) -> AnalysisResult:
    """The analysis's Result from a file's arrays, labels and metadata (unknown metadata is dropped)."""
    cls = result_type(name)
    fields: dict[str, Any] = {}
    for spec in cls.array_specs():
        if spec.name in arrays:
            if _renamed_axes(axes[spec.name]) == spec.axes:
                axes[spec.name] = spec.axes
            if axes[spec.name] != spec.axes or arrays[spec.name].dtype.name != spec.dtype:
                raise _problem(path, f"has the array {spec.name!r} over axes {list(axes[spec.name])} as "
                                     f"{arrays[spec.name].dtype}, expected {list(spec.axes)} as {spec.dtype}")
            fields[spec.name] = arrays.pop(spec.name)
    if arrays:
        raise _problem(path, f"has the array {sorted(arrays)[0]!r}, which analysis {name!r} does not make")
    for spec in cls.label_specs():
        if spec.positions and spec.axis in positions:
            try:
                fields[spec.name] = Positions.from_dict(positions[spec.axis])
            except (KeyError, TypeError, ValueError) as exc:
                raise _problem(path, f"has unreadable positions for the axis {spec.axis!r} of {name!r}") from exc
        elif spec.axis in labels:
            texts = labels[spec.axis]
            fields[spec.name] = Positions.from_texts(texts) if spec.positions else tuple(texts)
    for spec in cls.meta_specs():
        if spec.name in meta:
            fields[spec.name] = meta[spec.name]
    try:
        return cls(**fields)
    except (TypeError, ValueError) as exc:
        raise _problem(path, f"has inconsistent data for analysis {name!r} ({exc})") from exc


def load_results(folder: str | Path) -> RunResults:
    """Read results saved by :func:`save_results` from ``folder`` (or its results.json)."""
    path = Path(folder)
    if path.is_dir() or path.suffix != ".json":
        path = path / JSON_NAME
    document = _read_document(path)
    npz_name = document["npz"].get("file", NPZ_NAME)
    if not isinstance(npz_name, str) or Path(npz_name).name != npz_name:
        raise _problem(path, "names an invalid arrays file")
    arrays = _read_npz(path.with_name(npz_name), document["npz"].get("sha256"))
    claimed: set[str] = set()
    results = {
        name: _parse_analysis(path, name, entry, arrays, claimed) for name, entry in document["analyses"].items()
    }
    return RunResults(results=results, meta=document["meta"])
