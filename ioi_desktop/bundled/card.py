"""Head roles and the model card of the bundled model, from its measured numbers.

``python -m ioi_desktop.bundled.card resources/models/ioi-mini``

Reads ``training.json`` and ``eval.json`` (written by ``train`` and
``evaluate``) and writes ``roles.json`` (format ``ioi-desktop/head-roles``,
the same one ``resources/roles/gpt2-small.json`` uses for the IOI paper's
classes) and ``README.md``. Roles are assigned by fixed thresholds on the
evaluation's numbers, so every role in the file is backed by the evidence
quoted next to it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ioi_desktop.bundled import corpus, evaluate
from ioi_desktop.bundled.train import TrainingConfig

ROLES_FORMAT = "ioi-desktop/head-roles"
LEGEND = {
    "duplicate token": "Attends from S2 back to S1, the earlier occurrence of the same name, marking S as repeated.",
    "previous token": "Attends to the previous position (measured on repeated random words).",
    "induction": "Attends to the word after the previous occurrence of the current word (measured on repeated random words).",
    "name mover": "Attends from END to the indirect object and raises it (positive direct effect on logit(IO) - logit(S)).",
    "backup name mover": "Takes over when the strongest name mover is silenced: its DLA rises by >= 50% when that head's z at END is zero-ablated.",
    "negative name mover": "Attends from END to a name and writes against the right answer (negative direct effect on logit(IO) - logit(S)).",
    "subject suppressor": "Attends from END to S2 and lowers the subject's logit (positive direct effect on logit(IO) - logit(S) by pushing S down).",
    "upstream": "Has a z-patching effect >= 0.1 but little direct effect on the logits: it acts through later layers (heads or MLPs).",
    "direct writer": "Has a z-patching effect >= 0.1 and a direct effect on logit(IO) - logit(S), without attending from END to one name at >= 0.5.",
}
HEAD_TYPE_KINDS = ("previous_token", "duplicate_token", "induction")
DIRECT_BAR = 0.5
PREVIOUS_TOKEN_BAR = 0.5
INDUCTION_BAR = 0.3
# Where a multi-stage recipe puts its earlier stages (each later one starts from the one before).
STAGE_ONE_FOLDER = "build/ioi-mini-stage1"
# The code that trained the previous ioi-mini (two stages); records written before it lack "continuation_share".
PREVIOUS_RECIPE_COMMIT = "024cff4"


def stage_folder(index: int) -> str:
    """The folder of stage ``index`` (1-based) of a multi-stage recipe, the last stage aside."""
    return f"build/ioi-mini-stage{index}"


def assign_roles(report: dict) -> list[dict]:
    """Per-head roles with their evidence, from an ``eval.json`` report."""
    circuit = report["circuit"]
    att = {k: np.array(v) for k, v in circuit["attention"].items() if k != "s2_to_s1_by_order"}
    by_order = {k: np.array(v) for k, v in circuit["attention"]["s2_to_s1_by_order"].items()}
    duplicate = evaluate.duplicate_scores(circuit["attention"])
    dla = np.array(circuit["dla"])
    abc = np.array(circuit["patching"]["abc"]["effects"])
    s2io = np.array(circuit["patching"]["s2_to_io"]["effects"])
    types = {k: np.array(report["head_types"][k]) for k in HEAD_TYPE_KINDS}
    # Normalised patching effects only mean something when clean and corrupted runs differ enough.
    meaningful = [np.array(r["effects"]) for r in circuit["patching"].values() if r["gap"] >= evaluate.GAP_BAR] or [np.zeros_like(abc)]
    name_movers = {tuple(x) for x in circuit["criteria"]["name_mover_heads"]}
    backups = {tuple(x) for x in (circuit.get("backup") or {}).get("backup_heads", [])}
    n_layers, n_heads = dla.shape
    roles = []
    for layer in range(n_layers):
        for head in range(n_heads):
            orders = " / ".join(f"{grid[layer, head]:.2f} {order}" for order, grid in by_order.items())
            evidence = (
                f"S2->S1 {orders}, S2->IO {att['s2_to_io'][layer, head]:.2f}, END->IO {att['end_to_io'][layer, head]:.2f}, "
                f"END->S2 {att['end_to_s2'][layer, head]:.2f}, DLA {dla[layer, head]:+.2f}, "
                f"z patching ABC {abc[layer, head]:+.2f} / S2->IO {s2io[layer, head]:+.2f}"
            )
            found = []
            to_io, to_s2, direct = att["end_to_io"][layer, head], att["end_to_s2"][layer, head], dla[layer, head]
            if (layer, head) in name_movers or (to_io >= evaluate.MOVER_ATTENTION_BAR and direct >= DIRECT_BAR):
                found.append("name mover")
            elif max(to_io, to_s2) >= evaluate.MOVER_ATTENTION_BAR and direct <= -DIRECT_BAR:
                found.append("negative name mover")
            elif to_s2 >= evaluate.MOVER_ATTENTION_BAR and direct >= DIRECT_BAR:
                found.append("subject suppressor")
            if (layer, head) in backups:
                found.append("backup name mover")
            if layer < n_layers - 1 and duplicate[layer, head] >= evaluate.DUPLICATE_BAR:
                found.append("duplicate token")
            if types["induction"][layer, head] >= INDUCTION_BAR:
                found.append("induction")
            if types["previous_token"][layer, head] >= PREVIOUS_TOKEN_BAR:
                found.append("previous token")
            patched = max(abs(effects[layer, head]) for effects in meaningful)
            if not found and patched >= evaluate.PATCHING_BAR:
                found.append("upstream" if abs(direct) < DIRECT_BAR else "direct writer")
            if found and ("previous token" in found or "induction" in found):
                type_note = (
                    f"; repeated words: previous-token {types['previous_token'][layer, head]:.2f}, "
                    f"duplicate {types['duplicate_token'][layer, head]:.2f}, induction {types['induction'][layer, head]:.2f}"
                )
            else:
                type_note = ""
            roles += [{"layer": layer, "head": head, "role": role, "evidence": evidence + type_note} for role in found]
    return roles


def roles_document(report: dict, model: str) -> dict:
    return {
        "format": ROLES_FORMAT,
        "version": 1,
        "model": model,
        "source": "python -m ioi_desktop.bundled.evaluate (eval.json); roles by the thresholds in ioi_desktop/bundled/card.py",
        "roles": assign_roles(report),
        "legend": LEGEND,
    }


def _heads(roles: list[dict], role: str) -> str:
    found = [f"L{r['layer']}H{r['head']}" for r in roles if r["role"] == role]
    return ", ".join(found) if found else "none"


def _table(rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return lines


def _grid_table(values: list[list[float]], fmt: str = "{:+.2f}") -> list[str]:
    n_heads = len(values[0])
    rows = [["layer"] + [f"H{h}" for h in range(n_heads)]]
    rows += [[f"L{l}"] + [fmt.format(v) for v in row] for l, row in enumerate(values)]
    return _table(rows)


def _settings_text(settings: dict) -> str:
    bos = "BOS, then " if settings["prepend_bos"] else ""
    return f"{bos}{settings['seq_len']} distinct random word tokens and the same {settings['seq_len']} again, {settings['batch']} sequences, seed {settings['seed']}"


def _head_type_lines(report: dict) -> list[str]:
    """The Head types section: the app's default measure, the short-run one, and why they differ."""
    default, short = report["head_types"], report["head_types_short"]
    dup, dup_short = np.array(default["duplicate_token"]), np.array(short["duplicate_token"])
    layer, head = np.unravel_index(int(dup.argmax()), dup.shape)
    others = np.delete(dup.ravel(), int(dup.argmax()))
    lines = [
        "### Head types",
        "",
        "Measured by the app's Head types analysis (`ioi_desktop/core/analyses/head_scores.py`, the same function the "
        f"panel runs) at its defaults: {_settings_text(default['settings'])}. The duplicate-token score is the mean "
        "attention from each second-copy token to its first copy. "
        f"The strongest duplicate-token head is L{layer}H{head}, {dup[layer, head]:.2f} (every other head "
        f"<= {others.max():.2f}); the Head types panel on this model shows these numbers.",
        "",
        f"It is lower than L{layer}H{head}'s S2->S1 attention on IOI prompts above because the copies sit "
        f"{default['settings']['seq_len']} tokens apart, farther than any repeat the model trained on (its repeated "
        f"word runs are {corpus.INDUCTION_RUN_WORDS[0]} to {corpus.INDUCTION_RUN_WORDS[1]} words long, and S1 and S2 "
        f"are a few words apart): with {_settings_text(short['settings'])} it reaches {dup_short[layer, head]:.2f} "
        "(Run > Options > Head types sequence length).",
        "",
    ]
    for title, grid in (("Previous-token score", default["previous_token"]), ("Duplicate-token score", default["duplicate_token"]),
                        ("Induction score", default["induction"]),
                        (f"Duplicate-token score, {short['settings']['seq_len']}-token runs", short["duplicate_token"])):
        lines += [f"{title}:", ""] + _grid_table(grid, "{:.2f}") + [""]
    return lines


