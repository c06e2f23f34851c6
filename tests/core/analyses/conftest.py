"""Fixtures for the analysis tests: a small processed random GPT-2, the bundled model, cached cases."""

from __future__ import annotations

import os

import pytest

from tests.support.analysis_fixtures import notebook_batch, ragged_batch, reference_caches, save_random_gpt2

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def gpt2_handle(tmp_path_factory, gpt2_tokenizer):
    """A random 3-layer, 4-head GPT-2 with GPT-2's tokenizer, loaded and processed by core.models."""
    import torch

    from ioi_desktop.core.models import ModelSpec, load_model

    torch.set_num_threads(1)
    folder = save_random_gpt2(tmp_path_factory.mktemp("models") / "random-gpt2", gpt2_tokenizer)
    return load_model(ModelSpec(source=str(folder), device="cpu"))


@pytest.fixture(scope="session")
def bundled_handle():
    from ioi_desktop.core.models import ModelSpec, load_model
    from ioi_desktop.core.paths import bundled_model_dir

    if not (bundled_model_dir() / "config.json").is_file():
        pytest.skip(f"the bundled model is not in {bundled_model_dir()} yet")
    import torch

    torch.set_num_threads(1)
    return load_model(ModelSpec(source="bundled", device="cpu"))


@pytest.fixture(scope="session")
def gpt2_cases(gpt2_handle):
    """(batch, analysis results, reference caches) for the notebook set and a ragged set."""
    from ioi_desktop.core.runner import Runner

    cases = {}
    for name, make in (("notebook", notebook_batch), ("ragged", ragged_batch)):
        batch = make(gpt2_handle)
        results = Runner().run(gpt2_handle, batch, ["logit_diff", "logit_lens", "dla", "attention"])
        cases[name] = (batch, results, reference_caches(gpt2_handle, batch))
    return cases
