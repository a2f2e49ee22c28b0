"""The SDK's gossip calls: members, publish/subscribe, topic policies, replicated state."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from ..runtime.events import StateChanged
from ..runtime.model import GossipMessage

__all__ = ["GossipCalls", "RemoteState"]


class _Transport(Protocol):
    async def _call(
        self, method: str, path: str, body: Any = None, *, unbounded: bool = False
    ) -> Any: ...

    def _feed(
        self, method: str, path: str, body: Any = None, *, line_timeout: float | None
    ) -> AsyncIterator[dict[str, Any]]: ...

    def events(self) -> AsyncIterator[Any]: ...


def _name(value: str) -> str:
    return quote(value, safe="")


class GossipCalls:
    """Mixed into :class:`~swarmlink.client.Client`."""

    async def members(self: _Transport) -> list[dict[str, Any]]:
        """Every member the node knows: agent_id, state (alive/suspect/dead/left),
        incarnation, region, age in seconds, local."""
        value = await self._call("GET", "/v1/members")
        return list(value["members"])

    async def gossip_info(self: _Transport) -> dict[str, Any]:
        value = await self._call("GET", "/v1/members")
        return dict(value["gossip"])

    async def publish(self: _Transport, topic: str, data: str | bytes) -> dict[str, Any]:
        """Sign and publish ``data`` on ``topic``: ``{"id", "topic", "size", "peers"}``."""
        body: dict[str, Any] = {"topic": topic}
        if isinstance(data, str):
            body["text"] = data
        else:
            body["data_b64"] = base64.b64encode(data).decode("ascii")
        return dict(await self._call("POST", "/v1/publish", body))

    async def subscribe(self: _Transport, topic: str) -> AsyncIterator[GossipMessage]:
        """Messages on ``topic`` as they arrive, until the caller stops iterating."""
        path = f"/v1/subscribe?{urlencode({'topic': topic})}"
        async for value in self._feed("GET", path, line_timeout=None):
            yield GossipMessage.from_json(value)

    async def set_topic_policy(
        self: _Transport, topic: str, policy: str | list[str]
    ) -> dict[str, Any]:
        """Who may publish on ``topic``: "trusted" (default), "any" or agent IDs."""
        body = {"topic": topic, "policy": policy}
        return dict(await self._call("POST", "/v1/topics/policy", body))

    async def topic_policies(self: _Transport) -> list[dict[str, Any]]:
        return list((await self._call("GET", "/v1/topics/policy"))["policies"])

    async def states(self: _Transport) -> list[str]:
        return list((await self._call("GET", "/v1/state"))["states"])

    def state(self: Any, name: str) -> RemoteState:
        """The replicated state ``name`` on the daemon's node."""
        return RemoteState(self, name)


class RemoteState:
    """A replicated state through the daemon (see ``runtime.SharedState``)."""

    def __init__(self, client: Any, name: str) -> None:
        self._client = client
        self.name = name
        self._path = f"/v1/state/{_name(name)}"

    async def to_dict(self) -> dict[str, Any]:
        value = await self._client._call("GET", self._path)
        return dict(value["values"])

    async def get(self, key: str, default: Any = None) -> Any:
        value = await self._client._call("GET", f"{self._path}?{urlencode({'key': key})}")
        result = value["value"]
        return default if result is None else result

    async def _op(self, op: str, key: str, value: Any = None) -> Any:
        body: dict[str, Any] = {"op": op, "key": key}
        if op != "delete":
            body["value"] = value
        return (await self._client._call("POST", self._path, body))["value"]

    async def set(self, key: str, value: Any) -> None:
        await self._op("set", key, value)

    async def delete(self, key: str) -> None:
        await self._op("delete", key)

    async def add(self, key: str, element: Any) -> None:
        await self._op("add", key, element)

    async def remove(self, key: str, element: Any) -> None:
        await self._op("remove", key, element)

    async def increment(self, key: str, amount: int = 1) -> int:
        return int(await self._op("increment", key, amount))

    async def changes(self) -> AsyncIterator[StateChanged]:
        """Changes to this state (local and replicated) as they happen."""
        async for event in self._client.events():
            if isinstance(event, StateChanged) and event.name == self.name:
                yield event
