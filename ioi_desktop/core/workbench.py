"""The app's state without Qt (napari's ViewerModel idea), with typed events (glue's hub).

A :class:`Workbench` holds what the desktop app works on: the model spec and
the loaded handle, the prompt set, every analysis's ``Options`` and the run
settings (which analyses, batch size), the one :class:`SelectionModel`, and a
:class:`ResultsStore` with the finished results of the last run (each with
its :class:`Provenance`) and the partial grids of the run in progress. The Qt
window shows it and forwards the worker's reports into it; panels subscribe
to the events of the result types they render. Sessions and settings load
and save through it. Nothing here imports Qt or torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ioi_desktop.core.analyses import analysis_names, default_options, option_types
from ioi_desktop.core.analyses.base import AnalysisOptions
from ioi_desktop.core.events import EventHub
from ioi_desktop.core.selection import SelectionModel

MAX_BATCH_SIZE = 4096

# Below this clean-corrupted gap (logits) normalised scores are mostly noise (see core.analyses.metrics).
from ioi_desktop.core.grids import SMALL_GAP_THRESHOLD, small_gap_warning  # noqa: E402,F401

# Options that change how fast a result is computed, not what it is.
_SPEED_ONLY_OPTIONS = frozenset({"batch_size"})

# ------------------------------------------------------------------ events


@dataclass(frozen=True)
class ModelChanged:
    handle: Any


@dataclass(frozen=True)
class PromptSetChanged:
    prompt_set: Any


@dataclass(frozen=True)
class SettingsChanged:
    """Analysis options or run settings changed (``analysis`` None: the run settings)."""

    analysis: str | None


@dataclass(frozen=True)
class RunStarted:
    analyses: tuple[str, ...]
    # True when the run adds to the results shown (e.g. an ablation of the pinned heads):
    # only the panels of ``analyses`` clear.
    keep_others: bool = False


@dataclass(frozen=True)
class RowsAdded:
    """Rows of ``array`` arrived; ``grid`` holds every row so far."""

    analysis: str
    array: str
    grid: "PartialGrid"


@dataclass(frozen=True)
class ResultAdded:
    """One analysis finished (its rows are now complete in ``result``)."""

    analysis: str
    result: Any


@dataclass(frozen=True)
class RunEnded:
    """A run ended: ``status`` is "finished", "cancelled" or "failed"; ``unfinished`` analyses did not finish."""

    status: str
    finished: tuple[str, ...]
    unfinished: tuple[str, ...]


@dataclass(frozen=True)
class ResultsStale:
    """Which shown results no longer match the inputs (model, prompt set or options); empty: all current.

    ``reasons`` maps each stale analysis to what changed ("model", "prompt set", "options").
    """

    stale: tuple[str, ...]
    reasons: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class ResultsReplaced:
    """The whole store changed (a session opened, or the results were cleared when ``results`` is None)."""

    results: Any


# ------------------------------------------------------------------ the store


@dataclass(frozen=True)
class Provenance:
    """What a result was computed from: model, prompt set (hash, size) and the analysis's options."""

    model: str
    prompt_hash: str
    n_pairs: int
    options: Mapping[str, Any] = field(default_factory=dict)

    def differences(self, current: "Provenance") -> tuple[str, ...]:
        """What differs from ``current``: "model", "prompt set", "options" (batch size never counts;
        an empty model name, nothing loaded, is not compared)."""
        found = []
        if self.model and current.model and self.model != current.model:
            found.append("model")
        if self.prompt_hash != current.prompt_hash or self.n_pairs != current.n_pairs:
            found.append("prompt set")
        mine = {k: v for k, v in self.options.items() if k not in _SPEED_ONLY_OPTIONS}
        theirs = {k: v for k, v in current.options.items() if k not in _SPEED_ONLY_OPTIONS}
        if mine != theirs:
            found.append("options")
        return tuple(found)

    def summary(self) -> str:
        """ "results from <model>, <n> pairs" (the stale banner's first words)."""
        pairs = f"{self.n_pairs} pair" + ("" if self.n_pairs == 1 else "s")
        return f"results from {self.model or 'an unknown model'}, {pairs}"


