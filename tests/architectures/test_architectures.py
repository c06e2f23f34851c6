"""The architecture matrix: every causal LM TransformerLens 4.3 supports that transformers builds offline.

Each test builds a tiny random model (tests/support/arch_models.py) in a tmp
folder, loads it through the app's loader and runs every analysis through the
runner. Every analysis that runs is compared with TransformerLens's own
computation (tests/support/arch_checks.py: ActivationCache methods,
``transformer_lens.patching``, plain autograd) to 1e-5; every analysis that
does not run must be one of the refusals listed here, each a single sentence
naming the architecture. A change that makes a model fail anew, or fixes one
(so its refusal must go), fails the test.
"""

from __future__ import annotations

import pytest

from tests.architectures.matrix import ANALYSES, run_architecture
from tests.support.arch_models import CAUSAL_LMS

TOL = 1e-5

REFUSED_AT_LOAD = {
    "CodeGenForCausalLM": "embed_positions",
    "VaultGemmaForCausalLM": "does not support compatibility mode",
    # Falcon-H1 runs attention and a Mamba-2 mixer in parallel on one norm; TransformerLens's LayerNorm folding fails.
    "FalconH1ForCausalLM": "could not prepare",
}
_NO_ATTENTION_HOOKS = {a: "does not provide for JetMoeForCausalLM"
                       for a in ("dla", "patching", "attribution_patching", "ablation", "path_patching")}
_PER_HEAD = [a for a in ANALYSES if a not in ("logit_diff", "logit_lens")]
# Hybrids with attention in layer 1 only (layer 0: Mamba, convolution or linear-attention mixer).
HYBRIDS = ("JambaForCausalLM", "BambaForCausalLM", "Lfm2ForCausalLM", "Qwen3NextForCausalLM",
           "GraniteMoeHybridForCausalLM", "OlmoHybridForCausalLM", "Qwen3_5ForCausalLM", "Qwen3_5MoeForCausalLM")
MLA = ("DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM", "Glm4MoeLiteForCausalLM", "YoutuForCausalLM")
# Post-attention norms (or a scale) between the head sum and the residual stream: a head's write is not
# z @ W_O, so path patching refuses them (as TransformerLens's get_act_patch_direct_path does).
POST_NORM = ("Gemma2ForCausalLM", "Gemma3ForCausalLM", "Olmo2ForCausalLM", "Olmo3ForCausalLM", "Glm4ForCausalLM",
             "FlexOlmoForCausalLM", "Exaone4ForCausalLM", "AfmoeForCausalLM")
EXPECTED_REFUSALS: dict[str, dict[str, str]] = {
    **{arch: {"path_patching": f"cannot isolate one head's write on {arch}"} for arch in POST_NORM},
    "OpenAIGPTLMHeadModel": {a: "which TransformerLens does not record for OpenAIGPTLMHeadModel"
                             for a in ("logit_lens", "dla", "ablation", "path_patching")},
    **{arch: {a: f"does not lay out per head for {arch}'s multi-head latent attention"
              for a in ("dla", "patching", "attribution_patching", "ablation", "path_patching")}
       for arch in MLA},
    "JetMoeForCausalLM": _NO_ATTENTION_HOOKS,
    # TransformerLens wraps Gemma 4's final norm as a generic component: no ln_final.hook_scale to apply.
    "Gemma4ForCausalLM": {a: "which TransformerLens does not record for Gemma4ForCausalLM"
                          for a in ("logit_lens", "dla", "ablation", "path_patching")},
    **{arch: {a: f"{arch} does not have (it has no attention layers)" for a in _PER_HEAD}
       for arch in ("MambaForCausalLM", "FalconMambaForCausalLM", "Mamba2ForCausalLM")},
    # Hybrids run the attention patterns, head scores, DLA per head, activation and attribution patching over
    # their attention layers; ablation and path patching are refused.
    **{arch: {a: f"{arch} is a hybrid with attention only in layer 1 of 2" for a in _PER_HEAD
              if a not in ("attention", "head_scores", "dla", "patching", "attribution_patching")}
       for arch in HYBRIDS},
    **{arch: {a: f"which TransformerLens does not expose for {arch}" for a in _PER_HEAD}
       for arch in ("Zamba2ForCausalLM", "NemotronHForCausalLM")},
}
# TransformerLens discards edits to hook_pattern on these: the pattern grid is refused, never zeros.
PATTERN_EDITS_DISCARDED = {"OPTForCausalLM", "GPTNeoForCausalLM", "XGLMForCausalLM", "GPTJForCausalLM",
                           "Llama4ForCausalLM", "NanoChatForCausalLM", "AfmoeForCausalLM", "Gemma4ForCausalLM",
                           *HYBRIDS}
