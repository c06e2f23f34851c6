"""``ioi-desktop reproduce-notebook`` end to end on a random GPT-2-shaped model.

There are no GPT-2 weights on this machine, so the comparison machinery is
checked with a random 3-layer GPT-2 (GPT-2's tokenizer) and a reference file
whose "published" numbers this test computes with TransformerLens alone:
each prompt run by itself, ``ActivationCache`` methods for the lens and DLA,
``transformer_lens.patching`` for the patching cells, the demo's own
diagonal formula on its repeated random tokens for head scores. The real
check (GPT-2 small against the notebook's published numbers) runs on a
machine with GPT-2 in its Hugging Face cache.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
import torch

from tests.support.analysis_fixtures import notebook_batch, reference_caches

from ioi_desktop.cli import main
from ioi_desktop.core import notebook_check

PATCH_FUNCTIONS = {
    "resid_pre": "get_act_patch_resid_pre",
    "attn_out": "get_act_patch_attn_out",
    "mlp_out": "get_act_patch_mlp_out",
    "head_z": "get_act_patch_attn_head_out_all_pos",
    "head_v": "get_act_patch_attn_head_v_all_pos",
    "head_pattern": "get_act_patch_attn_head_pattern_all_pos",
}


def _row(step, item, quantity, published):
    return {"step": step, "item": item, "quantity": quantity, "published": published}


def _metric(batch):
    end, correct, incorrect = (torch.as_tensor(np.asarray(a)) for a in (batch.end_pos, batch.correct_ids, batch.incorrect_ids))

    def metric(logits):
        rows = torch.arange(logits.shape[0])
        return (logits[rows, end][rows, correct] - logits[rows, end][rows, incorrect]).mean()

    return metric


def transformer_lens_reference(handle) -> dict:
    """A reference file like the shipped one, every number computed with TransformerLens."""
    from transformer_lens import patching

    model, batch = handle.model, notebook_batch(handle)
    n_layers, n_heads = handle.info.n_layers, handle.info.n_heads
    refs = reference_caches(handle, batch)
    corrupt_refs = reference_caches(handle, batch, "corrupt")
    rows = []
    diffs, corrupt_diffs, lens, components, heads = [], [], [], [], []
    for p, ((logits, cache), (corrupt_logits, _)) in enumerate(zip(refs, corrupt_refs)):
        c, i = int(batch.correct_ids[p]), int(batch.incorrect_ids[p])
        direction = (model.W_U[:, c] - model.W_U[:, i]).float()
        diffs.append(float(logits[0, -1, c] - logits[0, -1, i]))
        corrupt_diffs.append(float(corrupt_logits[0, -1, c] - corrupt_logits[0, -1, i]))
        stack, lens_labels = cache.accumulated_resid(layer=-1, incl_mid=True, pos_slice=-1, return_labels=True)
        lens.append((cache.apply_ln_to_stack(stack, layer=-1, pos_slice=-1)[:, 0] @ direction).numpy())
        stack, component_labels = cache.decompose_resid(apply_ln=True, pos_slice=-1, return_labels=True)
        components.append((stack[:, 0] @ direction).numpy())
        heads.append((cache.stack_head_results(layer=-1, pos_slice=-1, apply_ln=True)[:, 0] @ direction).numpy())
    for p, value in enumerate(diffs):
        rows.append(_row("logit diff per prompt", f"prompt {p}", {"kind": "logit_diff", "prompt": p}, value))
    rows.append(_row("logit diff per prompt", "mean", {"kind": "logit_diff_mean"}, float(np.mean(diffs))))
    rows.append(_row("logit diff per prompt", "corrupted mean", {"kind": "corrupt_logit_diff_mean"}, float(np.mean(corrupt_diffs))))
    for label, value in zip(lens_labels, np.mean(lens, axis=0)):
        rows.append(_row("logit lens", label, {"kind": "lens", "point": label}, float(value)))
    for label, value in zip(component_labels, np.mean(components, axis=0)):
        rows.append(_row("per-layer DLA", label, {"kind": "dla_component", "component": label}, float(value)))
    per_head = np.mean(heads, axis=0).reshape(n_layers, n_heads)
    for layer, head in itertools.product(range(n_layers), range(n_heads)):
        rows.append(_row("per-head DLA", f"L{layer}H{head}", {"kind": "dla_head", "layer": layer, "head": head},
                         float(per_head[layer, head])))

    # Patching: the strongest cell of each grid, normalized as the demo does.
    clean_tokens = torch.as_tensor(np.asarray(batch.clean_tokens))
    corrupt_tokens = torch.as_tensor(np.asarray(batch.corrupt_tokens))
    metric = _metric(batch)
    with torch.no_grad():
        clean_value, corrupt_value = float(metric(model(clean_tokens))), float(metric(model(corrupt_tokens)))
        _, clean_cache = model.run_with_cache(clean_tokens)
    roles = {name: int(np.asarray(positions)[0]) for name, positions in batch.roles.items() if name in ("S2", "END")}
    for grid, function in PATCH_FUNCTIONS.items():
        with torch.no_grad():
            if grid.startswith("head_"):
                values = getattr(patching, function)(model, corrupt_tokens, clean_cache, metric).numpy()
                cells = {(layer, head): values[layer, head] for layer, head in np.ndindex(values.shape)}
            else:
                index = list(itertools.product(range(n_layers), roles.values()))
                values = getattr(patching, function)(model, corrupt_tokens, clean_cache, metric, index_axis_names=None,
                                                     index_df=pd.DataFrame(index, columns=["layer", "pos"])).numpy()
                names = {pos: name for name, pos in roles.items()}
                cells = {(layer, names[pos]): value for (layer, pos), value in zip(index, values)}
        (layer, second), value = max(cells.items(), key=lambda item: abs(item[1] - corrupt_value))
        score = (float(value) - corrupt_value) / (clean_value - corrupt_value)
        quantity = {"kind": "patch", "grid": grid, "layer": int(layer), ("head" if grid.startswith("head_") else "pos"): second}
        rows.append(_row(f"{grid} patching", f"L{layer} {second}", quantity, score))

    # Head scores, the demo's way: torch.randint(100, 20000) run repeated, no BOS, diagonal means.
    seq_len, n_seq, seed = 10, 2, 3
    first = torch.randint(100, 20_000, (n_seq, seq_len), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        _, cache = model.run_with_cache(torch.cat([first, first], dim=1))
    for kind, offset in (("prev", 1), ("dup", seq_len), ("induction", seq_len - 1)):
        scores = torch.stack([cache["pattern", layer].diagonal(offset, dim1=-1, dim2=-2).mean(dim=(0, -1))
                              for layer in range(n_layers)])
        layer, head = np.unravel_index(int(scores.argmax()), scores.shape)
        rows.append(_row(f"head-type scores: {kind}", f"L{layer}H{head}",
                         {"kind": "head_score", "score": kind, "layer": int(layer), "head": int(head)},
                         float(scores[layer, head])))
    # The backup-name-mover experiment, written with plain hooks: one head's z zero-ablated at END,
    # then every head's DLA on the ablated run (ActivationCache methods, its own cached LN scale).
    ablated_layer, ablated_head = 1, 2
    end = torch.as_tensor(np.asarray(batch.end_pos))
    rows_index = torch.arange(end.shape[0])

    def zero_at_end(z, hook):
        z = z.clone()
        z[rows_index, end, ablated_head] = 0.0
        return z

    with torch.no_grad(), model.hooks(fwd_hooks=[(f"blocks.{ablated_layer}.attn.hook_z", zero_at_end)]):
        ablated_logits, ablated_cache = model.run_with_cache(clean_tokens)
    ablated_metric = float(metric(ablated_logits))
    directions = (model.W_U[:, torch.as_tensor(np.asarray(batch.correct_ids))]
                  - model.W_U[:, torch.as_tensor(np.asarray(batch.incorrect_ids))]).T.float()
    after = (ablated_cache.stack_head_results(layer=-1, pos_slice=-1, apply_ln=True) * directions).sum(-1).mean(-1)
    after = after.reshape(n_layers, n_heads).numpy()
    step = "backup name movers"
    rows.append(_row(step, "mean logit diff after", {"kind": "ablation_mean"}, ablated_metric))
    rows.append(_row(step, "naive DLA guess", {"kind": "ablation_dla_guess"},
                     float(np.mean(diffs) - per_head[ablated_layer, ablated_head])))
    for layer, head in ((2, 0), (2, 3)):
        rows.append(_row(step, f"L{layer}H{head} DLA before",
                         {"kind": "ablation_dla_before", "layer": layer, "head": head}, float(per_head[layer, head])))
        rows.append(_row(step, f"L{layer}H{head} DLA after",
                         {"kind": "ablation_dla_after", "layer": layer, "head": head}, float(after[layer, head])))
    # The sanity prompt through to_tokens.
    with torch.no_grad():
        probs = model(model.to_tokens(notebook_check.SANITY_PROMPT))[0, -1].softmax(-1)
    top = int(probs.argmax())
    rows.append(_row("sanity prompt", "top-1 token", {"kind": "sanity_top1"}, handle.tokenizer.decode([top])))
    rows.append(_row("sanity prompt", "p(top-1)", {"kind": "sanity_p_top1"}, float(probs[top])))
    return {
        "format": notebook_check.REFERENCE_FORMAT, "version": 1, "model": "random GPT-2", "title": "test reference",
        "source": "computed by this test with TransformerLens", "tolerance": 0.01,
        "head_scores_options": {"token_pool": "id_range", "prepend_bos": "no", "seq_len": seq_len, "batch": n_seq, "seed": seed},
        "ablation_options": {"heads": f"{ablated_layer}.{ablated_head}", "method": "zero", "positions": "end"},
        "not_compared": [{"step": "approximate statements", "published": "~0", "why": "no single number"}],
        "rows": rows,
    }


@pytest.fixture(scope="module")
def reference_file(gpt2_handle, tmp_path_factory):
    reference = transformer_lens_reference(gpt2_handle)
    path = tmp_path_factory.mktemp("reference") / "reference.json"
    path.write_text(json.dumps(reference), encoding="utf-8")
    return path, reference


def test_every_published_number_comes_back_on_a_random_gpt2(gpt2_handle, reference_file, tmp_path, capsys):
    path, reference = reference_file
    out = tmp_path / "comparison.json"
    code = main(["reproduce-notebook", "--model", gpt2_handle.info.path, "--reference", str(path),
                 "--device", "cpu", "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.out
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["passed"] and len(written["rows"]) == len(reference["rows"])
    for row in written["rows"]:
        assert row["passed"], row
        if isinstance(row["published"], float):
            # Patching scores divide by clean - corrupted (small on a random model), which magnifies float32 noise.
            assert abs(row["difference"]) <= (1e-4 if "patching" in row["step"] else 1e-5), row
    # The table: one line per number, and what was left out is said.
    assert f"{len(reference['rows'])} of {len(reference['rows'])} published numbers agree" in captured.out
    assert captured.out.count("PASS") == len(reference["rows"])
    assert "Not compared: approximate statements" in captured.out
    assert "backup name movers" in captured.out
    assert "corrupted mean" in captured.out and "head_z patching" in captured.out


def test_a_number_that_differs_fails_and_exits_1(gpt2_handle, reference_file, tmp_path, capsys):
    _, reference = reference_file
    wrong = json.loads(json.dumps(reference))
    wrong["rows"][0]["published"] += 0.02
    wrong["rows"][-2]["published"] = "not the top token"
    path = tmp_path / "wrong.json"
    path.write_text(json.dumps(wrong), encoding="utf-8")
    code = main(["reproduce-notebook", "--model", gpt2_handle.info.path, "--reference", str(path), "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 1
    assert out.count("FAIL") == 2
    assert f"{len(wrong['rows']) - 2} of {len(wrong['rows'])} published numbers agree" in out


def test_missing_gpt2_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    code = main(["reproduce-notebook"])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert "gpt2 is not in this machine's Hugging Face cache" in lines[0]
    assert "huggingface-cli download gpt2" in lines[0] and "Traceback" not in captured.err


def test_shipped_reference_covers_the_published_steps():
    reference = notebook_check.load_reference()
    steps = " ".join(row["step"] for row in reference["rows"])
    for step in ("logit diff per prompt", "logit lens", "per-layer DLA", "per-head DLA", "resid_pre patching",
                 "attn_out patching", "mlp_out patching", "head z patching", "head v patching", "head pattern patching",
                 "head-type scores", "sanity prompt"):
        assert step in steps, step
    published = {(row["step"], row["item"]): row["published"] for row in reference["rows"]}
    assert published[("logit diff per prompt", "mean")] == 3.552
    assert published[("per-head DLA (stack_head_results)", "L9H9")] == 2.99
    assert published[("backup name movers (L9H9 z zero-ablated at END)", "mean logit diff after")] == 2.92
    assert published[("backup name movers (L9H9 z zero-ablated at END)", "L10H10 DLA after")] == 1.23
    assert not any(left["step"].startswith("backup") for left in reference["not_compared"])
    assert "Exploratory Analysis Demo" in reference["source"]


def test_bad_reference_file_is_one_clear_sentence(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text("{\"rows\": 3}", encoding="utf-8")
    assert main(["reproduce-notebook", "--reference", str(path)]) == 2
    assert "is not a notebook reference" in capsys.readouterr().err
