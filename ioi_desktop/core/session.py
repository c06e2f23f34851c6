"""Session files: everything needed to reopen an analysis without recomputing.

A session is one file (``*.ioisession``): a zip archive a person can open with
any unzip tool, holding

- ``session.json``: format/version, the model spec (and the loaded model's
  info), the prompt set (in the pair-file JSON format), the run settings
  (analyses, options), the selection, and the window layout (opaque strings
  the GUI produced);
- ``results/results.json`` + ``results/results.npz``: the run results in the
  results-file format (``core.results``), when there are results.

It is written atomically (``core.atomic``): a failed save leaves the previous
file intact. Reading validates the format and version and raises
``FileFormatError`` naming the problem. A session whose model is not on this
machine still opens; ``model_availability`` says so, and the app shows the
results read-only.
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ioi_desktop import __version__
from ioi_desktop.core.atomic import write_bytes_atomic
from ioi_desktop.core.errors import FileFormatError, IOIError

FORMAT = "ioi-desktop/session"
VERSION = 1
SUFFIX = ".ioisession"
_MANIFEST = "session.json"
_RESULTS_DIR = "results/"
# Sessions hold small models' results; refuse archives that would unpack to something absurd.
_MAX_UNPACKED_BYTES = 4 * 2**30


@dataclass(frozen=True)
class Session:
    """The contents of a session file.

    ``model_spec`` is ``ModelSpec.to_dict()``; ``prompt_set`` a
    ``core.prompts.PromptSet``; ``results`` a ``core.results.RunResults`` or
    None; ``settings``, ``selection`` and ``layout`` plain JSON-able dicts.
    """

    model_spec: Mapping[str, Any]
    prompt_set: Any
    settings: Mapping[str, Any] = field(default_factory=dict)
    selection: Mapping[str, Any] = field(default_factory=dict)
    layout: Mapping[str, Any] = field(default_factory=dict)
    results: Any = None
    model_info: Mapping[str, Any] | None = None


def save_session(path: str | Path, session: Session) -> Path:
    """Write ``session`` to ``path`` atomically; returns the path written."""
    from ioi_desktop.core.pairfiles import prompt_set_to_dict

    target = Path(path)
    if target.suffix != SUFFIX:
        target = target.with_name(target.name + SUFFIX)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "app_version": __version__,
        "model_spec": dict(session.model_spec),
        "model_info": dict(session.model_info) if session.model_info else None,
        "prompt_set": prompt_set_to_dict(session.prompt_set),
        "settings": dict(session.settings),
        "selection": dict(session.selection),
        "layout": dict(session.layout),
        "has_results": session.results is not None,
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(_MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False))
        if session.results is not None:
            _add_results(archive, session.results, target)
    return write_bytes_atomic(target, buffer.getvalue())


def _add_results(archive: zipfile.ZipFile, results: Any, target: Path) -> None:
    """The results files, written through a temporary folder, into the archive under results/."""
    from ioi_desktop.core.results import save_results

    try:
        with tempfile.TemporaryDirectory(prefix="ioi-session-") as folder:
            save_results(results, folder)
            for file in sorted(Path(folder).iterdir()):
                archive.write(file, _RESULTS_DIR + file.name)
    except (FileFormatError, OSError) as exc:
        # A full or unwritable temporary folder: say which file the user was saving.
        cause = exc.__cause__ if isinstance(exc, FileFormatError) else exc
        reason = (cause.strerror or str(cause)) if isinstance(cause, OSError) else exc.message
        raise FileFormatError(
            f"Saving {target.name} failed while preparing its results ({reason}); the previous file is unchanged.",
            "Free some disk space (also in the temporary folder) or choose another folder, then save again.",
        ) from exc


def load_session(path: str | Path) -> Session:
    """Read a session file; raises FileFormatError naming what is wrong."""
    source = Path(path)
    if not source.is_file():
        raise FileFormatError(f"The session file {source} does not exist.", "Check the path, or choose another file.")
    try:
        with zipfile.ZipFile(source) as archive:
            if sum(info.file_size for info in archive.infolist()) > _MAX_UNPACKED_BYTES:
                raise FileFormatError(
                    f"{source.name} unpacks to more than {_MAX_UNPACKED_BYTES // 2**30} GiB.",
                    "This is not a session saved by IOI Desktop; choose another file.",
                )
            manifest = _read_manifest(archive, source)
            prompt_set = _read_prompt_set(manifest, source)
            results = None
            if manifest.get("has_results"):
                results = _read_results(archive, source)
    except zipfile.BadZipFile as exc:
        raise FileFormatError(
            f"{source.name} is not a session file (it is not a zip archive).",
            "Choose a file saved with File > Save session (*.ioisession).",
        ) from exc
    except OSError as exc:
        raise FileFormatError(f"{source.name} could not be read: {exc.strerror or exc}.", "Check the file's permissions.") from exc
    return Session(
        model_spec=_mapping(manifest, "model_spec", source),
        prompt_set=prompt_set,
        settings=_mapping(manifest, "settings", source),
        selection=_mapping(manifest, "selection", source),
        layout=_mapping(manifest, "layout", source),
        results=results,
        model_info=manifest.get("model_info") if isinstance(manifest.get("model_info"), dict) else None,
    )


def model_availability(model_spec: Mapping[str, Any]) -> tuple[bool, str]:
    """(True, "") if the session's model can be loaded here, else (False, why)."""
    from ioi_desktop.core.models import ModelSpec, resolve_source

    spec = ModelSpec.from_dict(dict(model_spec))
    if spec.allow_download:
        # Availability must not depend on reaching the network.
        spec = ModelSpec.from_dict({**spec.to_dict(), "allow_download": False})
    try:
        resolve_source(spec)
    except IOIError as error:
        return False, error.message
    return True, ""


