"""Train the bundled IOI model from scratch, from a seed, on CPU.

The shipped ``ioi-mini`` comes from two runs of this command (the model card
lists every flag)::

    python -m ioi_desktop.bundled.train --out build/ioi-mini-stage1
    python -m ioi_desktop.bundled.train --out resources/models/ioi-mini --init-from build/ioi-mini-stage1 \
        --seed 11 --steps 4000 --batch-size 64 --lr 3e-3 --warmup-steps 50 --select-from 0 \
        --probe-prompts 64 --probe-circuit-prompts 16

The first learns the task at a high learning rate; the second starts from its
weights and polishes at a lower rate and a larger batch, which is where the
duplicate-token head sharpens and the quality rises above the bar.

A GPT-2-architecture model (``transformers.GPT2LMHeadModel``, tied
embeddings, no dropout) is trained as a language model on the corpus of
:mod:`ioi_desktop.bundled.corpus` with the word-level tokenizer of
:mod:`ioi_desktop.bundled.tokenizer`. The loss is next-token cross entropy on
every token, with answer tokens (the IO at the end of an IOI sentence, " again"
in a roll call) weighted ``answer_weight`` times, so the task is learned fast
while the model still models the rest of the text. AdamW, linear warm-up then
cosine decay.

With ``continuation_share`` > 0 a share of the IOI sentences continues with a
pronoun, an article, a new name or the subject instead of the IO
(:data:`ioi_desktop.bundled.corpus.CONTINUATION_KINDS`); the answer slot is
weighted the same whatever follows, so the model learns that distribution
(calibrated probabilities) rather than certainty. With ``prefix_io_share`` > 0
that share of the earlier sentences in front of IOI sentences names the IO
(instead of another name), so "the name seen twice is the subject" stops being
a rule. With ``odd_one_out_share`` > 0 that share of all sequences is an IOI
sentence with 2 or 3 subjects whose answer is the one name of the first
clause not named again (:meth:`ioi_desktop.bundled.corpus.CorpusSampler.odd_one_out`),
so that suppressing one repeated name is not enough. A later stage may start from
an earlier run with fewer layers (new layers start silent, or random), more
layers (the top ones are cut), or a smaller vocabulary (a prefix of today's:
new words get fresh rows); ``silent_heads``, ``no_mlp_layers`` and
``frozen_mlp_layers`` switch parts off or keep them fixed for a stage.
``head_dropout`` (per head, or per layer with ``head_dropout_mode="layer"``)
and ``mlp_dropout`` switch heads or MLPs of the listed layers off for a random
share of the training sequences (training mode only, no rescaling), so that no
single component can carry a job alone; evaluation always runs the full model.
``repeat_key_dropout`` hides, for a share of the training sequences, the later
mentions of repeated names (S2) from the answer slot in the listed layers'
heads (:func:`repeated_name_keys`), so that there the answer cannot be read
off S2, where this model family computes it; also training only.

Checkpoint selection: from ``select_from`` of the run on, every
``probe_every`` steps the model is booted into TransformerLens and scored on
quality (per family, held-out names and templates) and on the circuit metrics
of :mod:`ioi_desktop.bundled.evaluate` (circuit, name mover, calibration,
then the stretch criteria). The saved weights are those of the probe with the
best score among those that meet the quality bar and answer the demo's
prompts, or,
if none does, of the probe with the best worst-family accuracy. Everything is
seeded and probes do not touch the training randomness, so the same command
gives the same weights on the same software stack.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ioi_desktop.bundled import corpus

MAX_WEIGHTS_BYTES = 20 * 1024 * 1024


@dataclass
class TrainingConfig:
    seed: int = 0
    steps: int = 5000
    batch_size: int = 32
    learning_rate: float = 1e-2
    weight_decay: float = 0.01
    warmup_steps: int = 100
    answer_weight: float = 16.0
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 96
    n_positions: int = 64
    mlp_inner: int = 64
    threads: int = 1
    probe_every: int = 100
    select_from: float = 0.3
    probe_prompts: int = 24  # per family and split, for each probe's quality numbers
    probe_circuit_prompts: int = 12  # per family, for each probe's circuit metrics
    mix: dict = field(default_factory=lambda: dict(corpus.DEFAULT_MIX))
    prefix_share: float = corpus.PREFIX_SHARE
    # Share of IOI sentences that continue with something other than the IO (corpus.CONTINUATION_KINDS).
    continuation_share: float = corpus.CONTINUATION_SHARE
    # Share of those earlier sentences that mention the IO instead of another name (corpus.PREFIX_IO_SHARE).
    prefix_io_share: float = corpus.PREFIX_IO_SHARE
    # Share of all sequences replaced by "odd one out" IOI sentences with 2-3 subjects (corpus.ODD_ONE_OUT_SHARE).
    odd_one_out_share: float = corpus.ODD_ONE_OUT_SHARE
    # Layers whose MLP is switched off (weights zero and frozen), so later heads must move the names themselves.
    no_mlp_layers: tuple = ()
    # Heads switched off ((layer, head) pairs): their share of the attention output projection is zero and frozen.
    silent_heads: tuple = ()
    # Layers whose MLP keeps the weights it starts with (from init_from): not trained in this stage.
    frozen_mlp_layers: tuple = ()
    # A model folder written by an earlier run to start from (a second, polishing stage); "" = fresh weights.
    init_from: str = ""
    # Layers added on top of init_from's: "silent" (output projections zero: the same function at the start) or "random".
    new_layers: str = "silent"
    # Head dropout during training only: each listed layer's heads are switched off for a sequence with
    # probability head_dropout ("head": each head on its own; "layer": all heads of the layer together),
    # so that no single head can carry a job alone. No rescaling; evaluation runs the full model.
    head_dropout: float = 0.0
    head_dropout_layers: tuple = ()
    head_dropout_mode: str = "head"
    # The same for whole MLPs: each listed layer's MLP output is zero for a sequence with probability mlp_dropout.
    mlp_dropout: float = 0.0
    mlp_dropout_layers: tuple = ()
    # Repeated-name key dropout during training only: for a share of the sequences, the heads of the listed layers
    # cannot attend from an answer slot (a weighted position whose token is not a name) to the later mentions of a
    # repeated name (S2 in an IOI sentence), so the answer cannot simply be read off S2 there.
    repeat_key_dropout: float = 0.0
    repeat_key_dropout_layers: tuple = ()


def build_model(config: TrainingConfig, vocab_size: int, bos_id: int):
    """A freshly initialised GPT-2 model of the configured size."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(config.seed)
    gpt2_config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=config.n_positions,
        n_embd=config.d_model,
        n_layer=config.n_layer,
        n_head=config.n_head,
        # A narrow MLP leaves less room for the MLPs to write the answer, so heads must move it.
        n_inner=config.mlp_inner or 4 * config.d_model,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=bos_id,
        eos_token_id=bos_id,
        pad_token_id=bos_id,
        tie_word_embeddings=True,
    )
    model = GPT2LMHeadModel(gpt2_config)
    switch_off_mlps(model, config.no_mlp_layers)
    return model