class PartialGrid:
    """An array of a run in progress, filled row by row (leading index).

    ``values`` has the array field's dtype; rows not computed yet hold NaN
    (float) or -1 (int), so a view can draw ``values`` as it is, without a
    masked copy per row (at 1000 prompts a row of the logit-lens grid is
    ~100k numbers); ``done[i]`` says whether row ``i`` arrived.
    """

    def __init__(self, analysis: str, array: str, shape: tuple[int, ...], dtype: str) -> None:
        self.analysis, self.array = analysis, array
        kind = np.dtype(dtype).kind
        fill = -1 if kind == "i" else np.nan if kind in "fc" else 0
        self.values = np.full(shape, fill, dtype=dtype)
        self.done = np.zeros(shape[0], dtype=bool)

    def add(self, index: tuple[int, ...], values: np.ndarray) -> None:
        self.values[index] = values
        self.done[index[0]] = True


class ResultsStore:
    """Finished results with provenance, the partial grids of the run in progress, and run metadata."""

    def __init__(self, hub: EventHub) -> None:
        self.hub = hub
        self._results: dict[str, Any] = {}
        self._provenance: dict[str, Provenance] = {}
        self._partial: dict[str, PartialGrid] = {}
        self._meta: dict[str, Any] = {}
        self._running: tuple[str, ...] = ()
        self._pending_provenance: dict[str, Provenance] = {}
        self._stale: dict[str, tuple[str, ...]] = {}
        # The step the run was at (its last progress message), for "cancelled at <step>".
        self.last_step = ""
        self.last_status = ""
        # The run's tokenizer, to name streamed token ids before the analysis's own labels arrive.
        self.tokenizer: Any = None

    # --- reading

    def run_results(self) -> Any:
        """A ``RunResults`` of every finished result and the run's metadata (None when there is none)."""
        from ioi_desktop.core.results import RunResults

        if not self._results:
            return None
        return RunResults(results=dict(self._results), meta=dict(self._meta))

    def result(self, analysis: str) -> Any:
        return self._results.get(analysis)

    def provenance(self, analysis: str) -> Provenance | None:
        return self._provenance.get(analysis)

    def partial(self, array: str) -> PartialGrid | None:
        return self._partial.get(array)

    @property
    def analyses(self) -> list[str]:
        return list(self._results)

    @property
    def running(self) -> tuple[str, ...]:
        return self._running

    def stale(self) -> dict[str, tuple[str, ...]]:
        """Stale analyses -> what changed (see :class:`ResultsStale`)."""
        return dict(self._stale)

    def token_text(self, ids: Any) -> dict[str, str]:
        """``{str(id): text}`` of token ids of the run in progress ({} when no tokenizer is known)."""
        if self.tokenizer is None:
            return {}
        from ioi_desktop.core.analyses.metrics import token_text

        return token_text(self.tokenizer, np.asarray(ids))

    def note_step(self, message: str) -> None:
        """The run's latest progress message (kept for "cancelled at <step>")."""
        if self._running and message:
            self.last_step = str(message)

    def check_stale(self, current: Mapping[str, Provenance]) -> None:
        """Compare each finished result's provenance with ``current`` (analysis -> what a run now would
        use) and publish :class:`ResultsStale` when the stale set changed."""
        found: dict[str, tuple[str, ...]] = {}
        for name in self._results:
            mine, now = self._provenance.get(name), current.get(name)
            if mine is None or now is None:
                continue
            differences = mine.differences(now)
            if differences:
                found[name] = differences
        if found != self._stale:
            self._stale = found
            self.hub.publish(ResultsStale(tuple(found), dict(found)))

    @property
    def meta(self) -> Mapping[str, Any]:
        return dict(self._meta)

    # --- a run

    def begin(self, analyses: tuple[str, ...], provenance: Mapping[str, Provenance],
              keep_others: bool = False) -> None:
        """A run of ``analyses`` starts: earlier results are dropped (as the panels clear);
        with ``keep_others`` only those of ``analyses`` are."""
        if keep_others:
            for name in analyses:
                self._results.pop(name, None)
                self._provenance.pop(name, None)
        else:
            self._results.clear()
            self._provenance.clear()
            self._meta = {}
        self._partial.clear()
        self._running = tuple(analyses)
        self._pending_provenance = dict(provenance)
        self.last_step, self.last_status = "", ""
        for name in analyses:
            self._stale.pop(name, None)
        if not keep_others:
            self._stale.clear()
        self.hub.publish(RunStarted(self._running, keep_others))

    def set_meta(self, meta: Mapping[str, Any]) -> None:
        """The run's metadata (model, prompts, options); known before the first analysis finishes."""
        self._meta = dict(meta)

    def add_rows(self, event: Any) -> None:
        """A ``core.runner.RowsEvent`` (checked against its Result type); rows of finished analyses are ignored."""
        if event.analysis in self._results or event.analysis not in self._running:
            return
        grid = self._partial.get(event.array)
        if grid is None:
            spec = event.result_type.array_spec(event.array)
            grid = PartialGrid(event.analysis, event.array, tuple(event.shape), spec.dtype)
            self._partial[event.array] = grid
        grid.add(event.index, event.values)
        self.hub.publish(RowsAdded(event.analysis, event.array, grid))

    def add_result(self, result: Any) -> None:
        name = result.analysis
        self._results[name] = result
        if name in self._pending_provenance:
            self._provenance[name] = self._pending_provenance[name]
        for array in [a for a, grid in self._partial.items() if grid.analysis == name]:
            del self._partial[array]
        self.hub.publish(ResultAdded(name, result))

    def end(self, status: str, run_results: Any = None) -> None:
        """The run ended; on success ``run_results`` carries the final metadata (timings)."""
        if run_results is not None:
            self._meta = {**self._meta, **dict(run_results.meta)}
            for name, result in run_results.results.items():
                if name not in self._results:
                    self.add_result(result)
        finished = tuple(name for name in self._running if name in self._results)
        unfinished = tuple(name for name in self._running if name not in self._results)
        self._running = ()
        self.last_status = status
        self.hub.publish(RunEnded(status, finished, unfinished))

    def replace(self, run_results: Any, provenance: Mapping[str, Provenance] | None = None) -> None:
        """Every result at once (an opened session); None clears the store."""
        self._results = dict(run_results.results) if run_results is not None else {}
        self._meta = dict(run_results.meta) if run_results is not None else {}
        self._provenance = dict(provenance or {})
        self._partial.clear()
        self._running = ()
        self._stale = {}
        self.last_step, self.last_status = "", ""
        self.hub.publish(ResultsReplaced(run_results))


