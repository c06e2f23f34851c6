"""Known head roles: which attention heads of a model have a named job in the IOI circuit.

A roles file is plain JSON a person can read and edit::

    {"format": "ioi-desktop/head-roles", "version": 1, "model": "gpt2-small",
     "source": "Wang et al. 2022", "roles": [
        {"layer": 9, "head": 9, "role": "name mover", "evidence": "..."}],
     "legend": {"name mover": "attends to the indirect object and copies it"}}

The bundled model ships ``resources/models/ioi-mini/roles.json`` (found by the
project's own analyses); ``resources/roles/gpt2-small.json`` holds the IOI
paper's classes for GPT-2 small. The GUI overlays these on every head heatmap.
This module only reads and validates; it never imports Qt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ioi_desktop.core.errors import FileFormatError
from ioi_desktop.core.paths import bundled_model_dir, resource_path

ROLES_FORMAT = "ioi-desktop/head-roles"
ROLES_VERSION = 1
# A roles file is a few kilobytes; anything far larger is not one.
_MAX_BYTES = 2_000_000

# Model names (as ModelHandle.info.name reports them) whose roles ship with the app.
_GPT2_SMALL_NAMES = frozenset({"gpt2", "gpt2-small", "openai-community/gpt2"})


@dataclass(frozen=True)
class HeadRole:
    """One head with a known role and the evidence for it."""

    layer: int
    head: int
    role: str
    evidence: str = ""


@dataclass(frozen=True)
class HeadRoles:
    """All known roles of one model's heads, with a description of each role."""

    model: str
    source: str
    roles: tuple[HeadRole, ...]
    legend: Mapping[str, str]

    def role_names(self) -> list[str]:
        """Role names in legend order, then any role the legend does not describe."""
        names = [name for name in self.legend if any(r.role == name for r in self.roles)]
        for entry in self.roles:
            if entry.role not in names:
                names.append(entry.role)
        return names

    def by_head(self) -> dict[tuple[int, int], HeadRole]:
        """(layer, head) -> its role; a head listed twice keeps its first role."""
        found: dict[tuple[int, int], HeadRole] = {}
        for entry in self.roles:
            found.setdefault((entry.layer, entry.head), entry)
        return found

    def within(self, n_layers: int, n_heads: int) -> "HeadRoles":
        """Only the heads that exist in a model of this shape."""
        kept = tuple(r for r in self.roles if r.layer < n_layers and r.head < n_heads)
        return HeadRoles(self.model, self.source, kept, self.legend)


def _problem(path: Path, what: str) -> FileFormatError:
    return FileFormatError(
        f"The head-roles file {path} {what}.",
        f"Fix the file or remove it; the expected format is '{ROLES_FORMAT}' version {ROLES_VERSION}.",
    )


def _parse_entry(path: Path, index: int, entry: object) -> HeadRole:
    if not isinstance(entry, dict):
        raise _problem(path, f"has a roles entry #{index} that is not an object")
    for key in ("layer", "head"):
        value = entry.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _problem(path, f"has a roles entry #{index} whose '{key}' is not a non-negative integer")
    role = entry.get("role")
    if not isinstance(role, str) or not role.strip():
        raise _problem(path, f"has a roles entry #{index} without a 'role' name")
    evidence = entry.get("evidence", "")
    if not isinstance(evidence, str):
        # Evidence may be numbers or a small object; keep it readable as text.
        evidence = json.dumps(evidence, sort_keys=True)
    return HeadRole(entry["layer"], entry["head"], role.strip(), evidence)


def parse_roles(data: object, path: Path | str = "<memory>") -> HeadRoles:
    """Validate a decoded roles document and return it as :class:`HeadRoles`."""
    path = Path(path)
    if not isinstance(data, dict):
        raise _problem(path, "is not a JSON object")
    if data.get("format") != ROLES_FORMAT:
        raise _problem(path, f"has format {data.get('format')!r}, not '{ROLES_FORMAT}'")
    if data.get("version") != ROLES_VERSION:
        raise _problem(path, f"has version {data.get('version')!r}, which this app cannot read")
    entries = data.get("roles")
    if not isinstance(entries, list):
        raise _problem(path, "has no 'roles' list")
    legend = data.get("legend", {})
    if not isinstance(legend, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in legend.items()):
        raise _problem(path, "has a 'legend' that is not an object of role name -> description")
    roles = tuple(_parse_entry(path, i, entry) for i, entry in enumerate(entries))
    return HeadRoles(
        model=str(data.get("model", "")),
        source=str(data.get("source", "")),
        roles=roles,
        legend=dict(legend),
    )


def load_roles(path: Path | str) -> HeadRoles:
    """Read and validate a roles JSON file; FileFormatError names what is wrong."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise FileFormatError(f"The head-roles file {path} cannot be read ({exc.strerror}).",
                              "Check that the file exists and is readable.") from exc
    if size > _MAX_BYTES:
        raise _problem(path, f"is {size} bytes, too large for a roles file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _problem(path, f"is not valid UTF-8 JSON ({exc})") from exc
    return parse_roles(data, path)


def roles_path_for_model(model_name: str, model_path: Path | str | None = None) -> Path | None:
    """The roles file that applies to a model, or None when none is known.

    A model folder may carry its own ``roles.json`` (the bundled model does);
    GPT-2 small gets the IOI paper's classes shipped with the app.
    """
    candidates: list[Path] = []
    if model_path is not None:
        candidates.append(Path(model_path) / "roles.json")
    if model_name in ("bundled", bundled_model_dir().name):
        candidates.append(bundled_model_dir() / "roles.json")
    if model_name.lower() in _GPT2_SMALL_NAMES:
        candidates.append(resource_path("roles", "gpt2-small.json"))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None
