"""In-process handles on the gossip layer: a topic subscription (an async iterator of
messages) and a replicated state (``node.state("name")``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import events as ev
from .model import GossipMessage

if TYPE_CHECKING:
    from ._gossipsvc import GossipService

__all__ = ["SharedState", "StateWatch", "TopicSubscription"]

_END = object()


class TopicSubscription:
    """Messages on one topic, as an async iterator, until :meth:`close`.

    A subscriber that falls behind by more than its backlog loses the oldest messages
    (counted in :attr:`dropped`); the node never blocks on a slow reader.
    """

    def __init__(
        self, topic: str, backlog: int, on_close: Callable[[TopicSubscription], None]
    ) -> None:
        self.topic = topic
        self.dropped = 0
        self._backlog = backlog
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._on_close = on_close
        self._closed = False

    def put(self, message: GossipMessage) -> None:
        if self._closed:
            return
        if self._queue.qsize() >= self._backlog:
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(message)

    def end(self) -> None:
        """The node is closing: the iterator stops after what is queued."""
        if not self._closed:
            self._closed = True
            self._queue.put_nowait(_END)

    def close(self) -> None:
        """Stop receiving (unsubscribes from the topic when this was the last reader)."""
        if not self._closed:
            self._closed = True
            self._queue.put_nowait(_END)
        self._on_close(self)

    def __aiter__(self) -> TopicSubscription:
        return self

    async def __anext__(self) -> GossipMessage:
        item = await self._queue.get()
        if item is _END:
            self.close()
            raise StopAsyncIteration
        assert isinstance(item, GossipMessage)
        return item

    async def get(self, timeout: float | None = None) -> GossipMessage:
        """The next message (TimeoutError after ``timeout`` seconds)."""
        return await asyncio.wait_for(self.__anext__(), timeout)


class StateWatch:
    """Changes to one replicated state, as an async iterator, until :meth:`close`."""

    def __init__(self, owner: SharedState) -> None:
        self._owner = owner
        self._queue: asyncio.Queue[ev.StateChanged | None] = asyncio.Queue()

    def put(self, change: ev.StateChanged | None) -> None:
        self._queue.put_nowait(change)

    def close(self) -> None:
        self._owner._watches.discard(self)
        self._queue.put_nowait(None)

    def __aiter__(self) -> StateWatch:
        return self

    async def __anext__(self) -> ev.StateChanged:
        change = await self._queue.get()
        if change is None:
            raise StopAsyncIteration
        return change


class SharedState:
    """A replicated state: a map whose keys hold last-writer-wins values, add-wins sets or
    counters, kept in sync with every replica of ``name`` by gossip.

    Writes apply locally at once and spread as signed deltas; replicas that missed some
    catch up by periodic anti-entropy. Only agents allowed by the policy of the topic
    ``$state/NAME`` (default: trusted agents) can change it.
    """

    def __init__(self, service: GossipService, name: str) -> None:
        self._svc = service
        self.name = name
        self._watches: set[StateWatch] = set()

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` (a set is a sorted list, a counter an int)."""
        value = self._svc.state_get(self.name, key)
        return default if value is None else value

    def to_dict(self) -> dict[str, Any]:
        """Every key with its value."""
        result = self._svc.state_get(self.name)
        assert isinstance(result, dict)
        return result

    def set(self, key: str, value: Any) -> None:
        """Set ``key`` to ``value`` (last writer wins)."""
        self._svc.state_op(self.name, "set", key, value)

    def delete(self, key: str) -> None:
        self._svc.state_op(self.name, "delete", key)

    def add(self, key: str, element: Any) -> None:
        """Add ``element`` to the set at ``key`` (a concurrent add beats a remove)."""
        self._svc.state_op(self.name, "add", key, element)

    def remove(self, key: str, element: Any) -> None:
        self._svc.state_op(self.name, "remove", key, element)

    def increment(self, key: str, amount: int = 1) -> None:
        """Add ``amount`` (may be negative) to the counter at ``key``."""
        self._svc.state_op(self.name, "increment", key, amount)

    def changes(self) -> StateWatch:
        """An async iterator of :class:`~swarmlink.runtime.events.StateChanged`."""
        watch = StateWatch(self)
        self._watches.add(watch)
        return watch

    def notify(self, change: Any) -> None:
        event = ev.StateChanged(
            name=change.name,
            key=change.key,
            value=change.value,
            deleted=change.deleted,
            origin=change.origin,
        )
        for watch in list(self._watches):
            watch.put(event)
