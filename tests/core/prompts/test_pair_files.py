"""Pairs files: JSON <-> CSV <-> objects round trips, and every reader error."""

from __future__ import annotations

import json

import pytest

from ioi_desktop.core import pairfiles
from ioi_desktop.core.errors import FileFormatError
from ioi_desktop.core.pairfiles import (
    prompt_set_from_csv,
    prompt_set_from_dict,
    prompt_set_from_json,
    prompt_set_to_csv,
    prompt_set_to_dict,
    prompt_set_to_json,
    read_pairs,
    write_pairs,
)
from ioi_desktop.core.pairs import BuilderSettings, build_pairs, notebook_prompt_set
from ioi_desktop.core.paths import resource_path
from ioi_desktop.core.prompts import PairMeta, PromptPair, PromptSet

TRICKY = PromptPair('He said "hi", then\nleft; Ann, Bob', " x,y", " Ann", ' "Bob"',
                    PairMeta(family="custom", template="[B], [A]\t[B] to [A]", io="Ann", s="Bob", seed=0))


@pytest.fixture(scope="module")
def built_set(gpt2_tokenizer):
    report = build_pairs(BuilderSettings(family="ABC", n=6, corruption="abc", seed=7, symmetric=True), gpt2_tokenizer)
    return PromptSet(report.prompt_set.pairs + (TRICKY, PromptPair("a", "b", " c", " d")), report.prompt_set.meta)


def test_json_round_trip(built_set, tmp_path):
    path = write_pairs(tmp_path / "set.json", built_set)
    assert read_pairs(path) == built_set
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "ioi-desktop/pairs" and data["version"] == 1
    assert set(data["pairs"][0]) >= {"clean", "corrupt", "correct", "incorrect", "template", "io", "s", "c", "seed"}
    assert set(data["pairs"][-1]) == {"clean", "corrupt", "correct", "incorrect"}


def test_csv_round_trip_keeps_every_pair(built_set, tmp_path):
    path = write_pairs(tmp_path / "set.csv", built_set)
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0].startswith('"clean","corrupt","correct","incorrect"')
    back = read_pairs(path)
    assert back.pairs == built_set.pairs
    assert back.meta == {"source": "csv"}
    # JSON -> CSV -> JSON gives the same pairs, byte for byte.
    again = prompt_set_from_csv(prompt_set_to_csv(prompt_set_from_json(prompt_set_to_json(built_set))))
    assert prompt_set_to_json(PromptSet(again.pairs, built_set.meta)) == prompt_set_to_json(built_set)


def test_csv_from_a_spreadsheet(tmp_path):
    path = tmp_path / "sheet.csv"
    path.write_bytes("\ufeffcorrect,incorrect,clean,corrupt,seed\r\n Mary, John,A John,A Mary,3\r\n\r\n".encode("utf-8"))
    (pair,) = read_pairs(path).pairs
    assert (pair.clean, pair.corrupt, pair.correct, pair.incorrect, pair.meta.seed) == ("A John", "A Mary", " Mary", " John", 3)


def test_writes_are_atomic_and_deterministic(tmp_path, monkeypatch):
    target = tmp_path / "n.json"
    write_pairs(target, notebook_prompt_set())
    first = target.read_bytes()
    write_pairs(target, notebook_prompt_set())
    assert target.read_bytes() == first
    assert [p.name for p in tmp_path.iterdir()] == ["n.json"]

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.replace", fail)
    with pytest.raises(FileFormatError, match="previous file is unchanged"):
        write_pairs(target, PromptSet(()))
    assert target.read_bytes() == first


def test_shipped_notebook_file_is_the_preset():
    assert read_pairs(resource_path("prompts", "notebook.json")).pairs == notebook_prompt_set().pairs


def _doc(**changes):
    data = prompt_set_to_dict(notebook_prompt_set())
    data.update(changes)
    return data


def _pair_doc(index, **changes):
    data = _doc()
    data["pairs"][index].update(changes)
    return data


