"""Client: attach to a running daemon (``swarmlink up``) over its control socket."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import h11

from ..errors import InvalidArgument, NetworkError, NodeNotRunning, SwarmlinkError
from ..runtime.config import resolve_home
from ..runtime.events import NodeEvent, event_from_json
from ..runtime.model import (
    BenchResult,
    Exposure,
    FileReceipt,
    Forward,
    InboxMessage,
    JsonModel,
    NodeStatus,
    PeerInfo,
    PendingTrust,
    PingResult,
    SendReceipt,
    TrustedPeer,
)
from ._gossip import GossipCalls
from ._http import (
    Exchange,
    bad_response,
    error_from_json,
    open_control_connection,
    read_raw_line,
)
from ._stream import ClientStream

__all__ = ["SOCKET_NAME", "Client", "ClientHandler"]

log = logging.getLogger("swarmlink.client")

#: File name of the control socket inside the node home.
SOCKET_NAME = "control.sock"

#: A coroutine serving one incoming stream (see :meth:`Client.handle`).
ClientHandler = Callable[[ClientStream], Awaitable[None]]

_M = TypeVar("_M", bound=JsonModel)


def _model(cls: type[_M], value: Any) -> _M:
    if not isinstance(value, dict):
        raise bad_response(f"expected a {cls.__name__} object, got {str(value)[:100]}")
    try:
        return cls.from_json(value)
    except TypeError as exc:
        raise bad_response(f"bad {cls.__name__}: {exc}") from None


def _models(cls: type[_M], value: Any, key: str) -> list[_M]:
    items = value.get(key) if isinstance(value, dict) else None
    if not isinstance(items, list):
        raise bad_response(f"expected {{{key!r}: [...]}}")
    return [_model(cls, item) for item in items]


def _field(value: Any, key: str) -> Any:
    if not isinstance(value, dict) or key not in value:
        raise bad_response(f"expected an object with {key!r}")
    return value[key]


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_response(f"expected an object, got {str(value)[:100]}")
    return value


def _objects(value: Any, key: str) -> list[dict[str, Any]]:
    items = _field(value, key)
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise bad_response(f"expected {{{key!r}: [objects]}}")
    return items


def _segment(value: str) -> str:
    """``value`` as one path segment (percent-encoded; capability tags may hold ``/``)."""
    if not isinstance(value, str):
        raise InvalidArgument(f"expected a string, not {value!r}")
    return quote(value, safe="")


def _local_file(path: str | os.PathLike[str]) -> str:
    """The absolute path of an existing regular file (the daemon has another cwd)."""
    local = Path(path).expanduser()
    if not local.is_file():
        what = "is not a regular file" if local.exists() else "does not exist"
        raise InvalidArgument(f"cannot send {str(path)!r}: it {what}")
    return str(local.resolve())


def _int_arg(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{name} must be an integer, not {value!r}")
    return value


class Client(GossipCalls):
    """Talks to the daemon of one node home through ``<home>/control.sock``.

    Every call opens its own connection (HTTP/1.1 over the Unix socket), so a client
    is cheap, holds nothing open between calls and may be shared by tasks::

        async with Client("~/.swarmlink") as client:
            print((await client.status()).agent_id)

    ``timeout`` bounds connecting, sending a request and receiving its answer's head,
    and each whole request-response call (``bench`` excepted: it runs as long as the
    transfer takes, under the node's own timeouts). Feeds are bounded per line
    (``ping``: ``timeout + interval``) or not at all (``send_file``, ``events``), and
    streams not at all. No daemon → :class:`NodeNotRunning`;
    errors the daemon reports are re-raised as the same :mod:`swarmlink.errors` class.
    """

    def __init__(
        self, home: str | os.PathLike[str] | None = None, *, timeout: float = 30.0
    ) -> None:
        self.home: Path = resolve_home(home)
        self.socket_path: Path = self.home / SOCKET_NAME
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"<Client home={str(self.home)!r}>"

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Nothing to release (no connection outlives a call); for symmetry with Node."""

    # ---- plumbing -----------------------------------------------------------------------

    def _timed_out(self, method: str, path: str, timeout: float | None) -> NetworkError:
        return NetworkError(
            f"no answer from the swarmlink daemon in {self.home} within {timeout:g}s "
            f"({method} {path})"
        )

    async def _open(self) -> Exchange:
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await open_control_connection(self.socket_path, self.home)
        except TimeoutError:
            raise self._timed_out("connect", str(self.socket_path), self.timeout) from None
        return Exchange(reader, writer, self.home)

    async def _call(
        self, method: str, path: str, body: Any = None, *, unbounded: bool = False
    ) -> Any:
        """One request → its JSON result (errors re-raised); ``unbounded``: no time limit."""
        timeout = None if unbounded else self.timeout
        exchange = await self._open()
        try:
            async with asyncio.timeout(timeout):
                await exchange.send(method, path, body)
                head = await exchange.head()
                if head.status_code >= 300:
                    await exchange.raise_error(head.status_code)
                if not isinstance(head, h11.Response):
                    raise bad_response(f"unexpected {head.status_code} response")
                return await exchange.json_body()
        except TimeoutError:
            raise self._timed_out(method, path, timeout) from None
        finally:
            exchange.close()

    async def _feed(
        self, method: str, path: str, body: Any = None, *, line_timeout: float | None
    ) -> AsyncIterator[dict[str, Any]]:
        """An NDJSON response, one dict per line; ``{"event": "error"}`` lines raise."""
        exchange = await self._open()
        try:
            try:
                async with asyncio.timeout(self.timeout):
                    await exchange.send(method, path, body)
                    head = await exchange.head()
            except TimeoutError:
                raise self._timed_out(method, path, self.timeout) from None
            if head.status_code >= 300:
                await exchange.raise_error(head.status_code)
            lines = exchange.lines()
            try:
                while True:
                    try:
                        if line_timeout is None:  # a feed that may be quiet for ever
                            value = await anext(lines)
                        else:
                            async with asyncio.timeout(line_timeout):
                                value = await anext(lines)
                    except StopAsyncIteration:
                        return
                    except TimeoutError:
                        raise self._timed_out(method, path, line_timeout) from None
                    if not isinstance(value, dict):
                        raise bad_response(f"expected a JSON object per line, got {value!r}")
                    if value.get("event") == "error":
                        raise error_from_json(value.get("error"))
                    yield value
            finally:
                await lines.aclose()
        finally:
            exchange.close()

    async def _upgrade(self, path: str, body: Any) -> tuple[Exchange, bytes]:
        """Send an Upgrade request; on ``101`` the connection carries raw bytes."""
        exchange = await self._open()
        try:
            try:
                async with asyncio.timeout(self.timeout):
                    await exchange.send("POST", path, body, upgrade=True)
                    head = await exchange.head()
            except TimeoutError:
                raise self._timed_out("POST", path, self.timeout) from None
            if head.status_code == 101:
                return exchange, exchange.trailing_data()
            if head.status_code >= 300:
                await exchange.raise_error(head.status_code)
            raise bad_response(f"expected 101 Switching Protocols, got {head.status_code}")
        except BaseException:
            exchange.close()
            raise

    # ---- node ---------------------------------------------------------------------------

    async def status(self) -> NodeStatus:
        return _model(NodeStatus, await self._call("GET", "/v1/status"))

    async def identity(self) -> dict[str, Any]:
        value = await self._call("GET", "/v1/id")
        if not isinstance(value, dict):
            raise bad_response("expected an object")
        return value

    async def peers(self) -> list[PeerInfo]:
        return _models(PeerInfo, await self._call("GET", "/v1/peers"), "peers")

    async def connect(self, target: str) -> PeerInfo:
        """Dial ``AGENT@HOST:PORT`` (the agent ID is verified against the peer's key)."""
        return _model(PeerInfo, await self._call("POST", "/v1/connect", {"target": target}))

    async def services(self, agent_id: str) -> list[dict[str, Any]]:
        """What ``agent_id`` exposes to us: ``[{"port", "name"}]`` (it must trust us)."""
        reply = await self._call("GET", f"/v1/services/{agent_id}")
        return list(reply["services"])

    async def start_socks5(self, listen: str) -> str:
        """Serve a SOCKS5 proxy into the overlay on ``listen`` (HOST:PORT, port 0 picks
        one) in the daemon, until it stops; the bound address."""
        return str((await self._call("POST", "/v1/proxies", {"socks5": listen}))["socks5"])

    async def proxies(self) -> list[str]:
        """The daemon's SOCKS5 proxy addresses."""
        return [str(a) for a in (await self._call("GET", "/v1/proxies"))["socks5"]]

    async def disconnect(self, agent_id: str) -> int:
        """Close every session with ``agent_id``; how many there were."""
        reply = await self._call("POST", "/v1/disconnect", {"agent_id": agent_id})
        return int(reply["sessions"])

    async def ping(
        self, agent_id: str, count: int = 1, interval: float = 1.0
    ) -> AsyncIterator[dict[str, Any]]:
        """Yields ``{"event": "reply", "seq", "rtt_ms"}`` per ping (``rtt_ms`` None when
        lost), then ``{"event": "result", "result": {...PingResult}}``."""
        body = {"agent_id": agent_id, "count": count, "interval": interval}
        line_timeout = self.timeout + max(0.0, float(interval))
        async for value in self._feed("POST", "/v1/ping", body, line_timeout=line_timeout):
            yield value

    async def ping_result(self, agent_id: str, count: int = 1, interval: float = 1.0) -> PingResult:
        """Ping and return only the summary."""
        result: Any = None
        async for value in self.ping(agent_id, count, interval):
            if value.get("event") == "result":
                result = value.get("result")
        if result is None:
            raise bad_response("the ping feed ended without a result")
        return _model(PingResult, result)

    async def send_message(self, agent_id: str, text: str) -> SendReceipt:
        body = {"agent_id": agent_id, "text": text}
        return _model(SendReceipt, await self._call("POST", "/v1/messages", body))

    async def inbox(
        self, sender: str | None = None, after: int = 0, limit: int = 100
    ) -> list[InboxMessage]:
        query: dict[str, Any] = {
            "after": _int_arg("after", after),
            "limit": _int_arg("limit", limit),
        }
        if sender:
            query["sender"] = sender
        value = await self._call("GET", f"/v1/inbox?{urlencode(query)}")
        return _models(InboxMessage, value, "messages")

    async def send_file(
        self, agent_id: str, path: str | os.PathLike[str]
    ) -> AsyncIterator[dict[str, Any]]:
        """Yields ``{"event": "progress", "sent", "total"}`` dicts, then
        ``{"event": "result", "result": {...FileReceipt}}``."""
        body = {"agent_id": agent_id, "path": _local_file(path)}
        async for value in self._feed("POST", "/v1/files", body, line_timeout=None):
            if value.get("event") == "result":
                _model(FileReceipt, value.get("result"))  # validate
            yield value

    async def files(self) -> list[dict[str, Any]]:
        """Files received from peers (``id, sender, name, path, size, sha256, received_at``)."""
        value = _field(await self._call("GET", "/v1/files"), "files")
        if not isinstance(value, list):
            raise bad_response("expected a list of files")
        return value

    # ---- tunnels, bench ---------------------------------------------------------------------

    async def expose(
        self, port: int, name: str | None = None, allow: Sequence[str] = ()
    ) -> Exposure:
        body = {"port": port, "name": name, "allow": list(allow)}
        return _model(Exposure, await self._call("POST", "/v1/exposures", body))

    async def unexpose(self, port: int) -> None:
        await self._call("DELETE", f"/v1/exposures/{_int_arg('port', port)}")

    async def exposures(self) -> list[Exposure]:
        return _models(Exposure, await self._call("GET", "/v1/exposures"), "exposures")

    async def forward(
        self, local_port: int, agent_id: str, remote: int | str, bind_host: str = "127.0.0.1"
    ) -> Forward:
        """Tunnel ``bind_host:local_port`` to ``agent_id``'s service exposed at port (int)
        or under the name (str) ``remote``."""
        body: dict[str, Any] = {"local_port": local_port, "agent_id": agent_id}
        body["remote_name" if isinstance(remote, str) else "remote_port"] = remote
        body["bind_host"] = bind_host
        return _model(Forward, await self._call("POST", "/v1/forwards", body))

    async def unforward(self, forward_id: int) -> None:
        await self._call("DELETE", f"/v1/forwards/{_int_arg('forward_id', forward_id)}")

    async def forwards(self) -> list[Forward]:
        return _models(Forward, await self._call("GET", "/v1/forwards"), "forwards")

    async def bench(self, agent_id: str, size: int = 64 * 1024 * 1024) -> BenchResult:
        """Throughput and latency to a trusted peer (no client-side timeout)."""
        body = {"agent_id": agent_id, "bytes": size}
        return _model(BenchResult, await self._call("POST", "/v1/bench", body, unbounded=True))

    # ---- trust ------------------------------------------------------------------------------

    async def _trust(self, verb: str, body: dict[str, Any]) -> str:
        state = _field(await self._call("POST", f"/v1/trust/{verb}", body), "state")
        if not isinstance(state, str):
            raise bad_response("trust state is not a string")
        return state

    async def trust_request(self, agent_id: str, reason: str = "") -> str:
        return await self._trust("request", {"agent_id": agent_id, "reason": reason})

    async def trust_approve(self, agent_id: str) -> str:
        return await self._trust("approve", {"agent_id": agent_id})

    async def trust_reject(self, agent_id: str) -> str:
        return await self._trust("reject", {"agent_id": agent_id})

    async def trust_revoke(self, agent_id: str) -> str:
        return await self._trust("revoke", {"agent_id": agent_id})

    async def trust_pending(self) -> list[PendingTrust]:
        return _models(PendingTrust, await self._call("GET", "/v1/trust/pending"), "pending")

    async def trust_list(self) -> list[TrustedPeer]:
        return _models(TrustedPeer, await self._call("GET", "/v1/trust/list"), "trusted")

    # ---- DHT: agent records and capabilities -------------------------------------------------

    async def lookup(self, agent_id: str) -> dict[str, Any]:
        """The verified DHT record of ``agent_id`` (a fresh lookup): ``agent_id``,
        ``addresses``, ``relays``, ``versions``, ``capabilities`` (``tag``, ``name``,
        ``description``, ``protocol``), ``sequence``, ``issued``, ``expires``,
        ``key_serial``, ``key_expires``. :class:`NotFound` if the network has none."""
        return _object(await self._call("GET", f"/v1/lookup/{_segment(agent_id)}"))

    async def find(self, capability: str) -> list[dict[str, Any]]:
        """Verified records (as :meth:`lookup` returns them) of the agents that advertise
        the capability tag ``capability``; empty if none does."""
        query = urlencode({"capability": capability})
        return _objects(await self._call("GET", f"/v1/find?{query}"), "agents")

    async def capabilities(self) -> list[dict[str, Any]]:
        """The capabilities this agent advertises (``tag``, ``name``, ``description``,
        ``protocol``)."""
        return _objects(await self._call("GET", "/v1/capabilities"), "capabilities")

    async def add_capability(
        self, tag: str, *, name: str = "", description: str = "", protocol: str = ""
    ) -> dict[str, Any]:
        """Advertise a capability in this agent's DHT record (replaces one with the same
        tag); the node republishes its record in the background."""
        body = {"tag": tag, "name": name, "description": description, "protocol": protocol}
        return _object(await self._call("POST", "/v1/capabilities", body))

    async def remove_capability(self, tag: str) -> None:
        """Stop advertising ``tag`` (:class:`NotFound` if it is not advertised)."""
        await self._call("DELETE", f"/v1/capabilities/{_segment(tag)}")

    async def dht_info(self) -> dict[str, Any]:
        """The DHT's state: ``contacts``, ``records``, ``provider_records``, ``joined``,
        ``bootstrap``, ``published_at``, ``advertised``, ``last_error``."""
        return _object(await self._call("GET", "/v1/dht"))

    # ---- keys, lifecycle, events -------------------------------------------------------------

    async def rotate_key(self) -> dict[str, Any]:
        value = await self._call("POST", "/v1/key/rotate", {})
        if not isinstance(value, dict):
            raise bad_response("expected an object")
        return value

    async def shutdown(self) -> None:
        """Ask the daemon to stop (it answers first, then closes the node)."""
        await self._call("POST", "/v1/shutdown", {})

    async def events(self) -> AsyncIterator[NodeEvent]:
        """Node events as they happen (unknown, newer event types are skipped)."""
        async for value in self._feed("GET", "/v1/events", line_timeout=None):
            try:
                event = event_from_json(value)
            except TypeError:
                log.debug("skipping a malformed event: %s", json.dumps(value)[:200])
                continue
            if event is not None:
                yield event

    # ---- streams ---------------------------------------------------------------------------

    async def open_stream(self, agent_id: str, protocol: str) -> ClientStream:
        """Open a stream to a peer through the daemon (use ``async with`` to release it)."""
        exchange, initial = await self._upgrade(
            "/v1/streams", {"agent_id": agent_id, "protocol": protocol}
        )
        return ClientStream(
            exchange.reader, exchange.writer, initial, peer=agent_id, protocol=protocol
        )

    async def handle(
        self, protocol: str, handler: ClientHandler, *, ready: asyncio.Event | None = None
    ) -> None:
        """Serve streams that peers open with ``protocol`` until cancelled.

        Each incoming stream runs ``handler(stream)`` in its own task; when it returns,
        the stream is closed gracefully (an exception resets it). ``ready`` is set once
        the daemon has registered the handler. Raises :class:`NodeNotRunning` if the
        daemon stops.
        """
        exchange, initial = await self._upgrade("/v1/handlers", {"protocol": protocol})
        if ready is not None:
            ready.set()
        tasks: set[asyncio.Task[None]] = set()
        buffer = bytearray(initial)
        try:
            while True:
                line = await read_raw_line(exchange.reader, buffer)
                if line is None:
                    raise NodeNotRunning(
                        f"the swarmlink daemon in {self.home} ended the handler registration "
                        f"for {protocol!r} (is it stopping?)"
                    )
                try:
                    announcement = json.loads(line)
                except ValueError:
                    raise bad_response(f"bad handler line {line[:200]!r}") from None
                if not isinstance(announcement, dict) or announcement.get("event") != "incoming":
                    continue
                task = asyncio.create_task(self._serve_incoming(announcement, handler))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            exchange.close()
            for task in list(tasks):
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    async def attach(self, token: str, *, peer: str = "", protocol: str = "") -> ClientStream:
        """Take over an incoming stream announced on a handler registration."""
        exchange, initial = await self._upgrade("/v1/streams/attach", {"stream": token})
        return ClientStream(exchange.reader, exchange.writer, initial, peer=peer, protocol=protocol)

    async def _serve_incoming(self, announcement: dict[str, Any], handler: ClientHandler) -> None:
        token = str(announcement.get("stream", ""))
        peer = str(announcement.get("agent_id", ""))
        protocol = str(announcement.get("protocol", ""))
        try:
            stream = await self.attach(token, peer=peer, protocol=protocol)
        except SwarmlinkError as exc:
            log.warning("could not attach an incoming stream", extra={"error": str(exc)})
            return
        try:
            await handler(stream)
        except asyncio.CancelledError:
            stream.reset()
            raise
        except Exception:
            log.exception("stream handler failed", extra={"protocol": protocol, "peer": peer})
            stream.reset()
        else:
            await stream.aclose()
