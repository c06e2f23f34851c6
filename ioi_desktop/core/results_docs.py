"""``docs/results-format.md``, generated from the analyses' Result and Options types.

Run ``python -m ioi_desktop.core.results_docs`` after changing a Result or an
Options type; a test fails while the committed file differs from what this
writes. The general part (file layout, run metadata) is the text below; every
analysis's arrays, labels, metadata and options come from its types.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ioi_desktop.core.analyses import ANALYSES, options_type, result_type

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "results-format.md"

_INTRO = """\
# Results files: `results.json` + `results.npz`

`ioi-desktop analyze ... --out DIR` and the app's export write two files into a
folder. They belong together; copy both.

| file | content |
|---|---|
| `results.npz` | every array, under its own name, written by numpy's `savez_compressed`. Open it with `numpy.load(path, allow_pickle=False)`. |
| `results.json` | UTF-8 JSON: format tag, version, the run's metadata, and for every analysis the axis names, shape and dtype of each array, the labels of its axes, and its own metadata. |

Both files are written atomically (temporary file + rename), so a failed save
never leaves a half-written file behind. `ioi_desktop.core.results.load_results(DIR)`
reads them back and rejects, with one sentence naming the problem, a file of
another format or a newer version, a `.npz` whose SHA-256 differs from the one
recorded in the JSON, a missing array, and any array whose dtype, shape or
label count differs from what the JSON says.

## `results.json`

```json
{
 "format": "ioi-desktop/results",
 "version": 2,
 "npz": {"file": "results.npz", "sha256": "<hex digest of results.npz>"},
 "meta": {
  "model": {"name": "...", "architecture": "GPT2LMHeadModel", "n_layers": 12, "n_heads": 12,
            "d_model": 768, "d_head": 64, "d_vocab": 50257, "n_ctx": 1024, "device": "cpu",
            "dtype": "float32", "processing": {...}, "...": "..."},
  "processing": {"fold_ln": true, "center_writing_weights": true, "center_unembed": true,
                 "fold_value_biases": true, "refactor_factored_attn_matrices": true},
  "prompts": {
   "n_prompts": 8,
   "str_tokens": [["<|endoftext|>", "When", " John", "..."], ...],
   "corrupt_str_tokens": [[...], ...],
   "lengths": [15, ...], "end_pos": [14, ...], "equal_length": true,
   "roles": {"IO": [4, ...], "S1": [2, ...], "S2": [10, ...], "END": [14, ...], "S1+1": [...], "punct": [...]},
   "correct_ids": [5335, ...], "incorrect_ids": [1757, ...],
   "correct": [" Mary", ...], "incorrect": [" John", ...],
   "position_labels": ["0: <|endoftext|>", "1: When", "...", "14:  to (END)"],
   "prompt_set": {"format": "ioi-desktop/pairs", "version": 2, "meta": {...}, "pairs": [...]}
  },
  "analyses": ["logit_diff", "logit_lens", "dla", "..."],
  "options": {"logit_lens": {"top_k": 5}, "...": {}},
  "versions": {"ioi_desktop": "0.1.0", "torch": "2.13.0+cpu", "transformer_lens": "4.3.0",
               "transformers": "5.x", "numpy": "..."},
  "timings": {"logit_diff": 0.03, "...": 0.0, "forward": 0.8},
  "engine": {"patching": "fast"},
  "cached": []
 },
 "analyses": {
  "dla": {
   "arrays": {"dla_head": {"axes": ["layer", "head"], "shape": [12, 12], "dtype": "float32"}, "...": {}},
   "labels": {"component": ["embed", "pos_embed", "0_attn_out", "0_mlp_out", "..."], "prompt": ["..."]},
   "positions": {},
   "meta": {"logit_diff_mean": 3.55, "max_reconstruction_error": 3e-7, "...": "..."}
  }
 }
}
```

