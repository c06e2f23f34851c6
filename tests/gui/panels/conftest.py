"""Fixtures for the result-panel tests: realistic run results and a place for screenshots.

The results are built in the shapes the core produces for GPT-2 small on the
TransformerLens demo's 8 prompts (12 layers x 12 heads, 15 tokens), with the
demo's published effects planted where the demo found them (REFERENCE.md §1:
L9H9 name mover, L10H7 negative name mover, induction heads L5H5/L6H9, ...),
so screenshots look like what a user sees. Everything else is seeded noise.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

SCREENSHOTS = Path(__file__).resolve().parents[3] / "artifacts" / "screenshots"

N_LAYERS, N_HEADS = 12, 12
TEMPLATES = [
    ("When", "shops", "bag", ("John", "Mary")),
    ("When", "park", "ball", ("Tom", "James")),
    ("When", "shops", "apple", ("Dan", "Sid")),
    ("After", "park", "drink", ("Martin", "Amy")),
]
DEMO_LOGIT_DIFF = [3.337, 3.202, 2.709, 3.797, 1.720, 5.281, 2.601, 5.767]

GPT2_SMALL_ROLES = {
    "format": "ioi-desktop/head-roles",
    "version": 1,
    "model": "gpt2-small",
    "source": "Wang et al. 2022",
    "roles": (
        [{"layer": l, "head": h, "role": "name mover"} for l, h in ((9, 9), (9, 6), (10, 0))]
        + [{"layer": l, "head": h, "role": "negative name mover"} for l, h in ((10, 7), (11, 10))]
        + [{"layer": l, "head": h, "role": "S-inhibition"} for l, h in ((7, 3), (7, 9), (8, 6), (8, 10))]
        + [{"layer": l, "head": h, "role": "induction"} for l, h in ((5, 5), (5, 8), (5, 9), (6, 9))]
        + [{"layer": l, "head": h, "role": "duplicate token"} for l, h in ((0, 1), (0, 10), (3, 0))]
        + [{"layer": l, "head": h, "role": "previous token"} for l, h in ((2, 2), (4, 11))]
    ),
    "legend": {
        "name mover": "attends to the indirect object at END and copies it",
        "negative name mover": "writes against the name it attends to",
        "S-inhibition": "tells name movers not to attend to S",
        "induction": "attends to the token after the earlier copy of the current token",
        "duplicate token": "attends to an earlier copy of the current token",
        "previous token": "attends to the previous token",
    },
}


def demo_prompts() -> list[dict]:
    """The demo's 8 prompts as tokens (BOS first) with their named positions and answers."""
    prompts = []
    for opener, place, obj, (a, b) in TEMPLATES:
        for correct, incorrect in ((b, a), (a, b)):
            tokens = ["<|endoftext|>", opener, f" {a}", " and", f" {b}", " went", " to", " the", f" {place}", ",",
                      f" {incorrect}", " gave", " the", f" {obj}", " to"]
            io = 2 if correct == a else 4
            prompts.append({"tokens": tokens, "correct": f" {correct}", "incorrect": f" {incorrect}",
                            "roles": {"IO": io, "S1": 6 - io, "S2": 10, "END": 14}})
    return prompts


def _causal_softmax(scores: np.ndarray) -> np.ndarray:
    n = scores.shape[-1]
    mask = np.triu(np.ones((n, n), dtype=bool), k=1)
    scores = np.where(mask, -np.inf, scores)
    scores = scores - scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores)
    return (weights / weights.sum(axis=-1, keepdims=True)).astype(np.float32)


