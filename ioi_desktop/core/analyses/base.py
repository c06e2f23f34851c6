"""The contract every analysis module follows: typed Options, a typed Result, ``run``.

An analysis module (``ioi_desktop/core/analyses/<name>.py``) exposes:

- ``NAME``: its registry name (``"logit_diff"``, ``"patching"``, ...);
- ``Options``: ``class Options(AnalysisOptions, analysis=NAME)``, a frozen dataclass whose
  fields are made with :func:`option` (default, bounds or choices, one line of
  help). The options dialog, the CLI's ``--set`` / ``--list-options``, the
  settings and session files are all derived from it;
- ``Result``: ``class Result(AnalysisResult, analysis=NAME, title=...)``, a frozen dataclass whose
  fields are (1) arrays, annotated with jaxtyping (``Float32[np.ndarray,
  "layer head"]``: dtype and named axes, TransformerLens's axis words) and
  made with :func:`array`, the field name being the array's name in
  ``results.npz``; (2) axis labels made with :func:`labels` (token strings,
  role names, component names as data; positions as :class:`Positions`);
  (3) plain metadata made with :func:`meta`. Results files, sessions and
  ``docs/results-format.md`` are derived from it;
- ``hooks_needed(ctx, options) -> set[str]`` and ``count_units(ctx, options) -> int``;
- ``run(ctx, options, progress) -> Result``: pure computation from the model
  handle and the tokenized prompt set; it calls ``progress.check_cancelled()``
  between units of work, ``progress.advance(...)`` after each, and
  ``progress.rows(field, index, values, shape)`` when a block of an array
  field (of full shape ``shape``) is finished, so views fill in while it runs. Streamed rows are checked against
  the field's type (:meth:`AnalysisResult.check_rows`).

Analysis modules import torch only inside functions, so that the types can be
imported (by the GUI, at startup) without it.

Results leave ``core`` as float32/int32 C-contiguous numpy arrays with no NaN.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Protocol, Sequence

import numpy as np

from ioi_desktop.core.errors import AnalysisError

# ------------------------------------------------------------------ progress


class Progress(Protocol):
    """What the runner hands to an analysis: progress, cancellation, partial rows."""

    def advance(self, units: int = 1, message: str = "") -> None:
        """Report ``units`` more units of work done."""

    def set_total(self, units: int) -> None:
        """Declare how many units this analysis will report in all."""

    def check_cancelled(self) -> None:
        """Raise ``errors.Cancelled`` if the user asked to stop."""

    def rows(self, array: str, index: tuple[int, ...] | int, values: np.ndarray, shape: tuple[int, ...]) -> None:
        """Stream finished rows of the array field ``array`` (e.g. ``patch_head_z`` row ``layer``)
        whose full shape will be ``shape``."""


# ------------------------------------------------------------------ options


@dataclass(frozen=True)
class OptionSpec:
    """One option of one analysis, as the dialog, the CLI and the docs show it.

    ``kind`` is ``"int"``, ``"float"``, ``"bool"``, ``"choice"`` (one of
    ``choices``) or ``"choices"`` (a non-empty subset of ``choices``, in the
    order given) or ``"text"`` (free text, e.g. a head list ``"9.9,9.6"``, that
    the analysis checks against the model when it runs). ``none_text`` is set when the option may be None ("automatic",
    "the model's size"), and says what None means.
    """

    analysis: str
    name: str
    kind: str
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    none_text: str = ""

    @property
    def key(self) -> str:
        """``"<analysis>.<option>"``, as the CLI's ``--set`` names it."""
        return f"{self.analysis}.{self.name}"

    def allowed(self) -> str:
        """The allowed values, in words."""
        if self.kind in ("int", "float"):
            whole = "a whole number" if self.kind == "int" else "a number"
            if self.low is not None and self.high is not None:
                text = f"{whole} from {_num(self.low)} to {_num(self.high)}"
            elif self.low is not None:
                text = f"{whole} of at least {_num(self.low)}"
            else:
                text = whole
        elif self.kind == "bool":
            text = "true or false"
        elif self.kind == "choice":
            text = "one of " + ", ".join(self.choices)
        elif self.kind == "text":
            text = "text"
        else:
            text = "a comma-separated list of " + ", ".join(self.choices)
        return text + (f", or 'auto' ({self.none_text})" if self.none_text else "")

    def default_text(self) -> str:
        return format_option_value(self, self.default)

    def check(self, value: Any) -> Any:
        """``value`` in canonical form (tuples in ``choices`` order), or AnalysisError naming option, value and range."""
        if value is None and self.none_text:
            return None
        ok = True
        if self.kind == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif self.kind == "float":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
            value = float(value) if ok else value
        elif self.kind == "bool":
            ok = isinstance(value, bool)
        elif self.kind == "choice":
            ok = isinstance(value, str) and value in self.choices
        elif self.kind == "text":
            ok = isinstance(value, str)
            value = value.strip() if ok else value
        elif self.kind == "choices":
            if isinstance(value, str):
                value = [part.strip() for part in value.split(",") if part.strip()]
            ok = isinstance(value, (list, tuple)) and bool(value)
            unknown = [v for v in value if v not in self.choices] if ok else []
            if unknown:
                raise AnalysisError(
                    f"The option {self.key} has {unknown[0]!r}, which is not one of {', '.join(self.choices)}.",
                    "Give a comma-separated list of those names, or leave the option out for all of them.",
                )
            # The given order is kept (it is the order of work); repeats are dropped.
            value = tuple(dict.fromkeys(value)) if ok else value
        if ok and self.kind in ("int", "float"):
            ok = (self.low is None or value >= self.low) and (self.high is None or value <= self.high)
        if not ok:
            raise AnalysisError(
                f"The option {self.key} must be {self.allowed()}, not {_show(value)}.",
                f"Leave it out for the default ({self.default_text()}), or see 'ioi-desktop analyze --list-options'.",
            )
        return value

    def parse(self, text: str) -> Any:
        """A value from command-line text (``--set patching.sweeps=head_z,resid_pre``), checked."""
        text = text.strip()
        if self.none_text and text.lower() in ("auto", "none", "default"):
            return None
        value: Any = text
        if self.kind == "int" and re.fullmatch(r"[+-]?\d+", text):
            value = int(text)
        elif self.kind == "float":
            try:
                value = float(text)
            except ValueError:
                value = text
        elif self.kind == "choices" and text.lower() == "all":
            value = self.choices
        elif self.kind == "bool" and text.lower() in ("true", "false", "yes", "no", "1", "0", "on", "off"):
            value = text.lower() in ("true", "yes", "1", "on")
        return self.check(value)


