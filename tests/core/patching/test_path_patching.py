"""Direct path patching against TransformerLens's get_act_patch_direct_path and hand-written hooked runs."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ioi_desktop.core.analyses import path_patching
from ioi_desktop.core.errors import AnalysisError

from tests.support.patching_helpers import (
    RecordingProgress,
    context,
    logit_diff_metric,
    notebook_pairs,
    random_gpt2_bridge,
    tokenized_pairs,
)


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    """A random 3-layer GPT-2 bridge (so paths span two layers), the demo prompts, both caches."""
    torch.set_num_threads(1)
    model = random_gpt2_bridge(n_layer=3, n_head=4, n_embd=32, seed=1,
                               folder=tmp_path_factory.mktemp("pp-gpt2"))
    batch = tokenized_pairs(notebook_pairs())
    with torch.no_grad():
        _l, clean = model.run_with_cache(torch.as_tensor(batch.clean_tokens))
        _l, corrupt = model.run_with_cache(torch.as_tensor(batch.corrupt_tokens))
    return SimpleNamespace(model=model, batch=batch, clean=clean, corrupt=corrupt)


def _run(three, **options):
    ctx = context(three.model, three.batch)
    return path_patching.run(ctx, path_patching.Options(**options), RecordingProgress())


def _write(three, layer, head):
    name = f"blocks.{layer}.attn.hook_z"
    W_O = three.model.blocks[layer].attn.W_O[head]
    return (three.clean[name][:, :, head] - three.corrupt[name][:, :, head]) @ W_O


def hooked_logits_path(three, senders):
    """Patched mean logit difference: the senders' write added only to the final LayerNorm's input."""
    n_layers = three.model.cfg.n_layers
    delta = sum(_write(three, l, h) for l, h in senders)

    def hook(resid, hook):
        return resid + delta

    with torch.no_grad(), three.model.hooks(fwd_hooks=[(f"blocks.{n_layers - 1}.hook_resid_post", hook)]):
        logits = three.model(torch.as_tensor(three.batch.corrupt_tokens))
    return float(logit_diff_metric(three.batch)(logits))


def hooked_receiver_path(three, senders, receiver, component):
    """Patched mean logit difference: the senders' summed write reaches only one receiver's q/k/v input."""
    layer, head = receiver
    delta = sum(_write(three, l, h) for l, h in senders if l < layer)

    def hook(fork, hook):
        fork = fork.clone()
        fork[:, :, head] += delta
        return fork

    three.model.set_use_split_qkv_input(True)
    try:
        with torch.no_grad(), three.model.hooks(fwd_hooks=[(f"blocks.{layer}.attn.hook_{component}_input", hook)]):
            logits = three.model(torch.as_tensor(three.batch.corrupt_tokens))
    finally:
        three.model.set_use_split_qkv_input(False)
    return float(logit_diff_metric(three.batch)(logits))


@pytest.mark.parametrize("component", ["q", "k", "v"])
@pytest.mark.parametrize("sender", [(0, 1), (1, 3)])
def test_one_sender_matches_get_act_patch_direct_path(three, component, sender):
    from transformer_lens.patching import get_act_patch_direct_path

    with torch.no_grad():
        reference = get_act_patch_direct_path(
            three.model, torch.as_tensor(three.batch.corrupt_tokens), three.clean, three.corrupt,
            logit_diff_metric(three.batch), sender[0], sender[1], component, verbose=False).numpy()
    result = _run(three, senders=f"{sender[0]}.{sender[1]}", receivers=(component,))
    raw = result.arrays[f"path_patch_{component}_raw"]
    later = slice(sender[0] + 1, None)
    assert np.abs(raw[later] - reference[later]).max() <= 1e-5
    # The path matters somewhere (the test can fail), and earlier receivers hold the corrupted value.
    assert np.abs(raw[later] - result.meta["corrupt_logit_diff"]).max() > 1e-4
    assert np.allclose(raw[: sender[0] + 1], result.meta["corrupt_logit_diff"])
    span = result.meta["clean_logit_diff"] - result.meta["corrupt_logit_diff"]
    assert np.allclose(result.arrays[f"path_patch_{component}"], (raw - result.meta["corrupt_logit_diff"]) / span,
                       atol=1e-5)


def test_several_senders_match_hooked_runs(three):
    senders = [(0, 0), (0, 2), (1, 1)]
    result = _run(three, senders="0.0,0.2,1.1", receivers=("q", "k", "v", "logits"))
    for component in "qkv":
        raw = result.arrays[f"path_patch_{component}_raw"]
        for receiver in [(1, 0), (1, 3), (2, 1), (2, 2)]:
            value = hooked_receiver_path(three, senders, receiver, component)
            assert abs(raw[receiver] - value) <= 1e-5, (component, receiver)
    assert abs(result.meta["senders_to_logits_raw"] - hooked_logits_path(three, senders)) <= 1e-5


def test_logits_grid_matches_hooked_runs(three):
    result = _run(three, senders="1.1", receivers=("logits",))
    raw = result.arrays["path_patch_logits_raw"]
    for layer in range(3):
        for head in range(4):
            assert abs(raw[layer, head] - hooked_logits_path(three, [(layer, head)])) <= 1e-5
    assert "path_patch_q" not in result.arrays


def test_reverse_question_matches_hooked_runs(three):
    result = _run(three, receiver_head="2.1", receivers=("q", "k", "v"))
    assert result.meta["question"] == "reverse" and result.meta["receiver_head"] == [2, 1]
    for component in "qkv":
        raw = result.arrays[f"path_patch_{component}_raw"]
        for layer in range(2):
            for head in range(4):
                value = hooked_receiver_path(three, [(layer, head)], (2, 1), component)
                assert abs(raw[layer, head] - value) <= 1e-5, (component, layer, head)
        assert np.allclose(raw[2], result.meta["corrupt_logit_diff"])


def test_the_default_asks_which_heads_feed_the_strongest_dla_head(three):
    # The strongest head by DLA at END, computed independently with ActivationCache methods.
    end = torch.as_tensor(three.batch.end_pos)
    W_U = three.model.W_U
    direction = (W_U[:, torch.as_tensor(three.batch.correct_ids)] - W_U[:, torch.as_tensor(three.batch.incorrect_ids)]).T
    stack, _labels = three.clean.stack_head_results(layer=-1, return_labels=True)
    stack = three.clean.apply_ln_to_stack(stack)
    dla = (stack[:, torch.arange(len(end)), end] * direction).sum(-1).mean(-1).reshape(3, 4)
    strongest = divmod(int(dla.argmax()), 4)
    result = _run(three)
    assert result.meta["preset"] == path_patching.PRESET_INTO if strongest[0] > 0 else path_patching.PRESET_FROM
    if strongest[0] > 0:
        assert result.meta["question"] == "reverse" and result.meta["receiver_head"] == list(strongest)
    else:
        assert result.meta["senders"] == [list(strongest)]
    assert {f"path_patch_{kind}" for kind in ("q", "k", "v", "logits")} <= set(result.arrays)


@pytest.fixture(scope="module")
def bundled_handle():
    from ioi_desktop.core.models import ModelSpec, load_model
    from ioi_desktop.core.paths import bundled_model_dir

    if not (bundled_model_dir() / "config.json").is_file():
        pytest.skip(f"the bundled model is not in {bundled_model_dir()} yet")
    return load_model(ModelSpec(source="bundled", device="cpu"))


def test_bundled_paths_into_l3h3_match_hooked_runs(bundled_handle):
    from tests.support.analysis_fixtures import notebook_batch

    handle = bundled_handle
    batch = notebook_batch(handle)
    model = handle.model
    with torch.no_grad():
        _l, clean = model.run_with_cache(torch.as_tensor(batch.clean_tokens))
        _l, corrupt = model.run_with_cache(torch.as_tensor(batch.corrupt_tokens))
    three = SimpleNamespace(model=model, batch=batch, clean=clean, corrupt=corrupt)
    n_layers = int(model.cfg.n_layers)
    receiver = (n_layers - 1, 3)
    result = path_patching.run(context(model, batch, handle=handle), path_patching.Options(
        receiver_head=f"{receiver[0]}.{receiver[1]}", receivers=("q", "k", "v")), RecordingProgress())
    for component in "qkv":
        raw = result.arrays[f"path_patch_{component}_raw"]
        best = np.unravel_index(np.abs(raw[:-1] - result.meta["corrupt_logit_diff"]).argmax(), raw[:-1].shape)
        value = hooked_receiver_path(three, [tuple(int(i) for i in best)], receiver, component)
        assert abs(raw[best] - value) <= 1e-4 * max(1.0, abs(value))


def test_bad_input_gives_one_sentence(three):
    for options, words in (
        ({"senders": "3.0"}, "outside this model"),
        ({"senders": "0.4"}, "outside this model"),
        ({"senders": ","}, "empty"),
        ({"receiver_head": "0.1"}, "layer 0"),
        ({"receiver_head": "1.1,2.1"}, "one receiver head"),
    ):
        with pytest.raises(AnalysisError) as info:
            _run(three, **options)
        assert words in info.value.message and "\n" not in str(info.value)


def test_the_default_run_leaves_out_grids_it_cannot_compute_and_explicit_requests_are_refused(three, monkeypatch):
    def refuse(self, kind):
        raise AnalysisError("Path patching cannot compute this model's q inputs from the residual stream.", "")

    monkeypatch.setattr(path_patching.QKVReader, "check", refuse)
    result = _run(three)
    assert "path_patch_q" not in result.arrays and "path_patch_logits" in result.arrays
    assert "left out" in result.meta["note"]
    with pytest.raises(AnalysisError):
        _run(three, senders="0.1")