def build_run_results():
    """A RunResults with every array the panels read, in the core's names, shapes and labels."""
    from ioi_desktop.core.analyses import (
        ablation as ablation_analysis,
        attention as attention_analysis,
        attribution_patching,
        dla as dla_analysis,
        head_scores as head_scores_analysis,
        logit_diff as logit_diff_analysis,
        logit_lens as logit_lens_analysis,
        patching as patching_analysis,
        path_patching as path_patching_analysis,
    )
    from ioi_desktop.core.analyses.base import Positions
    from ioi_desktop.core.results import RunResults

    rng = np.random.default_rng(7)
    prompts = demo_prompts()
    n_prompts, n_pos = len(prompts), 15
    str_tokens = [p["tokens"] for p in prompts]
    roles = {name: [p["roles"][name] for p in prompts] for name in ("IO", "S1", "S2", "END")}
    pos_labels = [f"{i}: {t}" + (" (S2)" if i == 10 else " (END)" if i == 14 else "")
                  for i, t in enumerate(str_tokens[0])]
    positions = Positions(tuple(range(n_pos)), tuple(str_tokens[0]),
                          tuple("S2" if i == 10 else "END" if i == 14 else None for i in range(n_pos)))
    vocab = sorted({t for p in prompts for t in p["tokens"]} | {" Mary", " John", " the", " a", " them", " her"})
    token_text = {str(i): t for i, t in enumerate(vocab)}
    ids = {t: i for i, t in enumerate(vocab)}
    prompt_texts = ["".join(p["tokens"][1:]) for p in prompts]
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731

    clean = f32(DEMO_LOGIT_DIFF)
    corrupt = f32(-clean + rng.normal(0, 0.2, n_prompts))
    top_ids, top_probs = {}, {}
    for which in ("clean", "corrupt"):
        rows_ids, rows_probs = [], []
        for p in prompts:
            first = p["correct"] if which == "clean" else p["incorrect"]
            second = p["incorrect"] if which == "clean" else p["correct"]
            rows_ids.append([ids[first], ids[second], ids[" the"], ids[" a"], ids[" them"]])
            rows_probs.append(sorted(rng.dirichlet([8, 2, 1, 1, 0.5]) * 0.9, reverse=True))
        top_ids[which] = np.asarray(rows_ids, dtype=np.int32)
        top_probs[which] = f32(rows_probs)
    logit_diff = logit_diff_analysis.Result(
        logit_diff_clean=clean, logit_diff_corrupt=corrupt,
        logit_diff_p_correct_clean=f32(top_probs["clean"][:, 0]),
        logit_diff_p_correct_corrupt=f32(top_probs["corrupt"][:, 1]),
        logit_diff_top_ids_clean=top_ids["clean"], logit_diff_top_probs_clean=top_probs["clean"],
        logit_diff_top_ids_corrupt=top_ids["corrupt"], logit_diff_top_probs_corrupt=top_probs["corrupt"],
        prompt_labels=tuple(prompt_texts), rank_labels=tuple(f"top {i + 1}" for i in range(5)),
        top_k=5, mean_clean=float(clean.mean()), accuracy_clean=1.0, mean_corrupt=float(corrupt.mean()),
        accuracy_corrupt=0.0, mean_p_correct_clean=float(top_probs["clean"][:, 0].mean()), token_text=token_text,
    )

    lens_points = [f"{l}_{part}" for l in range(N_LAYERS) for part in ("pre", "mid")] + ["final_post"]
    ramp = np.concatenate([np.full(17, 0.1), [0.45, 2.0, 5.03, 5.14, 4.6, 4.2, 3.45, 3.55]])
    lens = f32(ramp + rng.normal(0, 0.05, len(ramp)))
    lens_by_prompt = f32(lens[None, :] * (clean[:, None] / clean.mean()))
    grid_rows = [f"{l}_pre" for l in range(N_LAYERS)] + ["final_post"]
    n_rows = len(grid_rows)
    grid_ids = np.zeros((n_rows, n_prompts, n_pos, 5), dtype=np.int32)
    for p, prompt in enumerate(prompts):
        for pos in range(n_pos):
            following = prompt["tokens"][pos + 1] if pos + 1 < n_pos else prompt["correct"]
            for row in range(n_rows):
                guess = following if row > 7 or pos < 3 else prompt["tokens"][pos]
                grid_ids[row, p, pos] = [ids.get(guess, 0), ids[" the"], ids[" a"], ids[" them"], ids[" her"]]
    grid_probs = f32(np.sort(rng.dirichlet(np.ones(5), size=(n_rows, n_prompts, n_pos)), axis=-1)[..., ::-1])
    grid_probs[..., 0] = np.clip(np.linspace(0.05, 0.9, n_rows)[:, None, None] + rng.normal(0, 0.05, (n_rows, n_prompts, n_pos)), 0, 1)
    grid_diff = f32(np.linspace(0, 3.5, n_rows)[:, None, None] * (np.arange(n_pos) == 14)[None, None, :]
                    + rng.normal(0, 0.3, (n_rows, n_prompts, n_pos)))
    logit_lens = logit_lens_analysis.Result(
        logit_lens_logit_diff=lens, logit_lens_logit_diff_by_prompt=lens_by_prompt,
        logit_lens_grid_top_ids=grid_ids, logit_lens_grid_top_probs=grid_probs,
        logit_lens_grid_logit_diff=grid_diff, logit_lens_grid_p_correct=f32(np.clip(grid_diff / 5, 0, 1)),
        resid_labels=tuple(lens_points), lens_layer_labels=tuple(grid_rows), prompt_labels=tuple(prompt_texts),
        pos_labels=positions, rank_labels=tuple(f"top {i + 1}" for i in range(5)),
        top_k=5, token_text=token_text, lengths=[n_pos] * n_prompts,
    )

    dla_head = f32(rng.normal(0, 0.08, (N_LAYERS, N_HEADS)))
    for (l, h), v in {(9, 9): 2.99, (10, 7): -1.90, (9, 6): 1.38, (11, 10): -0.97, (10, 0): 0.56,
                      (10, 10): 0.48}.items():
        dla_head[l, h] = v
    components = ["embed", "pos_embed"] + [f"{l}_{k}_out" for l in range(N_LAYERS) for k in ("attn", "mlp")]
    dla_components = f32(rng.normal(0, 0.1, len(components)))
    for layer in range(N_LAYERS):
        dla_components[2 + 2 * layer] = dla_head[layer].sum()
    # Per prompt: the mean's pattern, scaled like each prompt's logit difference.
    scale = (clean / clean.mean())[:, None]
    dla = dla_analysis.Result(
        dla_components=dla_components, dla_head=dla_head,
        dla_components_by_prompt=f32(dla_components[None, :] * scale),
        dla_head_by_prompt=f32(dla_head[None] * scale[:, :, None]),
        component_labels=tuple(components),
    )

    scores = rng.normal(0, 1.5, (n_prompts, N_LAYERS, N_HEADS, n_pos, n_pos))
    for p, prompt in enumerate(prompts):
        scores[p, 9, 9, 14, prompt["roles"]["IO"]] += 6
        scores[p, 10, 7, 14, prompt["roles"]["IO"]] += 5
        scores[p, 4, 11, np.arange(1, n_pos), np.arange(n_pos - 1)] += 8
    attention = attention_analysis.Result(
        attention_pattern=_causal_softmax(scores), prompt_labels=tuple(prompt_texts),
        query_pos_labels=positions, key_pos_labels=positions,
    )

    def head_grid(peaks: dict, noise: float = 0.03) -> np.ndarray:
        grid = f32(rng.normal(0, noise, (N_LAYERS, N_HEADS)))
        for (l, h), v in peaks.items():
            grid[l, h] = v
        return grid

    head_z = head_grid({(10, 7): -0.48, (5, 5): 0.34, (8, 6): 0.32, (11, 10): -0.28, (8, 10): 0.28, (9, 9): 0.26})
    head_v = head_grid({(8, 6): 0.32, (8, 10): 0.27, (7, 9): 0.21, (7, 3): 0.13})
    head_pattern = head_grid({(10, 7): -0.51, (5, 5): 0.34, (11, 10): -0.32, (9, 9): 0.28})
    resid = f32(rng.normal(0, 0.02, (N_LAYERS, n_pos)))
    resid[:8, 10] = 1.0 - rng.uniform(0, 0.05, 8)
    resid[8, 10], resid[8, 14] = 0.5, 0.5
    resid[9:, 14] = 1.0
    attn_out = f32(rng.normal(0, 0.02, (N_LAYERS, n_pos)))
    attn_out[8, 14], attn_out[5, 10], attn_out[11, 14] = 0.57, 0.35, -0.41
    mlp_out = f32(rng.normal(0, 0.02, (N_LAYERS, n_pos)))
    mlp_out[0, 10] = 0.85
    z_by_pos = f32(rng.normal(0, 0.02, (N_LAYERS, n_pos, N_HEADS)))
    z_by_pos[10, 14, 7], z_by_pos[5, 10, 5], z_by_pos[9, 14, 9] = -0.45, 0.33, 0.25
    exact = {"resid_pre": resid, "attn_out": attn_out, "mlp_out": mlp_out, "head_z": head_z, "head_v": head_v,
             "head_pattern": head_pattern, "head_q": head_grid({(9, 9): 0.12}), "head_k": head_grid({(8, 6): 0.05}),
             "head_z_by_pos": z_by_pos}
    patching = patching_analysis.Result(
        **{f"patch_{k}": v for k, v in exact.items()}, pos_labels=positions, engine="fast",
    )
    # Attribution patching is good except at saturated heads (L5H5, L10H7, L11H10) and the residual stream.
    estimate = {k: f32(v + rng.normal(0, 0.02, v.shape)) for k, v in exact.items()}
    for key in ("head_z", "head_pattern"):
        for l, h in ((5, 5), (10, 7), (11, 10)):
            estimate[key][l, h] *= 0.4
    estimate["resid_pre"][:8, 10] *= 0.7
    attribution = attribution_patching.Result(
        **{f"atp_{k}": v for k, v in estimate.items()}, pos_labels=positions,
    )

    head_scores = head_scores_analysis.Result(
        head_score_prev=f32(np.clip(head_grid({(4, 11): 0.99, (2, 2): 0.7}, 0.1) + 0.1, 0, 1)),
        head_score_dup=f32(np.clip(head_grid({(0, 5): 0.70, (3, 0): 0.68, (0, 1): 0.5}, 0.05) + 0.05, 0, 1)),
        head_score_induction=f32(np.clip(head_grid({(5, 1): 0.93, (6, 9): 0.93, (5, 5): 0.93}, 0.05) + 0.05, 0, 1)),
    )

    # The notebook's backup-name-mover experiment: L9H9 zero-ablated at END, L10H10 takes over.
    after = f32(dla_head.copy())
    after[9, 9], after[10, 10], after[10, 7] = 0.0, 1.23, -1.2
    ablation = ablation_analysis.Result(
        ablation_logit_diff=f32(clean * 2.92 / 3.55), ablation_logit_diff_clean=f32(clean),
        ablation_dla_head_before=f32(dla_head), ablation_dla_head_after=after,
        ablation_dla_head_change=f32(after - dla_head),
        ablation_predicted_drop=np.array(float(dla_head[9, 9]), dtype=np.float32), prompt_labels=tuple(prompt_texts),
        heads=[[9, 9]], mlp_layers=[], method="zero", ablated_positions="END", mean_clean=3.55, mean_ablated=2.92,
        actual_drop=0.63,
    )
    into_q = head_grid({(9, 9): 0.21, (9, 6): 0.12, (10, 0): 0.08})
    into_q[:8] = 0.0
    path_patching = path_patching_analysis.Result(
        path_patch_q=into_q, path_patch_q_raw=f32(into_q * 7.1 - 3.55),
        path_patch_logits=head_grid({(9, 9): 0.4, (10, 7): -0.3}),
        path_patch_logits_raw=f32(rng.normal(0, 1, (N_LAYERS, N_HEADS))),
        question="forward", senders=[[7, 3], [7, 9]], receivers=["q", "logits"],
    )

    circuit = build_circuit_result(rng)

    results = {r.name: r for r in (logit_diff, logit_lens, dla, attention, patching, attribution, ablation,
                                   path_patching, head_scores, circuit)}
    meta = {
        "model": {"name": "gpt2-shaped test model", "n_layers": N_LAYERS, "n_heads": N_HEADS},
        "prompts": {"n_prompts": n_prompts, "str_tokens": str_tokens, "roles": roles,
                    "position_labels": pos_labels, "correct": [p["correct"] for p in prompts],
                    "incorrect": [p["incorrect"] for p in prompts], "lengths": [n_pos] * n_prompts},
        "engine": {"patching": "fast"},
    }
    return RunResults(results=results, meta=meta)


