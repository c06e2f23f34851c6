"""Model loading: sources, processing, and every expected failure as one clear sentence."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ioi_desktop.core import models
from ioi_desktop.core.errors import DeviceError, ModelLoadError
from ioi_desktop.core.models import ModelSpec, load_model
from ioi_desktop.core.paths import bundled_model_dir

from tests.support.tiny_models import make_word_tokenizer, save_tiny_gpt2

PROMPT = "When John and Mary went to the store, John gave a drink to"


@pytest.fixture(scope="module")
def tiny_handle(tiny_model_dir):
    return load_model(ModelSpec(source=str(tiny_model_dir), device="cpu"))


def test_local_folder_loads_with_notebook_processing(tiny_handle, tiny_model_dir):
    info = tiny_handle.info
    assert info.source == "folder"
    assert info.name == "tiny-gpt2"
    assert info.architecture == "GPT2LMHeadModel"
    assert (info.n_layers, info.n_heads, info.d_model, info.d_head) == (2, 2, 16, 8)
    assert info.d_vocab == len(tiny_handle.tokenizer)
    assert info.n_ctx == 32
    assert info.device == "cpu" and info.dtype == "float32"
    assert info.processing == {name: True for name in models.PROCESSING_FLAGS}
    assert info.closed_vocab is True
    assert info.n_params > 0
    assert "2 layers x 2 heads" in info.summary()


def test_processed_bridge_matches_the_raw_hf_model(tiny_handle, tiny_model_dir):
    """Weight processing changes logits only by a per-position constant: log-probs are equal."""
    from transformers import AutoModelForCausalLM

    tokens = tiny_handle.model.to_tokens(PROMPT)
    assert tokens[0, 0].item() == tiny_handle.tokenizer.bos_token_id
    raw = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval()
    with torch.no_grad():
        expected = raw(tokens).logits.log_softmax(-1)
        got = tiny_handle.model(tokens).log_softmax(-1)
    assert torch.allclose(got, expected, atol=1e-4)


def test_processing_can_be_turned_off(tiny_model_dir):
    off = {name: False for name in models.PROCESSING_FLAGS}
    handle = load_model(ModelSpec(source=str(tiny_model_dir), device="cpu", **off))
    assert handle.info.processing == off


def test_bundled_model_is_the_default():
    if not (bundled_model_dir() / "config.json").is_file():
        pytest.skip("the bundled model has not been trained into resources/models yet")
    handle = load_model()
    assert handle.info.source == "bundled"
    assert handle.info.name == "ioi-mini"
    assert handle.info.closed_vocab
    logits = handle.model(handle.model.to_tokens("After John and Mary went to the store, John gave a drink to"))
    top = handle.tokenizer.decode([int(logits[0, -1].argmax())])
    assert top == " Mary"


@pytest.fixture()
def fake_hf_cache(tmp_path, monkeypatch, tiny_model_dir):
    """A Hugging Face cache laid out as huggingface_hub writes it (blobs + snapshot symlinks)."""
    cache = tmp_path / "hub"
    repo = cache / "models--tiny-org--tiny-gpt2"
    snapshot = repo / "snapshots" / "0123abcd"
    blobs = repo / "blobs"
    snapshot.mkdir(parents=True)
    blobs.mkdir()
    for index, file in enumerate(sorted(tiny_model_dir.iterdir())):
        blob = blobs / f"blob{index}"
        shutil.copy(file, blob)
        (snapshot / file.name).symlink_to(blob)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_hub_name_resolves_from_the_local_cache(fake_hf_cache):
    handle = load_model(ModelSpec(source="tiny-org/tiny-gpt2", device="cpu"))
    assert handle.info.source == "hub"
    assert handle.info.name == "tiny-org/tiny-gpt2"
    assert handle.info.path.endswith("0123abcd")


def test_listing_shows_bundled_and_cached_models(fake_hf_cache):
    listed = {m.name: m for m in models.list_local_models()}
    cached = listed["tiny-org/tiny-gpt2"]
    assert cached.supported and cached.architecture == "GPT2LMHeadModel"
    assert cached.size_bytes > 10_000
    if (bundled_model_dir() / "config.json").is_file():
        assert listed["ioi-mini"].source == "bundled"


def test_uncached_hub_name_fails_fast_with_instructions(tmp_path, monkeypatch):
    """Reported before any loading starts (how long that takes: benchmarks/bench_gui.py)."""
    import transformers

    def must_not_load(*args, **kwargs):
        raise AssertionError("a model missing from the cache must be reported before anything is loaded")

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", must_not_load)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", must_not_load)
    with pytest.raises(ModelLoadError) as info:
        load_model(ModelSpec(source="gpt2", device="cpu"))
    assert "'gpt2' is not in the local Hugging Face cache" in info.value.message
    assert "huggingface-cli download gpt2" in info.value.hint


def _expect_load_error(source, fragment, **kwargs):
    with pytest.raises(ModelLoadError) as info:
        load_model(ModelSpec(source=str(source), device="cpu", **kwargs))
    assert fragment in info.value.message, info.value.message
    assert info.value.hint
    return info.value


def test_missing_folder(tmp_path):
    _expect_load_error(tmp_path / "nope", "does not exist")


def test_file_instead_of_folder(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"x")
    _expect_load_error(path, "is a file, not a model folder")


def test_empty_folder(tmp_path):
    _expect_load_error(tmp_path, "has no config.json")


def test_half_written_config(tmp_path, tiny_model_dir):
    folder = tmp_path / "half"
    shutil.copytree(tiny_model_dir, folder)
    text = (folder / "config.json").read_text()
    (folder / "config.json").write_text(text[: len(text) // 2])
    _expect_load_error(folder, "is not valid JSON")


def test_config_without_weights(tmp_path, tiny_model_dir):
    folder = tmp_path / "noweights"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "model.safetensors").unlink()
    _expect_load_error(folder, "no weights")


def test_corrupt_safetensors(tmp_path, tiny_model_dir):
    folder = tmp_path / "corrupt"
    shutil.copytree(tiny_model_dir, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    _expect_load_error(folder, "corrupt or incomplete")


def test_unsupported_architecture(tmp_path, tiny_model_dir):
    folder = tmp_path / "foo"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(architectures=["FooForCausalLM"], model_type="foo")
    (folder / "config.json").write_text(json.dumps(config))
    _expect_load_error(folder, "does not support the architecture FooForCausalLM")


def test_pickle_weights_need_consent(tmp_path):
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    save_tiny_gpt2(folder)
    weights = folder / "model.safetensors"
    torch.save(load_file(weights), folder / "pytorch_model.bin")
    weights.unlink()
    error = _expect_load_error(folder, "pickle files")
    assert "allow pickle" in error.hint
    handle = load_model(ModelSpec(source=str(folder), device="cpu", allow_pickle=True))
    assert handle.info.n_layers == 2


def test_cuda_without_gpu(tiny_model_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DeviceError) as info:
        load_model(ModelSpec(source=str(tiny_model_dir), device="cuda"))
    assert "no CUDA GPU is available" in info.value.message


def test_float16_on_cpu_is_refused(tiny_model_dir):
    with pytest.raises(DeviceError) as info:
        load_model(ModelSpec(source=str(tiny_model_dir), device="cpu", dtype="float16"))
    assert "float16" in info.value.message


def test_bfloat16_on_cpu_loads(tiny_model_dir):
    handle = load_model(ModelSpec(source=str(tiny_model_dir), device="cpu", dtype="bfloat16"))
    assert handle.info.dtype == "bfloat16"
    assert next(handle.model.parameters()).dtype == torch.bfloat16


def test_out_of_memory_while_loading_is_a_device_error(tiny_model_dir, monkeypatch):
    import transformers

    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", exhausted)
    with pytest.raises(DeviceError) as info:
        load_model(ModelSpec(source=str(tiny_model_dir), device="cpu"))
    assert "ran out of memory" in info.value.message


def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert models.resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert models.resolve_device("auto") == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert models.resolve_device("auto") == "cuda"


def test_spec_round_trips_through_a_dict():
    spec = ModelSpec(source="gpt2", device="cpu", fold_ln=False)
    assert ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "ioi_desktop.cli", *args], capture_output=True, text=True, timeout=300, env=env
    )


def test_cli_lists_cached_models(fake_hf_cache):
    import os

    result = _cli("models", env={**os.environ, "HF_HUB_CACHE": str(fake_hf_cache)})
    assert result.returncode == 0, result.stderr
    assert "tiny-org/tiny-gpt2" in result.stdout


def test_cli_bad_model_is_one_clear_line(tmp_path):
    result = _cli("models", "--load", str(tmp_path / "missing"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not exist" in lines[0]
    assert "Traceback" not in result.stderr


def test_rotary_model_loads_without_the_qk_refactor(tmp_path):
    """TransformerLens cannot refactor W_Q/W_K around rotary embeddings: that flag is skipped and recorded."""
    from transformers import LlamaConfig, LlamaForCausalLM


    tokenizer = make_word_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
        vocab_size=len(tokenizer), max_position_embeddings=32, bos_token_id=0, eos_token_id=0,
    )
    folder = tmp_path / "tiny-llama"
    LlamaForCausalLM(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    messages = []
    handle = load_model(ModelSpec(source=str(folder), device="cpu"), progress=messages.append)
    assert handle.info.architecture == "LlamaForCausalLM"
    assert handle.info.processing["refactor_factored_attn_matrices"] is False
    assert handle.info.processing["fold_ln"] is True
    assert any("rotary" in message for message in messages)
    assert handle.model(handle.model.to_tokens(PROMPT)).shape[-1] == len(tokenizer)


def test_cli_unexpected_error_is_one_line_and_logged(tmp_path, monkeypatch, capsys):
    """A bug in a command prints one line naming the log; the traceback goes to the log file."""
    from ioi_desktop import cli
    from ioi_desktop.commands import models as models_command

    monkeypatch.setenv("IOI_DESKTOP_DATA", str(tmp_path / "data"))

    def broken(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(models_command, "run", broken)
    assert cli.main(["models"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "unexpected error (ZeroDivisionError: division by zero)" in err[0]
    log = tmp_path / "data" / "logs" / "ioi-desktop.log"
    assert str(log) in err[0]
    assert "Traceback" in log.read_text() and "ZeroDivisionError" in log.read_text()
