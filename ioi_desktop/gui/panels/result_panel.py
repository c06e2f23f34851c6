"""What every result panel shares: reading typed results, linking through the selection, export.

The panel contract: a result panel is a QWidget with class attributes
``TITLE`` and ``RESULTS`` (the core ``Result`` types it renders, e.g.
``(dla.Result,)``), built as ``Panel(selection, parent=None)``, with
``show_results(run_results)``, ``show_rows(array_name, grid)`` (a
``core.workbench.PartialGrid``), ``clear()`` and ``export(folder) -> list[Path]``.
In the window, :meth:`ResultPanel.observe` subscribes it to the workbench's
results store: it hears only about the result types it renders. Panels never
call each other: they set the shared
:class:`~ioi_desktop.core.selection.SelectionModel` when the user clicks, and
redraw their own markers when it changes.

Two kinds of grids are linked here once for all panels:
- head maps (layer x head): a click selects that head; the selected head is
  outlined; known head roles can be overlaid; Ctrl/Cmd-click pins or unpins
  the head (the selection's pinned set, which ablation and path patching use);
- position maps (layer x position): a click selects (layer, position); that
  cell is outlined.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any, Callable

import numpy as np
import shiboken6
from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QBoxLayout, QCheckBox, QGridLayout, QLabel, QMenu, QScrollArea, QWidget

from ioi_desktop.core.analyses.base import Positions
from ioi_desktop.core.atomic import write_bytes_atomic
from ioi_desktop.core.errors import IOIError
from ioi_desktop.core.grids import small_gap_warning
from ioi_desktop.core.roles import HeadRoles, load_roles, roles_path_for_model
from ioi_desktop.core.selection import Selection, SelectionModel
from ioi_desktop.core.workbench import (
    ResultAdded,
    ResultsReplaced,
    ResultsStale,
    RowsAdded,
    RunEnded,
    RunStarted,
)
from ioi_desktop.gui.widgets.compact_label import COMPACT_HEIGHT, CompactLabel
from ioi_desktop.gui.widgets.heatmap import Heatmap, ThemedPlot, marker_styles, short_token
from ioi_desktop.gui.worker import defer_full_collections_while

# Text stand-ins for pyqtgraph's marker symbols, for legends outside the plots.
_GLYPHS = {"star": "★", "t": "▼", "o": "●", "s": "■", "d": "◆", "t1": "▲", "p": "⬟", "h": "⬢", "x": "✕"}


_ROLES_CACHE: dict[tuple, HeadRoles | None] = {}
_ROLES_PATHS: dict[tuple, Any] = {}


def _roles_of(name: str, path: Any) -> HeadRoles | None:
    """The known head roles of a model (its roles file), read once per file version for all panels."""
    if not (name or path):
        return None
    # Where a model's roles file is, found once per model for all panels (the search looks through the
    # resource folders); a file that is gone, or not found yet, is looked for again.
    found = _ROLES_PATHS.get((name, str(path)))
    roles_file = found if found is not None and found.is_file() else roles_path_for_model(name, path)
    if roles_file is None:
        return None
    if len(_ROLES_PATHS) > 16:
        _ROLES_PATHS.clear()
    _ROLES_PATHS[(name, str(path))] = roles_file
    key = (str(roles_file), roles_file.stat().st_mtime_ns)
    if key not in _ROLES_CACHE:
        if len(_ROLES_CACHE) > 16:
            _ROLES_CACHE.clear()
        _ROLES_CACHE[key] = load_roles(roles_file)  # a broken file raises each time: not cached
    return _ROLES_CACHE[key]


ALL_SELECTION_KEYS = frozenset({"prompt", "layer", "head", "position", "key_pos"})


class DrawQueue:
    """Result panels waiting to draw, drawn one per event-loop turn (a zero timer re-armed after each),
    so repaints, clicks and timers run between two panels' drawing."""

    def __init__(self) -> None:
        self._panels: list["ResultPanel"] = []
        self._armed = False

    def add(self, panel: "ResultPanel") -> None:
        if panel not in self._panels:
            self._panels.append(panel)
        self._arm()

    def pending(self) -> bool:
        """True while a panel waits for its turn."""
        return bool(self._panels)

    def _arm(self) -> None:
        if not self._armed and self._panels:
            self._armed = True
            QTimer.singleShot(0, self._next)

    def _next(self) -> None:
        self._armed = False
        while self._panels:
            panel = self._panels.pop(0)
            if shiboken6.isValid(panel) and panel.needs_drawing and not panel._drawing_deferred():
                panel._guarded(panel.ensure_drawn)
                break  # one panel this turn
        self._arm()


DRAW_QUEUE = DrawQueue()
# A full garbage collection (tens of ms or more) waits while panels wait to draw.
defer_full_collections_while(DRAW_QUEUE.pending)


def run_export_steps(steps) -> list[Path]:
    """Run a panel's (or the window's) export steps here and now; the paths written, in order."""
    written: list[Path] = []
    job = next(steps, None)
    while True:
        paths = job() if job is not None else None
        written.extend(paths or [])
        try:
            job = steps.send(paths)
        except StopIteration:
            return written


