"""Evaluate the bundled IOI model through TransformerLens: quality and circuit.

``python -m ioi_desktop.bundled.evaluate resources/models/ioi-mini [--json FILE]``

The folder is booted as a ``TransformerBridge`` with the demo notebook's weight
processing (fold_ln, center_writing_weights, center_unembed,
fold_value_biases, refactor_factored_attn_matrices), prompts get BOS prepended
as ``to_tokens`` does, and everything is computed with plain TransformerLens
hooks and ``ActivationCache`` methods:

- Quality per family (BABA, ABBA, long, early-IO, late-IO), on held-out name
  pairs with training templates and on held-out templates: the share of
  prompts with logit(IO) > logit(S) and the mean logit difference
  logit(IO) - logit(S) at the last position. Bar: >= 95% and >= 3.0.
- The demo's 8 prompts and its sanity prompt.
- Circuit metrics on paper-template prompts with fresh names:
  per-head mean attention S2->S1 (duplicate-token detection; the criterion
  takes the lower of the BABA-order and ABBA-order means, so a head that
  attends to a fixed position does not pass for one) and END->IO /
  END->S2 (moving a name to the answer position); per-head direct logit
  attribution (DLA) of each head's output at END on logit(IO) - logit(S)
  (``stack_head_results`` + ``apply_ln_to_stack``, exact with fold_ln); and
  per-head z patching: each head's z from the clean run written into a
  corrupted run, scored (patched - corrupted) / (clean - corrupted) on the
  mean logit difference. Corruptions: ABC (IO, S1 and S2 each replaced by a
  fresh name, so no name repeats) and S2->IO (S2 replaced by IO, which turns
  the answer around). The duplicate-token heads (S2->S1 >= 0.3, before the
  last layer) are also patched together, since heads sharing a job can each
  look unneeded on their own, both their z and their attention patterns
  alone (which shows whether where they look is what matters).
- Calibration on the demo's 8 prompts (softmax over the whole vocabulary at
  END): mean logit difference in [2.5, 8], mean p(IO) in [0.4, 0.9], and
  after "gave the bag to" >= 0.1 of the probability on other plausible
  continuations (pronouns, articles, names other than IO and S), >= 0.01 per
  kind. GPT-2 small: mean logit difference 3.55.
- A GPT-2-style name mover: END->IO >= 0.5, positive DLA and per-head z
  patching >= 0.1 under ABC. Stretch: backup name movers (the strongest name
  mover's z zero-ablated at END, every head's DLA measured again) and
  induction heads (induction score >= 0.3 on repeated random words).

The exit status is 0 when every required criterion holds (quality, the demo's
prompts, calibration and the circuit ones), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ioi_desktop.bundled import corpus

PROCESSING_FLAGS = {
    "fold_ln": True,
    "center_writing_weights": True,
    "center_unembed": True,
    "fold_value_biases": True,
    "refactor_factored_attn_matrices": True,
}
ACCURACY_BAR = 0.95
LOGIT_DIFF_BAR = 3.0
DUPLICATE_BAR = 0.3
MOVER_ATTENTION_BAR = 0.5
MOVER_DLA_BAR = 1.0
PATCHING_BAR = 0.1
GAP_BAR = 1.0
# Calibration on the demo's 8 prompts (GPT-2 small: mean logit diff 3.55, mean p(IO) about 0.5).
CALIBRATION_LOGIT_DIFF = (2.5, 8.0)
CALIBRATION_P_CORRECT = (0.4, 0.9)
# After "gave the bag to": mass on plausible continuations other than IO and S, in all and per kind.
OTHER_MASS_BAR = 0.1
OTHER_KIND_BAR = 0.01
# A backup name mover's DLA rises by this share when the name mover's z at END is zero-ablated ...
BACKUP_RISE_BAR = 0.5
# ... by at least this share of the name mover's own DLA (a rise from 0.01 to 0.02 is no take-over).
BACKUP_MIN_SHARE = 0.1
INDUCTION_BAR = 0.3


@dataclass(frozen=True)
class PromptBatch:
    """Right-padded token ids with BOS first, and each prompt's named positions."""

    tokens: "torch.Tensor"  # [batch, pos]
    io_pos: "torch.Tensor"  # [batch]
    s1_pos: "torch.Tensor"
    s2_pos: "torch.Tensor"
    end_pos: "torch.Tensor"
    io_id: "torch.Tensor"
    s_id: "torch.Tensor"
    families: tuple[str, ...]
    orders: tuple[str, ...] = ()


