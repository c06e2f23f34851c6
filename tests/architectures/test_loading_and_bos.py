"""Item-by-item checks of what the matrix found: BOS conventions, load refusals, failures that do not spread."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ioi_desktop.cli import main
from ioi_desktop.core.errors import ModelLoadError
from ioi_desktop.core.models import ModelSpec, load_model
from ioi_desktop.core.pairfiles import write_pairs
from ioi_desktop.core.results import load_results
from ioi_desktop.core.runner import Runner, tokenized

from tests.architectures.matrix import prompt_set
from tests.support.arch_models import save_tiny


@pytest.fixture(scope="module")
def qwen2(tmp_path_factory):
    return save_tiny("Qwen2ForCausalLM", tmp_path_factory.mktemp("qwen2") / "m")


def _logit_diffs(model, tokens, batch):
    with torch.no_grad():
        logits = model(tokens)
    end = torch.as_tensor(batch.end_pos)
    rows = torch.arange(len(end))
    at_end = logits[rows, end]
    return (at_end[rows, torch.as_tensor(batch.correct_ids)] - at_end[rows, torch.as_tensor(batch.incorrect_ids)]).numpy()


def test_a_model_without_default_bos_gets_none_and_matches_transformer_lens(qwen2):
    handle = load_model(ModelSpec(source=str(qwen2), device="cpu"))
    assert handle.model.cfg.default_prepend_bos is False
    assert handle.info.prepend_bos is False and "convention" in handle.info.bos_choice
    assert "have no BOS" in handle.info.summary()
    pairs = prompt_set()
    batch = tokenized(handle, pairs)
    expected = handle.model.to_tokens([pair.clean for pair in pairs])
    assert np.array_equal(batch.clean_tokens, expected.numpy())
    assert batch.roles["END"][0] == batch.clean_tokens.shape[1] - 1
    assert batch.str_tokens[0][batch.roles["IO"][0]].strip() == pairs[0].correct.strip()
    results = Runner().run(handle, pairs, ["logit_diff"])
    np.testing.assert_allclose(results["logit_diff"].arrays["logit_diff_clean"],
                               _logit_diffs(handle.model, expected, batch), atol=1e-5)
    assert results.meta["prompts"]["prepend_bos"] is False


def test_the_user_can_ask_for_bos(qwen2):
    handle = load_model(ModelSpec(source=str(qwen2), device="cpu", prepend_bos=True))
    assert handle.info.prepend_bos is True and "chosen by the user" in handle.info.bos_choice
    batch = tokenized(handle, prompt_set())
    assert (batch.clean_tokens[:, 0] == handle.tokenizer.bos_token_id).all()
    expected = handle.model.to_tokens([pair.clean for pair in prompt_set()], prepend_bos=True)
    assert np.array_equal(batch.clean_tokens, expected.numpy())


def test_a_tokenizer_without_bos_token_gets_none(tmp_path):
    folder = save_tiny("LlamaForCausalLM", tmp_path / "m")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["bos_token"] = None
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    handle = load_model(ModelSpec(source=str(folder), device="cpu"))
    assert handle.model.cfg.default_prepend_bos is True
    assert handle.info.prepend_bos is False and "no BOS token" in handle.info.bos_choice
    batch = tokenized(handle, prompt_set())
    assert batch.clean_tokens.shape[1] == len(handle.tokenizer(prompt_set()[0].clean)["input_ids"])
    with pytest.raises(ModelLoadError, match="no beginning-of-sequence"):
        load_model(ModelSpec(source=str(folder), device="cpu", prepend_bos=True))


def test_config_that_does_not_match_the_weights_is_one_sentence(tmp_path):
    folder = save_tiny("GPT2LMHeadModel", tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config.update(architectures=["BertLMHeadModel"], model_type="bert", is_decoder=True)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="does not match its weights") as caught:
        load_model(ModelSpec(source=str(folder), device="cpu"))
    assert "\n" not in str(caught.value)


def test_weight_processing_failure_is_retried_without_refactor_and_noted(tmp_path):
    folder = save_tiny("MptForCausalLM", tmp_path / "m")
    handle = load_model(ModelSpec(source=str(folder), device="cpu"))
    assert handle.info.processing["refactor_factored_attn_matrices"] is False
    assert any("refactor_factored_attn_matrices turned off" in note for note in handle.info.notes)
    assert "refactor_factored_attn_matrices turned off" in handle.info.summary()


def test_bridge_engine_falls_back_to_full_forwards_with_the_reason(tmp_path):
    folder = save_tiny("BloomForCausalLM", tmp_path / "m")
    handle = load_model(ModelSpec(source=str(folder), device="cpu"))
    results = Runner().run(handle, prompt_set(), ["patching"], {"patching": {"sweeps": ("head_z",)}})
    assert not results.meta["failed"]
    assert "cannot run on a cached residual stream" in results["patching"].meta["engine_reason"]


def test_analyze_writes_what_worked_and_exits_2_with_what_did_not(tmp_path, capsys):
    folder = save_tiny("MambaForCausalLM", tmp_path / "m")
    pairs = write_pairs(tmp_path / "pairs.json", prompt_set())
    out = tmp_path / "out"
    code = main(["analyze", "--model", str(folder), "--pairs", str(pairs), "--out", str(out), "--quiet",
                 "--analyses", "logit_diff,dla,attention"])
    err = capsys.readouterr().err
    assert code == 2
    assert "2 of 3 analyses did not run" in err
    assert "dla: dla needs attention heads, which MambaForCausalLM does not have" in err
    assert "attention: attention needs attention heads" in err
    loaded = load_results(out)
    assert loaded.analyses == ["logit_diff"]
    assert set(loaded.meta["failed"]) == {"dla", "attention"}


def test_analyze_no_prepend_bos_flag(tmp_path):
    folder = save_tiny("GPT2LMHeadModel", tmp_path / "m")
    pairs = write_pairs(tmp_path / "pairs.json", prompt_set())
    out = tmp_path / "out"
    assert main(["analyze", "--model", str(folder), "--pairs", str(pairs), "--out", str(out), "--quiet",
                 "--analyses", "logit_diff", "--no-prepend-bos"]) == 0
    meta = load_results(out).meta
    assert meta["prompts"]["prepend_bos"] is False and meta["model"]["prepend_bos"] is False
    assert meta["prompts"]["str_tokens"][0][0] == "When"


def _head_score_reference(model, tokens, n, bos):
    """Previous-token, duplicate and induction scores from TransformerLens's own patterns on ``tokens``:
    with BOS the mean over the queries after BOS / of the second copy, without it the demo's diagonals."""
    with torch.no_grad():
        _logits, cache = model.run_with_cache(tokens)
    scores = {"prev": [], "dup": [], "induction": []}
    for layer in range(model.cfg.n_layers):
        pattern = cache["pattern", layer]
        if bos:
            queries = torch.arange(n + 1, 2 * n + 1)
            after = torch.arange(1, 2 * n + 1)
            scores["prev"].append(pattern[:, :, after, after - 1].mean(dim=(0, 2)))
            scores["dup"].append(pattern[:, :, queries, queries - n].mean(dim=(0, 2)))
            scores["induction"].append(pattern[:, :, queries, queries - n + 1].mean(dim=(0, 2)))
        else:
            for kind, offset in (("prev", 1), ("dup", n), ("induction", n - 1)):
                scores[kind].append(pattern.diagonal(offset=-offset, dim1=-2, dim2=-1).mean(dim=(0, -1)))
    return {kind: torch.stack(rows).numpy() for kind, rows in scores.items()}


