"""Attribution patching against an independent finite-difference derivative."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ioi_desktop.core.analyses import attribution_patching as atp
from ioi_desktop.core.analyses import patching
from ioi_desktop.core.hooks import hook_name

from tests.support.patching_helpers import RecordingProgress, context, logit_diff_metric


@pytest.fixture(scope="module")
def estimate(tiny):
    torch.set_num_threads(1)
    progress = RecordingProgress()
    result = atp.run(context(tiny.model, tiny.batch), atp.Options(), progress)
    return result, progress


def _interpolated_metric(model, batch, name, clean, select, alpha: float) -> float:
    """Metric of the corrupted run with ``corrupt + alpha * (clean - corrupt)`` where ``select``."""

    def hook(act, hook):
        mixed = act + alpha * (clean - act)
        return torch.where(select, mixed, act)

    with torch.no_grad():
        return float(logit_diff_metric(batch)(model.run_with_hooks(torch.as_tensor(batch.corrupt_tokens), fwd_hooks=[(name, hook)])))


def test_estimates_equal_the_directional_derivative(tiny, estimate):
    """(f(corrupt + e*delta) - f(corrupt - e*delta)) / 2e is the same first-order quantity, with no autograd."""
    result, _progress = estimate
    model, batch = tiny.model, tiny.batch
    with torch.no_grad():
        _logits, clean_cache = model.run_with_cache(torch.as_tensor(batch.clean_tokens))
    eps = 1e-2
    corrupt_mean = result.meta["corrupt_logit_diff"]
    last = batch.clean_tokens.shape[1] - 1
    checks = [("head_z", "z", (0, 3)), ("head_v", "v", (1, 0)), ("head_pattern", "pattern", (1, 0)),
              ("resid_pre", "resid_pre", (1, tiny.first_changed + 1)), ("attn_out", "attn_out", (1, last)),
              ("mlp_out", "mlp_out", (0, last))]
    for sweep, kind, (layer, index) in checks:
        name = hook_name(kind, layer)
        clean = clean_cache[name]
        select = torch.zeros_like(clean, dtype=torch.bool)
        if kind == "pattern":
            select[:, index] = True
        elif kind in ("z", "v"):
            select[:, :, index] = True
        else:
            select[:, index] = True
        up = _interpolated_metric(model, batch, name, clean, select, eps)
        down = _interpolated_metric(model, batch, name, clean, select, -eps)
        derivative = (up - down) / (2 * eps)
        got = result.arrays[atp.array_name(sweep) + "_raw"][layer, index] - corrupt_mean
        assert abs(got - derivative) <= 1e-6 + 1e-3 * abs(derivative), (sweep, got, derivative)
        assert abs(derivative) > 1e-3  # a real signal, not two zeros


def test_grids_have_the_exact_grids_shapes_and_are_close_where_linear(tiny, estimate):
    result, progress = estimate
    exact = patching.run(context(tiny.model, tiny.batch), patching.Options(sweeps=("head_z", "head_pattern")),
                         RecordingProgress())
    for sweep in patching.SWEEPS:
        name = atp.array_name(sweep)
        assert result.arrays[name].shape == result.arrays[name + "_raw"].shape
        assert result.axes[name] == patching.SWEEPS[sweep].axes
        assert np.isfinite(result.arrays[name]).all() and result.arrays[name].dtype == np.float32
    # On this small model heads act nearly linearly: the estimate tracks the exact score.
    for sweep in ("head_z", "head_pattern"):
        a = result.arrays[atp.array_name(sweep)].ravel()
        e = exact.arrays[patching.SWEEPS[sweep].array].ravel()
        assert np.corrcoef(a, e)[0, 1] > 0.9
    assert progress.total == progress.done == 1 + len(patching.SWEEPS)
    assert result.arrays["atp_resid_pre"][:, : tiny.first_changed].sum() == 0


def test_the_model_is_left_without_gradients(tiny, estimate):
    assert all(p.grad is None for p in tiny.model.parameters())
