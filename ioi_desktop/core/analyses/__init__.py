"""The registry of analyses, in the order the app shows them: one line per analysis.

Each entry names a module ``ioi_desktop.core.analyses.<name>`` that follows the
contract in :mod:`ioi_desktop.core.analyses.base` (``NAME``, ``Options``,
``Result``, ``hooks_needed``, ``count_units``, ``run``). Modules are imported
only when first used, and import torch only inside their functions, so listing
the analyses or reading their Options/Result types (the GUI does at startup)
never imports torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from ioi_desktop.core.errors import AnalysisError


@dataclass(frozen=True)
class AnalysisInfo:
    """What the app shows about one analysis before it runs."""

    name: str
    title: str
    description: str

    @property
    def module_name(self) -> str:
        return f"ioi_desktop.core.analyses.{self.name}"


ANALYSES: tuple[AnalysisInfo, ...] = (
    AnalysisInfo(
        "logit_diff",
        "Logit difference",
        "Per-prompt logit(correct) - logit(incorrect) at END on clean and corrupted prompts, "
        "accuracy, p(correct) and the top next tokens.",
    ),
    AnalysisInfo(
        "logit_lens",
        "Logit lens",
        "The logit difference read from the residual stream after every half-layer, and a "
        "layer x position grid of the top tokens each residual stream predicts.",
    ),
    AnalysisInfo(
        "dla",
        "Direct logit attribution",
        "How much each component (embeddings, attention and MLP layers) and each attention "
        "head writes directly into the logit difference.",
    ),
    AnalysisInfo(
        "attention",
        "Attention patterns",
        "Clean attention patterns of every head on every prompt.",
    ),
    AnalysisInfo(
        "patching",
        "Activation patching",
        "Exact activation patching, clean into corrupted: residual stream, layer outputs and "
        "every head's output, value, pattern, query and key.",
    ),
    AnalysisInfo(
        "attribution_patching",
        "Attribution patching",
        "The linear (gradient) estimate of the same patching grids from one forward and one "
        "backward pass.",
    ),
    AnalysisInfo("ablation", "Ablation what-if", "Ablate a set of heads and see the new logit difference and every head's DLA before and after (backup and negative heads)."),
    AnalysisInfo("path_patching", "Path patching", "Direct path patching (Wang et al.): sender heads' clean write reaching only each later head's q, k or v, or the logits."),
    AnalysisInfo(
        "head_scores",
        "Head types",
        "Previous-token, duplicate-token and induction scores of every head on repeated random "
        "tokens.",
    ),
    AnalysisInfo("circuit", "Circuit discovery", "Edge scores (EAP, EAP-IG, exact) on EAP-IG's graph, faithfulness curves with CPR/CMD, and the circuit they find."),
)

_BY_NAME = {info.name: info for info in ANALYSES}


def analysis_names() -> list[str]:
    """All analysis names in display order."""
    return [info.name for info in ANALYSES]


def analysis_info(name: str) -> AnalysisInfo:
    """The registry entry of ``name``; AnalysisError names the unknown analysis."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise AnalysisError(
            f"There is no analysis called {name!r}.",
            f"Choose from: {', '.join(analysis_names())}.",
        ) from None


def get_analysis(name: str) -> ModuleType:
    """Import and return the module that runs analysis ``name``."""
    module_name = analysis_info(name).module_name
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise AnalysisError(
            f"The analysis {name!r} is not available in this installation.",
            "Reinstall IOI Desktop, or choose another analysis.",
        ) from exc


def options_type(name: str) -> type:
    """The ``Options`` dataclass of analysis ``name``."""
    return get_analysis(name).Options


def result_type(name: str) -> type:
    """The ``Result`` dataclass of analysis ``name``."""
    return get_analysis(name).Result


def option_types() -> dict[str, type]:
    """Analysis name -> its ``Options`` dataclass, in display order."""
    return {name: options_type(name) for name in analysis_names()}


def default_options() -> dict[str, object]:
    """Analysis name -> its default ``Options``."""
    return {name: cls() for name, cls in option_types().items()}


def parse_analysis_list(text: str | None) -> list[str]:
    """``"logit_diff, dla"`` -> ``["logit_diff", "dla"]`` in display order; empty/None -> all."""
    if text is None or not text.strip():
        return analysis_names()
    wanted = [part.strip() for part in text.split(",") if part.strip()]
    for name in wanted:
        analysis_info(name)
    return [name for name in analysis_names() if name in wanted]
