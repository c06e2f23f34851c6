"""The one selection every view shares: prompt, layer, head, query position, key position.

Linked views (glue's "hub" idea): a panel never calls another panel. When the
user clicks a head cell, the panel sets ``layer`` and ``head`` here; every
subscribed view hears about it and redraws its own marker. The model is plain
Python (no Qt, no torch) so the CLI and tests can use it; Qt panels subscribe
to it directly (:class:`~ioi_desktop.core.events.Observers`).

Rules:
- ``None`` means "nothing selected" for that field; ``prompt`` always has a value.
- Several fields can change in one ``update(...)``; observers are called once,
  with the set of field names that actually changed.
- Setting a value equal to the current one notifies nobody (so views that
  echo a selection back cannot loop).
- Observers that are bound methods are held weakly: a deleted panel does not
  keep receiving callbacks and does not need to unsubscribe.

Besides the one selected head there is a *pinned* head set (Ctrl/Cmd-click in
any head heatmap), the set the ablation what-if and path patching act on, and
the positions it is ablated at (``pinned_positions``: ``"all"``, ``"end"`` or
a named role such as ``"S2"``). A change of either notifies observers with
``changed == {"pinned"}`` or ``{"pinned_positions"}``; sessions save them as
``selection["pinned"] = [[layer, head], ...]`` and ``selection["pinned_positions"]``.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, fields, replace
from typing import Callable, Optional

from ioi_desktop.core.events import Observers

FIELDS = ("prompt", "layer", "head", "position", "key_pos")

Observer = Callable[["Selection", frozenset], None]


@dataclass(frozen=True)
class Selection:
    """A snapshot of what is selected; ``position`` is the query position."""

    prompt: int = 0
    layer: Optional[int] = None
    head: Optional[int] = None
    position: Optional[int] = None
    key_pos: Optional[int] = None

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _checked(name: str, value) -> Optional[int]:
    if value is None and name != "prompt":
        return None
    # bool is an int subclass; a True "head" is always a bug in the caller.
    # operator.index accepts numpy integers, which click handlers often pass.
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"selection {name} must be an integer or None, got {value!r}")
    value = operator.index(value)
    if value < 0:
        raise ValueError(f"selection {name} must be >= 0, got {value}")
    return value


class SelectionModel:
    """Holds the current :class:`Selection` and notifies observers of changes."""

    def __init__(self, initial: Selection | None = None) -> None:
        self._current = initial or Selection()
        self._observers = Observers()
        self._pinned: tuple[tuple[int, int], ...] = ()
        self._pinned_positions = "end"

    @property
    def current(self) -> Selection:
        return self._current

    @property
    def prompt(self) -> int:
        return self._current.prompt

    @property
    def layer(self) -> Optional[int]:
        return self._current.layer

    @property
    def head(self) -> Optional[int]:
        return self._current.head

    @property
    def position(self) -> Optional[int]:
        return self._current.position

    @property
    def key_pos(self) -> Optional[int]:
        return self._current.key_pos

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """Call ``observer(selection, changed_field_names)`` after every change.

        Returns a function that unsubscribes. Bound methods are referenced
        weakly, plain functions and lambdas strongly.
        """
        return self._observers.add(observer)

    def unsubscribe(self, observer: Observer) -> None:
        self._observers.remove(observer)

    def update(self, **changes) -> frozenset:
        """Set several fields at once; returns the names that changed."""
        unknown = set(changes) - set(FIELDS)
        if unknown:
            raise TypeError(f"unknown selection field(s): {', '.join(sorted(unknown))}")
        checked = {name: _checked(name, value) for name, value in changes.items()}
        changed = frozenset(name for name, value in checked.items() if getattr(self._current, name) != value)
        if not changed:
            return changed
        self._current = replace(self._current, **{name: checked[name] for name in changed})
        self._notify(self._current, changed)
        return changed

    def select_prompt(self, prompt: int) -> frozenset:
        return self.update(prompt=prompt)

    def select_head(self, layer: int, head: int) -> frozenset:
        return self.update(layer=layer, head=head)

    def select_cell(self, layer: int, position: int) -> frozenset:
        """A (layer, position) cell: selects both, keeping the head."""
        return self.update(layer=layer, position=position)

    def select_query(self, position: Optional[int], key_pos: Optional[int] = None) -> frozenset:
        """A query position (and optionally a key position) of the attention pattern."""
        return self.update(position=position, key_pos=key_pos)

    # --- the pinned head set

    @property
    def pinned(self) -> tuple[tuple[int, int], ...]:
        """The pinned heads as (layer, head), in the order they were pinned."""
        return self._pinned

    def pinned_text(self) -> str:
        """``"9.9,9.6"``: the pinned set as the ablation and path-patching options write heads."""
        return ",".join(f"{layer}.{head}" for layer, head in self._pinned)

    def set_pinned(self, heads) -> frozenset:
        """Replace the pinned set (repeats dropped); notifies with ``{"pinned"}`` if it changed."""
        checked: list[tuple[int, int]] = []
        for layer, head in heads:
            pair = (_checked("layer", layer), _checked("head", head))
            if pair not in checked:
                checked.append(pair)
        if tuple(checked) == self._pinned:
            return frozenset()
        self._pinned = tuple(checked)
        changed = frozenset({"pinned"})
        self._notify(self._current, changed)
        return changed

    def toggle_pin(self, layer: int, head: int) -> frozenset:
        """Pin the head, or unpin it if it is pinned (Ctrl/Cmd-click)."""
        pair = (_checked("layer", layer), _checked("head", head))
        if pair in self._pinned:
            return self.set_pinned([p for p in self._pinned if p != pair])
        return self.set_pinned([*self._pinned, pair])

    def clear_pinned(self) -> frozenset:
        return self.set_pinned([])

    @property
    def pinned_positions(self) -> str:
        """Where the pinned heads are ablated: "all", "end" or a named role (IO, S1, S2, ...)."""
        return self._pinned_positions

    def set_pinned_positions(self, positions: str) -> frozenset:
        """Set where the pinned heads are ablated; notifies with ``{"pinned_positions"}`` if it changed."""
        if not isinstance(positions, str) or not positions.strip():
            raise ValueError(f"pinned positions must be 'all', 'end' or a role name, not {positions!r}")
        positions = positions.strip()
        if positions == self._pinned_positions:
            return frozenset()
        self._pinned_positions = positions
        changed = frozenset({"pinned_positions"})
        self._notify(self._current, changed)
        return changed

    def clear(self) -> frozenset:
        """Back to prompt 0 with nothing else selected (e.g. a new prompt set)."""
        return self.update(**Selection().as_dict())

    def _notify(self, selection: Selection, changed: frozenset) -> None:
        self._observers.notify(selection, changed)
