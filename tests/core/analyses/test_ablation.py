"""Ablation what-if against plain TransformerLens hooks and ActivationCache methods."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from ioi_desktop.core.analyses import ablation
from ioi_desktop.core.errors import AnalysisError
from ioi_desktop.core.pairfiles import write_pairs
from ioi_desktop.core.pairs import notebook_prompt_set
from ioi_desktop.core.prompts import PromptPair, PromptSet

from tests.support.analysis_fixtures import notebook_batch
from tests.support.patching_helpers import RecordingProgress, context

# A permutation of the demo's names: the same templates (same token lengths), other prompts.
_RENAME = {"John": "Dan", "Mary": "Sid", "Tom": "Martin", "James": "Amy",
           "Dan": "John", "Sid": "Mary", "Martin": "Tom", "Amy": "James"}


def _renamed(text: str) -> str:
    return re.sub(r"\b(" + "|".join(_RENAME) + r")\b", lambda m: _RENAME[m.group(1)], text)


def reference_set() -> PromptSet:
    pairs = [PromptPair(_renamed(p.clean), _renamed(p.corrupt), _renamed(p.correct), _renamed(p.incorrect))
             for p in notebook_prompt_set()]
    return PromptSet(tuple(pairs))


@pytest.fixture(scope="module")
def case(gpt2_handle, tmp_path_factory):
    batch = notebook_batch(gpt2_handle)
    folder = tmp_path_factory.mktemp("ablation")
    ref_path = write_pairs(folder / "reference.json", reference_set())
    return gpt2_handle, batch, ref_path, folder


def _cache(model, tokens):
    with torch.no_grad():
        return model.run_with_cache(torch.as_tensor(np.asarray(tokens)))


def _where(batch, positions):
    n, width = batch.clean_tokens.shape
    if positions == "all":
        return np.ones((n, width), dtype=bool)
    where = batch.end_pos if positions == "end" else batch.roles[positions]
    mask = np.zeros((n, width), dtype=bool)
    mask[np.arange(n), where] = True
    return mask


def expected(handle, batch, heads, method, positions, ref_batch=None):
    """(logit diff per prompt, DLA per head after) from one hooked TransformerLens run."""
    model = handle.model
    _l, clean = _cache(model, batch.clean_tokens)
    mask = torch.as_tensor(_where(batch, positions))
    hooks = []
    for layer, head in heads:
        name = f"blocks.{layer}.attn.hook_z"
        z = clean[name][:, :, head]  # [prompt, pos, d_head]
        if method == "zero":
            value = torch.zeros_like(z)
        elif method == "resample":
            value = _cache(model, batch.corrupt_tokens)[1][name][:, :, head]
        else:
            stats_batch = batch if method == "mean" else ref_batch
            source = clean[name] if method == "mean" else _cache(model, ref_batch.clean_tokens)[1][name]
            source = source[:, :, head]
            if positions == "all":
                value = source.mean(dim=0, keepdim=True).expand_as(z)
            else:
                where = stats_batch.end_pos if positions == "end" else stats_batch.roles[positions]
                value = source[torch.arange(source.shape[0]), torch.as_tensor(where)].mean(dim=0)
                value = value.expand_as(z)

        def hook(act, hook, head=head, value=value):
            act = act.clone()
            act[:, :, head][mask] = value[mask]
            return act

        hooks.append((name, hook))
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        logits, cache = model.run_with_cache(torch.as_tensor(batch.clean_tokens))
    rows = torch.arange(len(batch.end_pos))
    end = torch.as_tensor(batch.end_pos)
    correct, incorrect = torch.as_tensor(batch.correct_ids), torch.as_tensor(batch.incorrect_ids)
    at_end = logits[rows, end]
    diff = at_end[rows, correct] - at_end[rows, incorrect]
    # Equal-length set: END is the last position for every prompt.
    stack = cache.stack_head_results(layer=-1, pos_slice=-1)
    stack = cache.apply_ln_to_stack(stack, layer=-1, pos_slice=-1)
    directions = (model.W_U[:, correct] - model.W_U[:, incorrect]).T
    dla = torch.einsum("cpd,pd->cp", stack, directions).mean(dim=1)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    return diff.numpy(), dla.view(n_layers, n_heads).numpy()


@pytest.mark.parametrize("method", ablation.METHODS)
@pytest.mark.parametrize("positions", ["all", "end", "S2"])
def test_every_method_and_position_matches_hooked_run(case, method, positions):
    handle, batch, ref_path, _folder = case
    assert batch.equal_length
    heads = [(1, 2), (2, 0)]
    options = ablation.Options(heads="1.2,2.0", method=method, positions=positions,
                               reference=str(ref_path) if method == "reference" else "")
    result = ablation.run(context(handle.model, batch, handle=handle), options, RecordingProgress())
    ref_batch = None
    if method == "reference":
        from ioi_desktop.core.prompts import tokenize_set

        ref_batch = tokenize_set(reference_set(), handle.tokenizer)
    diff, dla_after = expected(handle, batch, heads, method, positions, ref_batch)
    assert np.abs(result.ablation_logit_diff - diff).max() <= 1e-4
    assert np.abs(result.ablation_dla_head_after - dla_after).max() <= 1e-4
    # The ablation changes something, and the clean numbers are the unablated run's.
    assert np.abs(result.ablation_logit_diff - result.ablation_logit_diff_clean).max() > 1e-5
    assert result.meta["heads"] == [[1, 2], [2, 0]]


def test_before_is_dla_and_predicted_drop_is_the_heads_sum(case):
    from ioi_desktop.core.analyses import dla

    handle, batch, _ref, _folder = case
    ctx = context(handle.model, batch, handle=handle)
    ctx.runs.declare(dla.hooks_needed(ctx, dla.Options()))
    result = ablation.run(ctx, ablation.Options(heads="2.1,0.3"), RecordingProgress())
    before = dla.run(ctx, dla.Options(), RecordingProgress()).dla_head
    assert np.abs(result.ablation_dla_head_before - before).max() <= 1e-5
    assert result.ablation_predicted_drop.shape == ()
    assert float(result.ablation_predicted_drop) == pytest.approx(before[2, 1] + before[0, 3], abs=1e-5)
    # Zero-ablated at END, the heads write nothing there any more.
    assert abs(result.ablation_dla_head_after[2, 1]) < 1e-6 and abs(result.ablation_dla_head_after[0, 3]) < 1e-6


def test_default_is_the_backup_preset_on_the_strongest_head(case):
    handle, batch, _ref, _folder = case
    result = ablation.run(context(handle.model, batch, handle=handle), ablation.Options(), RecordingProgress())
    before = result.ablation_dla_head_before
    strongest = np.unravel_index(before.argmax(), before.shape)
    assert result.meta["heads"] == [[int(strongest[0]), int(strongest[1])]]
    assert result.meta["preset"] == ablation.PRESET
    assert result.meta["ablated_positions"] == "END" and result.meta["method"] == "zero"


def test_mlp_ablation_matches_hooked_run(case):
    handle, batch, _ref, _folder = case
    model = handle.model
    result = ablation.run(context(model, batch, handle=handle),
                          ablation.Options(heads="2.3", mlp_layers="0", positions="all"), RecordingProgress())

    def zero_head(act, hook):
        act = act.clone()
        act[:, :, 3] = 0
        return act

    with torch.no_grad(), model.hooks(fwd_hooks=[("blocks.0.hook_mlp_out", lambda a, hook: torch.zeros_like(a)),
                                                 ("blocks.2.attn.hook_z", zero_head)]):
        logits = model(torch.as_tensor(batch.clean_tokens))
    rows = torch.arange(len(batch.end_pos))
    at_end = logits[rows, torch.as_tensor(batch.end_pos)]
    diff = at_end[rows, torch.as_tensor(batch.correct_ids)] - at_end[rows, torch.as_tensor(batch.incorrect_ids)]
    assert np.abs(result.ablation_logit_diff - diff.numpy()).max() <= 1e-4


def test_bundled_backup_preset(bundled_handle):
    batch = notebook_batch(bundled_handle)
    ctx = context(bundled_handle.model, batch, handle=bundled_handle)
    result = ablation.run(ctx, ablation.Options(), RecordingProgress())
    (layer, head), = result.meta["heads"]
    diff, dla_after = expected(bundled_handle, batch, [(layer, head)], "zero", "end")
    assert np.abs(result.ablation_logit_diff - diff).max() <= 1e-4
    assert np.abs(result.ablation_dla_head_after - dla_after).max() <= 1e-4
    assert result.meta["actual_drop"] > 0


def _bad(handle, batch, **options):
    with pytest.raises(AnalysisError) as info:
        ablation.run(context(handle.model, batch, handle=handle), ablation.Options(**options), RecordingProgress())
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return info.value.message


def test_bad_input_gives_one_sentence(case):
    handle, batch, ref_path, folder = case
    assert "outside this model" in _bad(handle, batch, heads="3.0")
    assert "outside this model" in _bad(handle, batch, heads="0.4")
    assert "not of the form" in _bad(handle, batch, heads="nine")
    assert "empty" in _bad(handle, batch, heads=",")
    assert "no position called" in _bad(handle, batch, positions="C")
    assert "needs a reference set" in _bad(handle, batch, method="reference")
    longer = PromptSet(tuple(PromptPair(p.clean.replace("went to", "went quickly to"),
                                        p.corrupt.replace("went to", "went quickly to"), p.correct, p.incorrect)
                             for p in notebook_prompt_set()))
    long_path = write_pairs(folder / "longer.json", longer)
    assert "cannot be matched position by position" in _bad(
        handle, batch, method="reference", positions="all", reference=str(long_path))
    fewer = write_pairs(folder / "fewer.json", PromptSet(tuple(notebook_prompt_set())[:4]))
    assert "has 4 pairs but the prompt set has 8" in _bad(
        handle, batch, method="resample", reference=str(fewer))
    untokenizable = write_pairs(folder / "untokenizable.json", PromptSet((PromptPair(
        "When Xqzvw and Mary went to the shops, Xqzvw gave the bag to",
        "When Xqzvw and Mary went to the shops, Mary gave the bag to", " Mary", " Xqzvw"),)))
    assert "does not fit this model's tokenizer" in _bad(
        handle, batch, method="reference", positions="end", reference=str(untokenizable))
    assert "does not fit" in _bad(handle, batch, method="reference", reference=str(folder / "missing.json"))


def test_ragged_set_matches_each_prompt_run_alone(gpt2_handle):
    """Prompts of different lengths (padded): END is each prompt's own; checked against unpadded hooked runs."""
    from tests.support.analysis_fixtures import ragged_batch

    batch = ragged_batch(gpt2_handle)
    assert not batch.equal_length
    model = gpt2_handle.model
    result = ablation.run(context(model, batch, handle=gpt2_handle),
                          ablation.Options(heads="1.3", method="resample", positions="end"), RecordingProgress())
    for i, (row, crow, length) in enumerate(zip(batch.clean_tokens, batch.corrupt_tokens, batch.lengths)):
        _l, corrupt = _cache(model, crow[None, :length])
        z = corrupt["blocks.1.attn.hook_z"]

        def hook(act, hook, z=z, end=length - 1):
            act = act.clone()
            act[:, end, 3] = z[:, end, 3]
            return act

        with torch.no_grad(), model.hooks(fwd_hooks=[("blocks.1.attn.hook_z", hook)]):
            logits = model(torch.as_tensor(row[None, :length]))
        expected_diff = float(logits[0, length - 1, batch.correct_ids[i]] - logits[0, length - 1, batch.incorrect_ids[i]])
        assert abs(result.ablation_logit_diff[i] - expected_diff) <= 1e-4


def test_changed_heads_name_the_compensating_and_the_falling_heads():
    from ioi_desktop.core.analyses import ablation

    before = np.zeros((3, 4), np.float32)
    after = before.copy()
    after[2, 1], after[1, 0], after[0, 3], after[2, 2] = 1.0, 0.5, -0.4, 0.01
    result = ablation.Result(ablation_dla_head_before=before, ablation_dla_head_after=after,
                             ablation_dla_head_change=after - before, heads=[[1, 0]], mean_clean=3.0)
    rising, falling = ablation.changed_heads(result)
    # L1H0 is the ablated head; L2H2's +0.01 is below 2% of the clean logit difference (0.06).
    assert rising == [(2, 1)] and falling == [(0, 3)]