def boot_bridge(folder: str | os.PathLike):
    """A TransformerBridge booted offline from a model folder, processed as in the demo notebook."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(str(folder), device="cpu")
    bridge.enable_compatibility_mode(disable_warnings=True, **PROCESSING_FLAGS)
    bridge.eval()
    return bridge


def build_batch(tokenizer, prompts: list[corpus.IOIPrompt]) -> PromptBatch:
    """Tokenize prompts with BOS prepended and locate IO, S1, S2 and END."""
    import torch

    rows, io_pos, s1_pos, s2_pos, io_ids, s_ids = [], [], [], [], [], []
    for prompt in prompts:
        ids = [tokenizer.bos_token_id] + tokenizer(prompt.text, add_special_tokens=False)["input_ids"]
        io_id = tokenizer.convert_tokens_to_ids("Ġ" + prompt.io)
        s_id = tokenizer.convert_tokens_to_ids("Ġ" + prompt.s)
        s_at = [i for i, t in enumerate(ids) if t == s_id]
        rows.append(ids)
        io_pos.append(ids.index(io_id))
        s1_pos.append(s_at[0])
        s2_pos.append(s_at[-1])
        io_ids.append(io_id)
        s_ids.append(s_id)
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = torch.tensor(row)
    as_tensor = lambda values: torch.tensor(values, dtype=torch.long)  # noqa: E731
    return PromptBatch(
        tokens=tokens,
        io_pos=as_tensor(io_pos),
        s1_pos=as_tensor(s1_pos),
        s2_pos=as_tensor(s2_pos),
        end_pos=as_tensor([len(r) - 1 for r in rows]),
        io_id=as_tensor(io_ids),
        s_id=as_tensor(s_ids),
        families=tuple(p.family for p in prompts),
        orders=tuple(p.order for p in prompts),
    )


def logit_diffs(logits, batch: PromptBatch):
    """logit(IO) - logit(S) at each prompt's last position: [batch]."""
    import torch

    rows = torch.arange(len(batch.end_pos))
    final = logits[rows, batch.end_pos]
    return final[rows, batch.io_id] - final[rows, batch.s_id]


def abc_tokens(batch: PromptBatch, name_ids: list[int], seed: int):
    """ABC corruption: IO, S1 and S2 each replaced by a distinct fresh name."""
    rng = random.Random(seed)
    tokens = batch.tokens.clone()
    for i in range(len(tokens)):
        used = {int(batch.io_id[i]), int(batch.s_id[i])}
        a, b, c = rng.sample([n for n in name_ids if n not in used], 3)
        tokens[i, batch.io_pos[i]], tokens[i, batch.s1_pos[i]], tokens[i, batch.s2_pos[i]] = a, b, c
    return tokens


def s2_to_io_tokens(batch: PromptBatch):
    """S2->IO corruption: the second mention of S becomes IO, so S is now the answer."""
    import torch

    tokens = batch.tokens.clone()
    tokens[torch.arange(len(tokens)), batch.s2_pos] = batch.io_id
    return tokens


def quality(bridge, tokenizer, prompt_sets: dict[str, list[corpus.IOIPrompt]]) -> dict:
    """Accuracy (IO above S) and logit-difference statistics per family."""
    import torch

    out = {}
    with torch.no_grad():
        for family, prompts in prompt_sets.items():
            batch = build_batch(tokenizer, prompts)
            diffs = logit_diffs(bridge(batch.tokens), batch).numpy()
            out[family] = {
                "prompts": int(len(diffs)),
                "accuracy": float((diffs > 0).mean()),
                "mean_logit_diff": float(diffs.mean()),
                "min_logit_diff": float(diffs.min()),
            }
    return out


def demo_prompts(bridge, tokenizer) -> dict:
    """The demo's 8 prompts (logit diffs, top-1) and its sanity prompt (top-1 and p)."""
    import torch

    prompts = [corpus.IOIPrompt(p, io, s, "demo", "", "") for p, io, s in corpus.DEMO_PROMPTS]
    batch = build_batch(tokenizer, prompts)
    with torch.no_grad():
        logits = bridge(batch.tokens)
    diffs = logit_diffs(logits, batch)
    rows = []
    for i, prompt in enumerate(prompts):
        top = int(logits[i, batch.end_pos[i]].argmax())
        rows.append(
            {
                "prompt": prompt.text,
                "io": prompt.io,
                "s": prompt.s,
                "logit_diff": float(diffs[i]),
                "top1": tokenizer.convert_ids_to_tokens(top).replace("Ġ", " "),
                "correct": bool(diffs[i] > 0),
            }
        )
    text, io, s = corpus.SANITY_PROMPT
    sanity = build_batch(tokenizer, [corpus.IOIPrompt(text, io, s, "sanity", "", "")])
    with torch.no_grad():
        probs = bridge(sanity.tokens)[0, -1].softmax(-1)
    top = int(probs.argmax())
    return {
        "prompts": rows,
        "all_correct": all(r["correct"] for r in rows),
        "mean_logit_diff": float(diffs.mean()),
        "sanity": {
            "prompt": text,
            "top1": tokenizer.convert_ids_to_tokens(top).replace("Ġ", " "),
            "p_top1": float(probs[top]),
            "p_io": float(probs[sanity.io_id[0]]),
        },
    }