def build_circuit_result(rng):
    """A circuit result on GPT-2 small's graph (32,491 edges): noise plus the IOI paper's paths planted
    (duplicate-token -> S-inhibition -> name movers -> logits, negative name movers), two methods."""
    from ioi_desktop.core.analyses import circuit as circuit_analysis
    from ioi_desktop.core.circuits.graph import MIB_PERCENTS, Graph

    graph = Graph(N_LAYERS, N_HEADS, d_model=768)
    base = rng.normal(0, 0.004, graph.adjacency.shape) * graph.adjacency
    planted = {("a9.h9", "logits"): -1.3, ("a9.h6", "logits"): -0.8, ("a10.h7", "logits"): 0.9,
               ("a11.h10", "logits"): 0.5, ("a8.h6", "a9.h9<q>"): -0.6, ("a7.h9", "a9.h9<q>"): -0.4,
               ("a8.h10", "a9.h6<q>"): -0.35, ("a5.h5", "a8.h6<v>"): -0.3, ("a3.h0", "a7.h9<v>"): -0.25,
               ("a0.h1", "a3.h0<v>"): -0.2, ("input", "a0.h1<q>"): -0.15, ("input", "a9.h9<v>"): -0.3,
               ("m0", "a9.h9<v>"): -0.2, ("input", "m0"): -0.25}
    scores = base.copy()
    for (sender, receiver), value in planted.items():
        scores[graph.senders.index(sender), graph.receivers.index(receiver)] = value
    noisy = scores + rng.normal(0, 0.002, scores.shape) * graph.adjacency
    percents = np.asarray(MIB_PERCENTS, dtype=np.float32)
    f_eap = np.asarray([0.05, 0.22, 0.55, 0.74, 0.86, 0.93, 0.97, 0.99, 1.0, 1.0], dtype=np.float32)
    f_ig = np.asarray([0.12, 0.35, 0.68, 0.83, 0.92, 0.96, 0.98, 1.0, 1.0, 1.0], dtype=np.float32)
    edges = np.asarray([[max(1, graph.size_for_percent(p) * 3 // 4) for p in MIB_PERCENTS]] * 2, dtype=np.int32)
    full, empty = 3.55, -3.3
    chosen = graph.circuit(scores, graph.size_for_percent(2.0))
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return circuit_analysis.Result(
        circuit_scores=f32(np.stack([scores, noisy])), circuit_edges=chosen.astype(np.int32),
        circuit_adjacency=graph.adjacency.astype(np.int32),
        circuit_node_scores=f32(np.stack([graph.node_scores(scores), graph.node_scores(noisy)])),
        curve_percent=percents, curve_edges=edges,
        curve_metric=f32(np.stack([empty + f_eap * (full - empty), empty + f_ig * (full - empty)])),
        curve_faithfulness=f32(np.stack([f_eap, f_ig])), method_labels=("eap", "eap_ig"),
        sender_labels=graph.senders, receiver_labels=graph.receivers, full=full, empty=empty,
        cpr={"eap": 0.95, "eap_ig": 0.97}, cmd={"eap": 0.05, "eap_ig": 0.03}, n_edges=graph.n_edges,
        chosen_size=graph.size_for_percent(2.0), chosen_edges=int(chosen.sum()), chosen_faithfulness=0.86,
        ig_steps=5, selection="topn", convention=circuit_analysis.CONVENTION,
    )


@pytest.fixture(scope="session")
def run_results():
    return build_run_results()


@pytest.fixture
def selection():
    from ioi_desktop.core.selection import SelectionModel

    return SelectionModel()


@pytest.fixture
def gpt2_roles():
    """The IOI paper's GPT-2 small roles: the shipped file when present, else the same classes inline."""
    from ioi_desktop.core.paths import resource_path
    from ioi_desktop.core.roles import load_roles, parse_roles

    shipped = resource_path("roles", "gpt2-small.json")
    return load_roles(shipped) if shipped.is_file() else parse_roles(GPT2_SMALL_ROLES)


def save_screenshot(widget, name: str, min_size: tuple[int, int] = (200, 150)) -> Path:
    """Save ``widget.grab()`` as artifacts/screenshots/<name>.png after checking it is not blank."""
    from PySide6.QtWidgets import QApplication

    QApplication.processEvents()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    image = widget.grab().toImage()
    assert image.width() >= min_size[0] and image.height() >= min_size[1], \
        f"{name}: screenshot is {image.width()}x{image.height()}"
    colours = {image.pixel(x, y) for x in range(0, image.width(), 23) for y in range(0, image.height(), 23)}
    assert len(colours) > 8, f"{name}: the screenshot looks blank"
    path = SCREENSHOTS / f"{name}.png"
    assert image.save(str(path))
    return path