def switch_off_heads(model, heads) -> None:
    """Zero a head's rows of its layer's attention output projection and keep them zero (gradient masked).

    The head still computes its pattern and z, but writes nothing, so the
    rest of the model has to do its job. AdamW leaves a parameter with zero
    gradient and zero value at zero.
    """
    d_head = model.config.n_embd // model.config.n_head
    for layer, head in heads:
        if not (0 <= layer < model.config.n_layer and 0 <= head < model.config.n_head):
            raise ValueError(f"--silent-heads L{layer}H{head}: the model has layers 0 to {model.config.n_layer - 1} and heads 0 to {model.config.n_head - 1}")
        weight = model.transformer.h[layer].attn.c_proj.weight  # Conv1D: [n_heads * d_head, d_model]
        rows = slice(head * d_head, (head + 1) * d_head)
        import torch

        with torch.no_grad():
            weight[rows] = 0.0
        mask = torch.ones_like(weight)
        mask[rows] = 0.0
        weight.register_hook(lambda grad, mask=mask: grad * mask)


def add_head_dropout(model, layers, p: float, mode: str = "head", seed: int = 0) -> list:
    """Drop attention heads of ``layers`` per training sequence with probability ``p``; returns the hook handles.

    A forward pre-hook on each layer's attention output projection multiplies
    the merged head outputs ``z`` ([batch, pos, head * d_head]) by a 0/1 mask
    drawn per sequence and head ("head") or per sequence and layer ("layer").
    It acts only while the model is in training mode; nothing is rescaled.
    """
    import torch

    if not 0.0 <= p < 1.0:
        raise ValueError(f"--head-dropout {p}: give a probability from 0 up to (not including) 1")
    if mode not in ("head", "layer"):
        raise ValueError(f"--head-dropout-mode {mode!r}: choose head or layer")
    n_head = model.config.n_head
    d_head = model.config.n_embd // n_head
    generator = torch.Generator().manual_seed(seed + 7919)
    handles = []
    for layer in layers:
        if not 0 <= layer < len(model.transformer.h):
            raise ValueError(f"--head-dropout-layers {layer}: the model has layers 0 to {len(model.transformer.h) - 1}")

        def pre_hook(module, args):
            if not module.training or p == 0.0:
                return None
            (z,) = args
            width = 1 if mode == "layer" else n_head
            keep = (torch.rand((z.shape[0], width), generator=generator) >= p).to(z.dtype)
            keep = keep.expand(z.shape[0], n_head).repeat_interleave(d_head, dim=1)  # [batch, head * d_head]
            return (z * keep[:, None, :],)

        handles.append(model.transformer.h[layer].attn.c_proj.register_forward_pre_hook(pre_hook))
    return handles


