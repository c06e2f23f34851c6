"""Reproduce the Exploratory Analysis Demo: every published number beside the app's own.

TransformerLens's "Exploratory Analysis Demo" notebook runs GPT-2 small on 8
IOI prompt pairs and publishes its outputs: logit differences, the logit
lens, per-layer and per-head direct logit attribution, the strongest cells
of each activation-patching grid and head-type scores. The published numbers
live in ``resources/reference/notebook_gpt2_small.json`` with their source;
each row names what it measures (``quantity``), so this module can

1. run the demo's steps with the app's own analyses on the notebook's 8 pairs
   (the ``notebook`` preset of :mod:`ioi_desktop.core.pairs`), with the
   demo's conventions: the cached-final-scale logit lens and, for head
   scores, the demo's sequences (ids from [100, 20000), no BOS, 2 x 100);
2. read our value of every row from the results (:func:`our_value`);
3. compare them (:func:`compare`): difference and pass/fail, a row passing
   when ``|ours - published| < tolerance`` (0.01, agreement at 2 decimals,
   unless the row gives its own, e.g. for scores on unseeded random tokens).

The CLI (``ioi-desktop reproduce-notebook``) and the GUI (Help > Reproduce
the Exploratory Analysis Demo) both call :func:`reproduce`. Published
statements with no single number to compare ("~0 up to 7_mid") are listed
in the reference's ``not_compared`` and shown as such. The backup-name-mover
step runs the ablation analysis with the reference's ``ablation_options``
(the notebook's: L9H9's z zero-ablated at END). Qt-free; torch is imported
on first use.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from ioi_desktop.core.errors import FileFormatError
from ioi_desktop.core.paths import resource_path

REFERENCE_FORMAT = "ioi-desktop/notebook-reference"
ANALYSES = ("logit_diff", "logit_lens", "dla", "patching", "head_scores")
# The notebook's backup-name-mover experiment: the name mover L9H9's z zero-ablated at END.
DEFAULT_ABLATION = {"heads": "9.9", "method": "zero", "positions": "end"}
PATCH_GRIDS = ("resid_pre", "attn_out", "mlp_out", "head_z", "head_v", "head_pattern")
SANITY_PROMPT = "After John and Mary went to the store, John gave a bottle of milk to"


def default_reference_path() -> Path:
    return resource_path("reference", "notebook_gpt2_small.json")


def load_reference(path: str | Path | None = None) -> dict[str, Any]:
    """The published numbers (``format`` ioi-desktop/notebook-reference); one clear sentence if the file is bad."""
    path = Path(path) if path is not None else default_reference_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FileFormatError(f"The reference file {path} cannot be read ({exc.strerror or exc}).",
                              "Give an existing notebook-reference JSON file.") from exc
    except ValueError as exc:
        raise FileFormatError(f"The reference file {path} is not valid JSON ({exc}).",
                              "Fix the file or use the one shipped in resources/reference/.") from exc
    if not isinstance(data, dict) or data.get("format") != REFERENCE_FORMAT or not isinstance(data.get("rows"), list):
        raise FileFormatError(f"The file {path} is not a notebook reference (format {REFERENCE_FORMAT!r} with rows).",
                              "Use resources/reference/notebook_gpt2_small.json as a model.")
    return data


def analysis_options(reference: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The runner options that follow the demo's conventions."""
    return {
        "logit_lens": {"lens_norm": "cached_final", "top_k": 5},
        "patching": {"sweeps": list(PATCH_GRIDS)},
        "head_scores": dict(reference.get("head_scores_options")
                            or {"token_pool": "id_range", "prepend_bos": "no", "seq_len": 100, "batch": 2, "seed": 0}),
        "ablation": dict(reference.get("ablation_options") or DEFAULT_ABLATION),
    }