- `meta.prompts.roles[role][p]` is the position of that role in prompt `p`
  (`-1`: the prompt has none). `position_labels` label the `pos` axis: for
  equal-length sets `"<index>: <token of prompt 0>"`, plus `" (ROLE)"` where
  every prompt has that role at that position; for sets of unequal length only
  the index and shared roles (use `str_tokens` for each prompt's own tokens).
- `timings` are wall-clock seconds per analysis; `forward` is the time of the
  shared clean/corrupted forward passes. An analysis listed in `cached` was
  reused from an earlier identical run of the app and took no time.
- `engine` says which patching engine ran (`"fast"` plain-torch GPT-2 tier, or
  `"bridge"` TransformerLens blocks tier).
- `labels[axis]` lists what every entry along that axis is. Axes without
  labels (`layer`, `head`) are plain indices.
- `positions[axis]` (version 2) gives the same position labels as data:
  `{"index": [...], "token": [...], "role": [...]}`, one entry per position
  (`null` where there is none: no shared token in sets of unequal length, no
  role every prompt has there; `index` is `null` for role-aligned axes).
  Version 1 files (no `positions`) are still read; their labels are parsed.
- Top-k token ids are translated in each analysis's `meta.token_text`
  (`{"<id>": "<decoded text>"}`).

"""

_ARRAYS_INTRO = """\
## Arrays (`results.npz`), per analysis

This section is generated from the analyses' `Result` types
(`ioi_desktop/core/analyses/<name>.py`). All arrays are C-contiguous `float32`
except token ids, which are `int32` (`-1` = no token, at padding positions).
No NaN or infinity is ever written. An array is absent when it was not
computed (e.g. a patching grid that was not selected). Metric: logit
difference `logit(correct) - logit(incorrect)` at each prompt's END position.
Axis words are TransformerLens's.

"""

_OUTRO = """\
## Reading results without IOI Desktop

```python
import json, numpy as np
meta = json.load(open("results/results.json", encoding="utf-8"))
arrays = np.load("results/results.npz", allow_pickle=False)
head = arrays["dla_head"]                     # [layer, head]
labels = meta["analyses"]["dla"]["labels"]["component"]
```
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def analysis_section(name: str, title: str, description: str) -> str:
    """The Markdown section of one analysis: arrays, labels, metadata, options."""
    result, options = result_type(name), options_type(name)
    lines = [f"### `{name}` ({title})", "", description, "", "| array | dtype | axes | meaning |", "|---|---|---|---|"]
    for spec in result.array_specs():
        lines.append(f"| `{spec.name}` | {spec.dtype} | {', '.join(spec.axes)} | {_cell(spec.help)} |")
    label_specs = result.label_specs()
    if label_specs:
        lines += ["", "Labels (`labels[axis]`" + (", and `positions[axis]` as data" if any(
            s.positions for s in label_specs) else "") + "):", ""]
        for spec in label_specs:
            lines.append(f"- `{spec.axis}`: {spec.help}" + (" (positions)" if spec.positions else ""))
    meta_specs = result.meta_specs()
    if meta_specs:
        lines += ["", "`meta`:", ""]
        lines += [f"- `{spec.name}`: {spec.help}" for spec in meta_specs]
    specs = options.specs()
    lines += ["", "Options (`meta.options`; `ioi-desktop analyze --set " + name + ".OPTION=VALUE`): "
              + ("none." if not specs else ""), ""]
    for spec in specs:
        lines.append(f"- `{spec.name}` = `{spec.default_text()}`: {spec.help}; {spec.allowed()}.")
    return "\n".join(lines).rstrip() + "\n"


def render() -> str:
    sections = [analysis_section(info.name, info.title, info.description) for info in ANALYSES]
    return _INTRO + _ARRAYS_INTRO + "\n".join(sections) + "\n" + _OUTRO


def main(argv: list[str] | None = None) -> int:
    path = Path((argv or sys.argv[1:] or [str(DOC_PATH)])[0])
    path.write_text(render(), encoding="utf-8")
    print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
