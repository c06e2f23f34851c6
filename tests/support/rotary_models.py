"""Tiny random models of the rotary / RMSNorm / grouped-query / parallel-block families, booted offline.

Used by the fast-engine parity tests and ``benchmarks/bench_patching.py``. Every
model has GPT-2's vocabulary (so the notebook prompts tokenize with the real
GPT-2 tokenizer saved next to it), perturbed norm weights (so folding them is
exercised), query/key/value weights scaled by ``attn_gain`` (random
initialisation attends almost uniformly, which would make patching effects tiny)
and the unembedding scaled by ``logit_gain``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

VOCAB = 50257
EOT = 50256


def _configs(d_model: int, n_layers: int, n_heads: int, n_kv_heads: int, d_mlp: int) -> dict:
    """Family name -> (config class name, model class name, config keyword arguments)."""
    d_head = d_model // n_heads
    rotary = dict(hidden_size=d_model, intermediate_size=d_mlp, num_hidden_layers=n_layers,
                  num_attention_heads=n_heads, num_key_value_heads=n_kv_heads, max_position_embeddings=64)
    gemma = dict(rotary, head_dim=d_head, sliding_window=4)
    return {
        "llama": ("LlamaConfig", "LlamaForCausalLM", rotary),
        "mistral": ("MistralConfig", "MistralForCausalLM", dict(rotary, sliding_window=4)),
        "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", rotary),
        "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(rotary, head_dim=d_head)),
        "gemma": ("GemmaConfig", "GemmaForCausalLM", dict(rotary, head_dim=d_head)),
        "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", gemma),
        "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", gemma),
        "phi3": ("Phi3Config", "Phi3ForCausalLM", dict(rotary, partial_rotary_factor=0.5, pad_token_id=0)),
        "neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM",
                 dict(hidden_size=d_model, intermediate_size=d_mlp, num_hidden_layers=n_layers,
                      num_attention_heads=n_heads, max_position_embeddings=64, rotary_pct=0.25)),
        # GPT-J: parallel block with one shared LayerNorm, no GQA, adjacent-pair rotary on half of each head.
        "gptj": ("GPTJConfig", "GPTJForCausalLM",
                 dict(n_embd=d_model, n_inner=d_mlp, n_layer=n_layers, n_head=n_heads, n_positions=64,
                      rotary_dim=d_head // 2, tie_word_embeddings=False)),
    }


FAMILIES = tuple(_configs(32, 2, 4, 2, 64))


def save_random_model(family: str, folder: Path, *, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_mlp=64,
                      seed=0, attn_gain=8.0, norm_noise=0.3, logit_gain=10.0) -> Path:
    """Write a random ``family`` model with GPT-2's tokenizer to ``folder`` (Hugging Face format)."""
    import torch
    import transformers

    from tests.support.tiny_models import make_gpt2_tokenizer

    config_name, model_name, kwargs = _configs(d_model, n_layers, n_heads, n_kv_heads, d_mlp)[family]
    config = getattr(transformers, config_name)(**kwargs, vocab_size=VOCAB, bos_token_id=EOT, eos_token_id=EOT)
    torch.manual_seed(seed)
    model = getattr(transformers, model_name)(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ("norm" in name or ".ln_" in name) and name.endswith("weight"):
                param.add_(torch.randn_like(param) * norm_noise)
            elif any(part in name for part in ("q_proj", "k_proj", "v_proj", "qkv_proj", "query_key_value")):
                param.mul_(attn_gain)
            elif name.endswith(("lm_head.weight", "embed_out.weight")):
                param.mul_(logit_gain)  # logit differences well above the tests' 1e-5 tolerance
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    make_gpt2_tokenizer().save_pretrained(folder)
    return folder


def random_bridge(family: str, folder: Path | None = None, **shape):
    """``save_random_model`` booted into a TransformerBridge with the notebook's processing
    (less refactor_factored_attn_matrices, which rotary models cannot take)."""
    from tests.support.patching_helpers import boot_processed_bridge

    folder = Path(folder or tempfile.mkdtemp(prefix=f"ioi-{family}-"))
    return boot_processed_bridge(save_random_model(family, folder, **shape), refactor_factored_attn_matrices=False)
