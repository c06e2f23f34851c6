"""Observers and a typed event hub, without Qt (glue's hub idea).

Views subscribe to the event types they show; the state objects (the
workbench, the selection) publish typed events; nothing calls "update
everything". Bound methods are held weakly, so a deleted view stops receiving
events without unsubscribing; plain functions and lambdas are held strongly.
One failing observer does not stop the others: the first error is re-raised
once everyone has been told.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Optional


class Observers:
    """A list of callbacks called in subscription order."""

    def __init__(self) -> None:
        self._refs: list[Callable[[], Optional[Callable]]] = []

    def add(self, callback: Callable) -> Callable[[], None]:
        """Subscribe ``callback``; returns a function that unsubscribes it."""
        if hasattr(callback, "__self__") and hasattr(callback, "__func__"):
            ref: Callable[[], Optional[Callable]] = weakref.WeakMethod(callback)
        else:
            ref = lambda callback=callback: callback  # noqa: E731 - a strong "reference"
        self._refs.append(ref)
        return lambda: self.remove(callback)

    def remove(self, callback: Callable) -> None:
        self._refs = [ref for ref in self._refs if ref() not in (None, callback)]

    def notify(self, *args: Any) -> None:
        first_error: BaseException | None = None
        for ref in list(self._refs):
            callback = ref()
            if callback is None:
                continue
            try:
                callback(*args)
            except Exception as exc:  # noqa: BLE001 - re-raised below
                if first_error is None:
                    first_error = exc
        self._refs = [ref for ref in self._refs if ref() is not None]
        if first_error is not None:
            raise first_error


class EventHub:
    """Typed messages: ``subscribe(ResultAdded, view.on_result)``; ``publish(ResultAdded(...))``.

    A subscriber to a base class also hears its subclasses.
    """

    def __init__(self) -> None:
        self._by_type: dict[type, Observers] = {}

    def subscribe(self, event_type: type, callback: Callable[[Any], None]) -> Callable[[], None]:
        return self._by_type.setdefault(event_type, Observers()).add(callback)

    def publish(self, event: Any) -> None:
        first_error: BaseException | None = None
        for event_type, observers in list(self._by_type.items()):
            if isinstance(event, event_type):
                try:
                    observers.notify(event)
                except Exception as exc:  # noqa: BLE001 - re-raised below
                    if first_error is None:
                        first_error = exc
        if first_error is not None:
            raise first_error