def calibration(bridge, tokenizer) -> dict:
    """How sure the model is on the demo's 8 prompts, and where the rest of its probability goes.

    Per prompt: logit(IO) - logit(S), p(IO) and p(S) after a softmax over the
    whole vocabulary, and the probability of the other plausible
    continuations by kind: pronouns (" him", " her"), articles (" the",
    " a", " an") and names other than IO and S. The "gave the bag to"
    summary averages the two prompts that end so.
    """
    import torch

    prompts = [corpus.IOIPrompt(p, io, s, "demo", "", "") for p, io, s in corpus.DEMO_PROMPTS]
    batch = build_batch(tokenizer, prompts)
    with torch.no_grad():
        logits = bridge(batch.tokens)
    rows = torch.arange(len(prompts))
    probs = logits[rows, batch.end_pos].softmax(-1)
    # Words a model's vocabulary lacks (older models have no " him" / " her") count for nothing, not as <unk>.
    known = lambda ids: [i for i in ids if i != tokenizer.unk_token_id]  # noqa: E731
    ids = lambda words: known([tokenizer.convert_tokens_to_ids("Ġ" + w) for w in words])  # noqa: E731
    kinds = {"pronoun": ids(("him", "her")), "article": ids(("the", "a", "an"))}
    names = ids(corpus.load_word_lists().names)
    per_prompt = []
    for i, prompt in enumerate(prompts):
        p = probs[i]
        others = [n for n in names if n not in (int(batch.io_id[i]), int(batch.s_id[i]))]
        mass = {kind: float(p[kind_ids].sum()) if kind_ids else 0.0 for kind, kind_ids in kinds.items()} | {"other_name": float(p[others].sum())}
        top = p.topk(8)
        per_prompt.append(
            {
                "prompt": prompt.text,
                "logit_diff": float(logits[i, batch.end_pos[i], batch.io_id[i]] - logits[i, batch.end_pos[i], batch.s_id[i]]),
                "p_io": float(p[batch.io_id[i]]),
                "p_s": float(p[batch.s_id[i]]),
                "other_mass": mass,
                "top": [[tokenizer.convert_ids_to_tokens(int(t)).replace("Ġ", " "), float(v)] for v, t in zip(top.values, top.indices)],
            }
        )
    bag = [r for r in per_prompt if r["prompt"].endswith("gave the bag to")]
    bag_mass = {kind: float(np.mean([r["other_mass"][kind] for r in bag])) for kind in bag[0]["other_mass"]}
    mean_ld = float(np.mean([r["logit_diff"] for r in per_prompt]))
    mean_p = float(np.mean([r["p_io"] for r in per_prompt]))
    checks = {
        "logit_diff_ok": CALIBRATION_LOGIT_DIFF[0] <= mean_ld <= CALIBRATION_LOGIT_DIFF[1],
        "p_correct_ok": CALIBRATION_P_CORRECT[0] <= mean_p <= CALIBRATION_P_CORRECT[1],
        "other_mass_ok": sum(bag_mass.values()) >= OTHER_MASS_BAR and min(bag_mass.values()) >= OTHER_KIND_BAR,
    }
    return {
        "prompts": per_prompt,
        "mean_logit_diff": mean_ld,
        "mean_p_correct": mean_p,
        "gave_the_bag_to": {"other_mass": bag_mass, "other_mass_total": float(sum(bag_mass.values())), "top": bag[0]["top"]},
        **checks,
        "calibration_ok": all(checks.values()),
    }