@dataclass(frozen=True)
class Row:
    """One published number beside ours."""

    step: str
    item: str
    published: float | str
    ours: float | str | None
    tolerance: float
    note: str = ""

    @property
    def difference(self) -> float | None:
        if isinstance(self.published, str) or not isinstance(self.ours, (int, float)):
            return None
        return float(self.ours) - float(self.published)

    @property
    def passed(self) -> bool:
        if isinstance(self.published, str):
            return self.ours == self.published
        diff = self.difference
        return diff is not None and math.isfinite(diff) and abs(diff) < self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "item": self.item, "published": self.published, "ours": self.ours,
                "difference": self.difference, "tolerance": self.tolerance, "passed": self.passed, "note": self.note}


@dataclass(frozen=True)
class Comparison:
    """Every row, and what was left out and why."""

    rows: tuple[Row, ...]
    not_compared: tuple[dict[str, str], ...]
    model: str
    source: str

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)

    @property
    def n_passed(self) -> int:
        return sum(row.passed for row in self.rows)


def missing_model_message(name: str) -> str | None:
    """One sentence on bringing a hub model onto an offline machine; None when it is cached or ``name`` is a folder."""
    from ioi_desktop.core.models import find_in_hf_cache, hf_cache_dir, looks_like_path

    if looks_like_path(name) or find_in_hf_cache(name) is not None:
        return None
    return (f"{name} is not in this machine's Hugging Face cache ({hf_cache_dir()}): on a machine with network access "
            f"run 'huggingface-cli download {name}', copy the folder models--{name.replace('/', '--')} from its "
            f"Hugging Face hub cache (~/.cache/huggingface/hub) into {hf_cache_dir()} here (or pass a saved model "
            "folder instead), then run this again.")


def _sanity(handle: Any) -> tuple[str, float]:
    """Top-1 token of the demo's sanity prompt and its probability."""
    import torch

    from ioi_desktop.core.prompts import to_tokens
    from ioi_desktop.core.runner import model_device

    tokens = torch.as_tensor([to_tokens(handle.tokenizer, SANITY_PROMPT)], device=model_device(handle.model))
    with torch.no_grad():
        probs = handle.model(tokens)[0, -1].float().softmax(-1)
    top = int(probs.argmax())
    return handle.tokenizer.decode([top]), float(probs[top])


def _position(results: Any, name: str) -> int:
    """The notebook set's absolute position of role ``name`` (the same in all 8 prompts), or an index."""
    if isinstance(name, int):
        return name
    roles = results.meta["prompts"]["roles"]
    positions = {int(p) for p in roles[name]}
    if len(positions) != 1:
        raise FileFormatError(f"The role {name} sits at different positions in different prompts.",
                              "Use prompts of one layout, as the notebook's are.")
    return positions.pop()


def our_value(quantity: Mapping[str, Any], results: Any, sanity: tuple[str, float] | None = None) -> float | str:
    """Our number for one reference row's ``quantity`` (kinds: see the rows of the shipped reference)."""
    kind = quantity.get("kind")
    if kind == "sanity_top1":
        return sanity[0] if sanity else None
    if kind == "sanity_p_top1":
        return sanity[1] if sanity else None
    arrays = lambda name: results[name].arrays  # noqa: E731
    if kind == "logit_diff":
        return float(arrays("logit_diff")["logit_diff_clean"][int(quantity["prompt"])])
    if kind == "logit_diff_mean":
        return float(arrays("logit_diff")["logit_diff_clean"].mean())
    if kind == "corrupt_logit_diff_mean":
        return float(arrays("logit_diff")["logit_diff_corrupt"].mean())
    if kind == "lens":
        labels = results["logit_lens"].labels["resid"]
        return float(arrays("logit_lens")["logit_lens_logit_diff"][labels.index(quantity["point"])])
    if kind == "dla_component":
        labels = results["dla"].labels["component"]
        return float(arrays("dla")["dla_components"][labels.index(quantity["component"])])
    if kind == "dla_head":
        return float(arrays("dla")["dla_head"][int(quantity["layer"]), int(quantity["head"])])
    if kind == "patch":
        grid = arrays("patching")["patch_" + quantity["grid"]]
        second = quantity["head"] if "head" in quantity else _position(results, quantity["pos"])
        return float(grid[int(quantity["layer"]), int(second)])
    if kind == "head_score":
        return float(arrays("head_scores")["head_score_" + quantity["score"]][int(quantity["layer"]), int(quantity["head"])])
    if kind == "ablation_mean":
        return float(arrays("ablation")["ablation_logit_diff"].mean())
    if kind == "ablation_dla_guess":
        # The naive guess: the clean mean minus the ablated heads' direct attribution.
        ablated = arrays("ablation")
        return float(ablated["ablation_logit_diff_clean"].mean() - ablated["ablation_predicted_drop"])
    if kind in ("ablation_dla_before", "ablation_dla_after"):
        grid = arrays("ablation")["ablation_dla_head_" + kind.rsplit("_", 1)[1]]
        return float(grid[int(quantity["layer"]), int(quantity["head"])])
    raise FileFormatError(f"The reference row quantity {dict(quantity)!r} is of an unknown kind.",
                          "Use the kinds of resources/reference/notebook_gpt2_small.json.")