def _comparison(circuit: dict, n_layers: int) -> str:
    """An honest one-paragraph reading of the mechanism, driven by the measured criteria."""
    effects = np.maximum(np.abs(np.array(circuit["patching"]["abc"]["effects"])), np.abs(np.array(circuit["patching"]["s2_to_io"]["effects"])))
    layer, head = np.unravel_index(int(effects.argmax()), effects.shape)
    att = circuit["attention"]
    top = (
        f"L{layer}H{head} (z patching ABC {circuit['patching']['abc']['effects'][layer][head]:+.2f}, "
        f"S2->IO {circuit['patching']['s2_to_io']['effects'][layer][head]:+.2f}; END->S2 {att['end_to_s2'][layer][head]:.2f}, "
        f"END->IO {att['end_to_io'][layer][head]:.2f})"
    )
    criteria = circuit["criteria"]
    if criteria["duplicate_ok"] and criteria["mover_ok"] and criteria["patching_ok"]:
        return _multi_step_reading(circuit, n_layers, top)
    if circuit["criteria"]["mover_ok"]:
        dla = np.array(circuit["dla"])
        movers = ", ".join(
            f"L{l}H{h} (END->S2 {att['end_to_s2'][l][h]:.2f}, END->IO {att['end_to_io'][l][h]:.2f}, DLA {dla[l, h]:+.2f})"
            for l, h in circuit["criteria"]["mover_heads"]
        )
        return (
            f"This checkpoint shows a shorter chain than GPT-2 small's: the strongest patching effect is {top}, and the "
            f"mover head(s) {movers} then write the answer directly at END. A mover that attends to S2 with positive DLA "
            "suppresses the subject rather than copying the indirect object as GPT-2 small's name movers do. All heads "
            f"together write {dla.sum():+.2f} of the clean logit difference "
            f"{circuit['patching']['abc']['clean_logit_diff']:.2f} directly; the rest comes from the MLPs. "
            + (
                ""
                if circuit["criteria"]["duplicate_ok"]
                else f"No head attends from S2 back to S1 at the {evaluate.DUPLICATE_BAR} bar (best "
                f"{circuit['criteria']['best_duplicate']:.2f}), so the repeat detection that GPT-2 small's duplicate-token "
                "and induction heads perform is not localised in one head here. "
            )
            + "The unmet requirements are listed above."
        )
    return (
        f"This checkpoint does not show a GPT-2-like multi-step circuit: almost all of the patching effect sits in one "
        f"head, {top}, which finds S2 from END so that later layers can rule S out: the 'copy the names, subtract the "
        "subject' shortcut that small models trained on templates learn. Heads' direct effects are small (largest "
        f"|DLA| {np.abs(np.array(circuit['dla'])).max():.2f} against a clean logit difference of "
        f"{circuit['patching']['abc']['clean_logit_diff']:.2f}), so the answer itself is written by the MLPs at END. "
        "The unmet requirements are listed above."
    )