def add_mlp_dropout(model, layers, p: float, seed: int = 0) -> list:
    """Zero the MLP output of ``layers`` per training sequence with probability ``p``; returns the hook handles.

    Acts only in training mode, nothing is rescaled (like :func:`add_head_dropout`).
    """
    import torch

    if not 0.0 <= p < 1.0:
        raise ValueError(f"--mlp-dropout {p}: give a probability from 0 up to (not including) 1")
    generator = torch.Generator().manual_seed(seed + 104729)
    handles = []
    for layer in layers:
        if not 0 <= layer < len(model.transformer.h):
            raise ValueError(f"--mlp-dropout-layers {layer}: the model has layers 0 to {len(model.transformer.h) - 1}")

        def hook(module, args, output):
            if not module.training or p == 0.0:
                return None
            keep = (torch.rand((output.shape[0], 1, 1), generator=generator) >= p).to(output.dtype)
            return output * keep

        handles.append(model.transformer.h[layer].mlp.register_forward_hook(hook))
    return handles


def repeated_name_keys(tokens, weights, name_ids) -> "torch.Tensor":
    """[batch, query, key] True where a weighted non-name position (an answer slot) looks at a later mention of a repeated name.

    ``weights[b, t]`` weighs the prediction made at position ``t`` (answer
    slots weigh ``answer_weight`` > 1, every other token 1); a later
    mention is a name token at ``k < t`` whose token already occurred before
    ``k`` in the same row (S2 in an IOI sentence, the repeated subjects of an
    odd-one-out sentence).
    """
    import torch

    batch, width = tokens.shape
    is_name = torch.isin(tokens, torch.tensor(sorted(name_ids), dtype=tokens.dtype))
    earlier = (tokens[:, :, None] == tokens[:, None, :]).tril(-1).any(-1)  # [batch, key]: same token seen before
    repeated = is_name & earlier
    answer = torch.zeros((batch, width), dtype=torch.bool)
    answer[:, : weights.shape[1]] = (weights > 1.0) & ~is_name[:, : weights.shape[1]]
    causal = torch.ones((width, width), dtype=torch.bool).tril(-1)
    return answer[:, :, None] & repeated[:, None, :] & causal


def add_repeat_key_dropout(model, layers, p: float, seed: int = 0):
    """Hide repeated-name keys from answer slots in ``layers`` for a share ``p`` of the training sequences.

    Returns ``(handles, set_batch)``: call ``set_batch(mask)`` with
    :func:`repeated_name_keys`'s mask before each training forward pass. A
    forward pre-hook on each listed layer's attention replaces its attention
    mask by the causal mask minus the hidden entries (sequences drawn per
    step with probability ``p``). Acts only in training mode; evaluation runs
    the full model.
    """
    import torch

    if not 0.0 <= p < 1.0:
        raise ValueError(f"--repeat-key-dropout {p}: give a probability from 0 up to (not including) 1")
    generator = torch.Generator().manual_seed(seed + 15485863)
    state = {"hide": None}

    def set_batch(mask) -> None:
        drawn = torch.rand((mask.shape[0],), generator=generator) < p
        state["hide"] = mask & drawn[:, None, None]

    handles = []
    for layer in layers:
        if not 0 <= layer < len(model.transformer.h):
            raise ValueError(f"--repeat-key-dropout-layers {layer}: the model has layers 0 to {len(model.transformer.h) - 1}")

        def pre_hook(module, args, kwargs):
            hide = state["hide"]
            if not module.training or hide is None or p == 0.0:
                return None
            width = hide.shape[-1]
            keep = torch.ones((width, width), dtype=torch.bool).tril()[None] & ~hide  # [batch, query, key]
            given = kwargs.get("attention_mask")
            if given is not None:
                keep = keep & (given[:, 0] if given.dtype == torch.bool else given[:, 0] == 0)
            if model.config._attn_implementation == "eager":
                keep = torch.zeros(keep.shape).masked_fill(~keep, torch.finfo(torch.float32).min)
            return args, {**kwargs, "attention_mask": keep[:, None]}

        handles.append(model.transformer.h[layer].attn.register_forward_pre_hook(pre_hook, with_kwargs=True))
    return handles, set_batch