def circuit_metrics(bridge, tokenizer, prompts: list[corpus.IOIPrompt], seed: int = 0) -> dict:
    """Per-head attention, DLA and z-patching numbers on ``prompts`` (see the module docstring)."""
    import torch

    batch = build_batch(tokenizer, prompts)
    n_layers, n_heads = bridge.cfg.n_layers, bridge.cfg.n_heads
    rows = torch.arange(len(prompts))
    wanted = lambda name: name.endswith(("attn.hook_pattern", "attn.hook_z", "ln_final.hook_scale"))  # noqa: E731
    with torch.no_grad():
        clean_logits, cache = bridge.run_with_cache(batch.tokens, names_filter=wanted)
        clean_ld = logit_diffs(clean_logits, batch)

        attention = {"s2_to_s1": [], "s2_to_io": [], "end_to_io": [], "end_to_s2": []}
        orders = sorted(set(batch.orders))
        by_order = {order: [] for order in orders}
        order_rows = {order: torch.tensor([o == order for o in batch.orders]) for order in orders}
        for layer in range(n_layers):
            pattern = cache[f"blocks.{layer}.attn.hook_pattern"]  # [batch, head, query_pos, key_pos]
            s2_s1 = pattern[rows, :, batch.s2_pos, batch.s1_pos]  # [batch, head]
            attention["s2_to_s1"].append(s2_s1.mean(0).tolist())
            for order in orders:
                by_order[order].append(s2_s1[order_rows[order]].mean(0).tolist())
            attention["s2_to_io"].append(pattern[rows, :, batch.s2_pos, batch.io_pos].mean(0).tolist())
            attention["end_to_io"].append(pattern[rows, :, batch.end_pos, batch.io_pos].mean(0).tolist())
            attention["end_to_s2"].append(pattern[rows, :, batch.end_pos, batch.s2_pos].mean(0).tolist())
        # Per name order: in BABA S1 comes first, in ABBA second, so a head that attends to a fixed
        # position scores about 0.5 on the mean over both orders and near 0 in one of them.
        attention["s2_to_s1_by_order"] = by_order

        # Every head's output at every position, scaled by the final LayerNorm, then read at END.
        stack = cache.stack_head_results(layer=-1)  # [component, batch, pos, d_model]
        stack = cache.apply_ln_to_stack(stack, layer=-1)
        stack = stack[:, rows, batch.end_pos]  # [component, batch, d_model]
        directions = (bridge.W_U[:, batch.io_id] - bridge.W_U[:, batch.s_id]).T  # [batch, d_model]
        dla = (stack * directions).sum(-1).mean(-1).reshape(n_layers, n_heads)

        name_ids = [tokenizer.convert_tokens_to_ids("Ġ" + n) for n in corpus.load_word_lists().names]
        s2_s1 = duplicate_scores(attention)
        duplicate_heads = [(l, h) for l in range(n_layers - 1) for h in range(n_heads) if s2_s1[l, h] >= DUPLICATE_BAR]
        patching = {}
        for scheme, corrupted in (("abc", abc_tokens(batch, name_ids, seed)), ("s2_to_io", s2_to_io_tokens(batch))):
            corrupt_ld = logit_diffs(bridge(corrupted), batch).mean()
            gap = clean_ld.mean() - corrupt_ld
            effects = np.zeros((n_layers, n_heads), dtype=np.float32)
            for layer in range(n_layers):
                clean_z = cache[f"blocks.{layer}.attn.hook_z"]
                for head in range(n_heads):
                    hook = (f"blocks.{layer}.attn.hook_z", _clean_head_writer(clean_z, head))
                    patched = bridge.run_with_hooks(corrupted, fwd_hooks=[hook])
                    effects[layer, head] = float((logit_diffs(patched, batch).mean() - corrupt_ld) / gap)
            # The duplicate-token heads together: heads that share a job can each look unneeded alone.
            joint = joint_pattern = None
            if duplicate_heads:
                hooks = [(f"blocks.{l}.attn.hook_z", _clean_head_writer(cache[f"blocks.{l}.attn.hook_z"], h)) for l, h in duplicate_heads]
                joint = float((logit_diffs(bridge.run_with_hooks(corrupted, fwd_hooks=hooks), batch).mean() - corrupt_ld) / gap)
                # Their attention patterns alone (values stay corrupted): does *where* they look carry the effect?
                hooks = [(f"blocks.{l}.attn.hook_pattern", _clean_head_writer(cache[f"blocks.{l}.attn.hook_pattern"], h, axis=1))
                         for l, h in duplicate_heads]
                joint_pattern = float((logit_diffs(bridge.run_with_hooks(corrupted, fwd_hooks=hooks), batch).mean() - corrupt_ld) / gap)
            patching[scheme] = {
                "clean_logit_diff": float(clean_ld.mean()),
                "corrupted_logit_diff": float(corrupt_ld),
                "gap": float(gap),
                "effects": effects.tolist(),
                "duplicate_heads": [list(x) for x in duplicate_heads],
                "duplicate_heads_joint_effect": joint,
                "duplicate_heads_joint_pattern_effect": joint_pattern,
            }
    criteria = circuit_criteria(attention, dla.numpy(), patching)
    mover = strongest_name_mover(criteria, dla.numpy())
    return {
        "prompts": len(prompts),
        "attention": attention,
        "dla": dla.tolist(),
        "patching": patching,
        "criteria": criteria,
        # Stretch: heads that take over when the strongest name mover is silenced at END.
        "backup": backup_name_movers(bridge, batch, mover) if mover else None,
    }


