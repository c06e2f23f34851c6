"""The bad-input matrix through the command line: exit status 2 and one stderr line naming the problem.

Every case runs ``ioi-desktop analyze`` in-process (``ioi_desktop.cli.main``)
the way a user types it, and checks the exact outcome a user sees: the exit
status, that stderr is exactly one line starting ``ioi-desktop analyze:``, no
traceback, the words that name the problem (which pair, which field, both
lengths, the offending word or tokens) and that no results were written.
"""

from __future__ import annotations

import json
import shutil

import pytest

from ioi_desktop.cli import main

from tests.support.robustness_inputs import GOOD_PAIR, pairs_document


def analyze(capsys, tmp_path, pairs_text, *, model="bundled", suffix=".json", extra=()):
    """Run ``analyze`` on ``pairs_text``; returns (exit status, stderr lines, out folder)."""
    pairs = tmp_path / f"pairs{suffix}"
    pairs.write_text(pairs_text, encoding="utf-8")
    out = tmp_path / "out"
    code = main(["analyze", "--model", str(model), "--pairs", str(pairs), "--out", str(out), "--quiet",
                 "--analyses", "logit_diff", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err, out


def assert_one_line(code, err, out, *fragments):
    assert code == 2, err
    assert len(err) == 1, err
    line = err[0]
    assert line.startswith("ioi-desktop analyze: ") and "Traceback" not in line
    for fragment in fragments:
        assert fragment in line, line
    assert not (out / "results.json").exists()


LONG_TAIL = " and the bag" * 20

# (case id, pair changes, words the one line must contain); bundled model: closed vocabulary, context 64.
BUNDLED_CASES = [
    ("empty prompt", [{"clean": ""}], ["Pair 0: the clean prompt is empty", "Type the prompt text"]),
    ("whitespace prompt", [{"corrupt": "  \t "}], ["Pair 0: the corrupted prompt is empty"]),
    ("length mismatch names the pair and both lengths",
     [{}, {"corrupt": GOOD_PAIR["corrupt"].replace("a bag", "a bag of milk")}],
     ["Pair 1:", "clean prompt is 15 tokens", "corrupted one is 17", "same length"]),
    ("answer of two tokens", [{"correct": " Mary Mary"}],
     ["Pair 0: the correct answer ' Mary Mary' is not a single token", "[' Mary', ' Mary'] (2 tokens)"]),
    ("answer the model does not know", [{"incorrect": " Zorg"}], ["Pair 0:", "' Zorg'"]),
    ("longer than the context", [{"clean": GOOD_PAIR["clean"] + LONG_TAIL, "corrupt": GOOD_PAIR["corrupt"] + LONG_TAIL}],
     ["Pair 0: the clean prompt is 75 tokens with BOS, longer than the model's context of 64", "Shorten the prompt"]),
    ("unknown word, closed vocabulary", [{"clean": GOOD_PAIR["clean"].replace("store", "zorgplex")}],
     ["Pair 0: the clean prompt has words the model does not know: 'zorgplex'", "bundled model knows only"]),
    ("emoji, closed vocabulary", [{"clean": GOOD_PAIR["clean"].replace("went", "went 🎉")}],
     ["words the model does not know: '🎉'"]),
    ("non-ASCII name, closed vocabulary",
     [{"clean": GOOD_PAIR["clean"].replace("John", "Zoë"), "corrupt": GOOD_PAIR["corrupt"].replace("John", "Zoë"),
       "incorrect": " Zoë"}],
     ["words the model does not know: 'Zoë'"]),
]


@pytest.mark.parametrize("changes, fragments", [case[1:] for case in BUNDLED_CASES],
                         ids=[case[0] for case in BUNDLED_CASES])
def test_invalid_pairs_on_the_bundled_model(capsys, tmp_path, changes, fragments):
    assert_one_line(*analyze(capsys, tmp_path, pairs_document(*changes)), *fragments)


def test_empty_set(capsys, tmp_path):
    text = json.dumps({"format": "ioi-desktop/pairs", "version": 1, "pairs": []})
    assert_one_line(*analyze(capsys, tmp_path, text), "The prompt set has no pairs", "open a pairs file")


HUGE = 64 * 1024 * 1024 + 1

FILE_CASES = [
    ("truncated", pairs_document({})[:60], ".json", ["is not valid JSON", "docs/pairs-format.md"]),
    ("not JSON at all", "clean,corrupt\n", ".json", ["is not valid JSON"]),
    ("wrong version", json.dumps({"format": "ioi-desktop/pairs", "version": 2, "pairs": [GOOD_PAIR]}), ".json",
     ["has version 2; this app reads version 1", "update IOI Desktop"]),
    ("wrong format tag", json.dumps({"format": "something/else", "version": 1, "pairs": [GOOD_PAIR]}), ".json",
     ["The pairs file"]),
    ("wrong-typed field", json.dumps({"format": "ioi-desktop/pairs", "version": 1, "pairs": [{**GOOD_PAIR, "clean": 5}]}),
     ".json", ["has pair 0 whose field 'clean' is int, not text"]),
    ("wrong-typed top level", "[1, 2]", ".json", ["is not a JSON object"]),
    ("CSV missing a column", "clean,corrupt,correct\na,b,c\n", ".csv",
     ["has no 'incorrect' column", "clean, corrupt, correct, incorrect"]),
    ("CSV with a short row", "clean,corrupt,correct,incorrect\na,b,c\n", ".csv", ["has pair 0 with 3 cells but 4 columns"]),
]


@pytest.mark.parametrize("text, suffix, fragments", [case[1:] for case in FILE_CASES], ids=[case[0] for case in FILE_CASES])
def test_bad_pairs_files(capsys, tmp_path, text, suffix, fragments):
    assert_one_line(*analyze(capsys, tmp_path, text, suffix=suffix), *fragments)


def test_huge_pairs_file_is_refused_before_reading(capsys, tmp_path):
    pairs = tmp_path / "huge.json"
    with open(pairs, "wb") as handle:
        handle.truncate(HUGE)  # sparse: no disk space used
    code = main(["analyze", "--pairs", str(pairs), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert_one_line(code, err, tmp_path / "out", f"is {HUGE} bytes, more than", "Split it into smaller sets")


# ---------------------------------------------------------------- open vocabulary (GPT-2's tokenizer)


def test_multi_token_name_runs_with_its_first_token(capsys, tmp_path, gpt2_model_dir, gpt2_tokenizer):
    """' Zyxwvut' is 5 GPT-2 tokens (' Z', 'yx', 'w', 'v', 'ut'): a warning, not an error; S1 is ' Z'."""
    from ioi_desktop.core.results import load_results

    assert [gpt2_tokenizer.decode([i]) for i in gpt2_tokenizer.encode(" Zyxwvut")] == [" Z", "yx", "w", "v", "ut"]
    pair = {"clean": "When Zyxwvut and Mary went to the store, Zyxwvut gave a bag to",
            "corrupt": "When Zyxwvut and Mary went to the store, Zyxwvut gave a cup to",
            "correct": " Mary", "incorrect": " John", "s": "Zyxwvut", "io": "Mary"}
    code, err, out = analyze(capsys, tmp_path, pairs_document(pair), model=gpt2_model_dir)
    assert code == 0, err
    results = load_results(out)
    tokens = results.meta["prompts"]["str_tokens"][0]
    assert tokens[results.meta["prompts"]["roles"]["S1"][0]] == " Z"


def test_multi_token_answer_names_its_pieces(capsys, tmp_path, gpt2_model_dir):
    """' Marylouise' is not one GPT-2 token: the line shows how it tokenizes."""
    code, err, out = analyze(capsys, tmp_path, pairs_document({"correct": " Marylouise"}), model=gpt2_model_dir)
    assert_one_line(code, err, out, "Pair 0: the correct answer ' Marylouise' is not a single token", "tokens)")


def test_emoji_and_non_ascii_run_on_a_byte_level_tokenizer(capsys, tmp_path, gpt2_model_dir):
    """Byte-level BPE has a token for every byte: emoji and accents are valid text there."""
    from ioi_desktop.core.results import load_results

    pair = {"clean": "When Zoë and Mary 🎉 went to the café, Zoë gave a bag to",
            "corrupt": "When Zoë and Mary 🎉 went to the café, Zoë gave a cup to",
            "correct": " Mary", "incorrect": " John"}
    code, err, out = analyze(capsys, tmp_path, pairs_document(pair), model=gpt2_model_dir)
    assert code == 0, err
    text = "".join(load_results(out).meta["prompts"]["str_tokens"][0])
    # The emoji is 4 bytes split over byte tokens that are not text alone (shown as U+FFFD pieces).
    assert "Zoë" in text and "café" in text and "\ufffd" in text


# ---------------------------------------------------------------- models and devices


def _model_case(tmp_path, word_model_dir, case):
    folder = tmp_path / "model"
    if case == "missing":
        return folder
    if case == "empty":
        folder.mkdir()
        return folder
    shutil.copytree(word_model_dir, folder)
    if case == "half-written":
        config = folder / "config.json"
        config.write_text(config.read_text()[:40])
    elif case == "no weights":
        (folder / "model.safetensors").unlink()
    elif case == "corrupt safetensors":
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
    elif case == "unsupported architecture":
        config = json.loads((folder / "config.json").read_text())
        config["architectures"], config["model_type"] = ["FooBarForCausalLM"], "foobar"
        (folder / "config.json").write_text(json.dumps(config))
    elif case == "not a causal language model":
        config = json.loads((folder / "config.json").read_text())
        config["architectures"], config["model_type"] = ["T5ForConditionalGeneration"], "t5"
        (folder / "config.json").write_text(json.dumps(config))
    elif case == "pickle weights":
        import torch
        from safetensors.torch import load_file

        torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
        (folder / "model.safetensors").unlink()
    return folder


MODEL_CASES = [
    ("missing", ["does not exist"]),
    ("empty", ["config.json"]),
    ("half-written", ["config.json"]),
    ("no weights", ["weights"]),
    ("corrupt safetensors", ["corrupt or incomplete", "Copy the model again"]),
    ("unsupported architecture", ["does not support the architecture FooBarForCausalLM", "supported family"]),
    ("not a causal language model", ["could not be loaded", "T5Config", "causal language model"]),
    ("pickle weights", ["pickle"]),
]


@pytest.mark.parametrize("case, fragments", MODEL_CASES, ids=[case[0] for case in MODEL_CASES])
def test_model_folder_problems(capsys, tmp_path, word_model_dir, case, fragments):
    folder = _model_case(tmp_path, word_model_dir, case)
    assert_one_line(*analyze(capsys, tmp_path, pairs_document({}), model=folder), *fragments)


def test_hub_name_not_in_the_cache_fails_without_the_network(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    code, err, out = analyze(capsys, tmp_path, pairs_document({}), model="someone/not-downloaded-model")
    assert_one_line(code, err, out, "someone/not-downloaded-model")


def test_cuda_without_a_gpu(capsys, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, err, out = analyze(capsys, tmp_path, pairs_document({}), extra=("--device", "cuda"))
    assert_one_line(code, err, out, "CUDA")


def test_out_of_memory_in_the_forward_pass_is_a_device_error(capsys, tmp_path, monkeypatch):
    """The model's forward pass runs out of memory: one line saying so and what to do; nothing written."""
    import torch
    from transformer_lens.model_bridge import TransformerBridge

    def out_of_memory(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")

    monkeypatch.setattr(TransformerBridge, "run_with_cache", out_of_memory)
    code, err, out = analyze(capsys, tmp_path, pairs_document({}))
    assert_one_line(code, err, out, "The device ran out of memory running the model on the prompts",
                    "smaller --batch-size")


def test_out_of_memory_inside_an_analysis_is_a_device_error(capsys, tmp_path, monkeypatch):
    import torch

    import ioi_desktop.core.analyses.dla as dla

    def out_of_memory(ctx, options, progress):
        raise torch.OutOfMemoryError("simulated")

    monkeypatch.setattr(dla, "run", out_of_memory)
    code, err, out = analyze(capsys, tmp_path, pairs_document({}), extra=("--analyses", "logit_diff,dla"))
    # The run goes on without dla: logit_diff is written, dla is listed with its one sentence, exit 2.
    assert code == 2 and "Traceback" not in "\n".join(err)
    assert err == ["1 of 2 analyses did not run:",
                   "  dla: The device ran out of memory during dla. Use a smaller batch size, fewer prompts, or "
                   "another device."]
    assert (out / "results.json").exists()
