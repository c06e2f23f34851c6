"""Hook names built in core.hooks exist on a TransformerBridge."""

from __future__ import annotations

import pytest

from ioi_desktop.core import hooks


def test_names_follow_transformer_lens():
    assert hooks.hook_name("z", 3) == "blocks.3.attn.hook_z"
    assert hooks.hook_name("resid_pre", 0) == "blocks.0.hook_resid_pre"
    assert hooks.hook_names("pattern", 2) == ["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"]
    assert hooks.resid_final_name(12) == "blocks.11.hook_resid_post"
    with pytest.raises(ValueError, match="unknown hook kind"):
        hooks.hook_name("zz", 0)


def test_every_name_is_a_hook_of_the_bridge(tiny):
    available = set(tiny.model.hook_dict)
    kinds = [k for k in hooks.BLOCK_HOOK_KINDS if k != "result"]  # hook_result needs use_attn_result
    for kind in kinds:
        assert hooks.hook_name(kind, 1) in available, kind
    for name in (hooks.EMBED, hooks.POS_EMBED, hooks.LN_FINAL_SCALE):
        assert name in available