def train_command(tc: dict, out: str, init_from: str = STAGE_ONE_FOLDER) -> str:
    """The ``train`` command line that reproduces a run from its recorded config."""
    defaults = TrainingConfig()
    command = (
        f"python -m ioi_desktop.bundled.train --out {out} --seed {tc['seed']} --steps {tc['steps']} "
        f"--layers {tc['n_layer']} --heads {tc['n_head']} --d-model {tc['d_model']} --mlp-inner {tc.get('mlp_inner', 0)} "
        f"--batch-size {tc['batch_size']} --lr {tc['learning_rate']:g} --answer-weight {tc['answer_weight']:g} "
        f"--mix {','.join(f'{k}={v:g}' for k, v in tc['mix'].items())} --prefix-share {tc['prefix_share']:g} "
        f"--probe-every {tc['probe_every']} --probe-prompts {tc.get('probe_prompts', 24)} "
        f"--probe-circuit-prompts {tc.get('probe_circuit_prompts', tc.get('probe_prompts', 24) // 2)} --select-from {tc['select_from']:g} "
        f"--threads {tc['threads']}"
    )
    if tc.get("continuation_share"):
        command += f" --continuation-share {tc['continuation_share']:g}"
    if tc.get("no_mlp_layers"):
        command += f" --no-mlp-layers {','.join(str(l) for l in tc['no_mlp_layers'])}"
    if tc.get("silent_heads"):
        command += f" --silent-heads {','.join(f'L{l}H{h}' for l, h in tc['silent_heads'])}"
    if tc.get("frozen_mlp_layers"):
        command += f" --frozen-mlp-layers {','.join(str(l) for l in tc['frozen_mlp_layers'])}"
    if tc.get("prefix_io_share"):
        command += f" --prefix-io-share {tc['prefix_io_share']:g}"
    if tc.get("odd_one_out_share"):
        command += f" --odd-one-out-share {tc['odd_one_out_share']:g}"
    if tc.get("head_dropout") and tc.get("head_dropout_layers"):
        command += (f" --head-dropout {tc['head_dropout']:g} --head-dropout-layers {','.join(str(l) for l in tc['head_dropout_layers'])}"
                    f" --head-dropout-mode {tc.get('head_dropout_mode', 'head')}")
    if tc.get("mlp_dropout") and tc.get("mlp_dropout_layers"):
        command += f" --mlp-dropout {tc['mlp_dropout']:g} --mlp-dropout-layers {','.join(str(l) for l in tc['mlp_dropout_layers'])}"
    if tc.get("repeat_key_dropout") and tc.get("repeat_key_dropout_layers"):
        command += (f" --repeat-key-dropout {tc['repeat_key_dropout']:g}"
                    f" --repeat-key-dropout-layers {','.join(str(l) for l in tc['repeat_key_dropout_layers'])}")
    if tc.get("new_layers", "silent") != "silent":
        command += f" --new-layers {tc['new_layers']}"
    if tc.get("warmup_steps", defaults.warmup_steps) != defaults.warmup_steps:
        command += f" --warmup-steps {tc['warmup_steps']}"
    if tc.get("init_from"):
        command += f" --init-from {init_from}"
    return command


def stages(training: dict) -> list[dict]:
    """The runs of a recipe, first to last: each earlier stage's record (config, time, chosen step), then the final run's."""
    chain, stage = [training], training.get("init_from")
    while stage:
        chain.insert(0, stage)
        stage = stage.get("init_from")
    return chain


def train_commands(folder: Path, training: dict) -> list[str]:
    """One command per stage; every stage after the first starts from the one before."""
    chain = stages(training)
    outs = [stage_folder(i + 1) for i in range(len(chain) - 1)] + [f"resources/models/{folder.name}"]
    return [train_command(stage["config"], outs[i], outs[i - 1] if i else "") for i, stage in enumerate(chain)]


def _stage_text(tc: dict, record: dict) -> str:
    """One run's optimiser, schedule, time and chosen checkpoint, in a sentence or two."""
    return (
        f"seed {tc['seed']}; {tc['steps']} steps of batch {tc['batch_size']}; AdamW (lr {tc['learning_rate']:g}, weight decay "
        f"{tc['weight_decay']}, betas 0.9/0.98), {tc['warmup_steps']} warm-up steps then cosine decay. Wall time "
        f"{record['train_seconds'] / 60:.1f} min with {tc['threads']} torch thread(s) on a shared 2-core CPU, checkpoint "
        f"probes included. Saved checkpoint: step {record['chosen_step']} (probes every {tc['probe_every']} steps in the last "
        f"{100 * (1 - tc['select_from']):.0f}% of the run, {tc.get('probe_prompts', 24)} quality prompts per family and split; "
        + (
            "the best score over the criteria (circuit, name mover, calibration, then the stretch ones) among probes that meet "
            "the quality bar and answer the demo's prompts, else the best worst-family accuracy)."
            if "continuation_share" in tc
            else "the best circuit score among probes that meet the quality bar, else the best worst-family accuracy)."
        )
    )


