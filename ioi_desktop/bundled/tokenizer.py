"""The bundled model's word-level tokenizer, in Hugging Face format.

One token per word, split the way GPT-2 splits text: a ``ByteLevel``
pre-tokenizer (GPT-2's regex, no prefix space) keeps a word's leading space in
the token, so " Mary" is the single token "ĠMary" and "Mary" at the very
start of a text is another one. Every word the corpus, the IOI paper and the
TransformerLens demo use is in the vocabulary, capitalised words in both
forms; anything else becomes ``<unk>`` (the vocabulary is closed, and
:func:`unknown_words` names what the model does not know). ``<|endoftext|>``
is id 0 and serves as BOS, EOS and padding, as in GPT-2.
"""

from __future__ import annotations

from pathlib import Path

BOS_TOKEN = "<|endoftext|>"
UNK_TOKEN = "<unk>"
_SPACE = "Ġ"  # ByteLevel's visible form of a leading space
_NEWLINE = "Ċ"


def build_vocabulary(words: list[str]) -> dict[str, int]:
    """Token -> id: specials first, then each word with a leading space, plus its bare form if capitalised or punctuation."""
    tokens = [BOS_TOKEN, UNK_TOKEN, _NEWLINE]
    for word in words:
        if word[0].isalpha():
            tokens.append(_SPACE + word)
            if word[0].isupper():
                tokens.append(word)
        else:
            tokens.append(word)
    unique = list(dict.fromkeys(tokens))
    return {token: index for index, token in enumerate(unique)}


def build_tokenizer(words: list[str] | None = None):
    """A ``PreTrainedTokenizerFast`` over the corpus vocabulary (or ``words``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if words is None:
        from ioi_desktop.bundled.corpus import vocabulary_words

        words = vocabulary_words()
    core = Tokenizer(models.WordLevel(vocab=build_vocabulary(words), unk_token=UNK_TOKEN))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS_TOKEN,
        eos_token=BOS_TOKEN,
        pad_token=BOS_TOKEN,
        unk_token=UNK_TOKEN,
        model_max_length=64,
        clean_up_tokenization_spaces=False,
    )


def save_tokenizer(tokenizer, folder: str | Path) -> None:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json."""
    tokenizer.save_pretrained(str(folder))


def unknown_words(tokenizer, text: str) -> list[str]:
    """The words of ``text`` that the tokenizer maps to ``<unk>``, in order, without repeats."""
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    unk_id = tokenizer.unk_token_id
    found: dict[str, None] = {}
    for token_id, (start, end) in zip(encoding["input_ids"], encoding["offset_mapping"]):
        if token_id == unk_id:
            found[text[start:end].strip()] = None
    return [word for word in found if word]
