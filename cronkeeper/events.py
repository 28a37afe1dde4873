"""Typed in-process events: the spine that SSE, the dashboard (over the socket) and tests share.

Publishing never blocks the scheduler: each subscriber has a bounded queue, and a subscriber
that falls that far behind is dropped (its stream ends; the SSE client reconnects and
re-reads state) rather than making the daemon's memory grow.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

SUBSCRIBER_QUEUE = 10_000


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = ""
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunQueued(Event):
    kind: ClassVar[str] = "run.queued"


@dataclass(frozen=True)
class RunStarted(Event):
    kind: ClassVar[str] = "run.started"


@dataclass(frozen=True)
class RunFinished(Event):
    kind: ClassVar[str] = "run.finished"


@dataclass(frozen=True)
class TaskUpdated(Event):
    kind: ClassVar[str] = "task.updated"


@dataclass(frozen=True)
class ConfigReloaded(Event):
    kind: ClassVar[str] = "config.reloaded"


_CLOSED = object()


class Subscription:
    """An async iterator over events published after it was created."""

    def __init__(self, bus: EventBus, maxsize: int) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        self.dropped = False

    def _offer(self, event: Event) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            # Too far behind: end this stream instead of buffering without bound.
            self.dropped = True
            self._bus._subscribers.discard(self)
            self._queue.get_nowait()
            self._queue.put_nowait(_CLOSED)

    def close(self) -> None:
        self._bus._subscribers.discard(self)
        try:
            self._queue.put_nowait(_CLOSED)
        except asyncio.QueueFull:
            self.dropped = True

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        item = await self._queue.get()
        if item is _CLOSED:
            raise StopAsyncIteration
        assert isinstance(item, Event)
        return item

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()
        self._listeners: list[Callable[[Event], None]] = []

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """Call ``listener`` synchronously on every event (for cheap in-process bookkeeping)."""
        self._listeners.append(listener)

    def subscribe(self, maxsize: int = SUBSCRIBER_QUEUE) -> Subscription:
        sub = Subscription(self, maxsize)
        self._subscribers.add(sub)
        return sub

    def publish(self, event: Event) -> None:
        for listener in self._listeners:
            listener(event)
        for sub in list(self._subscribers):
            sub._offer(event)

    def close(self) -> None:
        for sub in list(self._subscribers):
            sub.close()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