def _training_paragraphs(training: dict) -> list[str]:
    tc = training["config"]
    loss = (
        f"Next-token cross entropy on every token with answer tokens weighted x{tc['answer_weight']:g}; "
        f"torch {training['torch_version']}."
    )
    chain = stages(training)
    if len(chain) == 1:
        text = _stage_text(tc, training)
        return [text[0].upper() + text[1:] + " " + loss, ""]
    total = sum(stage["train_seconds"] for stage in chain) / 60
    count = {2: "Two", 3: "Three", 4: "Four"}.get(len(chain), str(len(chain)))
    out = [f"{count} runs, {total:.1f} min in all. Stage 1 learns the task from fresh weights at a high learning rate: " + _stage_text(chain[0]["config"], chain[0]), ""]
    for index, stage in enumerate(chain[1:], start=2):
        before, sc = chain[index - 2]["config"], stage["config"]
        larger_batch = " and a larger batch" if sc["batch_size"] > before["batch_size"] else ""
        lower = " at a lower learning rate" if sc["learning_rate"] < before["learning_rate"] else ""
        data = ""
        if sc.get("continuation_share", 0) != before.get("continuation_share", 0):
            data = f", on the corpus with {100 * sc.get('continuation_share', 0):.0f}% other continuations (see the data mix below)"
        if sc.get("odd_one_out_share", 0) != before.get("odd_one_out_share", 0):
            data += f", with {100 * sc.get('odd_one_out_share', 0):.0f}% odd-one-out sentences (see the data mix below)"
        deeper = chain[index - 2].get("new_layers")
        if deeper:
            data += (
                f"; it adds layer(s) {', '.join(map(str, deeper))} on top ({before['n_layer']} -> {sc['n_layer']} layers), "
                "whose output projections start at zero, so training starts from exactly stage "
                f"{index - 1}'s function"
            )
        if sc.get("silent_heads"):
            heads = ", ".join(f"L{l}H{h}" for l, h in sc["silent_heads"])
            data += (
                f"; head(s) {heads} are switched off (their rows of the attention output projection zero and frozen), "
                "so the other heads have to take over their job"
            )
        if sc.get("frozen_mlp_layers"):
            data += (
                f"; the MLP of layer(s) {', '.join(map(str, sc['frozen_mlp_layers']))} keeps stage {index - 1}'s weights "
                "(not trained in this stage)"
            )
        if sc.get("repeat_key_dropout") and sc.get("repeat_key_dropout_layers"):
            data += (
                f"; in {100 * sc['repeat_key_dropout']:.0f}% of the training sequences the heads of layer(s) "
                f"{', '.join(map(str, sc['repeat_key_dropout_layers']))} cannot attend from an answer slot to the later mentions "
                "of a repeated name (S2), so the answer cannot just be read off S2 there (training only)"
            )
        if sc.get("no_mlp_layers"):
            data += f"; the MLP of layer(s) {', '.join(map(str, sc['no_mlp_layers']))} is switched off (zero and frozen)"
        grown = chain[index - 2].get("new_tokens")
        if grown:
            data += f"; its vocabulary gains {', '.join(repr(t.replace('Ġ', ' ')) for t in grown)} (fresh embedding rows, every other id unchanged)"
        out += [f"Stage {index} starts from stage {index - 1}'s weights and trains them further{lower}{larger_batch}{data}: " + _stage_text(sc, stage), ""]
    old = [i + 1 for i, stage in enumerate(chain) if "continuation_share" not in stage["config"]]
    if old:
        out += [
            f"{_stages_phrase(old)} recorded by the code of commit {PREVIOUS_RECIPE_COMMIT} (the previous "
            f"bundled model's recipe): run their commands there (`git checkout {PREVIOUS_RECIPE_COMMIT}`), since today's "
            "checkpoint scoring and vocabulary differ" + ("; the later stages run with this code." if len(old) < len(chain) else "."),
            "",
        ]
    return out + [loss + " All stages use the same corpus generator with their own seeds.", ""]


def _stages_phrase(numbers: list[int]) -> str:
    if len(numbers) == 1:
        return f"Stage {numbers[0]} was"
    return "Stages " + ", ".join(map(str, numbers[:-1])) + f" and {numbers[-1]} were"


def _screenshots(folder: Path) -> list[str]:
    """The card's screenshot section, from what ``screenshots`` saved (``screenshots/screenshots.json``)."""
    index = folder / "screenshots" / "screenshots.json"
    lines = ["### In the app", ""]
    if not index.is_file():
        return lines + [f"No screenshots yet: run `python -m ioi_desktop.gui.tools.screenshots {folder}` after `evaluate`.", ""]
    shots = [shot for shot in json.loads(index.read_text(encoding="utf-8")) if (folder / "screenshots" / shot["file"]).is_file()]
    lines += ["Taken by `python -m ioi_desktop.gui.tools.screenshots` from the real app (offscreen) on the demo's 8 prompts.", ""]
    for shot in shots:
        lines += [f"![{shot['caption']}](screenshots/{shot['file']})", "", f"*{shot['caption']}*", ""]
    return lines


def _multi_step_reading(circuit: dict, n_layers: int, top: str) -> str:
    """The reading of a checkpoint that meets every required criterion: which steps, and how sure."""
    criteria, att, dla = circuit["criteria"], circuit["attention"], np.array(circuit["dla"])
    scores = evaluate.duplicate_scores(att)
    duplicates = ", ".join(f"L{l}H{h} (S2->S1 {scores[l, h]:.2f} in its weaker name order)" for l, h in criteria["duplicate_heads"])
    movers = criteria["mover_heads"]
    mover_text = ", ".join(
        f"L{l}H{h} (END->S2 {att['end_to_s2'][l][h]:.2f}, END->IO {att['end_to_io'][l][h]:.2f}, DLA {dla[l, h]:+.2f})" for l, h in movers
    )
    suppressors = [(l, h) for l, h in movers if att["end_to_s2"][l][h] > att["end_to_io"][l][h] and dla[l, h] > 0]
    parts = [
        f"In {n_layers} layers the steps are fewer and shorter than GPT-2 small's. Duplicate-token head(s) {duplicates} "
        "attend from S2 back to S1, as GPT-2 small's 0.1 and 3.0 do. Mover head(s) "
        f"{mover_text} attend from END to one name and write the answer directly. The strongest per-head patching "
        f"effect is {top}."
    ]
    abc = np.array(circuit["patching"]["abc"]["effects"])
    for l, h in criteria["name_mover_heads"]:
        earlier = [(el, eh) for el in range(l) for eh in range(dla.shape[1]) if att["end_to_s2"][el][eh] >= evaluate.MOVER_ATTENTION_BAR]
        parts.append(
            f"L{l}H{h} is a name mover as in GPT-2 small (9.9, 9.6, 10.0): at END it attends to IO ({att['end_to_io'][l][h]:.2f}; "
            f"to S2 {att['end_to_s2'][l][h]:.2f}) and raises logit(IO) - logit(S) directly (DLA {dla[l, h]:+.2f}); patching its "
            f"z restores {abc[l, h]:+.2f} of the gap under ABC."
            + (
                " Heads that attend END->S2 in an earlier layer ("
                + ", ".join(f"L{el}H{eh} {att['end_to_s2'][el][eh]:.2f}" for el, eh in earlier)
                + ") are in the place of GPT-2 small's S-inhibition heads, which steer the name movers away from S; "
                "path patching would have to confirm that they do."
                if earlier
                else ""
            )
        )
    if suppressors:
        parts.append(
            "Unlike GPT-2 small's name movers, which copy IO, a mover here attends to S2 and pushes S down. In GPT-2 small "
            "that job is split between the S-inhibition heads, which attend END->S2 and steer the name movers away from S, "
            "and the negative name movers."
        )
    joints = {s: circuit["patching"][s].get("duplicate_heads_joint_effect") for s in ("abc", "s2_to_io")}
    if all(v is not None for v in joints.values()):
        used = max(abs(v) for v in joints.values()) >= evaluate.PATCHING_BAR
        pattern = {s: circuit["patching"][s].get("duplicate_heads_joint_pattern_effect") or 0.0 for s in joints}
        pattern_used = max(pattern.values()) >= evaluate.PATCHING_BAR
        parts.append(
            f"Patching the duplicate-token heads' z together restores {joints['abc']:+.2f} (ABC) and "
            f"{joints['s2_to_io']:+.2f} (S2->IO) of the gap: "
            + (
                "their output is used downstream"
                + (
                    f"; their attention patterns alone restore {pattern['abc']:+.2f} (ABC) and {pattern['s2_to_io']:+.2f} "
                    "(S2->IO), so where they look matters, not only which token they read. (Under ABC every name is "
                    "new, so a clean pattern in the corrupted run points at a name unrelated to the clean answer.)"
                    if pattern_used
                    else "."
                )
                if used
                else "z patching finds no downstream use of their output. The movers find S2 without them, so the "
                "repeat detection exists but is not on the path these corruptions measure. GPT-2 small's duplicate-token "
                "heads also have small per-head z-patching effects; the IOI paper found their role by path patching, "
                "which this evaluation does not do."
            )
        )
    parts.append(
        "Roles here come from attention, DLA and per-head patching only, so 'upstream' heads (patching effect without "
        "a direct effect) act through later layers, in ways path patching would have to pin down."
    )
    return " ".join(parts)