def captures_qt_object(function: Callable) -> bool:
    """True when ``function`` holds a Qt object (a widget, the panel) in its closure or defaults,
    so it must not run (or be freed) in a worker thread."""
    held = [cell.cell_contents for cell in (getattr(function, "__closure__", None) or ()) if _cell_filled(cell)]
    held += list(getattr(function, "__defaults__", None) or ())
    held += [getattr(function, "__self__", None)]
    return any(isinstance(value, QObject) for value in held)


def _cell_filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


class ResultsView:
    """Read-only lookups into a ``core.results.RunResults``: arrays by name, labels, tokens, roles."""

    def __init__(self, run_results: Any) -> None:
        self.raw = run_results
        self.analyses = list(run_results.results.values())
        self._owners: dict[str, Any] | None = None
        self._arrays: dict[str, np.ndarray] = {}
        self.run_meta: Mapping[str, Any] = run_results.meta or {}
        prompts = self.run_meta.get("prompts")
        self.prompts: Mapping[str, Any] = prompts if isinstance(prompts, Mapping) else {}

    def result(self, cls: type) -> Any:
        """The result of Result type ``cls``, or None."""
        return self.raw.of_type(cls)

    def owner(self, array_name: str) -> Any:
        if self._owners is None:
            # Results are immutable: index their arrays once (``Result.arrays`` builds a dict per call,
            # and panels look arrays up per prompt).
            self._owners, self._arrays = {}, {}
            for result in self.analyses:
                for name, values in result.arrays.items():
                    if name not in self._owners:
                        self._owners[name], self._arrays[name] = result, values
        return self._owners.get(array_name)

    def array(self, name: str) -> np.ndarray | None:
        return None if self.owner(name) is None else self._arrays[name]

    def axis_labels(self, array_name: str, axis: int) -> list[str] | None:
        """Labels of one axis of an array (e.g. the ``component`` axis of ``dla_components``)."""
        owner = self.owner(array_name)
        return None if owner is None else owner.axis_labels(owner.axes[array_name][axis])

    def positions(self, array_name: str, axis: int) -> Positions | None:
        """The Positions labelling one axis of an array (None if that axis is not a position axis)."""
        owner = self.owner(array_name)
        return None if owner is None else owner.positions.get(owner.axes[array_name][axis])

    def meta(self, key: str) -> Any:
        """A value of the run's metadata, or of its prompt set's (``correct``, ``str_tokens``, ...)."""
        return self.run_meta.get(key, self.prompts.get(key))

    def meta_of(self, array_name: str, key: str) -> Any:
        """A metadata value of the analysis that produced ``array_name`` (e.g. its ``token_text``)."""
        owner = self.owner(array_name)
        return None if owner is None else owner.meta.get(key)

    def tokens(self, prompt: int) -> list[str]:
        """The clean prompt's tokens as strings (unpadded), or [] when unknown."""
        tokens = self.prompts.get("str_tokens")
        if isinstance(tokens, list) and 0 <= prompt < len(tokens):
            return [str(t) for t in tokens[prompt]]
        return []

    def roles(self, prompt: int) -> dict[str, int]:
        """Named positions (IO, S1, S2, END, ...) of one prompt; absent roles left out."""
        roles = self.prompts.get("roles")
        found: dict[str, int] = {}
        if isinstance(roles, Mapping):
            for name, positions in roles.items():
                if isinstance(positions, list) and 0 <= prompt < len(positions) and int(positions[prompt]) >= 0:
                    found[str(name)] = int(positions[prompt])
        return found

    def model_name_and_path(self) -> tuple[str, str | None]:
        model = self.run_meta.get("model")
        if isinstance(model, Mapping):
            return str(model.get("name", "")), model.get("path")
        return "", None


def axis_position_labels(positions: Positions | None, tokens: list[str], width: int,
                         roles: Mapping[str, int] | None = None) -> list[str]:
    """Two-line tick labels (token over "index role") for a ``pos`` axis.

    Uses the results' Positions when given, else the tokens of the shown
    prompt; entries that are only roles (sets aligned by role) show the role.
    """
    found = []
    for position in range(width):
        if positions is not None and position < len(positions):
            index, token, role = positions.index[position], positions.token[position], positions.role[position]
            if index is None:
                found.append(role or str(position))
                continue
            token = token if token is not None else (tokens[position] if position < len(tokens) else "")
        else:
            index, token = position, tokens[position] if position < len(tokens) else ""
            role = next((name for name, at in (roles or {}).items() if at == position), None)
        found.append(f"{short_token(token)}\n{index}" + (f" {role}" if role else ""))
    return found


