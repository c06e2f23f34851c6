"""Circuit discovery cost in forward-equivalents (issue 15's targets), one run.

- EAP and EAP-IG (5 steps) on a random GPT-2-small-shaped model (12 x 12,
  d_model 768, GPT-2's vocabulary; 32,491 edges) and the demo's 8 pairs:
  time / one plain forward pass of the clean prompts (targets: EAP <= 3,
  EAP-IG <= 3 x (steps + 1));
- evaluation of one circuit (every edge outside it corrupted) on the same
  model: time / forward (target <= 2);
- exact scoring of every edge of the bundled model (479 edges) on the demo's
  8 pairs (target under 10 s on 1 CPU thread).

Times are the best of ``--repeat`` runs; ``prepare`` (the clean and corrupted
runs that capture every sender's output, shared by all methods) is reported
apart. ``--quick``: a 2-layer model instead of GPT-2 small's shape.

    python -m benchmarks.bench_circuit [--quick] [--threads 1] [--repeat 2] [--json FILE]

Run from the repository root as a module, so ``tests.support`` is importable.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

FULL_SHAPE = {"n_layer": 12, "n_head": 12, "n_embd": 768}
QUICK_SHAPE = {"n_layer": 2, "n_head": 4, "n_embd": 128}


def _best(fn, repeat):
    best, value = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - started)
    return best, value


def measure(quick: bool, repeat: int) -> dict:
    import torch

    from ioi_desktop.core.circuits import scoring
    from tests.support.patching_helpers import notebook_pairs, random_gpt2_bridge, tokenized_pairs

    shape = QUICK_SHAPE if quick else FULL_SHAPE
    model = random_gpt2_bridge(**shape)
    batch = tokenized_pairs(notebook_pairs())
    tokens = torch.as_tensor(batch.clean_tokens)
    with torch.no_grad():
        model(tokens)  # warm up
    forward, _ = _best(lambda: torch.no_grad()(model)(tokens), repeat)
    prepare, prep = _best(lambda: scoring.prepare(model, batch), repeat)
    eap, scores = _best(lambda: scoring.eap_scores(model, prep), repeat)
    steps = 5
    eap_ig, _ = _best(lambda: scoring.eap_ig_scores(model, prep, steps), repeat)
    circuit = prep.graph.circuit(scores, prep.graph.size_for_percent(5.0))
    evaluate, _ = _best(lambda: scoring.evaluate(model, prep, [circuit]), repeat)
    found = {
        "model": f"random GPT-2 {shape['n_layer']}x{shape['n_head']}, d_model {shape['n_embd']}",
        "edges": prep.graph.n_edges,
        "prompts": int(tokens.shape[0]), "tokens": int(tokens.shape[1]),
        "forward_s": forward, "prepare_s": prepare,
        "eap_s": eap, "eap_forwards": eap / forward, "eap_target": 3,
        "eap_ig_steps": steps, "eap_ig_s": eap_ig, "eap_ig_forwards": eap_ig / forward,
        "eap_ig_target": 3 * (steps + 1),
        "evaluate_s": evaluate, "evaluate_forwards": evaluate / forward, "evaluate_target": 2,
        "evaluate_circuit_edges": int(circuit.sum()),
    }
    found.update(_bundled_exact(repeat))
    return found


def _bundled_exact(repeat: int) -> dict:
    from ioi_desktop.core.circuits import scoring
    from ioi_desktop.core.models import ModelSpec, load_model
    from ioi_desktop.core.pairs import notebook_prompt_set
    from ioi_desktop.core.paths import bundled_model_dir
    from ioi_desktop.core.prompts import tokenize_set

    if not (bundled_model_dir() / "config.json").is_file():
        return {"bundled_exact": "the bundled model is not installed"}
    handle = load_model(ModelSpec(source="bundled", device="cpu"))
    batch = tokenize_set(notebook_prompt_set(), handle.tokenizer, n_ctx=handle.info.n_ctx)
    prep = scoring.prepare(handle.model, batch)
    seconds, _ = _best(lambda: scoring.exact_scores(handle.model, prep), repeat)
    return {"bundled_exact_edges": prep.graph.n_edges, "bundled_exact_s": seconds, "bundled_exact_target_s": 10}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    found = measure(args.quick, max(1, args.repeat))
    found.update({"threads": args.threads, "python": platform.python_version(), "torch": torch.__version__})
    text = json.dumps(found, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