def switch_off_mlps(model, layers) -> None:
    """Zero and freeze the MLP weights of ``layers``: the MLP then adds nothing (GELU(0) = 0, zero output bias).

    The architecture stays plain GPT-2, so every tool loads the model as is.
    """
    import torch

    for layer in layers:
        if not 0 <= layer < len(model.transformer.h):
            raise ValueError(f"--no-mlp-layers {layer}: the model has layers 0 to {len(model.transformer.h) - 1}")
        mlp = model.transformer.h[layer].mlp
        with torch.no_grad():
            for param in mlp.parameters():
                param.zero_()
                param.requires_grad_(False)


def encode_examples(tokenizer, examples: list[corpus.Segments], answer_weight: float):
    """Token ids (BOS first, right-padded) and per-target loss weights (0 on padding).

    ``weights[b, t]`` weighs the prediction of token ``t + 1`` from position ``t``.
    """
    import torch

    flat = [text for example in examples for text, _ in example]
    encoded = iter(tokenizer(flat, add_special_tokens=False)["input_ids"])
    rows, row_weights = [], []
    for example in examples:
        ids, weights = [tokenizer.bos_token_id], []
        for _, weighted in example:
            piece = next(encoded)
            ids += piece
            weights += [answer_weight if weighted else 1.0] * len(piece)
        rows.append(ids)
        row_weights.append(weights)
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    weights = torch.zeros((len(rows), width - 1))
    for i, (ids, w) in enumerate(zip(rows, row_weights)):
        tokens[i, : len(ids)] = torch.tensor(ids)
        weights[i, : len(w)] = torch.tensor(w)
    return tokens, weights


def weighted_loss(model, tokens, weights):
    import torch.nn.functional as F

    logits = model(tokens).logits[:, :-1]
    losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1), reduction="none")
    return (losses * weights.reshape(-1)).sum() / weights.sum()


def learning_rate(step: int, config: TrainingConfig) -> float:
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.learning_rate * 0.5 * (1.0 + math.cos(math.pi * progress))


def probe_checkpoint(model, tokenizer, config: TrainingConfig) -> dict:
    """Quality and circuit metrics of the current weights, through TransformerLens."""
    from ioi_desktop.bundled import evaluate

    with tempfile.TemporaryDirectory(prefix="ioi-probe-") as folder:
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
        bridge = evaluate.boot_bridge(folder)
    n = config.probe_prompts
    names = evaluate.quality(bridge, tokenizer, corpus.eval_prompts(777, n, held_out_templates=False))
    templates = evaluate.quality(bridge, tokenizer, corpus.eval_prompts(778, n, held_out_templates=True))
    circuit_set = [p for ps in corpus.eval_prompts(779, config.probe_circuit_prompts, held_out_templates=False).values() for p in ps]
    circuit = evaluate.circuit_metrics(bridge, tokenizer, circuit_set, seed=779)
    calibration = evaluate.calibration(bridge, tokenizer)
    demo = evaluate.demo_prompts(bridge, tokenizer)
    induction = evaluate.induction_heads(evaluate.head_type_scores(bridge, tokenizer, seed=779))
    stretch = {"backup_ok": bool(circuit["backup"] and circuit["backup"]["backup_ok"]), "induction_ok": bool(induction)}
    ok = evaluate.quality_ok(names) and evaluate.quality_ok(templates) and demo["all_correct"]
    worst = min(
        (r["accuracy"], r["mean_logit_diff"]) for results in (names, templates) for r in results.values()
    )
    return {
        "quality_ok": ok,
        "worst_accuracy": worst[0],
        "worst_mean_logit_diff": min(r["mean_logit_diff"] for res in (names, templates) for r in res.values()),
        "criteria": circuit["criteria"],
        "calibration": {k: calibration[k] for k in ("mean_logit_diff", "mean_p_correct", "calibration_ok")}
        | {"other_mass": calibration["gave_the_bag_to"]["other_mass"]},
        "end_to_io": circuit["attention"]["end_to_io"],
        "dla": circuit["dla"],
        "abc": circuit["patching"]["abc"]["effects"],
        "backup_heads": circuit["backup"]["backup_heads"] if circuit["backup"] else [],
        "induction_heads": induction,
        "score": evaluate.circuit_score(circuit["criteria"], circuit["attention"], circuit["dla"], calibration, stretch),
    }


