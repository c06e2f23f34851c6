"""``ioi-desktop pairs``: presets and built sets to JSON/CSV, one clear stderr line on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ioi_desktop.cli import main
from ioi_desktop.core.pairfiles import read_pairs
from ioi_desktop.core.pairs import notebook_prompt_set
from ioi_desktop.core.paths import bundled_model_dir


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory, gpt2_tokenizer):
    """A model folder holding only GPT-2's tokenizer and a config: all the command needs."""
    folder = tmp_path_factory.mktemp("gpt2-tokenizer-only")
    gpt2_tokenizer.save_pretrained(str(folder))
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_positions": 1024}), encoding="utf-8")
    return folder


def _run(capsys, *args):
    code = main(["pairs", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_preset_notebook(capsys, tmp_path, gpt2_folder):
    out_file = tmp_path / "notebook.json"
    code, out, err = _run(capsys, "--preset", "notebook", "--model", gpt2_folder, "--out", out_file)
    assert (code, err) == (0, "")
    assert "Wrote 8 pairs" in out
    prompt_set = read_pairs(out_file)
    assert prompt_set.pairs == notebook_prompt_set().pairs
    assert prompt_set.meta["preset"] == "notebook"


def test_family_build_is_reproducible(capsys, tmp_path, gpt2_folder):
    args = ["--family", "BABA", "--n", "12", "--corruption", "s2-io", "--seed", "4", "--symmetric",
            "--model", gpt2_folder]
    assert _run(capsys, *args, "--out", tmp_path / "a.json")[0] == 0
    assert _run(capsys, *args, "--out", tmp_path / "b.json")[0] == 0
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert len(read_pairs(tmp_path / "a.json")) == 12
    assert _run(capsys, *args, "--out", tmp_path / "a.csv")[0] == 0
    assert read_pairs(tmp_path / "a.csv").pairs == read_pairs(tmp_path / "a.json").pairs


def test_custom_template(capsys, tmp_path, gpt2_folder):
    code, _, err = _run(capsys, "--family", "custom", "--template", "After [B] and [A] left, [B] thanked [A]",
                        "--n", "3", "--corruption", "s2-rand", "--seed", "0", "--model", gpt2_folder,
                        "--out", tmp_path / "c.json")
    assert (code, err) == (0, "")
    assert all(p.clean.startswith("After ") for p in read_pairs(tmp_path / "c.json"))


@pytest.mark.parametrize("args, fragment", [
    (["--preset", "notebook"], "No output file"),
    (["--out", "x.json"], "either --preset or --family"),
    (["--preset", "notebook", "--family", "BABA", "--out", "x.json"], "either --preset or --family"),
    (["--preset", "demo", "--out", "x.json"], "no preset named 'demo'"),
    (["--preset", "notebook", "--n", "3", "--out", "x.json"], "--preset takes no builder options"),
    (["--family", "BABX", "--n", "3", "--corruption", "abc", "--seed", "0", "--out", "x.json"], "no template family 'BABX'"),
    (["--family", "BABA", "--n", "x", "--corruption", "abc", "--seed", "0", "--out", "x.json"], "--n must be a whole number"),
    (["--family", "BABA", "--n", "3", "--seed", "0", "--out", "x.json"], "--family needs --corruption"),
    (["--family", "BABA", "--n", "3", "--corruption", "abc", "--out", "x.json"], "--family needs --seed"),
    (["--family", "BABA", "--n", "3", "--corruption", "mangle", "--seed", "0", "--out", "x.json"], "no corruption scheme 'mangle'"),
    (["--family", "BABA", "--n", "-2", "--corruption", "abc", "--seed", "0", "--out", "x.json"], "between 1 and"),
    (["--family", "custom", "--template", "[A] [B]", "--n", "2", "--corruption", "abc", "--seed", "0", "--out", "x.json"], "needs [A]"),
])
def test_bad_input_is_one_line(capsys, tmp_path, gpt2_folder, args, fragment):
    args = [str(tmp_path / a) if a == "x.json" else a for a in args]
    code, out, err = _run(capsys, *args, "--model", gpt2_folder)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("ioi-desktop pairs: ") and fragment in err
    assert not (tmp_path / "x.json").exists()


def test_unusable_output_and_model(capsys, tmp_path, gpt2_folder):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = _run(capsys, "--preset", "notebook", "--model", gpt2_folder, "--out", blocker / "sub" / "x.json")
    assert code == 2 and err.count("\n") == 1 and "Cannot write" in err
    code, _, err = _run(capsys, "--preset", "notebook", "--model", tmp_path / "nowhere", "--out", tmp_path / "y.json")
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err
    empty = tmp_path / "empty-model"
    empty.mkdir()
    code, _, err = _run(capsys, "--preset", "notebook", "--model", empty, "--out", tmp_path / "y.json")
    assert code == 2 and err.count("\n") == 1 and "tokenizer" in err


def test_default_model_is_the_bundled_one(capsys, tmp_path):
    code, out, err = _run(capsys, "--preset", "notebook", "--out", tmp_path / "n.json")
    if (bundled_model_dir() / "tokenizer.json").is_file():
        assert (code, err) == (0, "") and "Wrote 8 pairs" in out
        assert read_pairs(tmp_path / "n.json").meta["model"] == "bundled"
    else:
        assert code == 2 and "bundled model is missing" in err


def test_entry_point_prints_no_traceback(tmp_path, gpt2_folder):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, "-m", "ioi_desktop.cli", "pairs", "--family", "BABA", "--n", "999999",
         "--corruption", "abc", "--seed", "0", "--model", str(gpt2_folder), "--out", str(tmp_path / "x.json")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert "between 1 and 100000" in done.stderr


def test_hub_name_resolves_through_the_local_cache(capsys, tmp_path, monkeypatch, gpt2_folder):
    import shutil

    snapshot = tmp_path / "hub" / "models--gpt2" / "snapshots" / "0123abc"
    shutil.copytree(gpt2_folder, snapshot)
    (tmp_path / "hub" / "models--gpt2" / "refs").mkdir()
    (tmp_path / "hub" / "models--gpt2" / "refs" / "main").write_text("0123abc")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    code, out, err = _run(capsys, "--family", "ABC", "--n", "4", "--corruption", "abc", "--seed", "0",
                          "--model", "gpt2", "--out", tmp_path / "abc.json")
    assert (code, err) == (0, "")
    assert read_pairs(tmp_path / "abc.json").meta["model"] == "gpt2"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    code, _, err = _run(capsys, "--preset", "notebook", "--model", "gpt2", "--out", tmp_path / "n.json")
    assert code == 2 and "not in the local Hugging Face cache" in err
