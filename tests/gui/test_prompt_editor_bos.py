"""The prompt editor validates and shows tokens with the loaded model's BOS convention (ModelInfo.prepend_bos)."""

from __future__ import annotations

import pytest

from ioi_desktop.core.models import ModelSpec, load_model
from ioi_desktop.core.selection import SelectionModel
from ioi_desktop.gui.panels.prompt_editor import PromptEditor

from tests.architectures.matrix import prompt_set
from tests.support.arch_models import save_tiny


@pytest.fixture(scope="module")
def qwen2(tmp_path_factory):
    """A tiny Qwen2: TransformerLens's default_prepend_bos is False, its tokenizer has a BOS token."""
    folder = save_tiny("Qwen2ForCausalLM", tmp_path_factory.mktemp("qwen2") / "m")
    return load_model(ModelSpec(source=str(folder), device="cpu"))


def _editor(qtbot, handle, n_ctx, prepend_bos):
    editor = PromptEditor(SelectionModel())
    qtbot.addWidget(editor)
    editor.set_prompt_set(prompt_set(), undoable=False)
    editor.set_tokenizer(handle.tokenizer, n_ctx, prepend_bos)  # no job runner: validates at once
    editor.select_row(0)
    return editor


def test_token_strips_and_positions_are_transformer_lens_without_bos(qtbot, qwen2):
    assert qwen2.info.prepend_bos is False and qwen2.tokenizer.bos_token_id is not None
    editor = _editor(qtbot, qwen2, qwen2.info.n_ctx, qwen2.info.prepend_bos)
    pair = prompt_set()[0]
    expected = qwen2.model.to_str_tokens(pair.clean, prepend_bos=False)
    assert editor.clean_strip.tokens() == expected
    assert editor.corrupt_strip.tokens() == qwen2.model.to_str_tokens(pair.corrupt, prepend_bos=False)
    assert "END" in editor.clean_strip.roles_at(len(expected) - 1)
    io = expected.index(pair.correct)
    assert "IO" in editor.clean_strip.roles_at(io)
    assert "no BOS" in editor.clean_label.text()
    assert editor.valid


def test_context_limit_counts_bos_only_when_the_model_adds_one(qtbot, qwen2):
    """A prompt exactly the context long fits without BOS; with BOS it is one token too long."""
    longest = max(len(qwen2.model.to_tokens(pair.clean, prepend_bos=False)[0]) for pair in prompt_set())
    fits = _editor(qtbot, qwen2, longest, False)
    assert fits.valid and not [f for f in fits.findings() if f.code == "too-long"]
    too_long = _editor(qtbot, qwen2, longest, True)
    assert not too_long.valid
    assert any(f.code == "too-long" and "with BOS" in f.message for f in too_long.findings())