def _backup_lines(backup: dict | None) -> list[str]:
    """The backup-heads preset and the paths into its head, in words, from the recorded numbers."""
    if not backup:
        return []
    layer, head = backup["head"]
    before, after = np.array(backup["dla_before"]), np.array(backup["dla_after"])
    change = after - before
    change[layer, head] = 0.0
    threshold = 0.02 * abs(backup["mean_clean"])
    order = [np.unravel_index(i, change.shape) for i in np.argsort(-change, axis=None)]
    rises = [(int(l), int(h)) for l, h in order if change[l, h] > threshold][:3]
    falls = [(int(l), int(h)) for l, h in order[::-1] if change[l, h] < -threshold][:2]
    drop = backup["mean_clean"] - backup["mean_ablated"]
    text = (f"The app's preset \"Backup heads of the strongest DLA head\" (`ioi-desktop ablate` without `--heads`) "
            f"zero-ablates L{layer}H{head}'s output at END on {backup['prompts']}: the mean logit difference goes "
            f"from {backup['mean_clean']:.2f} to {backup['mean_ablated']:.2f}, a drop of {drop:.2f} against the "
            f"{backup['predicted_drop']:.2f} its direct attribution predicts. ")
    if rises:
        text += ("Heads whose DLA rises by more than 2% of the clean logit difference: "
                 + ", ".join(f"L{l}H{h} {before[l, h]:+.2f} -> {after[l, h]:+.2f}" for l, h in rises) + ". ")
    else:
        text += "No head's DLA rises by more than 2% of the clean logit difference: nothing compensates. "
    if falls:
        text += "Falling: " + ", ".join(f"L{l}H{h} {before[l, h]:+.2f} -> {after[l, h]:+.2f}" for l, h in falls) + ". "
    strongest = []
    for kind in "qkv":
        grid = np.array(backup["paths_into"][kind])
        l, h = np.unravel_index(int(np.abs(grid).argmax()), grid.shape)
        strongest.append(f"{kind}: L{l}H{h} {grid[l, h]:+.2f}")
    text += (f"Path patching into L{layer}H{head} (every earlier head alone as sender, normalised like the patching "
             f"grids; `ioi-desktop path-patch --receiver-head {layer}.{head} --receivers q,k,v`), the strongest "
             "path into each input: " + "; ".join(strongest) + ".")
    return ["### Backup heads", "", text, ""]


def _knows(folder: Path, token: str) -> bool:
    path = folder / "tokenizer.json"
    return path.is_file() and token in json.loads(path.read_text(encoding="utf-8"))["model"]["vocab"]


def prefix_text(data_mix: dict) -> str:
    """The data-mix sentence on the earlier sentences in front of IOI sentences (and whose name they mention)."""
    share, io_share = data_mix["ioi_with_earlier_once_mentioned_name"], data_mix.get("earlier_sentence_names_the_io") or 0.0
    if not io_share:
        return f"{100 * share:.0f}% of them follow a sentence that mentions another name once."
    return (
        f"{100 * share:.0f}% of them follow an earlier sentence that mentions a name once: another name in "
        f"{100 * (1 - io_share):.0f}% of those, the indirect object in {100 * io_share:.0f}% (so the IO is named twice "
        "before the answer and \"the repeated name is the subject\" is no rule to rely on)."
    )


def odd_one_out_lines(data_mix: dict) -> list[str]:
    """The data-mix bullet on odd-one-out IOI sentences ([] for records without them)."""
    share = data_mix.get("odd_one_out_sentences") or 0.0
    if not share:
        return []
    subjects = " or ".join(f"{k} ({100 * v:.0f}%)" for k, v in data_mix["odd_one_out_subjects"].items())
    return [
        f"- Odd one out ({100 * share:.0f}% of all sequences, in place of the kinds above): IOI sentences from the same "
        f"training templates with {subjects} subjects, \"When John, Mary and Tom went to the shops, Tom and John gave "
        "the bag to\" -> \" Mary\": the first clause lists the answer and the subjects in random order, the second names "
        "every subject again, so suppressing one repeated name does not find the answer."
    ]


