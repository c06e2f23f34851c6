"""Publication figures and tables of a run's results, without Qt.

Every grid of every analysis (layer x head and layer x position maps, the
logit lens of each exported prompt, head z by position per head) becomes a
:class:`GridFigure`: its values, axis labels, colour levels and a title that
names the analysis, the activation, the model and the prompt set. A figure is
written as SVG with one vector ``<rect>`` per cell, a colour bar and text
labels (:func:`figure_svg`); the desktop app and ``ioi-desktop export``
rasterise that same SVG to PNG at a chosen DPI (``gui.widgets.export``), so a
figure looks the same whichever wrote it. Known head roles are drawn only on
layer x head grids and only when asked (``markers=True``).

Conventions: SVG user units are CSS pixels at 96 per inch; rows run top to
bottom (layer 0 first, as TransformerLens plots them); signed scores use the
RdBu map with levels symmetric around 0, non-negative ones viridis from 0;
patching scores (exact and estimate of one activation share one scale) never
stretch narrower than +-0.1 of the clean effect.

:func:`prompt_rows` is the per-prompt table (prompt texts, answers, named
positions, logit differences) that the CSV exports carry.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ioi_desktop.core.atomic import write_text_atomic

# ColorBrewer RdBu (negative red, positive blue), as the app's heatmaps.
RDBU = [(103, 0, 31), (178, 24, 43), (214, 96, 77), (244, 165, 130), (253, 219, 199), (247, 247, 247),
        (209, 229, 240), (146, 197, 222), (67, 147, 195), (33, 102, 172), (5, 48, 97)]
# viridis at nine evenly spaced points.
VIRIDIS = [(68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141), (39, 173, 129),
           (92, 200, 99), (170, 220, 50), (253, 231, 37)]
# Marker fills for known head roles, in legend order (as the app's markers).
ROLE_FILLS = ["#ffd700", "#00c878", "#ff69b4", "#00beff", "#ff8c00", "#aa78ff", "#a0dc3c", "#ff5050", "#e6e6e6"]
MIN_PATCH_PEAK = 0.1
FONT = "DejaVu Sans, Arial, Helvetica, sans-serif"
DEFAULT_DPI = 300
# Exported prompts of per-prompt grids (the logit lens) when not told otherwise.
DEFAULT_PROMPTS = (0,)

_HEAD_AXES = ("layer", "head")
# k/v grids: one column per key-value head (= per head without grouped-query attention).
_KV_HEAD_AXES = ("layer", "kv_head")
_POSITION_AXES = (("layer", "pos"), ("lens_layer", "pos"))


@dataclass
class GridFigure:
    """One exported grid: values[row, col] with labels, levels and a descriptive title."""

    name: str
    title: str
    subtitle: str
    values: np.ndarray
    row_labels: list[str]
    col_labels: list[str]
    row_title: str
    col_title: str
    signed: bool
    levels: tuple[float, float]
    head_grid: bool
    markers: dict[tuple[int, int], str] = field(default_factory=dict)
    cell_text: list[list[str]] | None = None


# ------------------------------------------------------------------ colours


def colour(value: float, levels: tuple[float, float], signed: bool) -> str:
    """The fill of a cell (``#rrggbb``); NaN (not computed) is light grey."""
    if not np.isfinite(value):
        return "#dddddd"
    low, high = levels
    t = 0.5 if high <= low else float(np.clip((value - low) / (high - low), 0.0, 1.0))
    stops = RDBU if signed else VIRIDIS
    x = t * (len(stops) - 1)
    i = min(int(x), len(stops) - 2)
    f = x - i
    rgb = [round(a + (b - a) * f) for a, b in zip(stops[i], stops[i + 1])]
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _text_on(fill: str) -> str:
    r, g, b = (int(fill[i:i + 2], 16) for i in (1, 3, 5))
    return "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#ffffff"


def symmetric(values: np.ndarray, floor: float = 0.0) -> tuple[float, float]:
    finite = np.abs(values[np.isfinite(values)])
    peak = float(finite.max()) if finite.size else 0.0
    peak = max(peak, floor) or 1.0
    return -peak, peak


def sequential(values: np.ndarray) -> tuple[float, float]:
    """(0, the largest value): small scores still span the map (never a fixed 0-1 of black cells)."""
    finite = values[np.isfinite(values)]
    upper = float(finite.max()) if finite.size else 1.0
    return 0.0, upper if upper > 0 else 1.0


# ------------------------------------------------------------------ figures of results


def _short(token: str, width: int = 10) -> str:
    token = str(token)
    if token.startswith("<|") and token.endswith("|>"):
        return "BOS"
    shown = token.strip() or repr(token)
    return shown if len(shown) <= width else shown[: width - 1] + "…"


def describe_source(meta: Mapping[str, Any]) -> str:
    """ "model <name>; prompt set <name>, <n> pairs" from a run's metadata."""
    model = meta.get("model") if isinstance(meta.get("model"), Mapping) else {}
    prompts = meta.get("prompts") if isinstance(meta.get("prompts"), Mapping) else {}
    n = prompts.get("n_prompts")
    prompt_set = prompts.get("prompt_set") if isinstance(prompts.get("prompt_set"), Mapping) else {}
    set_meta = prompt_set.get("meta", {}) if isinstance(prompt_set.get("meta"), Mapping) else {}
    # "the notebook prompt set", "prompt set pairs.json", ... and a short hash of its pairs.
    if set_meta.get("preset"):
        set_name = f"the {set_meta['preset']} prompt set"
    elif set_meta.get("name") or set_meta.get("file"):
        set_name = f"prompt set {set_meta.get('name') or Path(str(set_meta['file'])).name}"
    else:
        set_name = f"{set_meta.get('source', 'a')} prompt set"
    if prompt_set.get("pairs"):
        import hashlib
        import json

        digest = hashlib.sha256(json.dumps(prompt_set, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        set_name += f" ({digest[:8]})"
    text = f"model {model.get('name', 'unknown')}; {set_name}"
    return text + (f", {n} pairs" if n is not None else "")


def _position_labels(result: Any, axis: str, width: int, meta: Mapping[str, Any], prompt: int = 0) -> list[str]:
    prompts = meta.get("prompts") if isinstance(meta.get("prompts"), Mapping) else {}
    positions = result.positions.get(axis) if hasattr(result, "positions") else None
    tokens = (prompts.get("str_tokens") or [[]])[prompt] if prompts.get("str_tokens") else []
    roles = {name: at[prompt] for name, at in (prompts.get("roles") or {}).items()
             if isinstance(at, list) and prompt < len(at)}
    labels = []
    for i in range(width):
        if positions is not None and prompt == 0 and i < len(positions):
            index, token, role = positions.index[i], positions.token[i], positions.role[i]
            if index is None:
                labels.append(role or str(i))
                continue
            token = token if token is not None else (tokens[i] if i < len(tokens) else "")
        else:
            index, token = i, tokens[i] if i < len(tokens) else ""
            role = next((name for name, at in roles.items() if at == i), None)
        labels.append(f"{_short(token)} {index}" + (f" {role}" if role else ""))
    return labels


def _activation_title(analysis: str, array: str) -> str:
    from ioi_desktop.core.analyses import patching

    for prefix in ("patch_", "atp_", "path_patch_"):
        if array.startswith(prefix):
            key = array[len(prefix):]
            if key in patching.SWEEPS:
                return patching.SWEEPS[key].title
            if prefix == "path_patch_":
                if key.endswith("_kv"):  # grouped-query attention: k/v receivers are key-value heads
                    return f"path patching into {key[:-3]} (per key-value head)"
                return f"path patching into {key}"
    return _NAMES.get(array, array.replace("_", " "))


_NAMES = {
    "logit_lens_grid_top_probs": "top token's probability by layer and position",
    "logit_lens_grid_logit_diff": "logit difference (correct − incorrect) by layer and position",
    "logit_lens_grid_p_correct": "probability of the correct answer by layer and position",
    "dla_head": "direct logit attribution of each head",
    "head_score_prev": "previous-token score",
    "head_score_dup": "duplicate-token score",
    "head_score_induction": "induction score",
    "ablation_dla_head_before": "DLA per head before ablation",
    "ablation_dla_head_after": "DLA per head after ablation",
    "ablation_dla_head_change": "change in DLA per head (after − before)",
}


def _analysis_title(analysis: str) -> str:
    from ioi_desktop.core.analyses import analysis_info

    try:
        return analysis_info(analysis).title
    except (KeyError, ValueError):
        return analysis


def grid_figures(run_results: Any, analyses: Iterable[str] | None = None, roles: Any = None,
                 prompts: Sequence[int] = DEFAULT_PROMPTS, markers: bool = False) -> list[GridFigure]:
    """Every grid of every analysis in ``run_results`` (those of ``analyses`` when given).

    Raw (un-normalised) patching arrays are left out (their CSVs carry them);
    ``roles`` (a ``core.roles.HeadRoles``) marks known heads on layer x head
    grids when ``markers`` is true.
    """
    meta = dict(run_results.meta or {})
    source = describe_source(meta)
    wanted = set(analyses) if analyses is not None else None
    figures: list[GridFigure] = []
    results = run_results.results
    for name, result in results.items():
        if wanted is not None and name not in wanted:
            continue
        title = _analysis_title(name)
        for array_name, values in result.arrays.items():
            values = np.asarray(values)
            axes = tuple(result.axes[array_name])
            if values.dtype.kind != "f" or array_name.endswith("_raw"):
                continue
            partner = _partner(results, array_name)
            if axes in (_HEAD_AXES, _KV_HEAD_AXES) or axes in _POSITION_AXES:
                figures.append(_figure(name, title, array_name, values, axes, result, meta, source,
                                       partner, roles if markers else None))
            elif axes == ("layer", "pos", "head"):
                for head in range(values.shape[2]):
                    figure = _figure(name, title, array_name, values[:, :, head], ("layer", "pos"), result, meta,
                                     source, None if partner is None else partner[:, :, head], None)
                    figure.name += f"_head{head}"
                    figure.title += f", head {head}"
                    figures.append(figure)
            elif axes in (("lens_layer", "prompt", "pos"), ("lens_layer", "prompt", "pos", "rank")):
                if len(axes) == 4:
                    values = values[..., 0]
                lengths = (meta.get("prompts") or {}).get("lengths") or []
                for prompt in prompts:
                    if prompt >= values.shape[1]:
                        continue
                    n = int(lengths[prompt]) if prompt < len(lengths) else values.shape[2]
                    grid = values[:, prompt, :n]
                    figure = _figure(name, title, array_name, grid, ("lens_layer", "pos"), result, meta, source,
                                     None, None, prompt=prompt)
                    figure.name += f"_prompt{prompt}"
                    figure.title += f", prompt {prompt}"
                    figure.cell_text = _lens_text(result, prompt, n)
                    figures.append(figure)
    return figures


def _partner(results: Mapping[str, Any], array_name: str) -> np.ndarray | None:
    """The other half of an exact/estimate pair (patch_X and atp_X share one colour scale)."""
    for mine, theirs in (("patch_", "atp_"), ("atp_", "patch_")):
        if array_name.startswith(mine):
            other = theirs + array_name[len(mine):]
            for result in results.values():
                if other in result.arrays:
                    return np.asarray(result.arrays[other])
    return None


def _lens_text(result: Any, prompt: int, n: int) -> list[list[str]] | None:
    ids = result.arrays.get("logit_lens_grid_top_ids")
    texts = result.meta.get("token_text") if hasattr(result, "meta") else None
    if ids is None or not isinstance(texts, Mapping):
        return None
    top = np.asarray(ids)[:, prompt, :n, 0]
    return [[_short(texts.get(str(int(i)), ""), 8) if i >= 0 else "" for i in row] for row in top]


def _figure(analysis: str, title: str, array_name: str, values: np.ndarray, axes: tuple[str, str], result: Any,
            meta: Mapping[str, Any], source: str, partner: np.ndarray | None, roles: Any,
            prompt: int = 0) -> GridFigure:
    n_rows, n_cols = values.shape
    row_axis, col_axis = axes
    row_labels = None
    if row_axis == "lens_layer":
        labels = result.axis_labels("lens_layer") if hasattr(result, "axis_labels") else None
        row_labels = [str(label).replace("_", " ") for label in labels[:n_rows]] if labels else None
    layer_rows = None  # a hybrid's grids: the real layer index of each row (its attention layers only)
    if row_axis == "layer" and hasattr(result, "axis_labels"):
        labels = result.axis_labels("layer")
        if labels and len(labels) == n_rows and all(str(label).isdigit() for label in labels):
            layer_rows = [int(label) for label in labels]
            row_labels = [str(label) for label in labels]
    row_labels = row_labels or [str(i) for i in range(n_rows)]
    kv_labels = result.axis_labels("kv_head") if col_axis == "kv_head" and hasattr(result, "axis_labels") else None
    head_grid = col_axis in ("head", "kv_head")
    n_heads = next((np.shape(v)[list(result.axes[k]).index("head")] for k, v in result.arrays.items()
                    if "head" in result.axes.get(k, ())), n_cols)
    if col_axis == "kv_head" and n_cols != n_heads:  # grouped-query attention: roles name query heads
        roles = None
    col_labels = (list(kv_labels)[:n_cols] if kv_labels else [str(i) for i in range(n_cols)] if head_grid
                  else _position_labels(result, col_axis if row_axis != "lens_layer" else "pos", n_cols, meta, prompt))
    patching_score = array_name.startswith(("patch_", "atp_", "path_patch_"))
    both = values if partner is None or partner.shape != values.shape else np.concatenate([values.ravel(),
                                                                                            partner.ravel()])
    finite = values[np.isfinite(values)]
    signed = patching_score or bool(finite.size and finite.min() < 0) or "logit_diff" in array_name \
        or array_name.startswith(("dla_", "ablation_"))
    levels = symmetric(np.asarray(both), MIN_PATCH_PEAK if patching_score else 0.0) if signed \
        else sequential(values)
    if "top_probs" in array_name or "p_correct" in array_name:
        levels = (0.0, 1.0)
    cells: dict[tuple[int, int], str] = {}
    if roles is not None and head_grid:
        within = roles.within(max(layer_rows) + 1 if layer_rows else n_rows, n_cols)
        cells = {(layer_rows.index(r.layer) if layer_rows else r.layer, r.head): r.role
                 for r in within.by_head().values() if not layer_rows or r.layer in layer_rows}
    if patching_score:
        from ioi_desktop.core.grids import small_gap_warning

        meta_of = result.meta if hasattr(result, "meta") else {}
        warning = small_gap_warning(meta_of.get("clean_logit_diff"), meta_of.get("corrupt_logit_diff"))
        source = f"{source}. {warning}" if warning else source
    return GridFigure(
        name=array_name, title=f"{title}: {_activation_title(analysis, array_name)}", subtitle=source,
        values=np.asarray(values, dtype=np.float64), row_labels=row_labels, col_labels=col_labels,
        row_title="layer", col_title="head" if head_grid else "position", signed=signed, levels=levels,
        head_grid=head_grid, markers=cells)


# ------------------------------------------------------------------ SVG


def _text_width(text: str, size: float) -> float:
    return 0.58 * size * len(text)


def figure_svg(figure: GridFigure, width: float | None = None) -> str:
    """The figure as an SVG document: a vector rect per cell, labelled axes, a colour bar, the title;
    role markers (only on layer x head grids) with their legend."""
    n_rows, n_cols = figure.values.shape
    font = 11.0
    small = 9.5
    rotate = any(len(label) > 3 for label in figure.col_labels) and not figure.head_grid
    left = 18 + font + max((_text_width(label, small) for label in figure.row_labels), default=10) + 8
    bottom_labels = max((_text_width(label, small) for label in figure.col_labels), default=10)
    bottom = 14 + font + (bottom_labels * 0.72 + 10 if rotate else small + 8)
    top = 14 + font * 1.3 + small * 1.4 + 10
    bar = 70
    legend_height = 0.0
    legend = _legend_entries(figure)
    if legend:
        legend_height = 16.0 * ((len(legend) + 2) // 3) + 6
    plot_w = width - left - bar - 14 if width else min(760.0, max(220.0, 34.0 * n_cols))
    cell = min(plot_w / max(n_cols, 1), 46.0)
    if figure.head_grid:
        cell = min(cell, 46.0)
    cell_h = cell if figure.head_grid or n_rows * cell <= 520 else 520.0 / n_rows
    plot_w, plot_h = cell * n_cols, cell_h * n_rows
    total_w = max(left + plot_w + bar + 14, _text_width(figure.title, font * 1.3) + 20,
                  _text_width(figure.subtitle, small) + 20)
    total_h = top + plot_h + bottom + legend_height
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w:.0f}" height="{total_h:.0f}" '
           f'viewBox="0 0 {total_w:.0f} {total_h:.0f}" font-family="{FONT}">',
           f"<title>{escape(figure.title)}</title>",
           f'<rect x="0" y="0" width="{total_w:.0f}" height="{total_h:.0f}" fill="#ffffff"/>',
           f'<text x="10" y="{14 + font:.1f}" font-size="{font * 1.3:.1f}" font-weight="bold">'
           f"{escape(figure.title)}</text>",
           f'<text x="10" y="{14 + font * 1.3 + small * 1.4:.1f}" font-size="{small}" fill="#444444">'
           f"{escape(figure.subtitle)}</text>",
           '<g shape-rendering="crispEdges">']
    for r in range(n_rows):
        for c in range(n_cols):
            fill = colour(float(figure.values[r, c]), figure.levels, figure.signed)
            # A hair wider than the cell, so antialiased renderers leave no seams between cells.
            out.append(f'<rect x="{left + c * cell:.2f}" y="{top + r * cell_h:.2f}" width="{cell + 0.4:.2f}" '
                       f'height="{cell_h + 0.4:.2f}" fill="{fill}"/>')
    out.append("</g>")
    if figure.cell_text is not None and cell >= 18:
        size = min(small, cell / 4.2)
        for r, row in enumerate(figure.cell_text[:n_rows]):
            for c, text in enumerate(row[:n_cols]):
                if text:
                    fill = colour(float(figure.values[r, c]), figure.levels, figure.signed)
                    out.append(f'<text x="{left + (c + 0.5) * cell:.2f}" y="{top + (r + 0.5) * cell_h + size / 3:.2f}" '
                               f'font-size="{size:.1f}" text-anchor="middle" fill="{_text_on(fill)}">'
                               f"{escape(text)}</text>")
    out.append(f'<rect x="{left:.2f}" y="{top:.2f}" width="{plot_w:.2f}" height="{plot_h:.2f}" fill="none" '
               'stroke="#333333" stroke-width="0.8"/>')
    row_step = max(1, int(np.ceil((small + 2) / max(cell_h, 1e-6))))
    for r, label in enumerate(figure.row_labels):
        if r % row_step == 0:
            out.append(f'<text x="{left - 5:.2f}" y="{top + (r + 0.5) * cell_h + small / 3:.2f}" font-size="{small}" '
                       f'text-anchor="end">{escape(label)}</text>')
    col_step = max(1, int(np.ceil((small + 2) / cell))) if rotate else \
        max(1, int(np.ceil((max((_text_width(x, small) for x in figure.col_labels), default=8) + 4) / cell)))
    for c, label in enumerate(figure.col_labels):
        if c % col_step:
            continue
        x, y = left + (c + 0.5) * cell, top + plot_h + 6
        if rotate:
            out.append(f'<text x="{x:.2f}" y="{y:.2f}" font-size="{small}" text-anchor="end" '
                       f'transform="rotate(-45 {x:.2f} {y:.2f})">{escape(label)}</text>')
        else:
            out.append(f'<text x="{x:.2f}" y="{y + small:.2f}" font-size="{small}" text-anchor="middle">'
                       f"{escape(label)}</text>")
    out.append(f'<text x="{left + plot_w / 2:.2f}" y="{top + plot_h + bottom - 8:.2f}" font-size="{font}" '
               f'text-anchor="middle">{escape(figure.col_title)}</text>')
    cy = top + plot_h / 2
    out.append(f'<text x="{14:.2f}" y="{cy:.2f}" font-size="{font}" text-anchor="middle" '
               f'transform="rotate(-90 14 {cy:.2f})">{escape(figure.row_title)}</text>')
    out.extend(_colour_bar(figure, left + plot_w + 14, top, max(plot_h, 80.0), small))
    if figure.markers and figure.head_grid:
        out.extend(_marker_svg(figure, left, top, cell, cell_h, legend, top + plot_h + bottom, total_w))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _colour_bar(figure: GridFigure, x: float, y: float, height: float, small: float) -> list[str]:
    steps = 64
    low, high = figure.levels
    parts = ['<g shape-rendering="crispEdges">']
    for i in range(steps):
        value = high - (high - low) * (i + 0.5) / steps
        parts.append(f'<rect x="{x:.2f}" y="{y + i * height / steps:.2f}" width="12" '
                     f'height="{height / steps + 0.3:.2f}" fill="{colour(value, figure.levels, figure.signed)}"/>')
    parts.append("</g>")
    parts.append(f'<rect x="{x:.2f}" y="{y:.2f}" width="12" height="{height:.2f}" fill="none" stroke="#333333" '
                 'stroke-width="0.6"/>')
    for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):
        value = high - (high - low) * fraction
        ty = y + fraction * height
        parts.append(f'<line x1="{x + 12:.2f}" x2="{x + 15:.2f}" y1="{ty:.2f}" y2="{ty:.2f}" stroke="#333333"/>')
        parts.append(f'<text x="{x + 17:.2f}" y="{ty + small / 3:.2f}" font-size="{small}">{value:.3g}</text>')
    return parts


def _legend_entries(figure: GridFigure) -> list[tuple[str, str]]:
    if not (figure.markers and figure.head_grid):
        return []
    names = list(dict.fromkeys(figure.markers.values()))
    return [(name, ROLE_FILLS[i % len(ROLE_FILLS)]) for i, name in enumerate(names)]


def _marker_svg(figure: GridFigure, left: float, top: float, cell: float, cell_h: float,
                legend: list[tuple[str, str]], legend_top: float, total_w: float) -> list[str]:
    fills = dict(legend)
    radius = max(2.5, min(cell, cell_h) * 0.14)
    parts = []
    for (row, col), name in figure.markers.items():
        cx, cy = left + (col + 0.78) * cell, top + (row + 0.22) * cell_h
        parts.append(f'<circle cx="{cx:.2f}" cy="{cy:.2f}" r="{radius:.2f}" fill="{fills[name]}" '
                     'stroke="#000000" stroke-width="0.8"/>')
    for i, (name, fill) in enumerate(legend):
        x = 12 + (i % 3) * (total_w - 24) / 3
        y = legend_top + 8 + (i // 3) * 16
        parts.append(f'<circle cx="{x + 5:.2f}" cy="{y:.2f}" r="4.5" fill="{fill}" stroke="#000000" '
                     'stroke-width="0.8"/>')
        parts.append(f'<text x="{x + 14:.2f}" y="{y + 3.5:.2f}" font-size="9.5">{escape(name)}</text>')
    return parts


# ------------------------------------------------------------------ tables


def _csv_text(rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        writer.writerow(["" if v is None else (f"{v:.7g}" if isinstance(v, (float, np.floating)) else v)
                         for v in row])
    return out.getvalue()


def prompt_rows(meta: Mapping[str, Any], results: Mapping[str, Any] | None = None) -> tuple[list[str], list[list]]:
    """(header, rows): one row per prompt with its clean and corrupted text, answers, named positions
    (token and index) and, when the run has them, the clean and corrupted logit differences."""
    prompts = meta.get("prompts") if isinstance(meta.get("prompts"), Mapping) else {}
    clean = prompts.get("str_tokens") or []
    corrupt = prompts.get("corrupt_str_tokens") or []
    roles = prompts.get("roles") if isinstance(prompts.get("roles"), Mapping) else {}
    role_names = list(roles)
    header = ["prompt", "clean_text", "corrupted_text", "correct_answer", "incorrect_answer"]
    header += [f"{role}_token" for role in role_names] + [f"{role}_position" for role in role_names]
    arrays: dict[str, np.ndarray] = {}
    for result in (results or {}).values():
        for name in ("logit_diff_clean", "logit_diff_corrupt"):
            if name in result.arrays:
                arrays[name] = np.asarray(result.arrays[name])
    header += list(arrays)
    # The texts as written in the prompt set (no BOS); the tokens joined when the set is not in the metadata.
    pairs = prompts.get("prompt_set", {}).get("pairs") if isinstance(prompts.get("prompt_set"), Mapping) else None
    pairs = pairs if isinstance(pairs, list) and len(pairs) == len(clean) else None
    rows = []
    for i, tokens in enumerate(clean):
        if pairs is not None and isinstance(pairs[i], Mapping):
            clean_text, corrupt_text = str(pairs[i].get("clean", "")), str(pairs[i].get("corrupt", ""))
        else:
            clean_text = "".join(t for t in tokens if not (t.startswith("<|") and t.endswith("|>")))
            corrupt_text = "".join(t for t in (corrupt[i] if i < len(corrupt) else [])
                                   if not (t.startswith("<|") and t.endswith("|>")))
        row = [i, clean_text, corrupt_text,
               str(_at(prompts.get("correct"), i)).strip(), str(_at(prompts.get("incorrect"), i)).strip()]
        positions = [int(roles[role][i]) if i < len(roles[role]) else -1 for role in role_names]
        row += [tokens[p].strip() if 0 <= p < len(tokens) else "" for p in positions] + positions
        row += [float(values[i]) if i < len(values) else None for values in arrays.values()]
        rows.append(row)
    return header, rows


def _at(values: Any, i: int) -> Any:
    return values[i] if isinstance(values, list) and i < len(values) else ""


def grid_csv(figure: GridFigure) -> str:
    rows: list[list] = [[figure.row_title + "/" + figure.col_title, *figure.col_labels]]
    rows += [[figure.row_labels[r], *[float(v) for v in figure.values[r]]] for r in range(figure.values.shape[0])]
    return _csv_text(rows)


def safe_name(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "figure"


def write_figures(run_results: Any, folder: Path | str, analyses: Iterable[str] | None = None, roles: Any = None,
                  markers: bool = False, prompts: Sequence[int] = DEFAULT_PROMPTS) -> list[Path]:
    """SVG and CSV of every grid (see :func:`grid_figures`) plus ``prompts.csv``; returns the SVG paths first."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    svgs: list[Path] = []
    others: list[Path] = []
    for figure in grid_figures(run_results, analyses, roles, prompts, markers):
        stem = safe_name(figure.name)
        svgs.append(write_text_atomic(folder / f"{stem}.svg", figure_svg(figure)))
        others.append(write_text_atomic(folder / f"{stem}.csv", grid_csv(figure)))
    header, rows = prompt_rows(run_results.meta or {}, run_results.results)
    if rows:
        others.append(write_text_atomic(folder / "prompts.csv", _csv_text([header, *rows])))
    return svgs + others