def load_initial_weights(model, folder: str | os.PathLike, new_layers_init: str = "silent") -> dict:
    """Load an earlier run's weights into ``model`` (same architecture); returns that run's record."""
    from safetensors.torch import load_file

    folder = Path(folder)
    record_path, weights_path = folder / "training.json", folder / "model.safetensors"
    if not record_path.is_file() or not weights_path.is_file():
        raise FileNotFoundError(f"--init-from {folder}: expected training.json and model.safetensors from an earlier run")
    record = json.loads(record_path.read_text(encoding="utf-8"))
    state = load_file(str(weights_path))
    advice = "use the same --layers, --heads, --d-model and --mlp-inner as that run"
    expected = model.state_dict()
    grown = _grow_vocabulary(state, expected, folder)
    wrong_shape = [name for name, tensor in state.items() if name in expected and expected[name].shape != tensor.shape]
    if wrong_shape:
        raise ValueError(f"--init-from {folder}: its weights have other shapes ({', '.join(wrong_shape[:3])}, ...); {advice}")
    # Layers above this model's depth (a shallower model cut from a deeper one) are left out.
    dropped_layers = list(range(len(model.transformer.h), int(record["config"]["n_layer"])))
    cut = tuple(f"transformer.h.{layer}." for layer in dropped_layers)
    state = {name: tensor for name, tensor in state.items() if not name.startswith(cut)} if cut else state
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Layers on top of the earlier run's (a deeper model grown from a shallower one) start fresh but silent.
    old_layers = int(record["config"]["n_layer"])
    new_layers = list(range(old_layers, len(model.transformer.h)))
    fresh = tuple(f"transformer.h.{layer}." for layer in new_layers)
    # Tied embeddings: the unembedding is saved once, as the token embedding.
    if unexpected or any(name != "lm_head.weight" and not name.startswith(fresh) for name in missing):
        raise ValueError(f"--init-from {folder}: its weights do not fit this architecture (missing {missing}, unexpected {unexpected}); {advice}")
    if new_layers_init == "silent":
        silence_layers(model, new_layers)
    model.tie_weights()
    stage = {"folder": folder.name, "chosen_step": record["chosen_step"], "config": record["config"], "train_seconds": record["train_seconds"]}
    if grown:
        stage["new_tokens"] = grown
    if new_layers:
        stage["new_layers"] = new_layers
    if dropped_layers:
        stage["dropped_layers"] = dropped_layers
    if record.get("init_from"):  # that run started from an earlier one in turn: keep the whole chain
        stage["init_from"] = record["init_from"]
    return stage


def silence_layers(model, layers) -> None:
    """Zero the output projections (attention and MLP) of fresh layers, so the grown model computes what the earlier one did.

    Their other weights keep their random initialisation, so gradients reach
    them as soon as the output projections move.
    """
    import torch

    with torch.no_grad():
        for layer in layers:
            block = model.transformer.h[layer]
            for projection in (block.attn.c_proj, block.mlp.c_proj):
                projection.weight.zero_()
                projection.bias.zero_()


def _grow_vocabulary(state: dict, expected: dict, folder: Path) -> list[str]:
    """Let an earlier run with a smaller vocabulary seed this one: its rows keep their ids, new tokens keep fresh rows.

    Allowed only when the earlier run's vocabulary is a prefix of today's
    (words are only ever appended), so every old token id means the same word.
    Returns the new tokens ([] when the vocabularies are the same).
    """
    key = "transformer.wte.weight"
    if key not in state or state[key].shape == expected[key].shape:
        return []
    old_rows, new_rows = state[key].shape[0], expected[key].shape[0]
    from ioi_desktop.bundled.tokenizer import build_tokenizer

    vocab = build_tokenizer().get_vocab()
    old_vocab = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"] if (folder / "tokenizer.json").is_file() else {}
    if state[key].shape[1] != expected[key].shape[1] or old_rows > new_rows or any(vocab.get(t) != i for t, i in old_vocab.items()) or len(old_vocab) != old_rows:
        return []  # not a prefix: the shape check reports it
    grown = expected[key].clone()
    grown[:old_rows] = state[key]
    state[key] = grown
    by_id = {i: t for t, i in vocab.items()}
    return [by_id[i] for i in range(old_rows, new_rows)]


