"""The shipped model's circuit: the recorded numbers come back from the weights, and the card says what they say.

``eval.json`` is written by ``python -m ioi_desktop.bundled.evaluate``; these
tests recompute its circuit measurements from the shipped weights, check the
criteria of issue 3 against the recomputed numbers (not the recorded ones),
and check that ``roles.json`` and the model card are exactly what
``ioi_desktop.bundled.card`` derives from the recorded evaluation, with the
screenshots it names present.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from ioi_desktop.bundled import card, corpus, evaluate
from ioi_desktop.core.paths import bundled_model_dir

pytestmark = pytest.mark.slow

EVAL_SEED = 12345  # evaluate_folder's default
CIRCUIT_PROMPTS = 40  # evaluate_folder's default, per family


@pytest.fixture(scope="module")
def report():
    return json.loads((bundled_model_dir() / "eval.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def recomputed(report):
    """The circuit measurements recomputed from the weights, with evaluate_folder's prompts and seed."""
    torch.set_num_threads(1)
    torch.manual_seed(EVAL_SEED)
    folder = bundled_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    bridge = evaluate.boot_bridge(folder)
    prompts = [p for ps in corpus.eval_prompts(EVAL_SEED + 2, CIRCUIT_PROMPTS, held_out_templates=False).values() for p in ps]
    assert len(prompts) == report["circuit"]["prompts"]
    return evaluate.circuit_metrics(bridge, tokenizer, prompts, EVAL_SEED)


def test_recorded_circuit_numbers_come_back_from_the_weights(report, recomputed):
    recorded = report["circuit"]
    for key in ("s2_to_s1", "end_to_io", "end_to_s2"):
        np.testing.assert_allclose(recomputed["attention"][key], recorded["attention"][key], atol=1e-4, err_msg=key)
    np.testing.assert_allclose(recomputed["dla"], recorded["dla"], atol=1e-3)
    for scheme in ("abc", "s2_to_io"):
        np.testing.assert_allclose(recomputed["patching"][scheme]["effects"], recorded["patching"][scheme]["effects"], atol=1e-3)
        assert recomputed["patching"][scheme]["gap"] == pytest.approx(recorded["patching"][scheme]["gap"], abs=1e-3)
    ours, theirs = dict(recomputed["criteria"]), dict(recorded["criteria"])
    assert ours.pop("best_duplicate") == pytest.approx(theirs.pop("best_duplicate"), abs=1e-4)
    assert ours == theirs
    for scheme in ("abc", "s2_to_io"):
        for key in ("duplicate_heads_joint_effect", "duplicate_heads_joint_pattern_effect"):
            assert recomputed["patching"][scheme][key] == pytest.approx(recorded["patching"][scheme][key], abs=1e-3)


@pytest.fixture(scope="module")
def bridge_and_tokenizer():
    torch.set_num_threads(1)
    folder = bundled_model_dir()
    return evaluate.boot_bridge(folder), AutoTokenizer.from_pretrained(str(folder))


def test_recorded_calibration_comes_back_from_the_weights(report, bridge_and_tokenizer):
    """Mean logit diff, mean p(IO) and the other continuations' mass, recomputed independently with to_tokens."""
    bridge, _ = bridge_and_tokenizer
    recorded = report["calibration"]
    tokens = bridge.to_tokens([p for p, _, _ in corpus.DEMO_PROMPTS])
    with torch.no_grad():
        probs = bridge(tokens)[:, -1].softmax(-1)
        logits = bridge(tokens)[:, -1]
    io = [bridge.to_single_token(f" {io}") for _, io, _ in corpus.DEMO_PROMPTS]
    s = [bridge.to_single_token(f" {s}") for _, _, s in corpus.DEMO_PROMPTS]
    rows = torch.arange(8)
    mean_ld = float((logits[rows, io] - logits[rows, s]).mean())
    mean_p = float(probs[rows, io].mean())
    assert mean_ld == pytest.approx(recorded["mean_logit_diff"], abs=1e-3)
    assert mean_p == pytest.approx(recorded["mean_p_correct"], abs=1e-4)
    # "When John and Mary went to the shops, John/Mary gave the bag to": rows 0 and 1.
    names = {bridge.to_single_token(f" {n}") for n in corpus.load_word_lists().names}
    kinds = {"pronoun": [" him", " her"], "article": [" the", " a", " an"]}
    unknown = bridge.tokenizer.unk_token_id
    for kind, words in kinds.items():
        ids = [i for i in (bridge.to_single_token(w) for w in words) if i != unknown]  # a word the vocabulary lacks counts for nothing
        mass = float(probs[:2, ids].sum(-1).mean()) if ids else 0.0
        assert mass == pytest.approx(recorded["gave_the_bag_to"]["other_mass"][kind], abs=1e-4), kind
    other = float(np.mean([probs[r, sorted(names - {io[r], s[r]})].sum() for r in (0, 1)]))
    assert other == pytest.approx(recorded["gave_the_bag_to"]["other_mass"]["other_name"], abs=1e-4)
    lo, hi = evaluate.CALIBRATION_LOGIT_DIFF
    plo, phi = evaluate.CALIBRATION_P_CORRECT
    mass = recorded["gave_the_bag_to"]["other_mass"]
    assert recorded["calibration_ok"] == (
        lo <= mean_ld <= hi and plo <= mean_p <= phi and sum(mass.values()) >= evaluate.OTHER_MASS_BAR and min(mass.values()) >= evaluate.OTHER_KIND_BAR
    )


