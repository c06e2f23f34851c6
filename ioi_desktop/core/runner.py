"""Run a list of analyses on a model and a prompt set, with progress and cancellation.

The GUI worker thread and the ``analyze`` command both drive :class:`Runner`::

    runner = Runner()
    results = runner.run(handle, prompt_set, ["logit_diff", "dla"],
                         on_progress=..., on_rows=..., on_result=..., cancel_token=token)

What it does, in order:

1. tokenizes the prompt set (or takes a ready ``TokenizedSet``);
2. asks every selected analysis for ``hooks_needed(ctx)`` and declares the
   union to one :class:`SharedRuns` (the ``CachedRuns`` of
   :mod:`ioi_desktop.core.analyses.base`): the first analysis that reads a
   cache triggers one clean and one corrupted forward pass caching exactly that
   union (``names_filter``); a hook asked for later costs one extra forward of
   only the missing hooks;
3. runs each analysis with a progress object that reports units, checks the
   cancellation token (raising :class:`~ioi_desktop.core.errors.Cancelled`, so
   a run stops within one unit) and forwards finished rows in order;
4. returns a :class:`~ioi_desktop.core.results.RunResults` with per-analysis
   timings.

One analysis that cannot run never takes the others down. An analysis whose
hooks this model does not have (attention hooks on Mamba, say) is refused
before anything runs; one that fails while running (an expected
``IOIError``, or a bug) is recorded with one sentence, and the run goes on.
The results hold what worked; ``meta["failed"]`` maps each analysis that did
not to its sentence (``on_failed(name, sentence)`` reports it as it happens).
``Cancelled`` still stops the whole run.

Between runs the runner keeps the cached forward passes and the finished
analysis results for the last (model, tokens) pair: re-running with the same
model, prompts and options reuses them, so nothing is recomputed.

Callbacks are called synchronously in the thread that calls :meth:`Runner.run`
(the GUI worker re-emits them as Qt signals). Nothing here imports Qt; torch
and TransformerLens are imported on first use.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ioi_desktop.core.analyses import analysis_names, get_analysis
from ioi_desktop.core.analyses.base import AnalysisContext, AnalysisOptions, AnalysisResult
from ioi_desktop.core.devices import model_device, to_device
from ioi_desktop.core.errors import AnalysisError, Cancelled, DeviceError, PromptError
from ioi_desktop.core.results import RunResults, run_metadata

RUNS = ("clean", "corrupt")
# The two shared forward passes count as this many progress units.
_FORWARD_UNITS = 2


class CancelToken:
    """A thread-safe flag the GUI sets and the runner checks between units of work."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled()


@dataclass(frozen=True)
class ProgressEvent:
    """Overall progress of a run: ``done`` of ``total`` units, and the current analysis.

    ``total`` may grow while a run goes (an analysis declares its exact unit
    count when it starts); ``fraction`` is ``done / total`` in [0, 1].
    """

    analysis: str
    message: str
    done: int
    total: int
    analysis_done: int
    analysis_total: int

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0


@dataclass(frozen=True)
class RowsEvent:
    """Finished rows of one array field of a Result, e.g. ``patch_head_z`` row ``(layer,)``:
    values fill ``array[index]``; checked against the field's dtype and axes (``result_type``)."""

    analysis: str
    array: str
    index: tuple[int, ...]
    values: np.ndarray
    shape: tuple[int, ...]
    result_type: type

    @property
    def axes(self) -> tuple[str, ...]:
        """The array's named axes (from its Result type)."""
        return self.result_type.array_spec(self.array).axes


ProgressCallback = Callable[[ProgressEvent], None]
RowsCallback = Callable[[RowsEvent], None]
ResultCallback = Callable[[AnalysisResult], None]
FailedCallback = Callable[[str, str], None]


# ------------------------------------------------------------------ shared runs