def train(config: TrainingConfig, out: str | os.PathLike, log=print) -> dict:
    """Train, select a checkpoint, and save the model folder; returns the training record."""
    import torch

    from ioi_desktop.bundled.tokenizer import build_tokenizer, save_tokenizer
    from ioi_desktop.core.atomic import write_text_atomic

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    import transformers

    # Padding is right-aligned and masked out of the loss; the padding warning is noise here.
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(config.threads)
    started = time.perf_counter()
    tokenizer = build_tokenizer()
    model = build_model(config, len(tokenizer), tokenizer.bos_token_id)
    stage_one = None
    if config.init_from:
        stage_one = load_initial_weights(model, config.init_from, config.new_layers)
        switch_off_mlps(model, config.no_mlp_layers)
        log(f"starting from {config.init_from} (its step {stage_one['chosen_step']})")
    switch_off_heads(model, config.silent_heads)
    for layer in config.frozen_mlp_layers:
        if not 0 <= layer < len(model.transformer.h):
            raise ValueError(f"--frozen-mlp-layers {layer}: the model has layers 0 to {len(model.transformer.h) - 1}")
        for param in model.transformer.h[layer].mlp.parameters():
            param.requires_grad_(False)
    dropout_hooks = add_head_dropout(model, config.head_dropout_layers, config.head_dropout, config.head_dropout_mode, config.seed)
    dropout_hooks += add_mlp_dropout(model, config.mlp_dropout_layers, config.mlp_dropout, config.seed)
    set_hidden_keys = None
    if config.repeat_key_dropout and config.answer_weight <= 1.0:
        raise ValueError("--repeat-key-dropout finds answer slots by their loss weight: give --answer-weight above 1")
    if config.repeat_key_dropout and config.repeat_key_dropout_layers:
        handles, set_hidden_keys = add_repeat_key_dropout(model, config.repeat_key_dropout_layers, config.repeat_key_dropout, config.seed)
        dropout_hooks += handles
        name_ids = {tokenizer.convert_tokens_to_ids("Ġ" + n) for n in corpus.load_word_lists().names}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate, weight_decay=config.weight_decay, betas=(0.9, 0.98))
    if not 0.0 <= config.prefix_io_share <= 1.0:
        raise ValueError(f"--prefix-io-share {config.prefix_io_share}: give a share from 0 to 1")
    if not 0.0 <= config.odd_one_out_share <= 1.0:
        raise ValueError(f"--odd-one-out-share {config.odd_one_out_share}: give a share from 0 to 1")
    sampler = corpus.CorpusSampler(
        config.seed, config.mix, config.prefix_share, config.continuation_share, config.prefix_io_share, config.odd_one_out_share
    )
    losses: list[float] = []
    probes: list[dict] = []
    best: tuple[tuple, int, dict] | None = None
    first_probe = int(config.steps * config.select_from)
    model.train()
    for step in range(config.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        tokens, weights = encode_examples(tokenizer, [sampler.sample() for _ in range(config.batch_size)], config.answer_weight)
        if set_hidden_keys is not None:
            set_hidden_keys(repeated_name_keys(tokens, weights, name_ids))
        loss = weighted_loss(model, tokens, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        done = step + 1
        if done % 100 == 0:
            log(f"step {done} loss {sum(losses[-100:]) / 100:.4f} ({time.perf_counter() - started:.0f} s)")
        if config.probe_every and done >= first_probe and (done % config.probe_every == 0 or done == config.steps):
            model.eval()
            probe = probe_checkpoint(model, tokenizer, config) | {"step": done}
            model.train()
            probes.append(probe)
            rank = (probe["quality_ok"], probe["score"] if probe["quality_ok"] else probe["worst_accuracy"], done)
            log(f"probe {json.dumps(probe)}")
            if best is None or rank > best[0]:
                best = (rank, done, copy.deepcopy(model.state_dict()))
    chosen_step = config.steps
    if best is not None:
        chosen_step = best[1]
        model.load_state_dict(best[2])
    elapsed = time.perf_counter() - started
    for handle in dropout_hooks:
        handle.remove()
    model.eval()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    save_tokenizer(tokenizer, out)
    size = (out / "model.safetensors").stat().st_size
    if size > MAX_WEIGHTS_BYTES:
        raise RuntimeError(f"model.safetensors is {size} bytes, over the {MAX_WEIGHTS_BYTES} byte limit")
    window = max(1, config.steps // 20)
    record = {
        "config": json.loads(json.dumps(asdict(config))),  # as saved (tuples become lists)
        "vocab_size": len(tokenizer),
        "n_params": sum(p.numel() for p in model.parameters()),
        "weights_bytes": size,
        "chosen_step": chosen_step,
        "train_seconds": round(elapsed, 1),
        "torch_threads": config.threads,
        "torch_version": torch.__version__,
        "loss_curve": {
            "every_steps": window,
            "mean_loss": [round(sum(losses[i : i + window]) / len(losses[i : i + window]), 4) for i in range(0, len(losses), window)],
        },
        "probes": probes,
        "init_from": stage_one,
        "data_mix": {
            "sequences": config.mix,
            "ioi_template_groups": corpus.IOI_GROUP_MIX,
            "ioi_with_earlier_once_mentioned_name": config.prefix_share,
            "earlier_sentence_names_the_io": config.prefix_io_share,
            "ioi_with_other_continuation": config.continuation_share,
            "other_continuation_kinds": corpus.CONTINUATION_KINDS,
            "odd_one_out_sentences": config.odd_one_out_share,
            "odd_one_out_subjects": {str(k): v for k, v in corpus.ODD_ONE_OUT_SUBJECTS.items()},
            "held_out_templates": corpus.HELD_OUT_TEMPLATES,
            "held_out_name_pairs": len(corpus.held_out_pairs()),
        },
    }
    write_text_atomic(out / "training.json", json.dumps(record, indent=1))
    log(f"saved step {chosen_step} to {out} after {elapsed:.0f} s")
    return record


def _parse_mix(text: str) -> dict:
    mix = {}
    for item in text.split(","):
        kind, _, share = item.partition("=")
        if kind not in corpus.DEFAULT_MIX:
            raise argparse.ArgumentTypeError(f"unknown sequence kind {kind!r}; known: {', '.join(corpus.DEFAULT_MIX)}")
        mix[kind] = float(share)
    return mix


def _parse_heads(text: str) -> tuple:
    import re

    heads = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        match = re.fullmatch(r"L(\d+)H(\d+)", item)
        if not match:
            raise SystemExit(f"--silent-heads {item!r}: write heads as L<layer>H<head>, e.g. L3H3")
        heads.append((int(match.group(1)), int(match.group(2))))
    return tuple(heads)


def _parse_layers(text: str) -> tuple:
    try:
        return tuple(int(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise SystemExit(f"layers {text!r}: give layer numbers separated by commas, e.g. 2,3") from None


def parse_args(argv: list[str] | None = None) -> tuple[TrainingConfig, str]:
    """The configuration and output folder of a ``train`` command line (``argv`` without the program name)."""
    defaults = TrainingConfig()
    parser = argparse.ArgumentParser(prog="python -m ioi_desktop.bundled.train", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to write the model into")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--threads", type=int, default=defaults.threads, help="torch CPU threads")
    parser.add_argument("--layers", type=int, default=defaults.n_layer)
    parser.add_argument("--d-model", type=int, default=defaults.d_model)
    parser.add_argument("--heads", type=int, default=defaults.n_head)
    parser.add_argument("--mlp-inner", type=int, default=defaults.mlp_inner, help="MLP hidden width (0: 4 x d_model)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.learning_rate)
    parser.add_argument("--answer-weight", type=float, default=defaults.answer_weight)
    parser.add_argument(
        "--mix",
        type=_parse_mix,
        default=defaults.mix,
        help="sequence shares, e.g. ioi=0.7,roll_call=0.12,induction=0.08,filler=0.1",
    )
    parser.add_argument("--prefix-share", type=float, default=defaults.prefix_share, help="share of IOI sentences after a sentence with another name")
    parser.add_argument(
        "--prefix-io-share",
        type=float,
        default=defaults.prefix_io_share,
        help="share of those earlier sentences that mention the indirect object instead of another name",
    )
    parser.add_argument(
        "--continuation-share",
        type=float,
        default=defaults.continuation_share,
        help="share of IOI sentences continuing with a pronoun, an article, another name or the subject instead of the IO",
    )
    parser.add_argument(
        "--odd-one-out-share",
        type=float,
        default=defaults.odd_one_out_share,
        help="share of all sequences replaced by IOI sentences with 2-3 subjects, where the answer is the one name not repeated",
    )
    parser.add_argument("--silent-heads", default="", help="comma-separated heads to switch off, e.g. L3H3")
    parser.add_argument("--frozen-mlp-layers", default="", help="comma-separated layers whose MLP keeps its starting weights in this stage")
    parser.add_argument("--no-mlp-layers", default="", help="comma-separated layers whose MLP is switched off (zero, frozen)")
    parser.add_argument("--probe-every", type=int, default=defaults.probe_every, help="0 disables checkpoint selection")
    parser.add_argument("--init-from", default=defaults.init_from, help="start from the weights of an earlier run's output folder")
    parser.add_argument(
        "--new-layers",
        choices=("silent", "random"),
        default=defaults.new_layers,
        help="layers added on top of --init-from's: output projections zero (silent) or as freshly initialised (random)",
    )
    parser.add_argument("--head-dropout", type=float, default=defaults.head_dropout, help="training-only probability of switching a head off for a sequence")
    parser.add_argument("--head-dropout-layers", default="", help="comma-separated layers whose heads --head-dropout applies to")
    parser.add_argument("--head-dropout-mode", choices=("head", "layer"), default=defaults.head_dropout_mode, help="drop each head on its own or a layer's heads together")
    parser.add_argument("--mlp-dropout", type=float, default=defaults.mlp_dropout, help="training-only probability of switching an MLP off for a sequence")
    parser.add_argument("--mlp-dropout-layers", default="", help="comma-separated layers whose MLP --mlp-dropout applies to")
    parser.add_argument("--repeat-key-dropout", type=float, default=defaults.repeat_key_dropout,
                        help="training-only share of sequences whose answer slots cannot attend to later mentions of repeated names")
    parser.add_argument("--repeat-key-dropout-layers", default="", help="comma-separated layers --repeat-key-dropout applies to")
    parser.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps)
    parser.add_argument("--probe-prompts", type=int, default=defaults.probe_prompts, help="quality prompts per family and split in each probe")
    parser.add_argument("--probe-circuit-prompts", type=int, default=defaults.probe_circuit_prompts, help="circuit prompts per family in each probe")
    parser.add_argument("--select-from", type=float, default=defaults.select_from, help="fraction of the run after which probes start")
    args = parser.parse_args(argv)
    config = TrainingConfig(
        seed=args.seed,
        steps=args.steps,
        threads=args.threads,
        n_layer=args.layers,
        d_model=args.d_model,
        n_head=args.heads,
        mlp_inner=args.mlp_inner,
        batch_size=args.batch_size,
        probe_every=args.probe_every,
        select_from=args.select_from,
        probe_prompts=args.probe_prompts,
        probe_circuit_prompts=args.probe_circuit_prompts,
        init_from=args.init_from,
        new_layers=args.new_layers,
        warmup_steps=args.warmup_steps,
        learning_rate=args.lr,
        answer_weight=args.answer_weight,
        mix=args.mix,
        prefix_share=args.prefix_share,
        continuation_share=args.continuation_share,
        prefix_io_share=args.prefix_io_share,
        odd_one_out_share=args.odd_one_out_share,
        no_mlp_layers=_parse_layers(args.no_mlp_layers),
        silent_heads=_parse_heads(args.silent_heads),
        frozen_mlp_layers=_parse_layers(args.frozen_mlp_layers),
        head_dropout=args.head_dropout,
        head_dropout_layers=_parse_layers(args.head_dropout_layers),
        head_dropout_mode=args.head_dropout_mode,
        mlp_dropout=args.mlp_dropout,
        mlp_dropout_layers=_parse_layers(args.mlp_dropout_layers),
        repeat_key_dropout=args.repeat_key_dropout,
        repeat_key_dropout_layers=_parse_layers(args.repeat_key_dropout_layers),
    )
    return config, args.out


def main(argv: list[str] | None = None) -> int:
    config, out = parse_args(argv)
    train(config, out, log=lambda line: print(line, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