def compare(reference: Mapping[str, Any], results: Any, sanity: tuple[str, float] | None = None) -> Comparison:
    """Every reference row beside our value from ``results`` (a ``RunResults``)."""
    default_tol = float(reference.get("tolerance", 0.01))
    rows = []
    for entry in reference["rows"]:
        try:
            ours = our_value(entry["quantity"], results, sanity)
        except (IndexError, ValueError, KeyError):
            ours = None  # the model lacks that layer / head / point: the row fails, visibly
        rows.append(Row(step=str(entry["step"]), item=str(entry["item"]), published=entry["published"], ours=ours,
                        tolerance=float(entry.get("tolerance", default_tol)), note=str(entry.get("note", ""))))
    return Comparison(rows=tuple(rows), not_compared=tuple(reference.get("not_compared", ())),
                      model=str(reference.get("model", "")), source=str(reference.get("source", "")))


def reproduce(handle: Any, reference: Mapping[str, Any], runner: Any = None,
              on_progress: Callable | None = None, cancel_token: Any = None) -> tuple[Comparison, Any]:
    """Run the demo's steps on the notebook's 8 pairs and compare with ``reference``: (comparison, RunResults)."""
    from ioi_desktop.core.pairs import notebook_prompt_set
    from ioi_desktop.core.runner import Runner

    runner = runner or Runner()
    # The backup-name-mover rows need the ablation (of the reference's heads); others do not.
    kinds = {str(row["quantity"].get("kind", "")) for row in reference["rows"]}
    analyses = list(ANALYSES) + (["ablation"] if any(kind.startswith("ablation") for kind in kinds) else [])
    options = {name: value for name, value in analysis_options(reference).items() if name in analyses}
    results = runner.run(handle, notebook_prompt_set(), analyses, options,
                         on_progress=on_progress, cancel_token=cancel_token)
    needs_sanity = any(str(r["quantity"].get("kind", "")).startswith("sanity") for r in reference["rows"])
    return compare(reference, results, _sanity(handle) if needs_sanity else None), results


def _cell(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, str):
        return repr(value)
    return f"{value:+.3f}"


def format_table(comparison: Comparison) -> str:
    """The comparison as fixed-width text: step, item, published, ours, difference, PASS/FAIL."""
    header = ("step", "item", "published", "ours", "difference", "result")
    lines = [list(header)]
    for row in comparison.rows:
        diff = row.difference
        result = "PASS" if row.passed else "FAIL"
        if row.tolerance != 0.01 and not isinstance(row.published, str):
            result += f" (tolerance {row.tolerance:g})"
        lines.append([row.step, row.item, _cell(row.published), _cell(row.ours),
                      "" if diff is None else f"{diff:+.3f}", result])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * width for width in widths))
    text.append("")
    text.append(f"{comparison.n_passed} of {len(comparison.rows)} published numbers agree "
                "(|ours - published| < 0.01, i.e. at 2 decimals, unless a tolerance is shown).")
    for left in comparison.not_compared:
        text.append(f"Not compared: {left.get('step')} ({left.get('published', '')}): {left.get('why', '')}.")
    notes = sorted({row.note for row in comparison.rows if row.note and row.tolerance != 0.01})
    for note in notes:
        text.append(f"Note: {note}.")
    return "\n".join(text)