class SharedRuns:
    """One clean and one corrupted forward pass shared by every analysis of a run.

    Implements the ``CachedRuns`` protocol. ``declare(names)`` adds hooks to
    fetch; nothing runs until an analysis asks for a cache or the logits, and
    then each run is done once with every declared hook. ``require`` on a hook
    not cached yet runs one more forward caching only the missing hooks.
    ``forward_count`` counts forward passes over the whole prompt set (a pass
    split into batches of ``batch_size`` prompts counts once).
    """

    def __init__(
        self,
        model: Any,
        batch: Any,
        batch_size: int | None = None,
        check_cancelled: Callable[[], None] | None = None,
    ) -> None:
        self.model = model
        self.batch = batch
        self.batch_size = batch_size
        self.check_cancelled = check_cancelled or (lambda: None)
        # Called with "clean"/"corrupt" after each forward pass (the runner reports progress).
        self.on_forward: Callable[[str], None] | None = None
        self.forward_count = 0
        self.forward_seconds = 0.0
        self._declared: set[str] = set()
        self._stored: dict[str, dict[str, Any]] = {which: {} for which in RUNS}
        # Hooks this model does not have (e.g. hook_pos_embed with rotary embeddings): asked once.
        self._absent: dict[str, set[str]] = {which: set() for which in RUNS}
        self._logits: dict[str, Any] = {}

    def declare(self, names: set[str]) -> None:
        """Hooks the next forward passes should cache."""
        self._declared |= set(names)

    def cached_names(self, which: str) -> set[str]:
        return set(self._stored[_check_which(which)])

    def require(self, which: str, names: set[str]) -> None:
        which = _check_which(which)
        known = set(self._stored[which]) | self._absent[which]
        missing = set(names) - known
        if missing or which not in self._logits:
            self._forward(which, missing | (self._declared - known))

    def cache(self, which: str):
        from transformer_lens import ActivationCache

        self.require(which, self._declared)
        return ActivationCache(self._stored[which], self.model)

    def logits(self, which: str):
        self.require(which, set())
        return self._logits[which]

    def tokens(self, which: str):
        """The run's tokens as a torch tensor on the model's device."""
        import torch

        array = self.batch.clean_tokens if _check_which(which) == "clean" else self.batch.corrupt_tokens
        return torch.as_tensor(np.asarray(array, dtype=np.int64), device=model_device(self.model))

    def _forward(self, which: str, names: set[str]) -> None:
        import torch

        tokens = self.tokens(which)
        size = self.batch_size or tokens.shape[0]
        started = time.perf_counter()
        logits_parts, cache_parts = [], []
        with torch.no_grad():
            for start in range(0, tokens.shape[0], size):
                self.check_cancelled()
                try:
                    logits, cache = self.model.run_with_cache(
                        tokens[start : start + size], names_filter=sorted(names)
                    )
                except torch.OutOfMemoryError as exc:
                    raise DeviceError(
                        "The device ran out of memory running the model on the prompts.",
                        "Use a smaller --batch-size, fewer prompts, or another device.",
                    ) from exc
                # A model split across GPUs caches each layer on its own GPU: keep all on the home device.
                home = tokens.device
                logits_parts.append(to_device(logits.float(), home))
                available = set(cache.keys())
                cache_parts.append({name: to_device(cache[name], home) for name in names if name in available})
        if which not in self._logits:
            self._logits[which] = torch.cat(logits_parts, dim=0)
        for name in names:
            if name in cache_parts[0]:
                self._stored[which][name] = torch.cat([part[name] for part in cache_parts], dim=0)
            else:
                self._absent[which].add(name)
        self.forward_count += 1
        self.forward_seconds += time.perf_counter() - started
        if self.on_forward is not None:
            self.on_forward(which)


def _check_which(which: str) -> str:
    if which not in RUNS:
        raise ValueError(f"run must be 'clean' or 'corrupt', not {which!r}")
    return which


# ------------------------------------------------------------------ progress