def _read_manifest(archive: zipfile.ZipFile, source: Path) -> dict:
    try:
        raw = archive.read(_MANIFEST)
    except KeyError as exc:
        raise FileFormatError(
            f"{source.name} has no {_MANIFEST}, so it is not an IOI Desktop session.",
            "Choose a file saved with File > Save session.",
        ) from exc
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FileFormatError(f"{source.name}: {_MANIFEST} is not valid JSON ({exc}).", "The file is damaged; use another copy.") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise FileFormatError(f"{source.name} is not an IOI Desktop session file.", "Choose a file saved with File > Save session.")
    version = manifest.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version > VERSION or version < 1:
        raise FileFormatError(
            f"{source.name} is a session of format version {version}; this IOI Desktop reads version {VERSION}.",
            "Open it with the IOI Desktop version that saved it, or update IOI Desktop.",
        )
    return manifest


def _mapping(manifest: dict, key: str, source: Path) -> dict:
    value = manifest.get(key, {})
    if not isinstance(value, dict):
        raise FileFormatError(f"{source.name}: '{key}' must be a JSON object.", "The file is damaged; use another copy.")
    return value


def _read_prompt_set(manifest: dict, source: Path) -> Any:
    from ioi_desktop.core.pairfiles import prompt_set_from_dict

    if "prompt_set" not in manifest:
        raise FileFormatError(f"{source.name} has no prompt set.", "The file is damaged; use another copy.")
    return prompt_set_from_dict(manifest["prompt_set"], source=f"{source.name} (prompt set)")


def _read_results(archive: zipfile.ZipFile, source: Path) -> Any:
    from ioi_desktop.core.results import load_results

    members = [name for name in archive.namelist() if name.startswith(_RESULTS_DIR) and not name.endswith("/")]
    if not members:
        raise FileFormatError(f"{source.name} says it holds results but has none.", "The file is damaged; use another copy.")
    with tempfile.TemporaryDirectory(prefix="ioi-session-") as folder:
        for name in members:
            leaf = Path(name).name
            # Only plain file names under results/: never let an archive path escape the folder.
            if not leaf or leaf != name[len(_RESULTS_DIR):]:
                raise FileFormatError(f"{source.name} holds an unexpected entry {name!r}.", "The file is damaged; use another copy.")
            (Path(folder) / leaf).write_bytes(archive.read(name))
        return load_results(folder)
