"""Property tests: arbitrary templates, word lists, pairs and files give a valid set or a clear error."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ioi_desktop.core.errors import FileFormatError, PromptError
from ioi_desktop.core.pairfiles import (
    prompt_set_from_csv,
    prompt_set_from_json,
    prompt_set_to_csv,
    prompt_set_to_json,
)
from ioi_desktop.core.pairs import CORRUPTIONS, BuilderSettings, WordLists, build_pairs, default_word_lists
from ioi_desktop.core.prompts import PairMeta, PromptPair, PromptSet, first_error, tokenize_set, validate

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
PAPER = default_word_lists()

pieces = st.one_of(
    st.sampled_from(["[A]", "[B]", "[C]", "[PLACE]", "[OBJECT]", " and ", ", ", " went to the ", ". ",
                     " gave a ", " to ", "When ", "[", "]", "[D]"]),
    st.text(max_size=8),
)
free_templates = st.lists(pieces, max_size=14).map("".join)
# Shaped like IOI templates, with arbitrary text around the slots, so many builds succeed.
shaped_templates = st.tuples(st.text(max_size=6), st.text(max_size=6), st.text(max_size=6), st.booleans()).map(
    lambda t: f"{t[0]}When [B] and [A]{t[1]} went to the [PLACE], [B]{t[2]} gave a [OBJECT] to" + (" [A]" if t[3] else "")
)
words = st.lists(st.one_of(st.sampled_from(PAPER.names[:12]), st.text(max_size=8)), max_size=8)


def _check_outcome(build, tokenizer):
    try:
        report = build()
    except PromptError as error:
        assert error.message and error.hint
        event("clear error")
        return
    event("valid set")
    assert first_error(validate(report.prompt_set, tokenizer)) is None
    batch = tokenize_set(report.prompt_set, tokenizer)
    assert (batch.roles["IO"] >= 0).all() and (batch.roles["S2"] > batch.roles["S1"]).all()


@PROPERTY
@given(templates=st.lists(st.one_of(free_templates, shaped_templates), min_size=1, max_size=3),
       names=words, places=words, objects=words, animals=words,
       corruption=st.sampled_from(list(CORRUPTIONS)), seed=st.integers(), symmetric=st.booleans(),
       n=st.integers(1, 6))
def test_builder_gives_a_valid_set_or_a_clear_error(gpt2_tokenizer, bundled_tokenizer, templates, names, places,
                                                    objects, animals, corruption, seed, symmetric, n):
    lists = WordLists(tuple(names), tuple(places), tuple(objects), tuple(animals))
    settings_ = BuilderSettings(family="custom", n=n, corruption=corruption, seed=seed, symmetric=symmetric,
                                word_lists=lists, templates=tuple(templates))
    for tokenizer in (gpt2_tokenizer, bundled_tokenizer):
        _check_outcome(lambda: build_pairs(settings_, tokenizer), tokenizer)


@PROPERTY
@given(family=st.sampled_from(["BABA", "ABBA", "mixed", "ABC"]), corruption=st.sampled_from(list(CORRUPTIONS)),
       names=st.lists(st.one_of(st.sampled_from(PAPER.names), st.text(max_size=6)), max_size=10),
       seed=st.integers(0, 2**64), n=st.integers(1, 5))
def test_builder_with_arbitrary_name_lists(gpt2_tokenizer, family, corruption, names, seed, n):
    lists = WordLists(tuple(names), PAPER.places, PAPER.objects, PAPER.animals)
    settings_ = BuilderSettings(family=family, n=n, corruption=corruption, seed=seed, word_lists=lists)
    _check_outcome(lambda: build_pairs(settings_, gpt2_tokenizer), gpt2_tokenizer)


texts = st.text(max_size=40)
metas = st.builds(PairMeta, family=texts, template=texts, io=texts, s=texts, c=texts, place=texts,
                  object=texts, corruption=texts, seed=st.one_of(st.none(), st.integers()))
pairs = st.builds(PromptPair, texts, texts, texts, texts, metas)


@PROPERTY
@given(prompt_pairs=st.lists(pairs, max_size=4))
def test_validation_never_crashes(gpt2_tokenizer, bundled_tokenizer, prompt_pairs):
    prompt_set = PromptSet(tuple(prompt_pairs))
    for tokenizer in (gpt2_tokenizer, bundled_tokenizer):
        findings = validate(prompt_set, tokenizer, n_ctx=64)
        assert all(f.severity in ("error", "warning") and f.message and f.hint for f in findings)
        try:
            batch = tokenize_set(prompt_set, tokenizer, n_ctx=64)
        except PromptError:
            assert first_error(findings) is not None
        else:
            assert first_error(findings) is None
            assert batch.clean_tokens.shape == batch.corrupt_tokens.shape
            assert all(len(t) == n for t, n in zip(batch.str_tokens, batch.lengths))


@PROPERTY
@given(prompt_pairs=st.lists(pairs, max_size=5), meta=st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))
def test_files_round_trip(prompt_pairs, meta):
    prompt_set = PromptSet(tuple(prompt_pairs), meta)
    assert prompt_set_from_json(prompt_set_to_json(prompt_set)) == prompt_set
    assert prompt_set_from_csv(prompt_set_to_csv(prompt_set)).pairs == prompt_set.pairs


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=20,
)
field_names = st.sampled_from(["clean", "corrupt", "correct", "incorrect", "seed", "io", "template", "other"])
pair_docs = st.dictionaries(field_names, json_values, max_size=8)
documents = st.fixed_dictionaries(
    {"format": st.sampled_from(["ioi-desktop/pairs", "other"]), "version": st.sampled_from([1, 2, "1"]),
     "pairs": st.one_of(st.lists(pair_docs, max_size=3), json_values)},
    optional={"meta": json_values},
)


@PROPERTY
@given(document=st.one_of(documents, json_values))
def test_json_reader_gives_a_set_or_a_clear_error(document):
    try:
        prompt_set_from_json(json.dumps(document))
    except FileFormatError as error:
        assert error.message.startswith("The pairs file") and error.hint


@PROPERTY
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_text_readers_give_a_set_or_a_clear_error(text):
    for reader in (prompt_set_from_json, prompt_set_from_csv):
        try:
            reader(text)
        except FileFormatError as error:
            assert error.message and error.hint


@PROPERTY
@given(rows=st.lists(st.lists(st.text(max_size=6), max_size=6), max_size=5),
       header=st.lists(field_names, max_size=6))
def test_csv_reader_on_arbitrary_tables(rows, header):
    import csv
    import io

    buffer = io.StringIO()
    csv.writer(buffer).writerows([header, *rows])
    try:
        prompt_set_from_csv(buffer.getvalue())
    except FileFormatError as error:
        assert error.message and error.hint