class _Tracker:
    """Overall unit counts across the forward passes and every analysis of a run."""

    def __init__(self, planned: dict[str, int], on_progress: ProgressCallback | None) -> None:
        self.planned = dict(planned)
        self.done = {name: 0 for name in planned}
        self.on_progress = on_progress

    def set_total(self, name: str, units: int) -> None:
        self.planned[name] = max(int(units), self.done[name], 1)

    def advance(self, name: str, units: int, message: str) -> None:
        self.done[name] = min(self.done[name] + int(units), self.planned[name])
        self.emit(name, message)

    def finish(self, name: str, message: str) -> None:
        self.done[name] = self.planned[name]
        self.emit(name, message)

    def emit(self, name: str, message: str) -> None:
        if self.on_progress is not None:
            self.on_progress(
                ProgressEvent(
                    analysis=name,
                    message=message,
                    done=sum(self.done.values()),
                    total=sum(self.planned.values()),
                    analysis_done=self.done[name],
                    analysis_total=self.planned[name],
                )
            )


@dataclass
class _AnalysisProgress:
    """The ``Progress`` an analysis sees: units, cancellation, streamed rows."""

    name: str
    tracker: _Tracker
    cancel_token: CancelToken
    result_type: type
    on_rows: RowsCallback | None = None

    def set_total(self, units: int) -> None:
        self.tracker.set_total(self.name, units)

    def advance(self, units: int = 1, message: str = "") -> None:
        self.tracker.advance(self.name, units, message)

    def check_cancelled(self) -> None:
        self.cancel_token.raise_if_cancelled()

    def rows(self, array: str, index: tuple[int, ...] | int, values: np.ndarray, shape: tuple[int, ...]) -> None:
        key = (int(index),) if isinstance(index, (int, np.integer)) else tuple(int(i) for i in index)
        shape = tuple(int(n) for n in shape)
        values = self.result_type.check_rows(array, key, np.asarray(values), shape)
        if self.on_rows is not None:
            self.on_rows(RowsEvent(self.name, array, key, values, shape, self.result_type))


# ------------------------------------------------------------------ runner


def tokenized(handle: Any, prompts: Any) -> Any:
    """A ``TokenizedSet`` for ``prompts`` (a PromptSet, or already a TokenizedSet)."""
    if hasattr(prompts, "clean_tokens"):
        batch = prompts
    else:
        from ioi_desktop.core.prompts import tokenize_set

        batch = tokenize_set(prompts, handle.tokenizer, n_ctx=handle.info.n_ctx,
                             prepend_bos=getattr(handle.info, "prepend_bos", None))
    tokens = np.asarray(batch.clean_tokens)
    if tokens.ndim != 2 or tokens.shape[0] == 0:
        raise PromptError("The prompt set is empty.", "Add at least one prompt pair.")
    ids = np.concatenate([tokens.ravel(), np.asarray(batch.corrupt_tokens).ravel(),
                          np.asarray(batch.correct_ids), np.asarray(batch.incorrect_ids)])
    if ids.min() < 0 or ids.max() >= handle.info.d_vocab:
        raise PromptError(
            f"The prompt set has token ids outside the model's vocabulary of {handle.info.d_vocab}.",
            "Tokenize the prompts with this model's tokenizer.",
        )
    return batch


def batch_key(handle: Any, batch: Any) -> str:
    """Identifies (model object, tokens, answers, roles): equal keys give equal forward passes."""
    digest = hashlib.sha256()
    digest.update(str(id(handle.model)).encode())
    for array in (batch.clean_tokens, batch.corrupt_tokens, batch.correct_ids, batch.incorrect_ids, batch.lengths):
        array = np.ascontiguousarray(array, dtype=np.int64)
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    for role in sorted(batch.roles):
        digest.update(role.encode())
        digest.update(np.ascontiguousarray(batch.roles[role], dtype=np.int64).tobytes())
    return digest.hexdigest()


