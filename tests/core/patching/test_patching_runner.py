"""Patching and attribution patching through core.runner: one clean and one corrupted forward."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ioi_desktop.core.runner import Runner


def test_runner_runs_both_analyses_on_the_shared_runs(tiny):
    model = tiny.model
    info = SimpleNamespace(d_vocab=int(model.cfg.d_vocab), n_ctx=int(model.cfg.n_ctx), name="tiny", processing={})
    handle = SimpleNamespace(model=model, tokenizer=None, info=info)
    rows = []
    runner = Runner()
    output = runner.run(
        handle, tiny.batch, ["patching", "attribution_patching"],
        options={"patching": {"sweeps": ["head_z", "attn_out"]}, "attribution_patching": {"sweeps": ["head_z"]}},
        on_rows=rows.append,
    )
    assert runner.forward_count == 2
    exact = output.results["patching"]
    estimate = output.results["attribution_patching"]
    assert exact.meta["engine"] == "fast"
    assert estimate.arrays["atp_head_z"].shape == exact.arrays["patch_head_z"].shape
    assert np.isfinite(exact.arrays["patch_attn_out"]).all()
    assert rows, "no partial rows were streamed"
