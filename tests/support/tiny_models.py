"""Small models and tokenizers for tests, built locally with no network.

Import as ``from tests.support.tiny_models import ...``. Shared helpers live in
``tests/support/``, never in a conftest: ``from conftest import ...`` is
ambiguous when several folders have a conftest.
"""

from __future__ import annotations

from pathlib import Path

GPT2_TOKENIZER_DIR = Path(__file__).resolve().parents[1] / "data" / "gpt2-tokenizer"

DEMO_WORDS = (
    "When Then After and went to the store shops park , . gave a an bag ball drink apple bottle of milk "
    "John Mary Tom James Dan Sid Martin Amy"
).split()


def make_gpt2_tokenizer():
    """GPT-2's byte-level BPE tokenizer built from the vocab/merges in tests/data (see its README)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE.from_file(
        str(GPT2_TOKENIZER_DIR / "vocab.json"), str(GPT2_TOKENIZER_DIR / "merges.txt")
    ))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )


def make_word_tokenizer(words=DEMO_WORDS):
    """A closed-vocabulary tokenizer in GPT-2 style (" Mary" is one token), BOS id 0, ``<unk>`` id 1."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|endoftext|>": 0, "<unk>": 1}
    for word in words:
        for form in (word, "Ġ" + word):
            vocab.setdefault(form, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<unk>"
    )


def save_tiny_gpt2(folder: Path, *, n_layer=2, n_head=2, n_embd=16, n_positions=32, seed=0) -> Path:
    """Write a random GPT-2 with the demo-word tokenizer to ``folder`` (Hugging Face format)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = make_word_tokenizer()
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        bos_token_id=0, eos_token_id=0,
    )
    folder.mkdir(parents=True, exist_ok=True)
    GPT2LMHeadModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