class Runner:
    """Runs analyses; keeps the last prompt set's forward passes and results for reuse.

    One runner per model session (the GUI worker keeps one); it is not meant to
    run two jobs at once.
    """

    def __init__(self) -> None:
        self._runs: SharedRuns | None = None
        self._runs_key: str | None = None
        self._results: dict[tuple[str | None, str, str], AnalysisResult] = {}
        self._past_forwards = 0

    @property
    def forward_count(self) -> int:
        """Forward passes over a prompt set made by this runner so far (for tests and logs)."""
        return self._past_forwards + (self._runs.forward_count if self._runs else 0)

    def clear_cache(self) -> None:
        """Forget cached forward passes and results (e.g. after loading another model)."""
        if self._runs is not None:
            self._past_forwards += self._runs.forward_count
        self._runs, self._runs_key = None, None
        self._results.clear()

    def run(
        self,
        handle: Any,
        prompts: Any,
        analyses: Sequence[str] | None = None,
        options: Mapping[str, AnalysisOptions | Mapping[str, Any]] | None = None,
        *,
        batch_size: int | None = None,
        on_progress: ProgressCallback | None = None,
        on_rows: RowsCallback | None = None,
        on_result: ResultCallback | None = None,
        on_start: Callable[[dict], None] | None = None,
        cancel_token: CancelToken | None = None,
        on_failed: FailedCallback | None = None,
    ) -> RunResults:
        """Run ``analyses`` (default: all, in display order) and return their results.

        ``options`` maps analysis name -> that analysis's ``Options`` (or its
        ``to_dict`` form, checked; missing: the defaults); ``batch_size``
        (prompts per forward pass, None = all at once) is the shared forward
        passes' and every analysis's ``ctx.batch_size``. Raises ``Cancelled`` when the token
        is cancelled (results finished before that were already passed to
        ``on_result``), and ``IOIError`` subclasses for bad input. ``on_start``
        gets the run's metadata (model, prompts, options; no timings yet)
        before the first analysis runs, so partial results can be labelled.
        An analysis that cannot run is left out of the results and named with
        its sentence in ``meta["failed"]`` (and passed to ``on_failed``).
        """
        names = list(analyses) if analyses is not None else analysis_names()
        if not names:
            raise AnalysisError("No analysis was selected.", "Choose at least one analysis to run.")
        if batch_size is not None and int(batch_size) < 1:
            raise AnalysisError(f"The batch size must be at least 1, not {batch_size}.", "Use --batch-size 1 or more.")
        modules = {name: get_analysis(name) for name in names}
        chosen = {name: analysis_options(modules[name], (options or {}).get(name)) for name in names}
        token = cancel_token or CancelToken()
        batch = tokenized(handle, prompts)
        runs = self._shared_runs(handle, batch, batch_size, token)

        ctx = AnalysisContext(handle=handle, batch=batch, runs=runs,
                              batch_size=None if batch_size is None else int(batch_size))
        keys = {name: (self._runs_key, name, ctx.batch_size, json.dumps(chosen[name].to_dict(), sort_keys=True))
                for name in names}
        pending = [name for name in names if keys[name] not in self._results]
        failed: dict[str, str] = {}
        for name in pending:
            try:
                needed = set(modules[name].hooks_needed(ctx, chosen[name]))
                refusal = missing_hooks_sentence(handle, name, needed)
            except Cancelled:
                raise
            except Exception as exc:  # noqa: BLE001 - recorded as that analysis's failure
                refusal = failure_sentence(handle, name, exc)
            if refusal is not None:
                failed[name] = refusal
                continue
            runs.declare(needed)
        pending = [name for name in pending if name not in failed]
        planned = {"forward": _FORWARD_UNITS}
        for name in names:
            planned[name] = max(1, int(modules[name].count_units(ctx, chosen[name]))) if name in pending else 1
        tracker = _Tracker(planned, on_progress)
        runs.on_forward = lambda which: tracker.advance("forward", 1, f"ran the model on the {which} prompts")

        run_options = {name: chosen[name].to_dict() for name in names}
        if batch_size is not None:
            for name in names:
                run_options[name]["batch_size"] = int(batch_size)
        prompt_set = None if prompts is batch else prompts
        if on_start is not None:
            on_start(run_metadata(handle, batch, names, run_options, {}, {}, prompt_set=prompt_set))
        results: dict[str, AnalysisResult] = {}
        timings: dict[str, float] = {}
        forward_seconds_before = runs.forward_seconds
        try:
            for name in names:
                token.raise_if_cancelled()
                if name in failed:
                    result = None
                elif name in pending:
                    forward_before = runs.forward_seconds
                    started = time.perf_counter()
                    tracker.emit(name, f"Running {name}")
                    progress = _AnalysisProgress(name, tracker, token, modules[name].Result, on_rows)
                    try:
                        result = _run_analysis(modules[name], ctx, chosen[name], progress)
                    except Cancelled:
                        raise
                    except Exception as exc:  # noqa: BLE001 - one analysis never takes the others down
                        failed[name] = failure_sentence(handle, name, exc)
                        result = None
                    else:
                        self._results[keys[name]] = result
                    timings[name] = time.perf_counter() - started - (runs.forward_seconds - forward_before)
                else:
                    result = self._results[keys[name]]
                    timings[name] = 0.0
                if name == names[-1]:
                    # Forward passes some analysis never needed still count as done at the end.
                    tracker.done["forward"] = tracker.planned["forward"]
                tracker.finish(name, f"Finished {name}" if result is not None else f"{name} could not run")
                if result is None:
                    if on_failed is not None:
                        on_failed(name, failed[name])
                    continue
                results[name] = result
                if on_result is not None:
                    on_result(result)
            timings["forward"] = runs.forward_seconds - forward_seconds_before
        finally:
            runs.on_forward = None
        ran = [name for name in names if name not in failed]
        meta = run_metadata(handle, batch, ran, run_options, timings, results, prompt_set=prompt_set)
        meta["cached"] = [name for name in ran if name not in pending]
        meta["failed"] = {name: failed[name] for name in names if name in failed}
        return RunResults(results=results, meta=meta)

    def _shared_runs(self, handle: Any, batch: Any, batch_size: int | None, token: CancelToken) -> SharedRuns:
        key = batch_key(handle, batch)
        if self._runs is None or key != self._runs_key:
            self.clear_cache()
            self._runs = SharedRuns(handle.model, batch, batch_size, token.raise_if_cancelled)
            self._runs_key = key
        else:
            self._runs.batch_size = batch_size
            self._runs.check_cancelled = token.raise_if_cancelled
        return self._runs


