"""Event subscriptions: an async iterator per subscriber over node events."""

from __future__ import annotations

import asyncio
from typing import Any

from . import events as ev

__all__ = ["CLOSED", "MAX_SUBSCRIBER_BACKLOG", "EventSubscription"]

#: Queue length per event subscriber; a subscriber that falls further behind loses events.
MAX_SUBSCRIBER_BACKLOG = 1024
#: Put in every queue when the node closes: ends the iteration.
CLOSED: Any = object()


class EventSubscription:
    """An async iterator of :class:`~swarmlink.runtime.events.NodeEvent`."""

    def __init__(self, registry: set[asyncio.Queue[ev.NodeEvent]]) -> None:
        self._registry = registry
        self._queue: asyncio.Queue[ev.NodeEvent] = asyncio.Queue(MAX_SUBSCRIBER_BACKLOG)
        registry.add(self._queue)

    def __aiter__(self) -> EventSubscription:
        return self

    async def __anext__(self) -> ev.NodeEvent:
        event = await self._queue.get()
        if event is CLOSED:
            self.close()
            raise StopAsyncIteration
        return event

    def close(self) -> None:
        self._registry.discard(self._queue)