def test_recorded_backup_and_induction_come_back_from_the_weights(report, recomputed, bridge_and_tokenizer):
    """The name mover's zero-ablation at END, recomputed with a hand-written hook, and the induction scores."""
    bridge, tokenizer = bridge_and_tokenizer
    recorded = report["circuit"]["backup"]
    if recorded is None:
        assert recomputed["backup"] is None and not report["circuit"]["criteria"]["name_mover_heads"]
    else:
        np.testing.assert_allclose(recomputed["backup"]["dla_ablated"], recorded["dla_ablated"], atol=1e-3)
        assert recomputed["backup"]["backup_heads"] == recorded["backup_heads"]
        layer, head = recorded["name_mover"]
        prompts = [p for ps in corpus.eval_prompts(EVAL_SEED + 2, CIRCUIT_PROMPTS, held_out_templates=False).values() for p in ps]
        batch = evaluate.build_batch(tokenizer, prompts)
        rows = torch.arange(len(prompts))

        def silence(z, hook):
            z[rows, batch.end_pos, head] = 0.0
            return z

        with torch.no_grad():
            ablated = evaluate.logit_diffs(bridge.run_with_hooks(batch.tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", silence)]), batch)
        assert float(ablated.mean()) == pytest.approx(recorded["logit_diff_ablated"], abs=1e-3)
        clean, after = np.array(recorded["dla_clean"]), np.array(recorded["dla_ablated"])
        rise = after - clean
        expected = [
            [l, h] for l in range(clean.shape[0]) for h in range(clean.shape[1])
            if (l, h) != (layer, head) and rise[l, h] >= evaluate.BACKUP_RISE_BAR * abs(clean[l, h]) and rise[l, h] >= evaluate.BACKUP_MIN_SHARE * clean[layer, head]
        ]
        assert recorded["backup_heads"] == expected
    types = evaluate.head_type_scores(bridge, tokenizer)  # the app's defaults, as evaluate_folder records them
    np.testing.assert_allclose(types["induction"], report["head_types"]["induction"], atol=1e-4)
    assert report["stretch"]["induction_heads"] == [[l, h] for l, row in enumerate(types["induction"]) for h, v in enumerate(row) if v >= evaluate.INDUCTION_BAR]


def test_criteria_flags_agree_with_the_recomputed_numbers(recomputed):
    """Each of issue 3's required criteria, checked from the raw grids rather than from evaluate's own flags."""
    attention, dla, criteria = recomputed["attention"], np.array(recomputed["dla"]), recomputed["criteria"]
    # A duplicate-token head in a layer before the last, in both name orders.
    by_order = [np.array(grid) for grid in attention["s2_to_s1_by_order"].values()]
    assert len(by_order) == 2
    assert criteria["duplicate_ok"] == bool((np.minimum(*by_order)[:-1] >= evaluate.DUPLICATE_BAR).any())
    # A mover: END attends to one name position and the head moves logit(IO) - logit(S) directly.
    to_name = np.maximum(np.array(attention["end_to_io"]), np.array(attention["end_to_s2"]))
    assert criteria["mover_ok"] == bool(((to_name >= evaluate.MOVER_ATTENTION_BAR) & (np.abs(dla) >= evaluate.MOVER_DLA_BAR)).any())
    # Per-head z patching effects in two or more layers under both corruptions, with a meaningful gap.
    ok = True
    for scheme in ("abc", "s2_to_io"):
        result = recomputed["patching"][scheme]
        layers = [layer for layer, row in enumerate(result["effects"]) if np.abs(row).max() >= evaluate.PATCHING_BAR]
        ok = ok and result["gap"] >= evaluate.GAP_BAR and len(layers) >= 2
    assert criteria["patching_ok"] == ok
    # A GPT-2-style name mover: END->IO, a positive direct effect, and a z-patching effect under ABC.
    abc = np.array(recomputed["patching"]["abc"]["effects"])
    name_movers = (np.array(attention["end_to_io"]) >= evaluate.MOVER_ATTENTION_BAR) & (dla > 0) & (abc >= evaluate.PATCHING_BAR)
    assert criteria["name_mover_heads"] == [[int(l), int(h)] for l, h in zip(*np.nonzero(name_movers))]
    assert criteria["name_mover_ok"] == bool(name_movers.any())


def test_the_shipped_model_meets_what_its_card_claims(report):
    """The card states which criteria are met; the mover and patching ones are."""
    criteria = report["circuit"]["criteria"]
    assert criteria["mover_ok"] and criteria["patching_ok"]
    text = (bundled_model_dir() / "README.md").read_text(encoding="utf-8")
    calibration = report["calibration"]
    for flags, flag, bullet in (
        (criteria, "duplicate_ok", "- Duplicate-token head"),
        (criteria, "mover_ok", "- Mover head"),
        (criteria, "patching_ok", "- Per-head z patching"),
        (criteria, "name_mover_ok", "- Name mover, GPT-2 style"),
        (calibration, "logit_diff_ok", "- Mean logit(IO) - logit(S) in"),
        (calibration, "p_correct_ok", "- Mean p(IO) in"),
        (calibration, "other_mass_ok", '- After "gave the bag to"'),
        (report["stretch"], "backup_ok", "- Stretch, a backup name mover"),
        (report["stretch"], "induction_ok", "- Stretch, an induction head"),
    ):
        line = next(line for line in text.splitlines() if line.startswith(bullet))
        assert ("NOT met" not in line) == flags[flag], line


def test_roles_file_and_card_are_derived_from_the_recorded_evaluation(report):
    folder = bundled_model_dir()
    training = json.loads((folder / "training.json").read_text(encoding="utf-8"))
    expected_roles = card.roles_document(report, folder.name)
    assert json.loads((folder / "roles.json").read_text(encoding="utf-8")) == json.loads(json.dumps(expected_roles))
    assert (folder / "README.md").read_text(encoding="utf-8") == card.model_card(folder, training, report, expected_roles["roles"])
    roles = {(r["layer"], r["head"]): r["role"] for r in expected_roles["roles"]}
    for layer, head in report["circuit"]["criteria"]["duplicate_heads"]:
        assert roles[(layer, head)] == "duplicate token"


def test_card_shows_the_screenshots_it_names():
    folder = bundled_model_dir()
    shots = json.loads((folder / "screenshots" / "screenshots.json").read_text(encoding="utf-8"))
    text = (folder / "README.md").read_text(encoding="utf-8")
    names = {shot["file"] for shot in shots}
    assert {"window.png", "patching_head_z.png", "attribution.png", "logit_lens.png"} <= names
    assert any(name.startswith("attention_mover_") for name in names)
    assert any(name.startswith("attention_duplicate_") for name in names)
    for shot in shots:
        path = folder / "screenshots" / shot["file"]
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", shot["file"]
        assert path.stat().st_size < 400_000, f"{shot['file']} is large for a model card"
        assert f"](screenshots/{shot['file']})" in text


def test_recorded_backup_experiment_comes_back_from_the_weights(report):
    """The card's backup-heads section: the ablation preset and the paths into its head, recomputed by core."""
    torch.set_num_threads(1)
    recorded = report["backup"]
    recomputed = evaluate.backup_experiment(bundled_model_dir())
    assert recomputed["head"] == recorded["head"]
    for key in ("mean_clean", "mean_ablated", "predicted_drop"):
        assert recomputed[key] == pytest.approx(recorded[key], abs=1e-3), key
    for key in ("dla_before", "dla_after"):
        np.testing.assert_allclose(recomputed[key], recorded[key], atol=1e-3, err_msg=key)
    for kind in "qkv":
        np.testing.assert_allclose(recomputed["paths_into"][kind], recorded["paths_into"][kind], atol=1e-3, err_msg=kind)