def analysis_options(module: Any, given: AnalysisOptions | Mapping[str, Any] | None) -> AnalysisOptions:
    """The module's ``Options`` from an instance, its dict form (checked) or None (defaults)."""
    if isinstance(given, module.Options):
        return given
    if given is not None and not isinstance(given, Mapping):
        raise AnalysisError(f"The options of {module.NAME} are a {type(given).__name__}, not its Options.",
                            "Pass that analysis's Options, or a mapping of option names to values.")
    return module.Options.from_dict(given)


# Analyses that read only the residual stream and the logits: they run on models without attention too.
_ATTENTION_FREE = ("logit_diff", "logit_lens")
# Analyses that run over a hybrid's attention layers only (rows labelled with the real layer indices).
ATTENTION_LAYERS_ONLY = ("attention", "head_scores", "dla", "patching", "attribution_patching")


def _attention_layers_sentence(model: Any, hook_dict: Any, name: str, architecture: str) -> str | None:
    """Why ``name`` cannot run on a model whose layers do not all have attention hooks, or None.

    Three cases: no attention at all (Mamba); attention the bridge does not expose
    (Zamba2, Nemotron-H: TransformerLens wraps each of their layers whole); a
    hybrid with attention in some layers only (Jamba, Bamba, LFM2, Qwen3-Next,
    Granite-MoE-Hybrid: the others are Mamba, convolution or linear-attention
    mixers). The per-head analyses that read every layer's heads (ablation, path
    patching) are refused; those in ``ATTENTION_LAYERS_ONLY`` (attention
    patterns, head scores, DLA, activation and attribution patching) run over
    the attention layers, their rows labelled with the real layer indices.
    """
    n_layers = int(getattr(model.cfg, "n_layers", 0) or 0)
    with_heads = [layer for layer in range(n_layers) if f"blocks.{layer}.attn.hook_pattern" in hook_dict]
    if not with_heads and not any(key.endswith("attn.hook_pattern") for key in hook_dict):
        hf_model = getattr(model, "original_model", None)
        modules = hf_model.modules() if hasattr(hf_model, "modules") else ()
        if any(type(module).__name__.endswith("Attention") for module in modules):
            return (f"{name} needs attention heads, which TransformerLens does not expose for {architecture} "
                    "(its bridge wraps every layer whole, the attention layers included).")
        return f"{name} needs attention heads, which {architecture} does not have (it has no attention layers)."
    if with_heads and len(with_heads) < n_layers and name not in ATTENTION_LAYERS_ONLY:
        listed = ", ".join(str(layer) for layer in with_heads)
        return (f"{name} needs attention heads in every layer, and {architecture} is a hybrid with attention "
                f"only in layer{'s' if len(with_heads) > 1 else ''} {listed} of {n_layers} (its other layers mix "
                "tokens with a recurrent, convolution or linear-attention mixer that has no heads).")
    return None