def _clean_head_writer(clean, head: int, axis: int = 2):
    """A hook that writes one head's clean activation into the running (corrupted) forward pass.

    The head axis is 2 for ``hook_z`` ([batch, pos, head, d_head]) and 1 for
    ``hook_pattern`` ([batch, head, query, key]).
    """

    def write(activation, hook):
        index = (slice(None),) * axis + (head,)
        activation[index] = clean[index]
        return activation

    return write


# The lengths the card quotes: the Head types panel's default, and 10 words (within the texts the model trained on).
SHORT_HEAD_TYPE_LENGTH = 10
SHORT_HEAD_TYPE_BATCH = 20


def head_type_scores(bridge, tokenizer, seed: int = 0, options: dict | None = None) -> dict:
    """Previous-token, duplicate-token and induction scores: [layer][head] per kind.

    Computed by the app's own Head types analysis
    (:func:`ioi_desktop.core.analyses.head_scores.score_heads`), at its
    defaults unless ``options`` says otherwise, so the card quotes the numbers
    the panel shows: BOS first, then a run of distinct random word tokens and
    the same run again.
    """
    from ioi_desktop.core.analyses.head_scores import Options, score_heads

    scores, meta = score_heads(bridge, tokenizer, Options(**{"seed": seed, **(options or {})}))
    out = {name: scores[kind].tolist() for name, kind in (("previous_token", "prev"), ("duplicate_token", "dup"), ("induction", "induction"))}
    out["settings"] = {key: meta[key] for key in ("seq_len", "batch", "seed", "prepend_bos", "token_pool")}
    return out


def duplicate_scores(attention: dict) -> np.ndarray:
    """Per head, mean attention S2->S1 in the name order where it is lowest: [layer, head].

    A duplicate-token head finds S1 because it holds the same name as S2,
    whatever the order; a head that attends to a position (the first
    clause's second name, say) reaches S1 in one order only. Taking the
    lower of the BABA and ABBA means tells the two apart, where the mean
    over all prompts gives both about 0.5.
    """
    by_order = attention.get("s2_to_s1_by_order") or {"all": attention["s2_to_s1"]}
    return np.min(np.stack([np.array(grid) for grid in by_order.values()]), axis=0)


def circuit_criteria(attention: dict, dla: np.ndarray, patching: dict) -> dict:
    """Which of issue 3's circuit requirements hold, and the heads that meet them."""
    s2_s1 = duplicate_scores(attention)
    to_io, to_s2 = np.array(attention["end_to_io"]), np.array(attention["end_to_s2"])
    n_layers, n_heads = s2_s1.shape
    heads = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    duplicate = [(l, h) for l, h in heads if l < n_layers - 1 and s2_s1[l, h] >= DUPLICATE_BAR]
    movers = [
        (l, h) for l, h in heads if max(to_io[l, h], to_s2[l, h]) >= MOVER_ATTENTION_BAR and abs(dla[l, h]) >= MOVER_DLA_BAR
    ]
    abc = np.array(patching["abc"]["effects"]) if "abc" in patching else np.zeros_like(s2_s1)
    # GPT-2-style name mover: END attends to IO, the head raises logit(IO) - logit(S), and its z matters under ABC.
    name_movers = [
        (l, h) for l, h in heads if to_io[l, h] >= MOVER_ATTENTION_BAR and dla[l, h] > 0 and abc[l, h] >= PATCHING_BAR
    ]
    patch_layers = {}
    for scheme, result in patching.items():
        effects = np.abs(np.array(result["effects"]))
        patch_layers[scheme] = [int(l) for l in range(n_layers) if effects[l].max() >= PATCHING_BAR]
    gaps_ok = all(r["gap"] >= GAP_BAR for r in patching.values())
    patching_ok = gaps_ok and all(len(layers) >= 2 for layers in patch_layers.values())
    return {
        "duplicate_heads": [list(x) for x in duplicate],
        "best_duplicate": float(s2_s1[:-1].max()),
        "mover_heads": [list(x) for x in movers],
        "name_mover_heads": [list(x) for x in name_movers],
        "patching_layers": patch_layers,
        "duplicate_ok": bool(duplicate),
        "mover_ok": bool(movers),
        "patching_ok": bool(patching_ok),
        "name_mover_ok": bool(name_movers),
        "all_required_ok": bool(duplicate and movers and patching_ok and name_movers),
    }