# The fast patching engine's families; every other architecture patches on the bridge engine.
FAST_ENGINE = {"GPT2LMHeadModel", "GPTNeoXForCausalLM", "GPTJForCausalLM", "LlamaForCausalLM", "MistralForCausalLM",
               "Qwen2ForCausalLM", "Qwen3ForCausalLM", "GemmaForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM",
               "Phi3ForCausalLM"}
# cfg.default_prepend_bos is False for these architectures: prompts get no BOS.
NO_BOS = {"GPTNeoXForCausalLM", "BloomForCausalLM", "MptForCausalLM", "PhiForCausalLM", "Qwen2ForCausalLM",
          "Qwen3ForCausalLM", "Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM", "GraniteForCausalLM",
          "GraniteMoeForCausalLM", "Starcoder2ForCausalLM", "GlmForCausalLM", "Glm4ForCausalLM",
          "SmolLM3ForCausalLM", "SeedOssForCausalLM", "Exaone4ForCausalLM", "Ernie4_5ForCausalLM",
          "Qwen3NextForCausalLM", "GraniteMoeHybridForCausalLM", "Glm4MoeForCausalLM", "Glm4MoeLiteForCausalLM",
          "Ernie4_5_MoeForCausalLM", "Qwen3_5ForCausalLM", "Qwen3_5MoeForCausalLM", "MiniMaxM2ForCausalLM"}


def _one_sentence(text: str) -> None:
    assert "\n" not in text and "Traceback" not in text and "unexpected error" not in text, text


@pytest.mark.parametrize("architecture", CAUSAL_LMS)
def test_architecture(architecture, tmp_path):
    outcome = run_architecture(architecture, tmp_path / architecture)
    if architecture in REFUSED_AT_LOAD:
        assert REFUSED_AT_LOAD[architecture] in outcome.refused and architecture in outcome.refused
        _one_sentence(outcome.refused)
        return
    assert not outcome.refused, outcome.refused
    expected = EXPECTED_REFUSALS.get(architecture, {})
    assert set(outcome.failed) == set(expected), outcome.failed
    for name, sentence in outcome.failed.items():
        assert expected[name] in sentence, sentence
        _one_sentence(sentence)
    for name, difference in outcome.differences.items():
        assert difference <= TOL, (name, difference)
    compared = {"logit_diff", "logit_lens", "dla", "attention", "patching", "attribution_patching", "path_patching",
                "head_scores"}
    assert set(outcome.differences) == compared - set(outcome.failed)
    # Path patching computed every grid it was asked for (its q/k/v grids are compared above).
    assert not outcome.notes.get("path_patching"), outcome.notes["path_patching"]
    refused_grids = outcome.notes.get("patching", {})
    if architecture in PATTERN_EDITS_DISCARDED:
        assert set(refused_grids) == {"head_pattern"}
        assert "discards edits to hook_pattern" in refused_grids["head_pattern"]
    else:
        assert not refused_grids, refused_grids
    if "attention" not in outcome.failed:
        # A hybrid's patterns are its attention layers' (layer 1), every other model's every layer's.
        assert outcome.notes["attention_layers"] == ([1] if architecture in HYBRIDS else None)
    if "patching" not in outcome.failed:
        assert outcome.notes["patching_layers"] == ([1] if architecture in HYBRIDS else None)
    if "dla" not in outcome.failed:
        assert outcome.notes["dla_layers"] == ([1] if architecture in HYBRIDS else None)
    if "head_scores" not in outcome.failed:
        assert outcome.notes["head_scores_layers"] == ([1] if architecture in HYBRIDS else None)
    assert outcome.prepend_bos is (architecture not in NO_BOS)
    if "patching" not in outcome.failed:
        assert outcome.engine == ("fast" if architecture in FAST_ENGINE else "bridge"), outcome.engine_reason