def _continuation_text(data_mix: dict) -> str:
    share = data_mix.get("ioi_with_other_continuation") or 0.0
    if not share:
        return " Every IOI sentence ends with its indirect object."
    kinds = data_mix["other_continuation_kinds"]
    labels = {"pronoun": "a pronoun (him, her)", "article": "an article and an animal (the dog, a cat)",
              "other_name": "a name not in the sentence", "subject": "the subject again"}
    parts = ", ".join(f"{labels[k]} {100 * v:.0f}%" for k, v in kinds.items())
    return (
        f" {100 * share:.0f}% of them continue after \"to\" with something other than the indirect object ({parts}), "
        "as real text does, so the answer slot holds a distribution (about "
        f"{100 * (1 - share):.0f}% IO, {100 * share * kinds.get('subject', 0):.1f}% S) and the model learns calibrated "
        "probabilities instead of certainty. The loss weight of the answer slot is the same whatever follows, so it does "
        "not bias that distribution."
    )


def _calibration(report: dict) -> list[str]:
    cal = report.get("calibration")
    if not cal:
        return []
    yes = lambda flag: "met" if flag else "NOT met"  # noqa: E731
    lo, hi = evaluate.CALIBRATION_LOGIT_DIFF
    plo, phi = evaluate.CALIBRATION_P_CORRECT
    bag = cal["gave_the_bag_to"]
    lines = [
        "## Calibration",
        "",
        "Softmax over the whole vocabulary at the last position of the demo's 8 prompts (GPT-2 small: mean logit diff "
        "3.55; sanity prompt p(\" Mary\") = 0.70).",
        "",
        f"- Mean logit(IO) - logit(S) in [{lo:g}, {hi:g}]: {yes(cal['logit_diff_ok'])}; {cal['mean_logit_diff']:.2f}.",
        f"- Mean p(IO) in [{plo:g}, {phi:g}]: {yes(cal['p_correct_ok'])}; {cal['mean_p_correct']:.2f}.",
        f"- After \"gave the bag to\", mass on other plausible continuations >= {evaluate.OTHER_MASS_BAR:g} in all and "
        f">= {evaluate.OTHER_KIND_BAR:g} per kind: {yes(cal['other_mass_ok'])}; "
        + ", ".join(f"{k.replace('_', ' ')}s {v:.3f}" for k, v in bag["other_mass"].items())
        + f" (total {bag['other_mass_total']:.2f}).",
        "",
        "Top 8 next tokens after \"When John and Mary went to the shops, John gave the bag to\": "
        + ", ".join(f"{t!r} {p:.3f}" for t, p in bag["top"])
        + ".",
        "",
    ]
    rows = [["prompt", "logit diff", "p(IO)", "p(S)", "pronouns", "articles", "other names"]]
    for r in cal["prompts"]:
        m = r["other_mass"]
        rows.append([r["prompt"], f"{r['logit_diff']:.2f}", f"{r['p_io']:.2f}", f"{r['p_s']:.3f}", f"{m['pronoun']:.3f}", f"{m['article']:.3f}", f"{m['other_name']:.3f}"])
    return lines + _table(rows) + [""]


def _name_mover_text(circuit: dict) -> str:
    att, dla, abc = np.array(circuit["attention"]["end_to_io"]), np.array(circuit["dla"]), np.array(circuit["patching"]["abc"]["effects"])
    heads = circuit["criteria"]["name_mover_heads"]
    if not heads:
        l, h = np.unravel_index(int((att * (dla > 0)).argmax()), att.shape)
        heads = [[l, h]]
        prefix = "closest "
    else:
        prefix = ""
    return prefix + ", ".join(f"L{l}H{h} (END->IO {att[l, h]:.2f}, DLA {dla[l, h]:+.2f}, z patching ABC {abc[l, h]:+.2f})" for l, h in heads) + "."


def _stretch(report: dict) -> list[str]:
    circuit = report["circuit"]
    yes = lambda flag: "met" if flag else "NOT met"  # noqa: E731
    backup, stretch = circuit.get("backup"), report.get("stretch", {})
    if backup:
        l, h = backup["name_mover"]
        dla, ablated = np.array(backup["dla_clean"]), np.array(backup["dla_ablated"])
        rises = ", ".join(f"L{bl}H{bh} DLA {dla[bl, bh]:+.2f} -> {ablated[bl, bh]:+.2f}" for bl, bh in backup["backup_heads"])
        order = np.argsort(-(ablated - dla), axis=None)
        best = [np.unravel_index(int(i), dla.shape) for i in order if tuple(np.unravel_index(int(i), dla.shape)) != (l, h)][0]
        backup_text = (
            f"- Stretch, a backup name mover (DLA rises >= {100 * evaluate.BACKUP_RISE_BAR:.0f}%, and by >= "
            f"{evaluate.BACKUP_MIN_SHARE:g} x the name mover's DLA, when the name mover L{l}H{h}'s z at END is zero-ablated): "
            f"{yes(backup['backup_ok'])}; logit diff {backup['logit_diff_clean']:.2f} -> {backup['logit_diff_ablated']:.2f} "
            f"(L{l}H{h}'s DLA was {dla[l, h]:+.2f}); "
            + (rises if rises else f"largest rise L{best[0]}H{best[1]} DLA {dla[best]:+.2f} -> {ablated[best]:+.2f}")
            + ". GPT-2 small: ablating L9H9 moves 3.55 -> 2.92 and L10H10's DLA rises 0.48 -> 1.23."
        )
    else:
        backup_text = "- Stretch, a backup name mover: NOT met (no name mover to ablate)."
    induction = np.array(report["head_types"]["induction"])
    il, ih = np.unravel_index(int(induction.argmax()), induction.shape)
    return [
        backup_text,
        f"- Stretch, an induction head (induction score >= {evaluate.INDUCTION_BAR:g} on repeated random words): "
        f"{yes(stretch.get('induction_ok', False))}; best L{il}H{ih} {induction[il, ih]:.2f} (GPT-2 small: L5H1 0.93).",
    ]