# ------------------------------------------------------------------ the workbench


_HASHED: list[tuple[Any, str]] = []  # the last few prompt sets hashed, newest first


def prompt_set_hash(prompt_set: Any) -> str:
    """SHA-256 of the prompt set's file form: equal hashes, equal prompts and answers.

    The last few sets hashed are remembered (an equal set gets its hash without hashing again): the
    desktop app hashes a set in its input thread when it checks it, so Run finds it there."""
    from ioi_desktop.core.pairfiles import prompt_set_to_dict

    for known, digest in list(_HASHED):
        if known is prompt_set or known == prompt_set:
            return digest
    text = json.dumps(prompt_set_to_dict(prompt_set), sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    _HASHED[:] = [(prompt_set, digest), *_HASHED[:3]]
    return digest


@dataclass(frozen=True)
class RunRequest:
    """What the worker needs to run: analyses in display order, their Options, the batch size."""

    analyses: tuple[str, ...]
    options: Mapping[str, AnalysisOptions]
    batch_size: int | None


class Workbench:
    """The desktop app's state (see the module docstring)."""

    def __init__(self) -> None:
        self.hub = EventHub()
        self.selection = SelectionModel()
        self.results = ResultsStore(self.hub)
        self.model_spec: Any = None
        self.handle: Any = None
        self.prompt_set: Any = None
        self.options: dict[str, AnalysisOptions] = default_options()
        self.analyses: tuple[str, ...] = tuple(analysis_names())
        self.batch_size: int | None = None
        self.session_path: Path | None = None
        self.read_only = False
        self._prompt_hash: str | None = None

    # --- inputs

    def set_model(self, handle: Any) -> None:
        self.handle = handle
        self.model_spec = handle.spec if handle is not None else self.model_spec
        self.hub.publish(ModelChanged(handle))
        self.check_stale()

    def set_prompt_set(self, prompt_set: Any) -> None:
        # The same pairs again (the editor's copy, a restored session) keep their hash: hashing a
        # thousand pairs takes tens of milliseconds, and this runs on the GUI thread.
        if not (prompt_set is self.prompt_set or (self._prompt_hash is not None and prompt_set == self.prompt_set)):
            self._prompt_hash = None
        self.prompt_set = prompt_set
        self.hub.publish(PromptSetChanged(prompt_set))
        self.check_stale()

    def set_options(self, analysis: str, options: AnalysisOptions) -> None:
        if not isinstance(options, option_types()[analysis]):
            raise TypeError(f"options of {analysis} must be its Options, not {type(options).__name__}")
        self.options[analysis] = options
        self.hub.publish(SettingsChanged(analysis))
        self.check_stale()

    def check_stale(self) -> None:
        """Mark the results whose model, prompt set or options differ from the current ones as stale
        (the panels grey them out, and :meth:`stale_analyses` is what Run re-runs)."""
        if self.results.analyses:
            self.results.check_stale({name: self.provenance(name) for name in self.results.analyses
                                      if name in self.options})

    def stale_analyses(self) -> tuple[str, ...]:
        """The analyses whose shown results no longer match the inputs."""
        self.check_stale()
        return tuple(self.results.stale())

    def set_run_settings(self, analyses: Any = None, batch_size: Any = "unchanged") -> None:
        """Which analyses run (kept in display order) and the batch size (None: automatic)."""
        if analyses is not None:
            unknown = set(analyses) - set(analysis_names())
            if unknown:
                raise ValueError(f"unknown analyses: {', '.join(sorted(unknown))}")
            self.analyses = tuple(name for name in analysis_names() if name in analyses)
        if batch_size != "unchanged":
            if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                           or not 1 <= batch_size <= MAX_BATCH_SIZE):
                raise ValueError(f"batch size must be a whole number from 1 to {MAX_BATCH_SIZE} or None")
            self.batch_size = batch_size
        self.hub.publish(SettingsChanged(None))

    # --- running

    def run_request(self, only: Any = None) -> RunRequest:
        """The run of the ticked analyses (those of them in ``only`` when given)."""
        names = tuple(name for name in self.analyses if only is None or name in only)
        return RunRequest(names, {name: self.options[name] for name in names}, self.batch_size)

    def analyses_to_run(self) -> tuple[tuple[str, ...], bool]:
        """(analyses, keep_others) for Run: when some ticked analyses have current results, only the
        stale or missing ones run and the current results stay; otherwise every ticked analysis runs."""
        stale = set(self.stale_analyses())
        current = [name for name in self.analyses if name in self.results.analyses and name not in stale]
        needed = tuple(name for name in self.analyses if name not in current)
        if current and needed:
            return needed, True
        return self.analyses, False

    def provenance(self, analysis: str) -> Provenance:
        """What a result of ``analysis`` computed now would come from (model "" when none is loaded)."""
        model = self.handle.info.name if self.handle is not None else ""
        options = {**self.options[analysis].to_dict(), "batch_size": self.batch_size}
        prompts = self.prompt_set
        if prompts is not None and self._prompt_hash is None:
            self._prompt_hash = prompt_set_hash(prompts)
        return Provenance(model, self._prompt_hash or "", len(prompts) if prompts is not None else 0, options)

    def begin_run(self, request: RunRequest, keep_others: bool = False) -> None:
        self.results.tokenizer = getattr(self.handle, "tokenizer", None)
        self.results.begin(request.analyses, {name: self.provenance(name) for name in request.analyses},
                           keep_others)

    # --- settings and sessions

    def settings(self) -> dict[str, Any]:
        """The run settings and every analysis's options, as plain JSON values."""
        return {
            "analyses": list(self.analyses),
            "batch_size": self.batch_size,
            "options": {name: options.to_dict() for name, options in self.options.items()},
        }

    def apply_settings(self, data: Any) -> None:
        """Settings from :meth:`settings` (QSettings, a session). Unknown or bad entries keep their
        defaults: a hand edit or an older version's file is not worth refusing. Older files (before
        typed options) stored ``sweeps``, ``top_k``, ``head_seed``, ``head_seq_len`` flat; they are read."""
        if not isinstance(data, Mapping):
            return
        analyses = data.get("analyses")
        if isinstance(analyses, (list, tuple)):
            self.analyses = tuple(name for name in analysis_names() if name in analyses)
        flat = data.get("options") if isinstance(data.get("options"), Mapping) else {}
        batch_size = data.get("batch_size", flat.get("batch_size"))
        if batch_size is None or (isinstance(batch_size, int) and not isinstance(batch_size, bool)
                                  and 1 <= batch_size <= MAX_BATCH_SIZE):
            self.batch_size = batch_size
        per_analysis = data.get("options")
        per_analysis = dict(per_analysis) if isinstance(per_analysis, Mapping) else {}
        per_analysis = _from_flat_settings(data, per_analysis)
        types = option_types()
        for name, cls in types.items():
            given = per_analysis.get(name)
            if isinstance(given, Mapping):
                self.options[name] = cls.from_dict(given, strict=False)
        self.hub.publish(SettingsChanged(None))
        self.check_stale()

    def session(self, layout: Mapping[str, Any]) -> Any:
        from ioi_desktop.core.session import Session

        spec = self.handle.spec if self.handle is not None else self.model_spec
        return Session(
            model_spec=spec.to_dict() if spec is not None else {},
            model_info=self.handle.info.to_dict() if self.handle is not None else None,
            prompt_set=self.prompt_set,
            settings=self.settings(),
            selection={**self.selection.current.as_dict(),
                       "pinned": [list(pair) for pair in self.selection.pinned],
                       "pinned_positions": self.selection.pinned_positions},
            layout=dict(layout),
            results=self.results.run_results(),
        )

    def restore(self, session: Any) -> None:
        """Prompt set, settings, results and selection of an opened session (the model is the caller's)."""
        self.set_prompt_set(session.prompt_set)
        self.apply_settings(session.settings)
        self.results.replace(session.results, self._session_provenance(session))
        self.check_stale()
        try:
            self.selection.update(**{k: v for k, v in session.selection.items()
                                     if k in self.selection.current.as_dict()})
        except (TypeError, ValueError):
            # A hand-edited selection is not worth refusing the session for.
            self.selection.clear()
        try:
            self.selection.set_pinned(tuple(pair) for pair in session.selection.get("pinned") or ())
        except (TypeError, ValueError):
            self.selection.clear_pinned()
        try:
            self.selection.set_pinned_positions(session.selection.get("pinned_positions") or "end")
        except ValueError:
            self.selection.set_pinned_positions("end")


    def _session_provenance(self, session: Any) -> dict[str, Provenance]:
        """A saved session's results came from its model, prompt set and settings (saved together)."""
        if session.results is None:
            return {}
        from dataclasses import replace

        info = session.model_info if isinstance(session.model_info, Mapping) else {}
        model = info.get("name")
        if not model:
            meta_model = (session.results.meta or {}).get("model")
            model = meta_model.get("name", "") if isinstance(meta_model, Mapping) else ""
        return {name: replace(self.provenance(name), model=str(model or ""))
                for name in session.results.results if name in self.options}


def _from_flat_settings(data: Mapping[str, Any], per_analysis: dict[str, Any]) -> dict[str, Any]:
    """Settings written before typed options: ``{"options": {"sweeps": [...], "top_k": 5, "head_seed": 0,
    "head_seq_len": None, "batch_size": None}}`` (the options dialog's old form) -> per-analysis options."""
    flat = data.get("options") if isinstance(data.get("options"), Mapping) else {}
    if not any(key in flat for key in ("sweeps", "top_k", "head_seed", "head_seq_len")):
        return per_analysis
    converted: dict[str, Any] = {}
    if isinstance(flat.get("sweeps"), (list, tuple)) and flat["sweeps"]:
        converted["patching"] = {"sweeps": list(flat["sweeps"])}
        converted["attribution_patching"] = {"sweeps": list(flat["sweeps"])}
    if isinstance(flat.get("top_k"), int):
        converted["logit_diff"] = converted["logit_lens"] = {"top_k": flat["top_k"]}
    head = {}
    if isinstance(flat.get("head_seed"), int):
        head["seed"] = flat["head_seed"]
    if isinstance(flat.get("head_seq_len"), int):
        head["seq_len"] = flat["head_seq_len"]
    if head:
        converted["head_scores"] = head
    return converted