def slug(text: str) -> str:
    """A file-name-safe lower-case version of a title."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "figure"


MIN_HEAD_MAP_WIDTH = 250


class HeadMapRow(QWidget):
    """Heatmaps side by side, reflowed into as many lines as their own layouts need at this width."""

    def __init__(self, stretch: int = 0) -> None:
        super().__init__()
        self._maps: list[Heatmap] = []
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._stretch = stretch
        self._columns = 0

    def add(self, heatmap: Heatmap) -> None:
        self._maps.append(heatmap)
        self._reflow(force=True)

    def columns(self) -> int:
        """How many plots share a line now."""
        return self._columns

    def _needed(self) -> int:
        """Width one plot needs: its title plus the colour bar, and never under MIN_HEAD_MAP_WIDTH (measured:
        a 4-head grid with its row labels and a colour bar of "-4e-05"-style labels needs about 250 px)."""
        titles = [int(m.plot.titleLabel.effectiveSizeHint(Qt.SizeHint.MinimumSize).width()) for m in self._maps]
        # And never under what the plot's own layout needs (its title, axes and colour bar), else it is clipped.
        layouts = [int(m.ci.effectiveSizeHint(Qt.SizeHint.MinimumSize).width()) + 4 for m in self._maps]
        return max([MIN_HEAD_MAP_WIDTH] + [title + 70 for title in titles] + layouts)

    def reflow(self, width: int) -> None:
        """Lay the plots out for ``width`` pixels (the scroll area's visible width)."""
        self._width = width
        self._reflow()

    def _reflow(self, force: bool = False) -> None:
        shown = [m for m in self._maps if not m.isHidden()] or self._maps
        width = getattr(self, "_width", 0) or 10_000
        columns = max(1, min(len(shown), width // max(1, self._needed())))
        # Balanced lines: four plots where three fit go 2 + 2, not 3 + 1 with a lone plot below.
        lines = -(-len(shown) // columns)
        columns = -(-len(shown) // lines)
        if columns == self._columns and not force:
            return
        self._columns = columns
        for heatmap in self._maps:
            self._grid.removeWidget(heatmap)
        for index, heatmap in enumerate(self._maps):
            self._grid.addWidget(heatmap, index // columns, index % columns)
        for column in range(len(self._maps)):
            self._grid.setColumnStretch(column, self._stretch if column < columns else 0)



class HeadMapScroll(QScrollArea):
    """Holds a HeadMapRow: reflows it to the visible width; extra lines scroll instead of growing the window."""

    def __init__(self, row: HeadMapRow) -> None:
        super().__init__()
        self.setWidgetResizable(True)
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWidget(row)
        self.row = row

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self.row.reflow(self.viewport().width())


class ResultPanel(QWidget):
    """Base class of the result panels (see the module docstring for the contract)."""

    TITLE = ""
    RESULTS: tuple[type, ...] = ()
    draw_failed = Signal(str)  # a bug while drawing: what failed, for the status bar and the bug report
    # (analysis, option changes): the window runs that analysis alone, keeping the other results
    # (the head maps' context menu, the Ablate / Path patch buttons).
    run_requested = Signal(str, dict)
    # Arrays this panel fills in while a run streams rows.
    STREAMED: tuple[str, ...] = ()
    # Panels with several head maps side by side show one shared roles legend (``roles_legend``).
    INLINE_ROLE_LEGEND = True
    # True when ``render_results`` draws what the current selection shows (the selected prompt's views):
    # drawing results then does not redraw them through ``update_selection`` a second time.
    RENDERS_SELECTION = False

    def __init__(self, selection: SelectionModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(f"{slug(self.TITLE)}_panel")
        self.selection = selection
        self.results: ResultsView | None = None
        self.head_roles: HeadRoles | None = None
        self._roles_from_results = True
        self._partial: dict[str, np.ndarray] = {}
        # Drawing postponed while the panel is hidden (see ``_drawing_deferred``).
        self._stale = False
        self.failure_text = ""  # why this panel's analysis did not run in the last run ('' when it did)
        self._stale_rows: dict[str, bool] = {}
        self._clear_pending = False  # views to empty when shown (see ``clear``)
        self._selection_pending: frozenset = frozenset()  # selection changes to show when shown
        self._store: Any = None
        self._head_maps: list[Heatmap] = []
        self._head_map_layers: dict[Heatmap, list[int]] = {}  # a hybrid's grids: the model layer of each row
        self._position_maps: list[Heatmap] = []
        self.roles_checkbox = QCheckBox("Known head roles")
        self.roles_checkbox.setToolTip("Mark heads with a known role in the IOI circuit (from the model's roles file)")
        self.roles_checkbox.setChecked(True)
        self.roles_checkbox.setEnabled(False)
        self.roles_checkbox.toggled.connect(self._on_roles_toggled)
        self.roles_legend = QLabel("")
        self.roles_legend.setTextFormat(Qt.TextFormat.RichText)
        self.roles_legend.setWordWrap(True)
        # One line over the panel: stale results ("results from <model>, <n> pairs; press Run") or a
        # cancelled run ("cancelled at <step>"); inserted at the top of the panel's layout when first shown.
        self.banner = QLabel("")
        self.banner.setObjectName("result_banner")
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet("QLabel#result_banner { background: #fff3cd; color: #5c4500; "
                                  "border: 1px solid #d9b650; border-radius: 3px; padding: 3px 6px; }")
        self.banner.hide()
        self.stale_reasons: tuple[str, ...] = ()
        self.cancelled_at: str | None = None
        self._veil: QWidget | None = None
        self._meta_view: ResultsView | None = None
        selection.subscribe(self._on_selection_changed)

    # ------------------------------------------------------------ contract
    @classmethod
    def analyses(cls) -> tuple[str, ...]:
        """The analyses whose results this panel renders."""
        return tuple(result_type.analysis for result_type in cls.RESULTS)

    def observe(self, store: Any) -> None:
        """Render what the workbench's results store publishes for this panel's result types."""
        hub = store.hub
        self._store = store
        hub.subscribe(RunStarted, self._on_run_started)
        hub.subscribe(RowsAdded, self._on_rows_added)
        hub.subscribe(ResultAdded, self._on_result_added)
        hub.subscribe(ResultsReplaced, self._on_results_replaced)
        hub.subscribe(ResultsStale, self._on_results_stale)
        hub.subscribe(RunEnded, self._on_run_ended)

    # ------------------------------------------------------- the banner
    def _show_banner(self, text: str) -> None:
        layout = self.layout()
        if self.banner.parent() is not self and isinstance(layout, QBoxLayout):
            layout.insertWidget(0, self.banner)
        self.banner.setText(text)
        self.banner.setVisible(bool(text))

    def _set_greyed(self, greyed: bool) -> None:
        """Stale results stay readable (and hoverable) under a translucent veil; the banner says why.

        A veil widget over the panel, not a QGraphicsOpacityEffect: the effect garbles pyqtgraph views.
        """
        if self._veil is None:
            self._veil = QWidget(self)
            self._veil.setObjectName("stale_veil")
            self._veil.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
            self._veil.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)
        dark = self.palette().window().color().lightness() < 128
        self._veil.setStyleSheet("QWidget#stale_veil { background: %s; }"
                                 % ("rgba(30, 30, 32, 150)" if dark else "rgba(255, 255, 255, 150)"))
        self._veil.setVisible(greyed)
        self._place_veil()
        if greyed:
            # The banner's final place is known once the layout has run.
            QTimer.singleShot(0, self._place_veil)

    def _place_veil(self) -> None:
        if not self._alive() or self._veil is None or not self._veil.isVisible():
            return
        top = self.banner.geometry().bottom() + 2 if self.banner.isVisible() else 0
        self._veil.setGeometry(0, top, self.width(), max(0, self.height() - top))
        self._veil.raise_()

    @property
    def greyed(self) -> bool:
        """True while this panel shows stale results (faded, with the banner)."""
        return bool(self.stale_reasons)

    def banner_text(self) -> str:
        return self.banner.text() if self.banner.isVisibleTo(self) else ""

    def _on_results_stale(self, event: ResultsStale) -> None:
        if not self._alive():
            return
        mine = [name for name in self.analyses() if name in event.stale]
        reasons = tuple(dict.fromkeys(r for name in mine for r in event.reasons.get(name, ())))
        self.stale_reasons = reasons
        if mine:
            provenance = self._store.provenance(mine[0]) if self._store is not None else None
            origin = provenance.summary() if provenance is not None else "results from an earlier run"
            changed = " and ".join(reasons)
            self._show_banner(f"{origin[0].upper()}{origin[1:]}; press Run "
                              f"(the {changed} changed since).")
            self._set_greyed(True)
        else:
            self._clear_banner()

    def _clear_banner(self) -> None:
        self.stale_reasons = ()
        self.cancelled_at = None
        self._show_banner("")
        self._set_greyed(False)

    def _on_run_ended(self, event: RunEnded) -> None:
        if not self._alive() or event.status != "cancelled":
            return
        unfinished = [name for name in self.analyses() if name in event.unfinished]
        if not unfinished:
            return
        step = self._store.last_step if self._store is not None else ""
        self.cancelled_at = step or "the start"
        self._show_banner(f"Cancelled at {self.cancelled_at}: the rows shown are those computed before the "
                          "cancel; press Run to compute the rest.")
        self._guarded(self.show_cancelled)

    def show_cancelled(self) -> None:
        """Redraw the partial rows of a cancelled run as final (no "Computing…"); panels may override."""
        if self._drawing_deferred():
            self._stale_rows.update(dict.fromkeys(self._partial, True))  # drawn when shown
            return
        self._apply_pending_clear()
        for array_name, values in list(self._partial.items()):
            self.render_rows(array_name, values)

    def view(self) -> "ResultsView | None":
        """Labels for what is shown: the finished results, else the running run's metadata
        (prompt tokens, roles, lengths; known before the first analysis finishes)."""
        if self.results is not None:
            return self.results
        if self._store is None or not self._store.meta:
            return None
        from ioi_desktop.core.results import RunResults

        meta = self._store.meta
        if self._meta_view is None:
            self._meta_view = ResultsView(RunResults(results={}, meta=dict(meta)))
        return self._meta_view

    def gap_warning(self, array_name: str) -> str:
        """A warning when the clean-corrupted gap the normalised scores of ``array_name`` divide by is
        below ``core.grids.SMALL_GAP_THRESHOLD`` ('' when it is not, or unknown)."""
        if self.results is None:
            return ""
        clean = self.results.meta_of(array_name, "clean_logit_diff")
        corrupted = self.results.meta_of(array_name, "corrupt_logit_diff")
        if clean is None or corrupted is None:
            clean_array = self.results.array("logit_diff_clean")
            corrupt_array = self.results.array("logit_diff_corrupt")
            if clean_array is None or corrupt_array is None:
                return ""
            clean, corrupted = float(np.mean(clean_array)), float(np.mean(corrupt_array))
        text = small_gap_warning(clean, corrupted)
        return f"⚠ {text}" if text else ""

    def _alive(self) -> bool:
        # A Qt-deleted panel's Python wrapper can outlive its C++ object for a moment.
        return shiboken6.isValid(self)

    def _guarded(self, method: Callable, *args: Any) -> None:
        """Call a drawing method; a bug in one panel is reported (``draw_failed``), never spread."""
        try:
            method(*args)
        except Exception as error:  # noqa: BLE001 - reported, then the app goes on
            traceback.print_exc()
            self.draw_failed.emit(f"The {self.TITLE} panel could not draw this ({method.__name__}: "
                                  f"{type(error).__name__}: {error})")

    def mark_failed(self, text: str) -> None:
        """Say on the panel why its analysis did not run in the last run ('' clears it)."""
        self.failure_text = text
        self.setToolTip(f"Did not run: {text}" if text else "")

    def _on_run_started(self, event: RunStarted) -> None:
        if self._alive() and (not event.keep_others or set(event.analyses) & set(self.analyses())):
            self._meta_view = None
            self._clear_banner()
            self._guarded(self.clear)

    def _on_rows_added(self, event: RowsAdded) -> None:
        if self._alive() and event.analysis in self.analyses():
            self._guarded(self.show_rows, event.array, event.grid)

    def _on_result_added(self, event: ResultAdded) -> None:
        if self._alive() and event.analysis in self.analyses():
            self._guarded(self.show_results, self._store.run_results())

    def _on_results_replaced(self, event: ResultsReplaced) -> None:
        if not self._alive():
            return
        self._clear_banner()
        if event.results is None:
            self._guarded(self.clear)
        else:
            self._guarded(self.show_results, event.results)

    def show_results(self, run_results: Any) -> None:
        """Render finished results (from a run or an opened session)."""
        self.results = ResultsView(run_results)
        self._partial.clear()
        self._stale_rows.clear()
        if self._roles_from_results:
            self.head_roles = self._find_roles(self.results)
        if self._in_shown_window():
            # Drawn on a later turn: hidden, when shown; on screen, one panel per turn (DRAW_QUEUE),
            # so a run's end or an opened session never draws every panel in one go.
            self._stale = True
            if not self._drawing_deferred():
                self.draw_soon()
            return
        self._draw_results()

    def _apply_pending_clear(self) -> None:
        if self._clear_pending:
            self._clear_pending = False
            self.clear_views()

    def _draw_results(self) -> None:
        self._apply_pending_clear()
        self._stale = False
        self._stale_rows.clear()
        self.render_results()
        self._update_roles_overlay()
        changed, self._selection_pending = ALL_SELECTION_KEYS | self._selection_pending, frozenset()
        if self.RENDERS_SELECTION:
            # ``render_results`` drew the current selection's views already: only the linked grids' outlines.
            ResultPanel.update_selection(self, self.selection.current, changed)
        else:
            self.update_selection(self.selection.current, changed)

    def _drawing_deferred(self) -> bool:
        """True while this panel sits in a hidden tab of a shown window: it draws when shown.

        Drawing every panel when a run ends took most of a second; only the
        visible ones need to be current. Panels used on their own (not inside
        a shown window) always draw at once.
        """
        return self._in_shown_window() and not self.on_screen()

    def _in_shown_window(self) -> bool:
        window = self.window()
        return window is not self and window.isVisible()

    @property
    def needs_drawing(self) -> bool:
        """True while results or streamed rows that arrived when the panel was hidden (or the clearing
        of its views at a run's start) are not drawn yet."""
        return bool((self._stale and self.results is not None) or self._stale_rows or self._clear_pending
                    or bool(self._selection_pending))

    def on_screen(self) -> bool:
        """Visible and not covered: a dock in a background tab still reports ``isVisible()``,
        but nothing of it is on screen (an empty ``visibleRegion``)."""
        return self.isVisible() and not self.visibleRegion().isEmpty()

    def draw_if_shown(self) -> None:
        """Draw what arrived while hidden, now that the panel may be on screen (its tab raised, laid out).

        The window calls this when the panel's dock becomes visible (``QDockWidget.visibilityChanged``);
        a resize that brings the panel on screen does the same."""
        if self._alive() and self.needs_drawing and not self._drawing_deferred():
            self.ensure_drawn()

    def draw_soon(self) -> None:
        """Check on a later event-loop turn (after Qt has applied the new layout) whether to draw;
        panels waiting to draw take one turn each (:data:`DRAW_QUEUE`)."""
        DRAW_QUEUE.add(self)

    def ensure_drawn(self) -> None:
        """Draw results or streamed rows that arrived while the panel was hidden."""
        self._apply_pending_clear()
        if self._stale and self.results is not None:
            self._draw_results()
        elif self._selection_pending:
            changed, self._selection_pending = self._selection_pending, frozenset()
            self.update_selection(self.selection.current, changed)
        for array_name in list(self._stale_rows):
            del self._stale_rows[array_name]
            if array_name in self._partial:
                self.render_rows(array_name, self._partial[array_name])

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if self._drawing_deferred():
            self.draw_soon()  # shown, but maybe not laid out or raised yet
        else:
            self.ensure_drawn()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        # (One override: a second definition above this one, placing the stale veil, was never called.)
        self._place_veil()
        # In a short dock the explanations fold to one elided line and the plots' hover lines into their
        # tooltips (full text there): the plots keep readable rows.
        compact = event.size().height() < COMPACT_HEIGHT
        for label in self.findChildren(CompactLabel):
            label.set_compact(compact)
        for plot in self.findChildren(ThemedPlot):
            plot.set_compact(compact)
        if self.needs_drawing:
            self.draw_soon()

    def show_rows(self, array_name: str, grid: Any) -> None:
        """Fill in streamed rows (a ``core.workbench.PartialGrid``) of an array this panel shows.

        Float rows not computed yet are NaN in the grid (blank cells); integer
        arrays (token ids) keep -1 there. The grid's own array is kept, not a
        copy: the workbench fills it in place as rows arrive, and copying the
        whole array for every row grew with the prompt count.
        """
        if array_name not in self.STREAMED:
            return
        values = grid.values
        if values.dtype.kind == "f" and values.dtype != np.float32:
            values = values.astype(np.float32)
        self._partial[array_name] = values
        if self._drawing_deferred():
            self._stale_rows[array_name] = True
            return
        self._apply_pending_clear()
        self.render_rows(array_name, values)

    def clear(self) -> None:
        """Forget results (e.g. a new run starts or the prompt set changed)."""
        self.results = None
        self._partial.clear()
        self._stale = False
        self._stale_rows.clear()
        if self._in_shown_window():
            # Emptied on a later turn: a hidden panel when shown (it costs nothing at a run's start), one on
            # screen when its turn comes (DRAW_QUEUE), so a run's start never clears every panel in one go.
            # Rows or results arriving first empty it before they draw (``_apply_pending_clear``).
            self._clear_pending = True
            if not self._drawing_deferred():
                self.draw_soon()
            return
        self._clear_pending = False
        self.clear_views()

    def export(self, folder: Path | str, dpi: int = 300, markers: bool = False) -> list[Path]:
        """Write every figure of this panel's analyses, rendered off-screen at publication size.

        Every grid of every analysis the panel shows (not only the one on
        screen) comes from ``core.figures``: a vector SVG (one rectangle per
        cell, titled with analysis, activation, model and prompt set) and a PNG
        of it at ``dpi``; known head roles only on layer x head grids and only
        with ``markers``. Plots that are not grids (bars, scatter, lens line,
        attention patterns) are rendered from the widget at ``dpi`` (PNG) and
        as SVG, without the selection outline. Tables are CSVs with labels.

        This runs :meth:`export_steps` at once; the window's File > Export runs the same steps
        without blocking the GUI thread (:class:`~ioi_desktop.gui.export_run.ExportRun`).
        """
        return run_export_steps(self.export_steps(folder, dpi, markers))

    def export_steps(self, folder: Path | str, dpi: int = 300, markers: bool = False):
        """:meth:`export` as a generator of steps, for writing it without blocking the GUI thread.

        The GUI-thread work between two ``yield``s is small (drawing the panel if it was hidden, or
        rendering one widget figure); each yielded value is a job ``job() -> list[Path]`` that captures
        no Qt object (only data, images and paths), so it may run in the worker's input thread; the
        paths it wrote are sent back into the generator. The files and their order are those of
        :meth:`export`."""
        from ioi_desktop.core.figures import write_figures
        from ioi_desktop.gui.widgets.export import render_widget_image, svg_to_png, widget_svg, write_png

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.needs_drawing:
            self.ensure_drawn()
            yield None  # an event-loop turn after drawing
        if not self.isVisible() and (self.width() < 600 or self.height() < 400):
            # A panel in a hidden tab may never have been laid out.
            self.resize(max(self.width(), 1000), max(self.height(), 650))
        prefix = slug(self.TITLE)
        has_grids = False
        if self.results is not None:
            run_results, analyses = self.results.raw, self.analyses()
            roles = self.head_roles if markers else None
            prompts = (self.selection.prompt,)

            def grids() -> list[Path]:
                core_files = write_figures(run_results, folder, analyses=analyses, roles=roles, markers=markers,
                                           prompts=prompts)
                pngs = [svg_to_png(path.read_bytes(), path.with_suffix(".png"), dpi)
                        for path in core_files if path.suffix == ".svg"]
                return pngs + core_files

            written = yield grids
            has_grids = any(path.suffix == ".svg" for path in written or [])
        for name, widget in self.figures():
            if has_grids and (isinstance(widget, Heatmap) or widget.findChildren(Heatmap)):
                continue  # written above as a vector figure
            png_path, svg_path = folder / f"{prefix}_{name}.png", folder / f"{prefix}_{name}.svg"
            # The image and the SVG on two turns: each paints the whole widget.
            image = self._render_figure(widget, lambda w=widget: render_widget_image(w, dpi), markers)
            yield lambda image=image, png_path=png_path: [write_png(image, png_path)]
            title = f"{self.TITLE}: {name}"
            svg = self._render_figure(widget, lambda w=widget, t=title: widget_svg(w, t), markers)
            yield lambda svg=svg, svg_path=svg_path: [write_bytes_atomic(svg_path, svg)]
        for name, write_csv in self.tables():
            path = folder / f"{prefix}_{name}.csv"
            if captures_qt_object(write_csv):
                # Kept on this thread: a Qt object must not be used (or freed) in the input thread.
                write_csv(path)
                yield lambda path=path: [path]
            else:
                yield lambda write_csv=write_csv, path=path: [write_csv(path)]

    def _render_figure(self, widget: QWidget, render: Callable[[], Any], markers: bool) -> Any:
        """``render()`` of one widget figure without the selection outline (and without role markers
        unless ``markers``) on the heatmaps it shows; both are put back before the next repaint."""
        heatmaps = [widget] if isinstance(widget, Heatmap) else widget.findChildren(Heatmap)
        selected = [(heatmap, heatmap.selected()) for heatmap in heatmaps if heatmap.selected() is not None]
        marked = [] if markers else [heatmap for heatmap in heatmaps if heatmap.marker_count()]
        try:
            for heatmap, _cell in selected:
                heatmap.set_selected(None)
            for heatmap in marked:
                heatmap.show_markers(False)  # hidden, not rebuilt: their legends are costly to build
            return render()
        finally:
            for heatmap, cell in selected:
                heatmap.set_selected(cell)
            for heatmap in marked:
                heatmap.show_markers(True)

    # --------------------------------------------------- for subclasses
    def render_results(self) -> None:
        """Draw ``self.results``."""
        raise NotImplementedError

    def render_rows(self, array_name: str, grid: np.ndarray) -> None:
        """Draw a partially filled array (NaN rows, or -1 token ids, are not computed yet)."""

    def clear_views(self) -> None:
        """Empty every view."""
        raise NotImplementedError

    def figures(self) -> list[tuple[str, QWidget]]:
        """(name, widget) of each figure to export; only those showing data."""
        return []

    def tables(self) -> list[tuple[str, Callable[[Path], Path]]]:
        """(name, write(path) -> path) of each CSV table to export."""
        return []

    def view_state(self) -> dict:
        """The panel's own view choices (a grid, a mode) as JSON values, for sessions; {} by default."""
        return {}

    def restore_view_state(self, state: dict) -> None:
        """Bring back what :meth:`view_state` returned (ignore what does not apply)."""

    def apply_theme(self) -> None:
        """Recolour plots that are not Heatmap/BarChart widgets (those follow the palette themselves)."""

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt override
        # Light/dark theme switches arrive as palette changes.
        if event.type() == QEvent.Type.PaletteChange and hasattr(self, "roles_legend"):
            self.apply_theme()
        super().changeEvent(event)

    def update_selection(self, selection: Selection, changed: frozenset) -> None:
        """Redraw markers for a new selection; the base class outlines linked grids."""
        for heatmap in self._head_maps:
            row = None if selection.layer is None else self.row_of_layer(heatmap, selection.layer)
            has_head = row is not None and selection.head is not None
            heatmap.set_selected((row, selection.head) if has_head else None)
        for heatmap in self._position_maps:
            row = None if selection.layer is None else self.row_of_layer(heatmap, selection.layer)
            has_cell = row is not None and selection.position is not None
            heatmap.set_selected((row, selection.position) if has_cell else None)

    # ------------------------------------------------------ linked grids
    def link_head_map(self, heatmap: Heatmap) -> Heatmap:
        """A layer x head grid: clicks select the head; it shows the selection and known roles."""
        # Rows are layers, or a hybrid's attention layers (set_head_map_layers): clicks name the model layer.
        heatmap.cell_clicked.connect(lambda row, head: self.selection.select_head(self.layer_of_row(heatmap, row), head))
        heatmap.cell_ctrl_clicked.connect(
            lambda row, head: self.selection.toggle_pin(self.layer_of_row(heatmap, row), head))
        heatmap.cell_menu_requested.connect(
            lambda row, head, where: self.head_menu(self.layer_of_row(heatmap, row), head).popup(where))
        heatmap.set_hover_text(lambda layer, head, value: self.describe_head(heatmap, layer, head, value))
        self._head_maps.append(heatmap)
        return heatmap

    def head_menu(self, layer: int, head: int) -> QMenu:
        """The context menu of a head cell: pin/unpin it, ablate the pinned set, path-patch from/into it."""
        menu = QMenu(self)
        name = f"L{layer}H{head}"
        pinned = (layer, head) in self.selection.pinned
        menu.addAction(f"Unpin {name}" if pinned else f"Pin {name}", lambda: self.selection.toggle_pin(layer, head))
        count = len(self.selection.pinned)
        menu.addAction(f"Ablate the pinned heads ({count})" if count else "Ablate (backup preset: strongest DLA head)",
                       lambda: self.run_requested.emit("ablation", {"heads": self.selection.pinned_text()}))
        menu.addAction(f"Path patch from {name}", lambda: self.run_requested.emit(
            "path_patching", {"senders": f"{layer}.{head}", "receiver_head": "", "receivers": ["q", "k", "v", "logits"]}))
        menu.addAction(f"Path patch into {name}", lambda: self.run_requested.emit(
            "path_patching", {"receiver_head": f"{layer}.{head}", "receivers": ["q", "k", "v"]}))
        return menu

    def add_head_maps(self, layout: Any, grids: Any, min_size: int = 180, stretch: int = 0) -> dict[str, Heatmap]:
        """A row of linked layer x head heatmaps, one per ``(name, title)``, then the roles legend, into ``layout``.

        The row reflows into two or more lines when the panel is too narrow for every plot's own
        layout (title, axes, colour bar) side by side, so no plot is cut off mid-axis.
        """
        row = HeadMapRow(stretch)
        heatmaps: dict[str, Heatmap] = {}
        for name, title in grids:
            heatmap = self.link_head_map(Heatmap(title=title, row_title="layer", col_title="head"))
            # Narrow minimum widths: the row decides how many fit a line (HeadMapRow._needed).
            heatmap.setMinimumSize(100, min_size)
            heatmaps[name] = heatmap
            row.add(heatmap)
        self.head_map_row = row
        scroll = HeadMapScroll(row)
        # A little under one plot's minimum: in a laptop's short tab dock (the attention viewer below it
        # needs the height) the plots scroll the last pixels rather than set the whole dock's minimum.
        scroll.setMinimumHeight(max(120, min_size - 20))
        layout.addWidget(scroll, 1)
        layout.addWidget(self.roles_legend)
        return heatmaps

    def set_head_map_layers(self, heatmap: Heatmap, layers: Sequence[int] | None) -> None:
        """The model layer of each row of a linked head grid: a hybrid's attention layers only
        (clicks, the selection outline, hover text and role markers follow them); None: row = layer."""
        if layers is None:
            self._head_map_layers.pop(heatmap, None)
        else:
            self._head_map_layers[heatmap] = [int(layer) for layer in layers]

    def layer_of_row(self, heatmap: Heatmap, row: int) -> int:
        """The model layer shown in ``row`` of a linked head grid."""
        layers = self._head_map_layers.get(heatmap)
        return layers[row] if layers is not None and 0 <= row < len(layers) else row

    def row_of_layer(self, heatmap: Heatmap, layer: int) -> int | None:
        """The row of a linked head grid that shows model layer ``layer`` (None: a hybrid layer without heads)."""
        layers = self._head_map_layers.get(heatmap)
        if layers is None:
            return layer
        return layers.index(layer) if layer in layers else None

    def describe_head(self, heatmap: Heatmap, layer: int, head: int, value: float) -> str:
        """Hover text of a head cell (``layer`` is the grid's row): L9H9, its value, and its known role if any."""
        layer = self.layer_of_row(heatmap, layer)
        text = f"L{layer}H{head}: {heatmap.format_value(value)}"
        if self.head_roles is not None:
            role = self.head_roles.by_head().get((layer, head))
            if role is not None:
                text += f" — {role.role}"
        return text

    def link_position_map(self, heatmap: Heatmap) -> Heatmap:
        """A layer x position grid: clicks select (layer, position)."""
        heatmap.cell_clicked.connect(lambda layer, position: self.selection.select_cell(layer, position))
        self._position_maps.append(heatmap)
        return heatmap

    def set_head_roles(self, roles: HeadRoles | None) -> None:
        """Use these roles for the overlay instead of the roles file of the results' model."""
        self._roles_from_results = False
        self.head_roles = roles
        self._update_roles_overlay()

    def _find_roles(self, results: ResultsView) -> HeadRoles | None:
        name, path = results.model_name_and_path()
        try:
            return _roles_of(name, path)
        except IOIError as error:
            # A broken roles file only loses the overlay; the results still show.
            self.roles_checkbox.setToolTip(f"{error.message} {error.hint}")
            return None

    def _on_roles_toggled(self, _checked: bool) -> None:
        self._update_roles_overlay()

    def _update_roles_overlay(self) -> None:
        self.roles_checkbox.setEnabled(self.head_roles is not None and bool(self.head_roles.roles))
        show = self.head_roles is not None and self.roles_checkbox.isChecked()
        shown_roles: dict[str, str] = {}
        # Roles mean something only on layer x head grids: every other grid of the panel has none.
        for heatmap in self.findChildren(Heatmap):
            if heatmap not in self._head_maps:
                heatmap.set_markers({})
        for heatmap in self._head_maps:
            if not show:
                heatmap.set_markers({})
                continue
            n_layers, n_heads = heatmap.values().shape
            layers = self._head_map_layers.get(heatmap)
            roles = self.head_roles.within(max(layers) + 1 if layers else n_layers, n_heads)
            cells = {(self.row_of_layer(heatmap, r.layer), r.head): r.role for r in roles.by_head().values()
                     if self.row_of_layer(heatmap, r.layer) is not None}
            heatmap.set_markers(cells, roles.legend, show_legend=self.INLINE_ROLE_LEGEND)
            shown_roles.update({name: roles.legend.get(name, "") for name in cells.values()})
        self.roles_legend.setText("" if self.INLINE_ROLE_LEGEND else self._legend_html(shown_roles))
        self.roles_legend.setToolTip("\n".join(f"{name}: {text}" for name, text in shown_roles.items() if text))

    def _legend_html(self, shown_roles: Mapping[str, str]) -> str:
        """The roles legend as coloured symbols matching the heatmap markers."""
        legend = self.head_roles.legend if self.head_roles is not None else {}
        parts = []
        for name, (symbol, color) in marker_styles(shown_roles, legend).items():
            glyph = _GLYPHS.get(symbol, "●")
            parts.append(f'<span style="color:{color.name()}; font-size:large">{glyph}</span>&nbsp;{escape(name)}')
        return " &nbsp; ".join(parts)

    def _on_selection_changed(self, selection: Selection, changed: frozenset) -> None:
        if not self._alive():
            return
        if self._drawing_deferred():
            # Shown when the panel is: a click redraws only the panels on screen.
            self._selection_pending = self._selection_pending | changed
            return
        self._apply_pending_clear()  # a run started a moment ago: its views empty before they follow
        self.update_selection(selection, changed)