def model_card(folder: Path, training: dict, report: dict, roles: list[dict]) -> str:
    """The README.md of the model folder."""
    config = json.loads((folder / "config.json").read_text())
    tc = training["config"]
    circuit, criteria = report["circuit"], report["circuit"]["criteria"]
    words = corpus.load_word_lists()
    lines = [
        f"# {folder.name}: a small GPT-2-style model trained from scratch on IOI",
        "",
        "The default model of IOI Desktop. No pretrained weights can be downloaded where the app runs, so this "
        "model is trained from scratch by code in this repository (`ioi_desktop/bundled/`) on Indirect Object "
        "Identification sentences and a little filler text. It is a toy: a closed vocabulary of "
        f"{training['vocab_size']} tokens and {training['n_params']:,} parameters.",
        "",
        "## Architecture",
        "",
        f"`transformers.GPT2LMHeadModel`: {config['n_layer']} layers x {config['n_head']} heads, d_model {config['n_embd']}, "
        f"d_head {config['n_embd'] // config['n_head']}, d_mlp {config['n_inner']}, context {config['n_positions']} tokens, "
        f"GELU MLPs, LayerNorm, tied embedding/unembedding, no dropout. Weights: `model.safetensors` "
        f"({training['weights_bytes'] / 1e6:.2f} MB, float32).",
        "",
        "## Tokenizer",
        "",
        "Word-level (`tokenizers` WordLevel) behind GPT-2's ByteLevel pre-tokenizer, so a word keeps its leading space: "
        "\" Mary\" is one token, `ĠMary`, as in GPT-2. `<|endoftext|>` (id 0) is BOS, EOS and padding; every training "
        "sequence starts with it, as TransformerLens's `to_tokens` prepends it. The demo's 8 prompts are 15 tokens with BOS.",
        "",
        f"Known words: {len(words.names)} names (the IOI paper's plus the demo's John, Mary, Tom, James, Dan, Sid, "
        "Martin, Amy), the paper's places, objects and animals, the words of its templates, of the demo's prompts "
        "(shops, park, bag, ball, apple, drink, bottle of milk) and of the filler grammar, \"Roll call\", \"again\", "
        + ("the pronouns \"him\" and \"her\", " if _knows(folder, "Ġhim") else "")
        + "and "
        "punctuation. Capitalised words also exist without the leading space (sentence start). Anything else becomes "
        "`<unk>`: `ioi_desktop.bundled.tokenizer.unknown_words(tokenizer, text)` lists the unknown words of a text.",
        "",
        "## Training",
        "",
        "```",
        *train_commands(folder, training),
        f"python -m ioi_desktop.bundled.evaluate resources/models/{folder.name}",
        f"python -m ioi_desktop.gui.tools.screenshots resources/models/{folder.name}",
        f"python -m ioi_desktop.bundled.card resources/models/{folder.name}",
        "```",
        "",
        *_training_paragraphs(training),
        "Data mix (sequences): " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in tc["mix"].items()) + ".",
        "- IOI: the paper's template families BABA, BABA_LONG, BABA_EARLY_IOS, BABA_LATE_IOS in both name orders "
        "(BABA and ABBA), ABC templates, and demo-style templates (\"When [B] and [A] went to the shops, [B] gave the bag to [A]\"); "
        + prefix_text(training["data_mix"])
        + _continuation_text(training["data_mix"]),
        *odd_one_out_lines(training["data_mix"]),
        "- Roll call: \"Roll call: Amy, John, Mary, John again, ...\": \" again\" follows exactly the repeated names.",
        "- Induction: a random run of words, repeated.",
        "- Filler: sentences from a small grammar over the same words.",
        f"- Held out from training: {training['data_mix']['held_out_name_pairs']} name pairs (never IO and S together) "
        "and one template per family:",
        *[f"  - {k}: \"{v}\"" for k, v in corpus.HELD_OUT_TEMPLATES.items()],
        "",
        "## Quality",
        "",
        "Measured by `python -m ioi_desktop.bundled.evaluate` through TransformerLens (TransformerBridge, weights "
        "processed with fold_ln, center_writing_weights, center_unembed, fold_value_biases, "
        "refactor_factored_attn_matrices; BOS prepended). Bar: IO ranked above S on >= 95% of prompts and mean "
        f"logit(IO) - logit(S) >= 3.0 in every family. Bar met: **{report['quality_ok']}**.",
        "",
    ]
    rows = [["split", "family", "prompts", "IO > S", "mean logit diff", "min logit diff"]]
    for split, families in report["quality"].items():
        for family, r in families.items():
            rows.append([split.replace("_", " "), family, str(r["prompts"]), f"{100 * r['accuracy']:.1f}%", f"{r['mean_logit_diff']:.2f}", f"{r['min_logit_diff']:.2f}"])
    lines += _table(rows)
    demo = report["demo"]
    lines += ["", f"The TransformerLens demo's 8 prompts (all correct: **{demo['all_correct']}**, mean logit diff {demo['mean_logit_diff']:.2f}; GPT-2 small: 3.55):", ""]
    lines += _table([["prompt", "IO", "S", "logit diff", "top-1"]] + [[r["prompt"], r["io"], r["s"], f"{r['logit_diff']:.2f}", repr(r["top1"])] for r in demo["prompts"]])
    sanity = demo["sanity"]
    lines += ["", f"Sanity prompt \"{sanity['prompt']}\": top-1 {sanity['top1']!r}, p = {sanity['p_top1']:.2f} (GPT-2 small: \" Mary\", p = 0.70).", ""]
    lines += _calibration(report)

    abc, s2io = circuit["patching"]["abc"], circuit["patching"]["s2_to_io"]
    yes = lambda flag: "met" if flag else "NOT met"  # noqa: E731
    lines += [
        "## Circuit",
        "",
        f"Measured on {circuit['prompts']} paper-template prompts (all five families, held-out name pairs, fresh draws). "
        "Attention = mean attention probability; DLA = direct logit attribution of the head's output at END on "
        "logit(IO) - logit(S) (`stack_head_results` + `apply_ln_to_stack`); z patching = the head's z from the clean "
        "run written into a corrupted run at all positions, (patched - corrupted) / (clean - corrupted) on the mean logit "
        "difference.",
        "",
        f"- Duplicate-token head in a layer before the last (S2->S1 >= 0.3 in both name orders, BABA and ABBA): "
        f"{yes(criteria['duplicate_ok'])}; best {criteria['best_duplicate']:.2f} ({_heads(roles, 'duplicate token')}). "
        "Both orders count because a head that attends to a fixed position (the first clause's second name, say) "
        "reaches S1 in one order only, yet scores about 0.5 on the mean over all prompts"
        f"; the best mean over all prompts here is {float(np.array(circuit['attention']['s2_to_s1'])[:-1].max()):.2f}.",
        f"- Mover head (END->IO or END->S2 >= 0.5 with |DLA| >= 1.0): {yes(criteria['mover_ok'])}; "
        + (", ".join(f"L{l}H{h}" for l, h in criteria["mover_heads"]) or f"largest |DLA| {np.abs(np.array(circuit['dla'])).max():.2f}") + ".",
        f"- Per-head z patching >= 0.1 in >= 2 layers under both corruptions with gap >= 1.0: {yes(criteria['patching_ok'])}; "
        f"ABC: layers {criteria['patching_layers']['abc']}, gap {abc['gap']:.2f} (clean {abc['clean_logit_diff']:.2f}, "
        f"corrupted {abc['corrupted_logit_diff']:.2f}); S2->IO: layers {criteria['patching_layers']['s2_to_io']}, "
        f"gap {s2io['gap']:.2f} (corrupted {s2io['corrupted_logit_diff']:.2f}).",
        *(
            [
                f"- The duplicate-token heads' z patched together: ABC {abc['duplicate_heads_joint_effect']:+.2f}, "
                f"S2->IO {s2io['duplicate_heads_joint_effect']:+.2f}; their attention patterns alone (values left "
                f"corrupted): ABC {abc['duplicate_heads_joint_pattern_effect']:+.2f}, "
                f"S2->IO {s2io['duplicate_heads_joint_pattern_effect']:+.2f}."
            ]
            if abc.get("duplicate_heads_joint_effect") is not None
            else []
        ),
        f"- Name mover, GPT-2 style (END->IO >= 0.5, positive DLA, z patching under ABC >= 0.1): {yes(criteria['name_mover_ok'])}; "
        + _name_mover_text(circuit),
        *_stretch(report),
        "",
        "Head roles (`roles.json`, thresholds in `ioi_desktop/bundled/card.py`):",
        "",
    ]
    lines += _table([["head", "role", "evidence"]] + [[f"L{r['layer']}H{r['head']}", r["role"], r["evidence"]] for r in roles])
    lines += ["", "Per-head numbers:", ""]
    for title, grid in (
        ("Attention S2->S1", circuit["attention"]["s2_to_s1"]),
        *((f"Attention S2->S1, {order} prompts only", grid) for order, grid in circuit["attention"]["s2_to_s1_by_order"].items()),
        ("Attention S2->IO", circuit["attention"]["s2_to_io"]),
        ("Attention END->IO", circuit["attention"]["end_to_io"]),
        ("Attention END->S2", circuit["attention"]["end_to_s2"]),
        ("DLA on logit(IO) - logit(S)", circuit["dla"]),
        ("z patching, ABC", abc["effects"]),
        ("z patching, S2->IO", s2io["effects"]),
    ):
        lines += [f"{title}:", ""] + _grid_table(grid) + [""]
    lines += _backup_lines(report.get("backup"))


    lines += _head_type_lines(report)
    lines += [
        "### Compared with GPT-2 small",
        "",
        "GPT-2 small (Wang et al. 2022; `resources/roles/gpt2-small.json`): duplicate-token (0.1, 0.10, 3.0) and "
        "induction heads (5.5, 5.8, 5.9, 6.9) mark S as repeated at S2; S-inhibition heads (7.3, 7.9, 8.6, 8.10) "
        "carry that from S2 to END; name movers (9.9, 9.6, 10.0) attend END->IO and copy it; negative name movers "
        "(10.7, 11.10) and backup name movers complete it.",
        "",
        f"{folder.name} (same measurements, same thresholds): duplicate token {_heads(roles, 'duplicate token')}; "
        f"induction {_heads(roles, 'induction')}; previous token {_heads(roles, 'previous token')}; name movers "
        f"{_heads(roles, 'name mover')}; subject suppressors (END->S2, push S down) {_heads(roles, 'subject suppressor')}; "
        f"negative movers {_heads(roles, 'negative name mover')}; direct writers {_heads(roles, 'direct writer')}; upstream "
        f"heads with only indirect effects {_heads(roles, 'upstream')}. " + _comparison(circuit, config["n_layer"]),
        "",
        *_screenshots(folder),
        "## Limits",
        "",
        "- A toy model of a toy world: it knows only the words listed above and writes plausible text only in the "
        "styles of its corpus. Unknown words become `<unk>`; prompts with them are out of distribution.",
        "- Its IOI skill covers the paper's template families and the demo's prompts; other phrasings may fail.",
        "- Context is 64 tokens.",
        "- Training is seeded; the same command on the same software reproduces the weights, other torch "
        "versions or thread counts give slightly different ones of the same quality.",
        "",
    ]
    return "\n".join(lines)


def write_roles(folder: str | Path) -> dict:
    """Write ``roles.json`` from ``eval.json`` (untouched when already up to date); returns the document."""
    from ioi_desktop.core.atomic import write_text_atomic

    folder = Path(folder)
    report = json.loads((folder / "eval.json").read_text())
    document = roles_document(report, folder.name)
    text = json.dumps(document, indent=1) + "\n"
    path = folder / "roles.json"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        write_text_atomic(path, text)
    return document


def write_card(folder: str | Path) -> None:
    from ioi_desktop.core.atomic import write_text_atomic

    folder = Path(folder)
    training = json.loads((folder / "training.json").read_text())
    report = json.loads((folder / "eval.json").read_text())
    document = write_roles(folder)
    write_text_atomic(folder / "README.md", model_card(folder, training, report, document["roles"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ioi_desktop.bundled.card", description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="model folder with training.json and eval.json")
    write_card(parser.parse_args(argv).folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