@pytest.mark.parametrize("architecture, choice, bos", [("Qwen2ForCausalLM", None, False),
                                                       ("Qwen2ForCausalLM", True, True),
                                                       ("GPT2LMHeadModel", False, False)])
def test_head_scores_follow_the_loaded_models_bos(tmp_path, architecture, choice, bos):
    """Head types put BOS first exactly when the model's prompts get one (its convention or the user's
    choice at load); their inputs are TransformerLens's to_tokens with that prepend_bos."""
    from ioi_desktop.core.analyses.head_scores import Options, make_sequences, settings

    handle = load_model(ModelSpec(source=str(save_tiny(architecture, tmp_path / "m")), device="cpu",
                                  prepend_bos=choice))
    assert handle.info.prepend_bos is bos
    options = {"seq_len": 6, "batch": 2, "seed": 3}
    result = Runner().run(handle, prompt_set(), ["head_scores"], {"head_scores": options})["head_scores"]
    assert result.meta["prepend_bos"] is bos
    assert result.meta["bos_choice"].startswith("BOS first" if bos else "no BOS")
    chosen = settings(Options(**options), handle.info.n_ctx, bos)
    tokens, _ = make_sequences(handle.tokenizer, handle.info.d_vocab, chosen)
    texts = [handle.tokenizer.decode(row[int(bos):].tolist()) for row in tokens]
    expected = handle.model.to_tokens(texts, prepend_bos=bos).cpu()
    assert torch.equal(expected, tokens)
    reference = _head_score_reference(handle.model, expected, chosen["seq_len"], bos)
    for kind, values in reference.items():
        np.testing.assert_allclose(result.arrays[f"head_score_{kind}"], values, atol=1e-6, err_msg=kind)
