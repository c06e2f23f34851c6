"""One architecture of the matrix: build a tiny random model, load it with the app's loader, run every analysis.

Also a script: ``python -m tests.architectures.matrix [ARCH ...]`` prints the
table (architecture, patching engine, max difference from TransformerLens per
analysis, what did not run and why) for the report.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ANALYSES = ("logit_diff", "logit_lens", "dla", "attention", "patching", "attribution_patching",
            "ablation", "path_patching", "head_scores")
# Small head_scores run (compared with the cached patterns here; its conventions are checked in tests/core).
OPTIONS = {"head_scores": {"seq_len": 8, "batch": 2}}
# Every patching grid for one model of each block family; the others patch one grid per hook family
# (position grid, z, the kv-head grids, pattern), which is where architectures differ.
FULL = {"GPT2LMHeadModel", "GPTNeoXForCausalLM", "LlamaForCausalLM", "OPTForCausalLM", "FalconForCausalLM"}
SOME_SWEEPS = ("resid_pre", "head_z", "head_v", "head_k", "head_pattern")


def options_for(architecture: str) -> dict:
    if architecture in FULL:
        return OPTIONS
    return {**OPTIONS, "patching": {"sweeps": SOME_SWEEPS}, "attribution_patching": {"sweeps": SOME_SWEEPS}}


@dataclass
class Outcome:
    architecture: str
    refused: str = ""  # the load refusal sentence, if any
    engine: str = ""  # the patching engine the runner chose ("fast" or "bridge")
    engine_reason: str = ""
    differences: dict = field(default_factory=dict)
    failed: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)
    prepend_bos: bool | None = None


def prompt_set():
    from ioi_desktop.core.pairs import notebook_prompt_set
    from ioi_desktop.core.prompts import PromptSet

    return PromptSet(tuple(notebook_prompt_set())[:2])


def run_architecture(architecture: str, folder: Path, analyses=ANALYSES) -> Outcome:
    from ioi_desktop.core.errors import IOIError
    from ioi_desktop.core.models import ModelSpec, load_model
    from ioi_desktop.core.runner import Runner

    from tests.support.arch_checks import max_differences
    from tests.support.arch_models import save_tiny

    save_tiny(architecture, folder)
    outcome = Outcome(architecture)
    try:
        handle = load_model(ModelSpec(source=str(folder), device="cpu"))
    except IOIError as error:
        outcome.refused = str(error)
        return outcome
    outcome.prepend_bos = handle.info.prepend_bos
    options = options_for(architecture)
    results = Runner().run(handle, prompt_set(), list(analyses), {k: v for k, v in options.items() if k in analyses})
    outcome.failed = dict(results.meta["failed"])
    if "patching" in results:
        outcome.engine = results["patching"].meta["engine"]
        outcome.engine_reason = results["patching"].meta.get("engine_reason", "")
        outcome.notes["patching"] = results["patching"].meta.get("refused") or {}
        outcome.notes["patching_layers"] = results["patching"].meta.get("attention_layers")
    if "attention" in results:
        outcome.notes["attention_layers"] = results["attention"].meta.get("attention_layers")
    if "dla" in results:
        outcome.notes["dla_layers"] = results["dla"].meta.get("attention_layers")
    if "head_scores" in results:
        outcome.notes["head_scores_layers"] = results["head_scores"].meta.get("attention_layers")
    if "path_patching" in results:
        outcome.notes["path_patching"] = results["path_patching"].meta.get("note") or ""
    outcome.differences = max_differences(handle, _batch(handle), results)
    return outcome


def _batch(handle):
    from ioi_desktop.core.runner import tokenized

    return tokenized(handle, prompt_set())


def main(argv: list[str]) -> int:
    import warnings

    import torch

    from tests.support.arch_models import CAUSAL_LMS

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="ioi-arch-"))
    short = {"logit_diff": "ld", "logit_lens": "lens", "dla": "dla", "attention": "attn", "patching": "patch",
             "attribution_patching": "atp", "path_patching": "path", "head_scores": "types"}
    print("| architecture | BOS | engine | " + " | ".join(short.values()) + " | did not run |")
    print("|---" * (4 + len(short)) + "|")
    for architecture in argv or CAUSAL_LMS:
        outcome = run_architecture(architecture, root / architecture)
        if outcome.refused:
            print(f"| {architecture} | | refused at load | " + " | ".join("" for _ in short) + f" | {outcome.refused} |")
            continue
        cells = [f"{outcome.differences[a]:.1e}" if a in outcome.differences else "-" for a in short]
        refused = {**outcome.failed, **{f"patching.{k}": v for k, v in outcome.notes.get("patching", {}).items()}}
        text = "; ".join(f"{name}: {sentence}" for name, sentence in refused.items())
        print(f"| {architecture} | {'yes' if outcome.prepend_bos else 'no'} | {outcome.engine or '-'} | "
              + " | ".join(cells) + f" | {text} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
