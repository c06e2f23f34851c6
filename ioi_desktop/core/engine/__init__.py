"""Exact activation-patching engines behind one interface.

Both engines take the cached clean and corrupted runs (``PatchInputs``) and
answer ``patched_logit_diffs(kind, layer, masks) -> [setting, prompt]``: the
per-prompt logit difference at END of the corrupted run with the clean
activation patched in where ``masks`` is True. They give TransformerLens's
``patching`` results without its one-full-forward-per-cell cost:

- ``fast``: plain torch over the bridge's processed weights for the GPT-2
  family (``fast_gpt2``) and the rotary / RMSNorm / grouped-query / parallel-block
  families: Llama, Mistral, Qwen2, Qwen3, Gemma 1-3, Phi-3, GPT-NeoX, GPT-J (``fast_blocks``);
- ``bridge``: the bridge's own blocks from the patched layer on, for every
  architecture TransformerLens supports (``bridge_blocks``).

``select_engine`` picks ``fast`` when the model is supported and the engine
reproduces the cached corrupted run, else ``bridge``, and says why.
"""

from __future__ import annotations

from ioi_desktop.core.engine.bridge_blocks import BridgeBlocksEngine
from ioi_desktop.core.engine.fast_blocks import FastBlocksEngine, fast_engine_for
from ioi_desktop.core.engine.fast_gpt2 import FastGPT2Engine, unsupported_reason
from ioi_desktop.core.engine.inputs import (
    HEAD_KINDS,
    PATCH_KINDS,
    POSITION_KINDS,
    PatchInputs,
    hooks_for_kinds,
)
from ioi_desktop.core.errors import AnalysisError

ENGINE_CHOICES = ("auto", "fast", "bridge")


def select_engine(model, inputs: PatchInputs, choice: str = "auto"):
    """The engine to use and a sentence saying why: ``(engine, reason)``."""
    if choice not in ENGINE_CHOICES:
        raise AnalysisError(
            f"Unknown patching engine {choice!r}.", f"Use one of: {', '.join(ENGINE_CHOICES)}."
        )
    if choice == "bridge":
        return _bridge(model, inputs, "the bridge engine was requested")
    engine_class, reason = fast_engine_for(model)
    if engine_class is not None:
        engine = engine_class(model, inputs)
        reason = engine.self_check()
        if reason is None:
            return engine, f"the model is in the fast engine's {getattr(engine, 'family', 'GPT-2')} family"
    if choice == "fast":
        raise AnalysisError(
            f"The fast patching engine cannot run this model: {reason}.",
            "Use the engine 'auto' or 'bridge'.",
        )
    return _bridge(model, inputs, reason)


def _bridge(model, inputs: PatchInputs, reason: str):
    engine = BridgeBlocksEngine(model, inputs)
    return engine, reason if engine.note is None else f"{reason}; {engine.note}"


__all__ = [
    "BridgeBlocksEngine",
    "ENGINE_CHOICES",
    "FastBlocksEngine",
    "FastGPT2Engine",
    "HEAD_KINDS",
    "PATCH_KINDS",
    "POSITION_KINDS",
    "PatchInputs",
    "hooks_for_kinds",
    "select_engine",
]
