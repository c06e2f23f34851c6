"""Tiny random models of every causal LM architecture TransformerLens supports, built offline.

``CAUSAL_LMS`` lists the architecture names (TransformerLens's
``SUPPORTED_ARCHITECTURES``) that are causal language models and that
transformers can build from a config alone. ``save_tiny(arch, folder)`` writes
a random model of that architecture (2 layers, d_model 32, 4 query heads, 2
key-value heads where the architecture has them) with GPT-2's tokenizer from
tests/data as a Hugging Face folder, so tests load it through the app's own
loader. Norm weights are perturbed so weight processing matters.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.patching_helpers import gpt2_tokenizer

VOCAB = 50257
BOS = 50256

# Every size name the configs use, set at once (unknown names are ignored by the configs).
_COMMON = dict(
    vocab_size=VOCAB, bos_token_id=BOS, eos_token_id=BOS, pad_token_id=None,
    num_hidden_layers=2, n_layer=2, n_layers=2, num_layers=2,
    hidden_size=32, n_embd=32, d_model=32,
    num_attention_heads=4, n_head=4, n_heads=4, attention_heads=4, num_heads=4,
    intermediate_size=64, ffn_dim=64, n_inner=64,
    max_position_embeddings=64, n_positions=64, max_seq_len=64,
    tie_word_embeddings=False, use_cache=False,
)

# Small mixture-of-experts sizes under every name the MoE configs use.
_MOE = dict(num_experts=4, num_local_experts=4, n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
            n_group=1, topk_group=1, n_shared_experts=1, first_k_dense_replace=1, shared_expert_intermediate_size=32)
# Multi-head latent attention (DeepSeek-V2/V3 style) sizes.
_MLA = dict(q_lora_rank=None, kv_lora_rank=16, qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=8)
_LINEAR_ATTENTION = dict(layer_types=["linear_attention", "full_attention"], linear_num_key_heads=2,
                         linear_num_value_heads=4, linear_key_head_dim=8, linear_value_head_dim=8)

# Per-architecture additions (MoE sizes, rotary dims, aliases that must agree).
_EXTRA: dict[str, dict] = {
    "GPTJForCausalLM": dict(rotary_dim=4),
    "CodeGenForCausalLM": dict(rotary_dim=4, n_ctx=64),
    "GPTNeoXForCausalLM": dict(rotary_pct=0.5, use_parallel_residual=True),
    "GPTNeoForCausalLM": dict(attention_types=[[["global", "local"], 1]], window_size=8),
    "GPTBigCodeForCausalLM": dict(multi_query=True),
    "MptForCausalLM": dict(expansion_ratio=2, attn_config={"attn_impl": "torch"}),
    "PhiForCausalLM": dict(partial_rotary_factor=0.5, num_key_value_heads=4),
    "FalconForCausalLM": dict(new_decoder_architecture=False, multi_query=True, parallel_attn=True, alibi=False,
                              ffn_hidden_size=64),
    "BloomForCausalLM": dict(),
    "OPTForCausalLM": dict(word_embed_proj_dim=32, do_layer_norm_before=True),
    "MixtralForCausalLM": dict(num_local_experts=4, num_experts_per_tok=2),
    "Qwen2MoeForCausalLM": dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                                shared_expert_intermediate_size=32),
    "Qwen3MoeForCausalLM": dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32),
    "OlmoeForCausalLM": dict(num_experts=4, num_experts_per_tok=2),
    "GraniteMoeForCausalLM": dict(num_local_experts=4, num_experts_per_tok=2),
    "JetMoeForCausalLM": dict(num_local_experts=4, num_experts_per_tok=2, kv_channels=8),
    "DeepseekV2ForCausalLM": dict(q_lora_rank=None, kv_lora_rank=16, qk_rope_head_dim=4, qk_nope_head_dim=4,
                                  v_head_dim=8, n_routed_experts=4, num_experts_per_tok=2,
                                  moe_intermediate_size=32, first_k_dense_replace=1, n_shared_experts=1),
    "Gemma2ForCausalLM": dict(sliding_window=16, query_pre_attn_scalar=8),
    "Gemma3ForCausalLM": dict(sliding_window=16, query_pre_attn_scalar=8),
    # Gemma 4's per-layer input embeddings default to a 262,144 x 256 table per layer: kept tiny here.
    "Gemma4ForCausalLM": dict(sliding_window=16, vocab_size_per_layer_input=VOCAB, hidden_size_per_layer_input=4),
    "Cohere2ForCausalLM": dict(sliding_window=16),
    "StableLmForCausalLM": dict(partial_rotary_factor=0.5, num_key_value_heads=4),
    "NemotronForCausalLM": dict(partial_rotary_factor=0.5),
    "MambaForCausalLM": dict(state_size=4, expand=2, conv_kernel=4, time_step_rank=4),
    # Hybrid / newer architectures: layer 0 of the hybrids is their recurrent (Mamba, conv, linear-attention)
    # mixer and layer 1 softmax attention, so both kinds are in a 2-layer model.
    "JambaForCausalLM": dict(attn_layer_period=2, attn_layer_offset=1, expert_layer_period=2, expert_layer_offset=1,
                             num_experts=4, num_experts_per_tok=2, mamba_d_state=4, mamba_d_conv=4, mamba_dt_rank=4,
                             mamba_expand=2),
    "BambaForCausalLM": dict(attn_layer_indices=[1], mamba_n_heads=4, mamba_d_head=16, mamba_d_state=4,
                             mamba_n_groups=1, mamba_d_conv=4, mamba_chunk_size=8),
    "FalconH1ForCausalLM": dict(mamba_n_heads=4, mamba_d_head=16, mamba_d_ssm=64, mamba_d_state=4, mamba_n_groups=1,
                                mamba_d_conv=4, mamba_chunk_size=8, num_key_value_heads=4, head_dim=8),
    "Zamba2ForCausalLM": dict(layers_block_type=["mamba", "hybrid"], mamba_d_state=4, mamba_headdim=16,
                              n_mamba_heads=4, mamba_ngroups=1, attention_head_dim=8, num_mem_blocks=1,
                              chunk_size=8, adapter_rank=4, use_shared_attention_adapter=False),
    "NemotronHForCausalLM": dict(layers_block_type=["mamba", "attention"], mamba_num_heads=4, mamba_head_dim=16,
                                 ssm_state_size=4, n_groups=1, conv_kernel=4, chunk_size=8, n_routed_experts=4,
                                 moe_intermediate_size=32, num_experts_per_tok=2),
    "Lfm2ForCausalLM": dict(layer_types=["conv", "full_attention"]),
    "Qwen3NextForCausalLM": dict(layer_types=["linear_attention", "full_attention"], num_experts=4,
                                 num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=32,
                                 linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=8,
                                 linear_value_head_dim=8, linear_conv_kernel_dim=4),
    "GraniteMoeHybridForCausalLM": dict(layer_types=["mamba", "attention"], num_local_experts=4,
                                        num_experts_per_tok=2, mamba_n_heads=4, mamba_d_head=16, mamba_d_state=4,
                                        mamba_n_groups=1, mamba_d_conv=4, mamba_chunk_size=8,
                                        shared_intermediate_size=64, position_embedding_type="rope"),
    "GptOssForCausalLM": dict(num_local_experts=4, num_experts_per_tok=2, sliding_window=16),
    "DeepseekV3ForCausalLM": dict(q_lora_rank=None, kv_lora_rank=16, qk_rope_head_dim=4, qk_nope_head_dim=4,
                                  v_head_dim=8, n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                                  first_k_dense_replace=1, n_shared_experts=1, n_group=1, topk_group=1,
                                  num_key_value_heads=4),
    "Llama4ForCausalLM": dict(num_local_experts=4, num_experts_per_tok=1, intermediate_size_mlp=64,
                              interleave_moe_layer_step=2),
    "Glm4MoeForCausalLM": dict(_MOE, partial_rotary_factor=0.5),
    "Glm4MoeLiteForCausalLM": dict(_MOE, **_MLA, num_key_value_heads=4),
    "YoutuForCausalLM": dict(_MOE, **_MLA, num_key_value_heads=4),
    "Ernie4_5_MoeForCausalLM": dict(_MOE, moe_num_experts=4, moe_k=2, moe_layer_start_index=1),
    "FlexOlmoForCausalLM": _MOE,
    "AfmoeForCausalLM": dict(_MOE, num_dense_layers=1),
    "MiniMaxM2ForCausalLM": _MOE,
    "OlmoHybridForCausalLM": dict(layer_types=["linear_attention", "full_attention"]),
    "Qwen3_5ForCausalLM": _LINEAR_ATTENTION,
    "Qwen3_5MoeForCausalLM": dict(_MOE, **_LINEAR_ATTENTION),
    "FalconMambaForCausalLM": dict(state_size=4, expand=2, conv_kernel=4, time_step_rank=4),
    "Mamba2ForCausalLM": dict(state_size=4, expand=2, conv_kernel=4, head_dim=16, num_heads=4, n_groups=1,
                              chunk_size=8),
}
# Architectures with grouped-query attention: 4 query heads share 2 key-value heads.
GQA = {
    "LlamaForCausalLM", "MistralForCausalLM", "MixtralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
    "Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM", "GemmaForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM",
    "CohereForCausalLM", "Cohere2ForCausalLM", "GraniteForCausalLM", "GraniteMoeForCausalLM", "OlmoForCausalLM",
    "Olmo2ForCausalLM", "Olmo3ForCausalLM", "OlmoeForCausalLM", "Starcoder2ForCausalLM", "NemotronForCausalLM",
    "GlmForCausalLM", "Glm4ForCausalLM", "SmolLM3ForCausalLM", "ApertusForCausalLM", "ArceeForCausalLM",
    "SeedOssForCausalLM", "HunYuanDenseV1ForCausalLM", "Exaone4ForCausalLM", "Ernie4_5ForCausalLM",
    "VaultGemmaForCausalLM", "BitNetForCausalLM", "Phi3ForCausalLM",
    "JambaForCausalLM", "BambaForCausalLM", "FalconH1ForCausalLM", "NemotronHForCausalLM", "Lfm2ForCausalLM",
    "Qwen3NextForCausalLM", "GraniteMoeHybridForCausalLM", "GptOssForCausalLM", "Llama4ForCausalLM",
    "Zamba2ForCausalLM", "Ministral3ForCausalLM", "Glm4MoeForCausalLM", "Ernie4_5_MoeForCausalLM",
    "FlexOlmoForCausalLM", "NanoChatForCausalLM", "Jais2ForCausalLM", "AfmoeForCausalLM", "MiniMaxM2ForCausalLM",
    "OlmoHybridForCausalLM", "Qwen3_5ForCausalLM", "Qwen3_5MoeForCausalLM",
}

CAUSAL_LMS = (
    "GPT2LMHeadModel", "GPTNeoXForCausalLM", "GPTJForCausalLM", "GPTNeoForCausalLM", "GPTBigCodeForCausalLM",
    "OPTForCausalLM", "BloomForCausalLM", "FalconForCausalLM", "MptForCausalLM", "CodeGenForCausalLM",
    "OpenAIGPTLMHeadModel", "XGLMForCausalLM", "PhiForCausalLM", "Phi3ForCausalLM",
    "LlamaForCausalLM", "MistralForCausalLM", "MixtralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
    "Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM", "GemmaForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM",
    "CohereForCausalLM", "Cohere2ForCausalLM", "GraniteForCausalLM", "GraniteMoeForCausalLM",
    "OlmoForCausalLM", "Olmo2ForCausalLM", "Olmo3ForCausalLM", "OlmoeForCausalLM", "StableLmForCausalLM",
    "Starcoder2ForCausalLM", "NemotronForCausalLM", "GlmForCausalLM", "Glm4ForCausalLM", "SmolLM3ForCausalLM",
    "ApertusForCausalLM", "ArceeForCausalLM", "SeedOssForCausalLM", "HunYuanDenseV1ForCausalLM",
    "Exaone4ForCausalLM", "Ernie4_5ForCausalLM", "VaultGemmaForCausalLM", "BitNetForCausalLM",
    "DeepseekV2ForCausalLM", "JetMoeForCausalLM", "MambaForCausalLM",
    # Hybrid and newer architectures (TransformerLens 4.3's additions).
    "JambaForCausalLM", "BambaForCausalLM", "FalconH1ForCausalLM", "Zamba2ForCausalLM", "NemotronHForCausalLM",
    "Lfm2ForCausalLM", "Qwen3NextForCausalLM", "GraniteMoeHybridForCausalLM", "GptOssForCausalLM",
    "DeepseekV3ForCausalLM", "Llama4ForCausalLM", "Ministral3ForCausalLM", "Glm4MoeForCausalLM",
    "Glm4MoeLiteForCausalLM", "YoutuForCausalLM", "Ernie4_5_MoeForCausalLM", "FlexOlmoForCausalLM",
    "NanoChatForCausalLM", "Jais2ForCausalLM", "AfmoeForCausalLM", "MiniMaxM2ForCausalLM", "OlmoHybridForCausalLM",
    "Qwen3_5ForCausalLM", "Qwen3_5MoeForCausalLM", "FalconMambaForCausalLM", "Mamba2ForCausalLM",
    "Gemma4ForCausalLM",
)


def tiny_config(architecture: str):
    import transformers

    model_cls = getattr(transformers, architecture)
    kwargs = {**_COMMON, **_EXTRA.get(architecture, {})}
    if architecture in GQA:
        kwargs.update(num_key_value_heads=2, head_dim=8)
    return model_cls.config_class(**kwargs), model_cls


def save_tiny(architecture: str, folder: Path, seed: int = 0) -> Path:
    """Write a random ``architecture`` model with GPT-2's tokenizer to ``folder``."""
    import torch

    config, model_cls = tiny_config(architecture)
    config.architectures = [architecture]
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            lowered = name.lower()
            if ("norm" in lowered or "ln" in lowered.split(".")[-2:][0]) and parameter.ndim == 1:
                if name.endswith("weight"):
                    parameter.copy_(1.0 + 0.3 * torch.randn_like(parameter))
                else:
                    parameter.copy_(0.2 * torch.randn_like(parameter))
            elif parameter.ndim >= 2 and "embed" not in lowered and "wte" not in lowered:
                parameter.mul_(4.0)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    gpt2_tokenizer().save_pretrained(folder)
    return folder
