"""Prompt-set files: the ``ioi-desktop/pairs`` JSON format, and the same pairs as CSV.

JSON (``docs/pairs-format.md`` documents it for people)::

    {"format": "ioi-desktop/pairs", "version": 1,
     "meta": {"source": "builder", "family": "BABA", ...},
     "pairs": [{"clean": "When John and Mary went to the shops, John gave the bag to",
                "corrupt": "When John and Mary went to the shops, Mary gave the bag to",
                "correct": " Mary", "incorrect": " John",
                "family": "BABA", "template": "...", "io": "Mary", "s": "John", ...}]}

CSV has a header row with the columns ``clean, corrupt, correct, incorrect``
and then any of the optional metadata columns (``family, template, io, s, c,
place, object, corruption, seed``); it holds the pairs only, not the set's
``meta``. Every cell is quoted so the answers' leading spaces survive
spreadsheets.

Readers check the structure (format, version, fields, types, size) and name
the field and the pair index of the first problem; whether the prompts suit a
model is :func:`ioi_desktop.core.prompts.validate`'s job. Writes are atomic
and deterministic (the same set gives the same bytes).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from ioi_desktop.core.atomic import write_text_atomic
from ioi_desktop.core.errors import FileFormatError
from ioi_desktop.core.prompts import META_FIELDS, TEXT_FIELDS, PairMeta, PromptPair, PromptSet

FORMAT = "ioi-desktop/pairs"
VERSION = 1
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_PAIRS = 100_000
COLUMNS = TEXT_FIELDS + META_FIELDS
_FORMAT_HINT = f"Save the set from IOI Desktop, or follow the '{FORMAT}' version {VERSION} format in docs/pairs-format.md."


def _problem(source: str, what: str, hint: str = _FORMAT_HINT) -> FileFormatError:
    return FileFormatError(f"The pairs file {source} {what}.", hint)


# ---------------------------------------------------------------- objects <-> plain data


def pair_to_dict(pair: PromptPair) -> dict[str, Any]:
    return {"clean": pair.clean, "corrupt": pair.corrupt, "correct": pair.correct,
            "incorrect": pair.incorrect, **pair.meta.to_dict()}


def prompt_set_to_dict(prompt_set: PromptSet) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "meta": dict(prompt_set.meta),
            "pairs": [pair_to_dict(p) for p in prompt_set]}


def _pair_from_dict(entry: Any, index: int, source: str) -> PromptPair:
    if not isinstance(entry, dict):
        raise _problem(source, f"has pair {index} that is a {type(entry).__name__}, not an object")
    for key in entry:
        if key not in COLUMNS:
            raise _problem(source, f"has pair {index} with an unknown field {key!r}",
                           "Known fields: " + ", ".join(COLUMNS) + ".")
    for key in TEXT_FIELDS:
        if key not in entry:
            raise _problem(source, f"has pair {index} without the field {key!r}")
    meta: dict[str, Any] = {}
    for key in COLUMNS:
        if key not in entry:
            continue
        value = entry[key]
        if key == "seed":
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise _problem(source, f"has pair {index} whose field 'seed' is {value!r}, not a whole number")
        elif not isinstance(value, str):
            raise _problem(source, f"has pair {index} whose field {key!r} is {type(value).__name__}, not text")
        if key in META_FIELDS:
            meta[key] = value
    return PromptPair(entry["clean"], entry["corrupt"], entry["correct"], entry["incorrect"], PairMeta(**meta))


def prompt_set_from_dict(data: Any, source: str = "<memory>") -> PromptSet:
    """Validate the structure of a decoded pairs document and build the :class:`PromptSet`."""
    if not isinstance(data, dict):
        raise _problem(source, "is not a JSON object")
    if data.get("format") != FORMAT:
        raise _problem(source, f"has format {data.get('format')!r}, not {FORMAT!r}")
    version = data.get("version")
    if version != VERSION or isinstance(version, bool):
        raise _problem(source, f"has version {version!r}; this app reads version {VERSION}",
                       "Open it with the IOI Desktop version that wrote it, or update IOI Desktop.")
    unknown = [key for key in data if key not in ("format", "version", "meta", "pairs")]
    if unknown:
        raise _problem(source, f"has an unknown top-level field {unknown[0]!r}")
    meta = data.get("meta", {})
    if not isinstance(meta, dict):
        raise _problem(source, f"has a 'meta' field that is {type(meta).__name__}, not an object")
    pairs = data.get("pairs")
    if not isinstance(pairs, list):
        raise _problem(source, "has no 'pairs' list")
    if len(pairs) > MAX_PAIRS:
        raise _problem(source, f"has {len(pairs)} pairs, more than {MAX_PAIRS}", "Split it into smaller sets.")
    return PromptSet(tuple(_pair_from_dict(p, i, source) for i, p in enumerate(pairs)), meta)


# ---------------------------------------------------------------- text formats


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in a pairs file")


def prompt_set_to_json(prompt_set: PromptSet) -> str:
    try:
        return json.dumps(prompt_set_to_dict(prompt_set), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise FileFormatError(f"The prompt set cannot be saved as JSON ({exc}).",
                              "Its 'meta' may hold only text, numbers, true/false, null, lists and objects.") from exc


def prompt_set_from_json(text: str, source: str = "<memory>") -> PromptSet:
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise _problem(source, f"is not valid JSON ({exc})") from exc
    return prompt_set_from_dict(data, source)


def prompt_set_to_csv(prompt_set: PromptSet) -> str:
    """The pairs as CSV: the four text columns, then the metadata columns any pair uses."""
    used = [key for key in META_FIELDS if any(key in p.meta.to_dict() for p in prompt_set)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(TEXT_FIELDS + tuple(used))
    for pair in prompt_set:
        row = pair_to_dict(pair)
        writer.writerow([row.get(key, "") for key in TEXT_FIELDS + tuple(used)])
    return buffer.getvalue()


def prompt_set_from_csv(text: str, source: str = "<memory>") -> PromptSet:
    """Pairs from CSV with a header row; empty metadata cells mean 'not known'."""
    text = text.removeprefix("\ufeff")  # spreadsheets often save UTF-8 with a byte-order mark
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as exc:
        raise _problem(source, f"is not valid CSV ({exc})") from exc
    if not rows:
        raise _problem(source, "is empty", "The first row must name the columns: " + ", ".join(TEXT_FIELDS) + ".")
    header = [cell.strip() for cell in rows[0]]
    for column in header:
        if column not in COLUMNS:
            raise _problem(source, f"has an unknown column {column!r}", "Known columns: " + ", ".join(COLUMNS) + ".")
    if len(set(header)) != len(header):
        raise _problem(source, "names a column twice in its header row")
    for column in TEXT_FIELDS:
        if column not in header:
            raise _problem(source, f"has no {column!r} column",
                           "The first row must name the columns: " + ", ".join(TEXT_FIELDS) + ".")
    body = [row for row in rows[1:] if row]
    if len(body) > MAX_PAIRS:
        raise _problem(source, f"has {len(body)} pairs, more than {MAX_PAIRS}", "Split it into smaller sets.")
    entries = []
    for index, row in enumerate(body):
        if len(row) != len(header):
            raise _problem(source, f"has pair {index} with {len(row)} cells but {len(header)} columns")
        entry: dict[str, Any] = {}
        for column, cell in zip(header, row):
            if column in TEXT_FIELDS:
                entry[column] = cell
            elif column == "seed" and cell.strip():
                try:
                    entry[column] = int(cell)
                except ValueError:
                    raise _problem(source, f"has pair {index} whose field 'seed' is {cell!r}, not a whole number") from None
            elif cell:
                entry[column] = cell
        entries.append(entry)
    return PromptSet(tuple(_pair_from_dict(e, i, source) for i, e in enumerate(entries)), {"source": "csv"})


# ---------------------------------------------------------------- files


def _is_csv(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


def write_pairs(path: str | Path, prompt_set: PromptSet) -> Path:
    """Save atomically, as CSV when the name ends in .csv and as JSON otherwise."""
    path = Path(path)
    text = prompt_set_to_csv(prompt_set) if _is_csv(path) else prompt_set_to_json(prompt_set)
    return write_text_atomic(path, text)


def read_pairs(path: str | Path) -> PromptSet:
    """Read a JSON or CSV (by the .csv suffix) pairs file; FileFormatError names the problem."""
    path = Path(path)
    source = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise _problem(source, f"is {size} bytes, more than the {MAX_FILE_BYTES} a pairs file may have",
                           "Split it into smaller sets.")
        raw = path.read_bytes()
    except IsADirectoryError as exc:
        raise FileFormatError(f"{path} is a folder, not a pairs file.", "Choose a .json or .csv file.") from exc
    except OSError as exc:
        raise FileFormatError(f"The pairs file {path} cannot be read ({exc.strerror or exc}).",
                              "Check that the file exists and is readable.") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _problem(source, f"is not UTF-8 text (byte {exc.start})", "Save it as UTF-8.") from exc
    if _is_csv(path):
        return prompt_set_from_csv(text, source)
    return prompt_set_from_json(text, source)
