"""Analyses on a model loaded through the 'all GPUs' path give the single-device numbers.

There is no GPU here: the model is loaded through a device map over two fake
GPUs that are both the CPU (``devices.gpu_targets`` monkeypatched), and then
marked as split (``cfg.n_devices = 2``, what TransformerLens records for a
model dispatched across two GPUs), so every split-model code path runs: the fast
engine steps aside for the bridge engine, caches, activations and gradients are
gathered to the home device, and hooks move their replacements to the layer's
device. The tensors never actually change device on a CPU-only machine; a lent
GPU machine runs ``benchmarks/gpu_check.py`` for that.
"""

from __future__ import annotations

import numpy as np
import pytest

from ioi_desktop.core import devices
from ioi_desktop.core.models import ModelSpec, load_model
from ioi_desktop.core.pairs import notebook_prompt_set
from ioi_desktop.core.runner import Runner

from tests.support.analysis_fixtures import save_random_gpt2

GiB = 2**30
ANALYSES = ["patching", "attribution_patching", "path_patching", "ablation"]
OPTIONS = {
    "patching": {"sweeps": ("resid_pre", "head_z", "head_v")},
    "attribution_patching": {"sweeps": ("resid_pre", "head_z", "head_v")},
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, gpt2_tokenizer):
    return save_random_gpt2(tmp_path_factory.mktemp("split") / "random-gpt2", gpt2_tokenizer, n_layer=4)


@pytest.fixture(scope="module")
def results(model_dir):
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(devices, "gpu_targets", lambda: [("cpu", 4 * GiB), ("cpu", 4 * GiB)])
    try:
        split = load_model(ModelSpec(source=str(model_dir), device="all"))
    finally:
        monkeypatch.undo()
    split.model.cfg.n_devices = 2
    assert devices.is_split(split.model)
    single = load_model(ModelSpec(source=str(model_dir), device="cpu"))
    prompts = notebook_prompt_set()
    # One device runs the bridge engine too (asked for), so the two runs do the same arithmetic.
    on_one = {**OPTIONS, "patching": {**OPTIONS["patching"], "engine": "bridge"}}
    return (Runner().run(split, prompts, ANALYSES, OPTIONS), Runner().run(single, prompts, ANALYSES, on_one),
            split, single)


def _arrays(result):
    return {name: value for name, value in vars(result).items() if isinstance(value, np.ndarray) and value.dtype.kind == "f"}


@pytest.mark.parametrize("analysis", ANALYSES)
def test_split_model_matches_one_device(results, analysis):
    split, single = (r[analysis] for r in results[:2])
    got, expected = _arrays(split), _arrays(single)
    assert got.keys() == expected.keys() and got
    # Path patching has no engine option: one device runs the fast engine, the split model the
    # bridge engine, whose float32 sums differ in order (this random model's logits are large).
    atol = 1e-4 if analysis == "path_patching" else 2e-5
    for name in expected:
        assert np.allclose(got[name], expected[name], atol=atol, equal_nan=True), name


def test_split_model_uses_the_bridge_engine(results):
    split, single = (r["patching"] for r in results[:2])
    assert single.engine == "bridge"
    assert split.engine == "bridge" and "split across GPUs" in split.engine_reason


def test_split_model_edge_scores_match_one_device(results):
    """EAP, EAP-IG, exact edge scores and circuit evaluation (the circuit analysis's pieces)."""
    from ioi_desktop.core.circuits import scoring
    from ioi_desktop.core.prompts import PromptSet, tokenize_set

    split, single = results[2], results[3]
    two_pairs = PromptSet(notebook_prompt_set().pairs[:2])  # exact scores run a forward per edge group
    found = []
    for handle in (split, single):
        prep = scoring.prepare(handle.model, tokenize_set(two_pairs, handle.tokenizer, n_ctx=handle.info.n_ctx))
        eap = scoring.eap_scores(handle.model, prep)
        ig = scoring.eap_ig_scores(handle.model, prep, 2)
        exact = scoring.exact_scores(handle.model, prep)
        top = np.abs(eap) >= np.quantile(np.abs(eap[prep.graph.adjacency]), 0.8)
        found.append((eap, ig, exact, scoring.evaluate(handle.model, prep, [top & prep.graph.adjacency])))
    assert all(np.abs(values).max() > 1e-3 for values in found[1][:3])  # real scores, not zeros
    for got, expected in zip(*found):
        assert np.allclose(got, expected, atol=2e-5)