def format_option_value(spec: OptionSpec, value: Any) -> str:
    if value is None:
        return f"auto ({spec.none_text})" if spec.none_text else "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "all" if spec.kind == "choices" and set(value) == set(spec.choices) else ",".join(value)
    return str(value)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        value = ",".join(map(str, value))
    return repr(value)


def option(default: Any, help: str, *, low: float | None = None, high: float | None = None,
           choices: Sequence[str] = (), none_text: str = "") -> Any:
    """A field of an ``Options`` dataclass: its default, bounds or choices, and one line of help."""
    return field(default=default, metadata={"option": True, "help": help, "low": low, "high": high,
                                           "choices": tuple(choices), "none_text": none_text})


@typing.dataclass_transform(frozen_default=True, field_specifiers=(field,))
class AnalysisOptions:
    """Base of every analysis's ``Options``: ``class Options(AnalysisOptions, analysis=NAME)``.

    A subclass is made a frozen dataclass. Values are checked when an
    instance is made (``Options(top_k=0)`` raises AnalysisError naming the
    option, the value and the allowed range), so an ``Options`` object is
    always valid.
    """

    analysis: ClassVar[str] = ""

    def __init_subclass__(cls, analysis: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.analysis = analysis or cls.analysis
        dataclass(frozen=True)(cls)

    def __post_init__(self) -> None:
        for spec in self.specs():
            object.__setattr__(self, spec.name, spec.check(getattr(self, spec.name)))

    @classmethod
    def specs(cls) -> list[OptionSpec]:
        # Computed once per class (type hints are resolved from strings each time otherwise).
        cached = cls.__dict__.get("_specs_cache")
        if cached is None:
            cached = tuple(cls._find_specs())
            cls._specs_cache = cached
        return list(cached)

    @classmethod
    def _find_specs(cls) -> list[OptionSpec]:
        hints = typing.get_type_hints(cls)
        found = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if not f.metadata.get("option"):
                continue
            found.append(OptionSpec(
                analysis=cls.analysis, name=f.name, kind=_option_kind(hints[f.name], f.metadata["choices"]),
                default=f.default, help=f.metadata["help"], low=f.metadata["low"], high=f.metadata["high"],
                choices=f.metadata["choices"], none_text=f.metadata["none_text"],
            ))
        return found

    @classmethod
    def spec(cls, name: str) -> OptionSpec:
        for spec in cls.specs():
            if spec.name == name:
                return spec
        raise AnalysisError(
            f"The analysis {cls.analysis} has no option {name!r}.",
            f"Its options are: {', '.join(s.name for s in cls.specs()) or 'none'}.",
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, *, strict: bool = True):
        """Options from :meth:`to_dict`'s form. ``strict=False`` (settings, sessions an older
        version or a hand edit wrote) drops unknown keys and bad values instead of refusing."""
        values: dict[str, Any] = {}
        for key, value in dict(data or {}).items():
            if not strict and key not in {s.name for s in cls.specs()}:
                continue
            spec = cls.spec(key)
            if isinstance(value, list):
                value = tuple(value)
            try:
                values[key] = spec.check(value)
            except AnalysisError:
                if strict:
                    raise
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (tuples as lists)."""
        return {spec.name: _plain(getattr(self, spec.name)) for spec in self.specs()}

    def changed(self) -> dict[str, Any]:
        """Only the options that differ from their defaults."""
        return {spec.name: _plain(getattr(self, spec.name)) for spec in self.specs()
                if getattr(self, spec.name) != spec.default}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _option_kind(hint: Any, choices: tuple[str, ...]) -> str:
    base = _strip_optional(hint)
    if typing.get_origin(base) is tuple:
        return "choices"
    if base is bool:
        return "bool"
    if base is int:
        return "int"
    if base is float:
        return "float"
    if base is str and choices:
        return "choice"
    if base is str:
        return "text"
    raise TypeError(f"unsupported option type {hint!r}")


def _strip_optional(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return hint


def parse_assignments(assignments: Sequence[str], option_types: Mapping[str, type]) -> dict[str, dict[str, Any]]:
    """``["patching.sweeps=head_z,resid_pre", ...]`` -> ``{"patching": {"sweeps": (...)}}``, checked.

    ``option_types`` maps analysis name -> its ``Options`` class. Bad input
    raises AnalysisError with one sentence naming the option and the value.
    """
    parsed: dict[str, dict[str, Any]] = {}
    for item in assignments:
        key, sep, text = item.partition("=")
        analysis, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise AnalysisError(
                f"--set {item!r} is not of the form ANALYSIS.OPTION=VALUE.",
                "For example: --set patching.sweeps=head_z,resid_pre",
            )
        if analysis not in option_types:
            raise AnalysisError(f"--set {item!r} names no analysis called {analysis!r}.",
                                f"Choose from: {', '.join(option_types)}.")
        spec = option_types[analysis].spec(name)
        parsed.setdefault(analysis, {})[name] = spec.parse(text)
    return parsed


# ------------------------------------------------------------------ results


@dataclass(frozen=True)
class Positions:
    """Labels of a position axis, as data: per entry its index, token and role.

    ``index[i]`` is the absolute position (None when entries are roles of
    prompts of different lengths), ``token[i]`` the token there in prompt 0
    (None when prompts differ in length), ``role[i]`` the named role (IO, S1,
    S2, END, ...) every prompt has there, or None.
    """

    index: tuple[int | None, ...]
    token: tuple[str | None, ...]
    role: tuple[str | None, ...]

    def __post_init__(self) -> None:
        if not len(self.index) == len(self.token) == len(self.role):
            raise ValueError("Positions: index, token and role must have one entry per position")

    def __len__(self) -> int:
        return len(self.index)

    def text(self, i: int) -> str:
        """``"3: Mary"``, ``"14: to (END)"``, ``"S2"``: the label files have always carried."""
        index, token, role = self.index[i], self.token[i], self.role[i]
        if index is None:
            return role or str(i)
        text = str(index) + (f": {token}" if token is not None else "")
        return text + (f" ({role})" if role is not None else "")

    def texts(self) -> list[str]:
        return [self.text(i) for i in range(len(self))]

    def to_dict(self) -> dict[str, list]:
        return {"index": list(self.index), "token": list(self.token), "role": list(self.role)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Positions:
        return cls(tuple(data["index"]), tuple(data["token"]), tuple(data["role"]))

    @classmethod
    def of_set(cls, batch: Any) -> Positions:
        """The ``pos`` axis of a tokenized set: index, prompt 0's token (equal lengths only), shared role."""
        width = int(np.asarray(batch.clean_tokens).shape[1])
        roles_here: dict[int, str] = {}
        for role, positions in batch.roles.items():
            positions = np.asarray(positions)
            if positions.size and (positions >= 0).all() and (positions == positions[0]).all():
                roles_here.setdefault(int(positions[0]), role)
        tokens = tuple(batch.str_tokens[0][pos] if batch.equal_length else None for pos in range(width))
        return cls(tuple(range(width)), tokens, tuple(roles_here.get(pos) for pos in range(width)))

    @classmethod
    def from_texts(cls, texts: Sequence[str]) -> Positions:
        """Parse labels written as text (results files of format version 1)."""
        index: list[int | None] = []
        token: list[str | None] = []
        role: list[str | None] = []
        for text in texts:
            match = re.fullmatch(r"(\d+)(?:: (.*?))?(?: \(([^()]+)\))?", text, flags=re.DOTALL)
            if match is None:
                index.append(None), token.append(None), role.append(text)
            else:
                index.append(int(match.group(1))), token.append(match.group(2)), role.append(match.group(3))
        return cls(tuple(index), tuple(token), tuple(role))


@dataclass(frozen=True)
class ArraySpec:
    """One array field of a Result: its name in results.npz, dtype, named axes, help."""

    name: str
    dtype: str
    axes: tuple[str, ...]
    help: str


@dataclass(frozen=True)
class LabelSpec:
    """One labels field: which axis it labels, and whether it is a :class:`Positions`."""

    name: str
    axis: str
    positions: bool
    help: str


@dataclass(frozen=True)
class MetaSpec:
    name: str
    help: str


def array(help: str) -> Any:
    """An array field of a Result (None when not computed, e.g. a sweep that was not selected)."""
    return field(default=None, metadata={"kind": "array", "help": help})


def labels(axis: str, help: str) -> Any:
    """A field labelling the entries of axis ``axis`` (a tuple of strings, or Positions)."""
    return field(default=None, metadata={"kind": "labels", "axis": axis, "help": help})


def meta(help: str, default: Any = None) -> Any:
    """A plain metadata field (numbers, text, lists, dicts of those)."""
    return field(default=default, metadata={"kind": "meta", "help": help})


@typing.dataclass_transform(frozen_default=True, field_specifiers=(field,))
class AnalysisResult:
    """Base of every analysis's ``Result``: ``class Result(AnalysisResult, analysis=NAME, title="...")``.

    A subclass is made a frozen dataclass (compared by identity: its fields are
    arrays); see the module docstring for its fields.

    Made instances are checked: every array has its annotated dtype and
    number of axes, is C-contiguous and finite; one axis name has one size
    across all arrays and labels of the result. The generic views
    ``arrays``/``axes``/``labels``/``meta`` serve the results files.
    """

    analysis: ClassVar[str] = ""
    title: ClassVar[str] = ""

    def __init_subclass__(cls, analysis: str = "", title: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.analysis = analysis or cls.analysis
        cls.title = title or cls.title
        dataclass(frozen=True, eq=False)(cls)

    def __post_init__(self) -> None:
        sizes: dict[str, tuple[int, str]] = {}
        for spec in self.array_specs():
            value = getattr(self, spec.name)
            if value is None:
                continue
            if not isinstance(value, np.ndarray):
                raise TypeError(f"{self.analysis}.{spec.name} must be a numpy array, not {type(value).__name__}")
            if value.dtype.name != spec.dtype:
                raise TypeError(f"{self.analysis}.{spec.name} must be {spec.dtype}, not {value.dtype}")
            if value.ndim != len(spec.axes):
                raise ValueError(f"{self.analysis}.{spec.name} has {value.ndim} axes, expected {spec.axes}")
            if not value.flags.c_contiguous:
                object.__setattr__(self, spec.name, np.ascontiguousarray(value))
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise ValueError(f"{self.analysis}.{spec.name} contains NaN or infinity")
            for axis, size in zip(spec.axes, value.shape):
                _same_size(sizes, axis, size, spec.name, self.analysis)
        for spec in self.label_specs():
            value = getattr(self, spec.name)
            if value is None:
                continue
            if not spec.positions and isinstance(value, list):
                object.__setattr__(self, spec.name, value := tuple(value))
            _same_size(sizes, spec.axis, len(value), spec.name, self.analysis)

    # --- the schema, from the annotations

    @classmethod
    def array_specs(cls) -> list[ArraySpec]:
        return _schema(cls)[0]

    @classmethod
    def label_specs(cls) -> list[LabelSpec]:
        return _schema(cls)[1]

    @classmethod
    def meta_specs(cls) -> list[MetaSpec]:
        return _schema(cls)[2]

    @classmethod
    def array_spec(cls, name: str) -> ArraySpec:
        for spec in cls.array_specs():
            if spec.name == name:
                return spec
        raise KeyError(f"{cls.analysis} has no array {name!r}")

    @classmethod
    def check_rows(cls, name: str, index: tuple[int, ...], values: np.ndarray,
                   shape: tuple[int, ...]) -> np.ndarray:
        """A streamed block of array field ``name`` (full ``shape``) at leading ``index``, checked
        against the field's type: dtype, number of axes, and that the block fits at ``index``."""
        spec = cls.array_spec(name)
        values = np.ascontiguousarray(values) if np.ndim(values) else np.asarray(values)
        if values.dtype.name != spec.dtype:
            raise TypeError(f"rows of {cls.analysis}.{name} must be {spec.dtype}, not {values.dtype}")
        if len(shape) != len(spec.axes) or tuple(shape[len(index):]) != values.shape or not all(
                0 <= i < n for i, n in zip(index, shape)):
            raise ValueError(f"rows of {cls.analysis}.{name} {values.shape} at {index} do not fit an array "
                             f"of shape {tuple(shape)} over {spec.axes}")
        return values

    # --- generic views

    @property
    def name(self) -> str:
        return self.analysis

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """The computed arrays by name (None fields left out), in field order."""
        return {s.name: getattr(self, s.name) for s in self.array_specs() if getattr(self, s.name) is not None}

    @property
    def axes(self) -> dict[str, tuple[str, ...]]:
        return {s.name: s.axes for s in self.array_specs() if getattr(self, s.name) is not None}

    @property
    def labels(self) -> dict[str, list[str]]:
        """Axis name -> label text per entry (Positions rendered as text)."""
        found = {}
        for spec in self.label_specs():
            value = getattr(self, spec.name)
            if value is not None:
                found[spec.axis] = value.texts() if spec.positions else list(value)
        return found

    @property
    def positions(self) -> dict[str, Positions]:
        """Axis name -> Positions, for the position axes this result labels."""
        return {s.axis: getattr(self, s.name) for s in self.label_specs()
                if s.positions and getattr(self, s.name) is not None}

    @property
    def meta(self) -> dict[str, Any]:
        return {s.name: getattr(self, s.name) for s in self.meta_specs() if getattr(self, s.name) is not None}

    def axis_labels(self, axis: str) -> list[str] | None:
        return self.labels.get(axis)


def _same_size(sizes: dict[str, tuple[int, str]], axis: str, size: int, where: str, analysis: str) -> None:
    if axis in sizes and sizes[axis][0] != size:
        raise ValueError(f"{analysis}: axis {axis!r} has {size} entries in {where} but {sizes[axis][0]} "
                         f"in {sizes[axis][1]}")
    sizes.setdefault(axis, (size, where))


_SCHEMAS: dict[type, tuple[list[ArraySpec], list[LabelSpec], list[MetaSpec]]] = {}


def _schema(cls: type) -> tuple[list[ArraySpec], list[LabelSpec], list[MetaSpec]]:
    if cls not in _SCHEMAS:
        import jaxtyping

        hints = typing.get_type_hints(cls)
        arrays_, labels_, metas = [], [], []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            kind = f.metadata.get("kind")
            if isinstance(getattr(AnalysisResult, f.name, None), property):
                raise TypeError(f"{cls.__name__}.{f.name} hides AnalysisResult.{f.name}; choose another name")
            if kind == "array":
                hint = _strip_optional(hints[f.name])
                if not (isinstance(hint, type) and issubclass(hint, jaxtyping.AbstractArray)):
                    raise TypeError(f"{cls.__name__}.{f.name}: array fields need a jaxtyping annotation")
                (dtype,) = hint.dtypes
                arrays_.append(ArraySpec(f.name, dtype, tuple(hint.dim_str.split()), f.metadata["help"]))
            elif kind == "labels":
                positions = _strip_optional(hints[f.name]) is Positions
                labels_.append(LabelSpec(f.name, f.metadata["axis"], positions, f.metadata["help"]))
            elif kind == "meta":
                metas.append(MetaSpec(f.name, f.metadata["help"]))
            else:
                raise TypeError(f"{cls.__name__}.{f.name} must be made with array(), labels() or meta()")
        _SCHEMAS[cls] = (arrays_, labels_, metas)
    return _SCHEMAS[cls]


# ------------------------------------------------------------------ context


class CachedRuns(Protocol):
    """One clean and one corrupted forward pass shared by all analyses of a run.

    The runner asks every selected analysis module for ``hooks_needed(ctx,
    options)`` (a set of TransformerLens hook names, e.g.
    ``blocks.3.attn.hook_z``) before running anything, then runs the model once
    on the clean tokens and once on the corrupted tokens caching exactly the
    union. Asking for a hook outside that union triggers one extra forward
    (counted in ``forward_count``), so results stay correct even if a module
    under-declares.
    """

    forward_count: int

    def cache(self, which: str):
        """``transformer_lens.ActivationCache`` of the ``"clean"`` or ``"corrupt"`` run."""

    def logits(self, which: str):
        """Logits ``[prompt, pos, d_vocab]`` (torch, float32) of that run."""

    def require(self, which: str, names: set[str]) -> None:
        """Make sure these hooks are in that run's cache (extra forward if missing)."""


@dataclass(frozen=True)
class AnalysisContext:
    """Everything an analysis may read besides its options.

    ``handle`` is a ``core.models.ModelHandle`` (``.model`` the processed
    TransformerBridge, ``.tokenizer``, ``.info``), ``batch`` a
    ``core.prompts.TokenizedSet``, ``runs`` the shared cached runs,
    ``batch_size`` the run's prompts per forward pass (None: automatic).
    """

    handle: Any
    batch: Any
    runs: CachedRuns
    batch_size: int | None = None
