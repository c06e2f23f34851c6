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

    def clear(self) -> frozenset:
        """Back to prompt 0 with nothing else selected (e.g. a new prompt set)."""
        return self.update(**Selection().as_dict())

    def _notify(self, selection: Selection, changed: frozenset) -> None:
        self._observers.notify(selection, changed)