@pytest.mark.parametrize("data, fragment", [
    ([], "is not a JSON object"),
    (_doc(format="ioi-desktop/results"), "format 'ioi-desktop/results'"),
    ({k: v for k, v in _doc().items() if k != "format"}, "format None"),
    (_doc(version=2), "version 2"),
    (_doc(version=True), "version True"),
    (_doc(extra=1), "unknown top-level field 'extra'"),
    (_doc(meta=[]), "'meta' field that is list"),
    (_doc(pairs={}), "no 'pairs' list"),
    ({k: v for k, v in _doc().items() if k != "pairs"}, "no 'pairs' list"),
    (_doc(pairs=[1]), "pair 0 that is a int"),
    (_pair_doc(3, corupt="x"), "pair 3 with an unknown field 'corupt'"),
    (_pair_doc(5, correct=5335), "pair 5 whose field 'correct' is int, not text"),
    (_pair_doc(2, template=None), "pair 2 whose field 'template' is NoneType"),
    (_pair_doc(1, seed="1"), "pair 1 whose field 'seed' is '1'"),
    (_pair_doc(1, seed=1.5), "pair 1 whose field 'seed' is 1.5"),
    (_pair_doc(1, seed=False), "pair 1 whose field 'seed' is False"),
])
def test_json_reader_errors_name_the_field_and_pair(data, fragment):
    with pytest.raises(FileFormatError, match=fragment.replace("(", r"\(").replace("[", r"\[")) as caught:
        prompt_set_from_dict(data, "x.json")
    assert "x.json" in caught.value.message and caught.value.hint


def test_missing_field_is_named():
    data = _doc()
    del data["pairs"][4]["incorrect"]
    with pytest.raises(FileFormatError, match="pair 4 without the field 'incorrect'"):
        prompt_set_from_dict(data)


@pytest.mark.parametrize("text, fragment", [
    ("", "is not valid JSON"),
    ("{", "is not valid JSON"),
    ('{"format": NaN}', "is not valid JSON"),
    ("[" * 100000, "is not valid JSON"),
])
def test_malformed_json(text, fragment):
    with pytest.raises(FileFormatError, match=fragment):
        prompt_set_from_json(text)


@pytest.mark.parametrize("text, fragment", [
    ("", "is empty"),
    ("clean,corrupt,correct\na,b,c\n", "no 'incorrect' column"),
    ("clean,corrupt,correct,incorrect,colour\n", "unknown column 'colour'"),
    ("clean,corrupt,correct,incorrect,clean\n", "names a column twice"),
    ("clean,corrupt,correct,incorrect\na,b,c\n", "pair 0 with 3 cells but 4 columns"),
    ("clean,corrupt,correct,incorrect,seed\na,b,c,d,1\na,b,c,d,x\n", "pair 1 whose field 'seed' is 'x'"),
    ('clean,corrupt,correct,incorrect\n"a,b,c,d\n', "not valid CSV"),
])
def test_csv_reader_errors(text, fragment):
    with pytest.raises(FileFormatError, match=fragment):
        prompt_set_from_csv(text, "x.csv")


def test_file_level_errors(tmp_path, monkeypatch):
    with pytest.raises(FileFormatError, match="cannot be read"):
        read_pairs(tmp_path / "missing.json")
    with pytest.raises(FileFormatError, match="is a folder"):
        read_pairs(tmp_path)
    binary = tmp_path / "bad.json"
    binary.write_bytes(b"\xff\xfe{}")
    with pytest.raises(FileFormatError, match="not UTF-8"):
        read_pairs(binary)
    big = tmp_path / "big.json"
    big.write_text(prompt_set_to_json(notebook_prompt_set()), encoding="utf-8")
    monkeypatch.setattr(pairfiles, "MAX_FILE_BYTES", 100)
    with pytest.raises(FileFormatError, match=r"is \d+ bytes, more than the 100"):
        read_pairs(big)
    monkeypatch.setattr(pairfiles, "MAX_FILE_BYTES", 10**9)
    monkeypatch.setattr(pairfiles, "MAX_PAIRS", 3)
    with pytest.raises(FileFormatError, match="has 8 pairs, more than 3"):
        read_pairs(big)


def test_unsaveable_meta_is_a_clear_error():
    with pytest.raises(FileFormatError, match="cannot be saved as JSON"):
        prompt_set_to_json(PromptSet((), {"when": object()}))