def strongest_name_mover(criteria: dict, dla) -> tuple[int, int] | None:
    """The name mover with the largest DLA, or None."""
    heads = [tuple(x) for x in criteria["name_mover_heads"]]
    return max(heads, key=lambda lh: float(np.asarray(dla)[lh])) if heads else None


def backup_name_movers(bridge, batch: PromptBatch, mover: tuple[int, int]) -> dict:
    """Zero-ablate the name mover's z at END and measure every head's DLA again.

    A backup name mover is a head whose DLA on logit(IO) - logit(S) rises by
    >= BACKUP_RISE_BAR of its clean value, and by >= BACKUP_MIN_SHARE of the
    name mover's clean DLA, when the name mover no longer writes at END (as
    heads 10.10 and 10.6 of GPT-2 small take over when 9.9 and 9.6 are
    ablated). DLA uses each run's own final LayerNorm scale.
    """
    import torch

    layer, head = mover
    rows = torch.arange(len(batch.end_pos))

    def ablate(z, hook):
        z[rows, batch.end_pos, head] = 0.0
        return z

    def head_dla(hooks):
        with bridge.hooks(fwd_hooks=hooks):
            _, cache = bridge.run_with_cache(batch.tokens, names_filter=lambda n: n.endswith(("attn.hook_z", "ln_final.hook_scale")))
        stack = cache.apply_ln_to_stack(cache.stack_head_results(layer=-1), layer=-1)[:, rows, batch.end_pos]
        directions = (bridge.W_U[:, batch.io_id] - bridge.W_U[:, batch.s_id]).T
        return (stack * directions).sum(-1).mean(-1).reshape(bridge.cfg.n_layers, bridge.cfg.n_heads).numpy()

    with torch.no_grad():
        clean = head_dla([])
        ablated = head_dla([(f"blocks.{layer}.attn.hook_z", ablate)])
    rise = ablated - clean
    mover_dla = float(clean[layer, head])
    backups = [
        [l, h]
        for l in range(clean.shape[0])
        for h in range(clean.shape[1])
        if (l, h) != (layer, head) and rise[l, h] >= BACKUP_RISE_BAR * abs(clean[l, h]) and rise[l, h] >= BACKUP_MIN_SHARE * mover_dla
    ]
    with torch.no_grad():
        ld_clean = float(logit_diffs(bridge(batch.tokens), batch).mean())
        ld_ablated = float(logit_diffs(bridge.run_with_hooks(batch.tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", ablate)]), batch).mean())
    return {
        "name_mover": [layer, head],
        "dla_clean": clean.tolist(),
        "dla_ablated": ablated.tolist(),
        "backup_heads": backups,
        "logit_diff_clean": ld_clean,
        "logit_diff_ablated": ld_ablated,
        "backup_ok": bool(backups),
    }


def induction_heads(head_types: dict) -> list[list[int]]:
    """Heads whose induction score on repeated random words is >= INDUCTION_BAR."""
    grid = np.array(head_types["induction"])
    return [[int(l), int(h)] for l, h in zip(*np.nonzero(grid >= INDUCTION_BAR))]


def circuit_score(criteria: dict, attention: dict, dla: list, calibration: dict | None = None, stretch: dict | None = None) -> float:
    """Ranks checkpoints: required criteria first (circuit, name mover, calibration), then the stretch ones, then margins."""
    to_io = np.array(attention["end_to_io"])
    margin = min(criteria["best_duplicate"] / DUPLICATE_BAR, 1.5) + min(float((to_io * (np.array(dla) > 0)).max()) / MOVER_ATTENTION_BAR, 1.5)
    flags = criteria["duplicate_ok"] + criteria["mover_ok"] + criteria["patching_ok"] + criteria["name_mover_ok"]
    if calibration is not None:
        flags += calibration["logit_diff_ok"] + calibration["p_correct_ok"] + calibration["other_mass_ok"]
    stretch = stretch or {}
    return 10.0 * flags + 3.0 * (bool(stretch.get("backup_ok")) + bool(stretch.get("induction_ok"))) + margin


def quality_ok(results: dict) -> bool:
    return all(r["accuracy"] >= ACCURACY_BAR and r["mean_logit_diff"] >= LOGIT_DIFF_BAR for r in results.values())


def evaluate_folder(folder: str | os.PathLike, per_family: int = 200, circuit_prompts: int = 40, seed: int = 12345) -> dict:
    """The full report for a saved model folder."""
    import torch
    from transformers import AutoTokenizer

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    bridge = boot_bridge(folder)
    held_names = quality(bridge, tokenizer, corpus.eval_prompts(seed, per_family, held_out_templates=False))
    held_templates = quality(bridge, tokenizer, corpus.eval_prompts(seed + 1, per_family, held_out_templates=True))
    circuit_set = [p for ps in corpus.eval_prompts(seed + 2, circuit_prompts, held_out_templates=False).values() for p in ps]
    report = {
        "model": Path(folder).name,
        "processing": PROCESSING_FLAGS,
        "bars": {"accuracy": ACCURACY_BAR, "mean_logit_diff": LOGIT_DIFF_BAR},
        "quality": {"held_out_name_pairs": held_names, "held_out_templates": held_templates},
        "quality_ok": quality_ok(held_names) and quality_ok(held_templates),
        "demo": demo_prompts(bridge, tokenizer),
        "calibration": calibration(bridge, tokenizer),
        "circuit": circuit_metrics(bridge, tokenizer, circuit_set, seed),
        "head_types": head_type_scores(bridge, tokenizer),
        "head_types_short": head_type_scores(
            bridge, tokenizer, options={"seq_len": SHORT_HEAD_TYPE_LENGTH, "batch": SHORT_HEAD_TYPE_BATCH}),
        "backup": backup_experiment(folder),
    }
    backup = report["circuit"]["backup"]
    report["stretch"] = {
        "backup_name_movers": backup["backup_heads"] if backup else [],
        "backup_ok": bool(backup and backup["backup_ok"]),
        "induction_heads": induction_heads(report["head_types"]),
        "induction_ok": bool(induction_heads(report["head_types"])),
    }
    report["all_criteria_ok"] = bool(
        report["quality_ok"] and report["demo"]["all_correct"] and report["calibration"]["calibration_ok"] and report["circuit"]["criteria"]["all_required_ok"]
    )
    return report


def backup_experiment(folder: str | os.PathLike) -> dict:
    """The app's backup preset on the demo's 8 prompts, and path patching into the preset's head.

    Run through core's own analyses (``ablation`` with its defaults: zero-ablate
    the head with the largest DLA at END; ``path_patching`` with that head as
    the receiver, every earlier head as sender, q, k and v), as the app and
    ``ioi-desktop ablate`` / ``path-patch`` compute them.
    """
    from ioi_desktop.core.analyses import ablation, path_patching
    from ioi_desktop.core.models import ModelSpec, load_model
    from ioi_desktop.core.pairs import notebook_prompt_set
    from ioi_desktop.core.runner import Runner

    handle = load_model(ModelSpec(source=str(folder), device="cpu"))
    runner = Runner()
    ablated = runner.run(handle, notebook_prompt_set(), ["ablation"], {"ablation": ablation.Options()})["ablation"]
    (layer, head), = ablated.heads
    paths = runner.run(handle, notebook_prompt_set(), ["path_patching"], {"path_patching": path_patching.Options(
        receiver_head=f"{layer}.{head}", receivers=("q", "k", "v"))})["path_patching"]
    rounded = lambda a: np.round(np.asarray(a, dtype=np.float64), 4).tolist()  # noqa: E731
    return {
        "prompts": "the TransformerLens demo's 8 prompts",
        "head": [int(layer), int(head)],
        "mean_clean": round(float(ablated.mean_clean), 4),
        "mean_ablated": round(float(ablated.mean_ablated), 4),
        "predicted_drop": round(float(ablated.ablation_predicted_drop), 4),
        "dla_before": rounded(ablated.ablation_dla_head_before),
        "dla_after": rounded(ablated.ablation_dla_head_after),
        "paths_into": {kind: rounded(getattr(paths, f"path_patch_{kind}")) for kind in "qkv"},
    }


def format_report(report: dict) -> str:
    lines = [f"Model {report['model']}: quality bar met: {report['quality_ok']}"]
    for split, families in report["quality"].items():
        lines.append(f"  {split}:")
        for family, r in families.items():
            lines.append(
                f"    {family:9s} n={r['prompts']:4d} IO>S {100 * r['accuracy']:6.2f}%  mean logit diff {r['mean_logit_diff']:6.2f}  min {r['min_logit_diff']:6.2f}"
            )
    demo = report["demo"]
    lines.append(f"  demo prompts all correct: {demo['all_correct']} (mean logit diff {demo['mean_logit_diff']:.3f})")
    for row in demo["prompts"]:
        lines.append(f"    {row['logit_diff']:7.3f}  top1 {row['top1']!r:10s} {row['prompt']}")
    sanity = demo["sanity"]
    lines.append(f"  sanity: top1 {sanity['top1']!r} p={sanity['p_top1']:.3f} (p(IO)={sanity['p_io']:.3f})")
    cal = report.get("calibration")
    if cal:
        lines.append(
            f"  calibration on the demo's 8 prompts: mean logit diff {cal['mean_logit_diff']:.2f}, mean p(IO) {cal['mean_p_correct']:.3f}; "
            f"after 'gave the bag to': " + ", ".join(f"{k} {v:.3f}" for k, v in cal["gave_the_bag_to"]["other_mass"].items())
            + f"; ok: {cal['calibration_ok']}"
        )
        lines.append("    top after 'gave the bag to': " + ", ".join(f"{t!r} {p:.3f}" for t, p in cal["gave_the_bag_to"]["top"]))
    circuit = report["circuit"]
    lines.append(f"  circuit on {circuit['prompts']} prompts:")
    for key in ("s2_to_s1", "s2_to_io", "end_to_io", "end_to_s2"):
        lines.append(f"    attention {key}: " + _grid(circuit["attention"][key]))
    for order, grid in circuit["attention"]["s2_to_s1_by_order"].items():
        lines.append(f"    attention s2_to_s1, {order} order only: " + _grid(grid))
    lines.append("    DLA on logit(IO)-logit(S): " + _grid(circuit["dla"]))
    for scheme, r in circuit["patching"].items():
        lines.append(
            f"    z patching {scheme} (clean {r['clean_logit_diff']:.2f}, corrupted {r['corrupted_logit_diff']:.2f}, gap {r['gap']:.2f}): "
            + _grid(r["effects"])
        )
        if r.get("duplicate_heads_joint_effect") is not None:
            heads = ", ".join(f"L{l}H{h}" for l, h in r["duplicate_heads"])
            lines.append(f"    z patching {scheme}, duplicate-token heads {heads} together: {r['duplicate_heads_joint_effect']:+.3f}"
                         f" (their patterns only: {r['duplicate_heads_joint_pattern_effect']:+.3f})")
    lines.append(f"    criteria: {json.dumps(circuit['criteria'])}")
    if circuit.get("backup"):
        b = circuit["backup"]
        lines.append(f"    name mover L{b['name_mover'][0]}H{b['name_mover'][1]} z at END zero-ablated: logit diff {b['logit_diff_clean']:.2f} -> {b['logit_diff_ablated']:.2f}; DLA then: " + _grid(b["dla_ablated"]))
        lines.append(f"    backup name movers: {b['backup_heads']}")
    for label, types in (("app default", report["head_types"]), ("short runs", report["head_types_short"])):
        for key in ("previous_token", "duplicate_token", "induction"):
            lines.append(f"  {key} score (repeated random words, {label}: {types['settings']}): " + _grid(types[key]))
    if "stretch" in report:
        lines.append(f"  stretch: {json.dumps(report['stretch'])}; all criteria ok: {report['all_criteria_ok']}")
    return "\n".join(lines)


def _grid(values: list[list[float]]) -> str:
    return " | ".join(f"L{l}: " + " ".join(f"{v:+.2f}" for v in row) for l, row in enumerate(values))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ioi_desktop.bundled.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="model folder (Hugging Face format)")
    parser.add_argument("--json", help="also write the report to this file (eval.json next to the weights is always written)")
    parser.add_argument("--per-family", type=int, default=200, help="quality prompts per family and split")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    from ioi_desktop.core.atomic import write_text_atomic

    torch.set_num_threads(args.threads)
    report = evaluate_folder(args.folder, per_family=args.per_family)
    text = json.dumps(report, indent=1)
    write_text_atomic(Path(args.folder) / "eval.json", text)
    if args.json:
        write_text_atomic(args.json, text)
    print(format_report(report))
    return 0 if report["all_criteria_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