def missing_hooks_sentence(handle: Any, name: str, needed: set[str]) -> str | None:
    """One sentence refusing ``name`` when the model lacks hooks it needs (None when it has them all).

    A model without attention (Mamba and other state-space models) runs only
    the analyses that read the residual stream. Hooks some models simply do
    not have and the analyses already do without (``hook_pos_embed`` with
    rotary embeddings, ``hook_resid_mid`` in parallel blocks, the rotary
    cos/sin tables the fast engine reads when present) never refuse an analysis.
    """
    hook_dict = getattr(handle.model, "hook_dict", None)
    if hook_dict is None:
        return None
    architecture = getattr(handle.info, "architecture", "this model")
    if name not in _ATTENTION_FREE:
        sentence = _attention_layers_sentence(handle.model, hook_dict, name, architecture)
        if sentence is not None:
            return sentence
    if "blocks.0.attn.hook_kv_latent" in hook_dict and any(n.endswith("attn.hook_z") for n in needed):
        return (f"{name} needs each head's output z, which TransformerLens does not lay out per head for "
                f"{architecture}'s multi-head latent attention (MLA).")
    from ioi_desktop.core.engine.inputs import ROTARY_HOOKS

    # The rotary tables are read by the fast engine when a model has them; the others do without.
    optional = ("hook_embed", "hook_pos_embed", "hook_resid_mid", "ln_final.hook_scale", *ROTARY_HOOKS)
    missing = sorted(n for n in needed if n not in hook_dict and not n.endswith(optional))
    if not missing:
        return None
    return (f"{name} needs the activation {missing[0]}{' and others' if len(missing) > 1 else ''}, "
            f"which TransformerLens does not provide for {architecture}.")


def failure_sentence(handle: Any, name: str, exc: BaseException) -> str:
    """One sentence saying why analysis ``name`` did not run; a bug's traceback goes to the error log."""
    from ioi_desktop.core.errors import IOIError

    if isinstance(exc, IOIError):
        return str(exc)
    import traceback

    from ioi_desktop.core.error_log import write_error_log

    architecture = getattr(handle.info, "architecture", "this model")
    if isinstance(exc, KeyError) and str(exc.args[0] if exc.args else "").startswith(("blocks.", "ln_final.", "hook_")):
        return (f"{name} needs the activation {exc.args[0]}, which TransformerLens does not record "
                f"for {architecture}.")
    write_error_log(f"{name} on {architecture}", "".join(traceback.format_exception(exc)))
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"{name} failed on {architecture} ({type(exc).__name__}{': ' + text if text else ''})."


def _run_analysis(module: Any, ctx: AnalysisContext, options: AnalysisOptions,
                  progress: _AnalysisProgress) -> AnalysisResult:
    """``module.run``; running out of device memory becomes a DeviceError the user can act on."""
    import torch

    try:
        return module.run(ctx, options, progress)
    except torch.OutOfMemoryError as exc:
        raise DeviceError(
            f"The device ran out of memory during {progress.name}.",
            "Use a smaller batch size, fewer prompts, or another device.",
        ) from exc
