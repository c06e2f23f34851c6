"""Exact activation patching for any architecture, through the bridge's own blocks.

Calling ``bridge.blocks[i](resid)`` on a cached residual stream reproduces the
model's forward bit for bit with every hook firing. So instead of a full
forward per cell (TransformerLens's ``patching`` module), each patch restarts
from the cached corrupted ``resid_pre`` of the patched layer, runs only blocks
``layer .. n_layers-1`` with a hook that swaps in the clean activation, stops
at the last END position, and unembeds only each prompt's END position. Many
patch settings share one batched pass, and a setting that changes nothing
returns the corrupted metric exactly without any forward.

Some architectures' blocks need inputs that the bridge's forward computes
(rotary position embeddings, for one); a block called on a bare residual then
gives a different result, and some (Bloom's ALiBi mask, GPT-J, Falcon,
DeepSeek-V2's latent attention) cannot be called on a bare residual at all.
The engine checks this once on the corrupted run and, where the blocks give
another result or raise, runs each batch of patches as a full hooked forward
instead (as ``transformer_lens.patching`` does, but still batched and still
skipping unchanged cells); ``note`` says why.
"""

from __future__ import annotations

import warnings

import torch

from ioi_desktop.core.devices import module_device, to_device
from ioi_desktop.core.engine.inputs import PatchInputs, first_changed_pos, patched_activation
from ioi_desktop.core.hooks import hook_name

NAME = "bridge"


class BridgeBlocksEngine:
    """Exact patched logit differences by running the bridge's later blocks."""

    name = NAME

    def __init__(self, model, inputs: PatchInputs) -> None:
        self.model = model
        self.inputs = inputs
        self.stop = int(inputs.end_pos.max()) + 1  # later positions never reach the metric
        try:
            self.from_blocks = self._blocks_reproduce_the_run()
            why = "its blocks need inputs from the full forward (e.g. rotary embeddings)"
        except Exception as exc:  # noqa: BLE001 - any failure of the shortcut means: use full forwards
            self.from_blocks = False
            text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
            why = f"its blocks cannot run on a cached residual stream ({type(exc).__name__}{': ' + text if text else ''})"
        self.note = None if self.from_blocks else f"{why}, so each batch of patches runs a full hooked forward"

    def _metric_at_end(self, resid: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        """Logit difference at each row's END from the final residual stream."""
        home = self.inputs.end_pos.device
        resid = to_device(resid, home)  # a split model's last block may be on another GPU
        rows = torch.arange(resid.shape[0], device=resid.device)
        at_end = resid[rows, self.inputs.end_pos[prompt]]
        final = self.model.ln_final(to_device(at_end.unsqueeze(1), module_device(self.model.ln_final, home)))
        logits = to_device(self.model.unembed(to_device(final, module_device(self.model.unembed, home)))[:, 0], home)
        return (
            logits.gather(1, self.inputs.correct_ids[prompt, None])
            - logits.gather(1, self.inputs.incorrect_ids[prompt, None])
        )[:, 0]

    def _run_blocks(self, layer: int, resid: torch.Tensor) -> torch.Tensor:
        for block in self.model.blocks[layer:]:
            resid = block(to_device(resid, module_device(block, resid.device)))
            if isinstance(resid, tuple):
                resid = resid[0]
        return resid

    def _blocks_reproduce_the_run(self) -> bool:
        """Whether the blocks run on the cached embeddings give the cached corrupted metric.

        Checked on the longest prompt: a missing block input shows on any prompt.
        """
        inputs = self.inputs
        longest = int(inputs.end_pos.argmax())
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = inputs.corrupt(hook_name("resid_pre", 0))[longest : longest + 1, : self.stop]
            prompt = torch.tensor([longest], device=start.device)
            value = self._metric_at_end(self._run_blocks(0, start), prompt).to(inputs.corrupt_logit_diff.dtype)
        expected = inputs.corrupt_logit_diff[longest]
        return bool((value - expected).abs().max() <= 1e-5 * max(1.0, abs(float(expected))))

    def patched_logit_diffs(self, kind: str, layer: int, masks: torch.Tensor) -> torch.Tensor:
        """Per-prompt logit difference of each patch setting: [setting, prompt]."""
        with torch.no_grad():
            return self.logit_diffs_of(kind, layer, patched_activation(self.inputs, kind, layer, masks))

    def logit_diffs_of(self, kind: str, layer: int, new: torch.Tensor) -> torch.Tensor:
        """Per-prompt logit difference with activation ``kind`` of ``layer`` replaced by ``new``:
        [setting, prompt] for ``new`` [setting, *activation shape]."""
        inputs, model = self.inputs, self.model
        with torch.no_grad():
            changed, first = first_changed_pos(kind, new, inputs.corrupt(hook_name(kind, layer)))
            changed &= first <= inputs.end_pos.unsqueeze(0)
            out = inputs.corrupt_logit_diff.unsqueeze(0).expand(new.shape[0], -1).clone()
            settings = changed.any(dim=1).nonzero().flatten()
            if settings.numel() == 0:
                return out
            stop = self.stop
            new = new[settings]
            n, n_prompts = new.shape[0], new.shape[1]
            rows = n * n_prompts
            if kind == "pattern":
                replacement = new[:, :, :, :stop, :stop].reshape(rows, *new.shape[2:3], stop, stop)
            else:
                replacement = new[:, :, :stop].reshape(rows, stop, *new.shape[3:])
            prompt = torch.arange(n_prompts, device=new.device).repeat(n)
            # On a split model the hook fires on the patched layer's GPU.
            patch = [(hook_name(kind, layer), lambda activation, hook: to_device(replacement, activation.device))]
            if self.from_blocks:
                if kind == "resid_pre":
                    resid, patch = replacement, []
                else:
                    start = inputs.corrupt(hook_name("resid_pre", layer))[:, :stop]
                    resid = start.unsqueeze(0).expand(n, -1, -1, -1).reshape(rows, stop, -1)
                with model.hooks(fwd_hooks=patch):
                    resid = self._run_blocks(layer, resid)
                values = self._metric_at_end(resid, prompt)
            else:
                tokens = inputs.corrupt_tokens[:, :stop].repeat(n, 1)
                with model.hooks(fwd_hooks=patch):
                    logits = to_device(model(tokens), inputs.end_pos.device)
                at_end = logits[torch.arange(rows, device=logits.device), inputs.end_pos[prompt]]
                values = (
                    at_end.gather(1, inputs.correct_ids[prompt, None])
                    - at_end.gather(1, inputs.incorrect_ids[prompt, None])
                )[:, 0]
            values = values.view(n, n_prompts).to(out.dtype)
            out[settings] = torch.where(changed[settings], values, out[settings])
        return out
