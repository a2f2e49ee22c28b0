"""Relays: serve circuits (``up --relay``), hold reservations, dial through a relay.

The relayed connection is an ordinary swarmlink session: the two ends run the same TLS
1.3 handshake and identity check as on a direct connection, over a byte pipe that the
relay builds from one stream on each side. The relay sees only TLS records. At each
end, TLS runs straight over the stream (:mod:`._streamtransport`), and the session code
is exactly the one direct connections use.

Protocol ``/swarmlink/relay/1`` (records, then raw bytes):

.. code-block:: text

    holder → relay   {"t": "reserve"}                 → {"ok": true, "expires": unix s}
    source → relay   {"t": "connect", "to": agent}    → {"ok": true} then raw bytes
    relay  → holder  {"t": "incoming", "from": agent} → {"ok": true} then raw bytes
    any refusal      {"ok": false, "code": int, "error": text}

:class:`~swarmlink.nat.RelayCore` makes every decision; this module moves bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..dht._records import AgentRecord
from ..errors import (
    ErrorCode,
    NetworkError,
    ProtocolViolation,
    RemoteError,
    StateError,
    SwarmlinkError,
)
from ..identity import validate_agent_id
from ..nat import RelayCore, RelayRefused
from ._connection import PeerConnection
from ._stream import Stream
from ._streamtransport import StreamTransport, start_tls

if TYPE_CHECKING:
    from .node import Node

__all__ = ["MAX_RELAY_RECORD", "RELAY_CHUNK", "RELAY_PROTOCOL", "RelayService"]

log = logging.getLogger("swarmlink.relay")

#: Stream protocol of relay requests and circuits.
RELAY_PROTOCOL = "/swarmlink/relay/1"
#: Largest relay control record (bytes; untrusted input).
MAX_RELAY_RECORD = 512
#: Bytes moved per read when piping.
RELAY_CHUNK = 256 * 1024
#: Seconds to wait for the relay (or the reserved node) to answer a request.
RELAY_TIMEOUT = 10.0
#: Seconds direct addresses get alone before a relay listed in the record is tried in
#: parallel (the first session wins; hole punching upgrades a relayed one).
DIRECT_HEAD_START = 0.25


def _refusal(exc: RemoteError) -> dict[str, Any]:
    return {"ok": False, "code": int(exc.code), "error": exc.reason[:200]}


def _check_reply(reply: object, what: str) -> dict[str, Any]:
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise ProtocolViolation(f"bad relay reply to {what}", ErrorCode.MALFORMED)
    if not reply["ok"]:
        code = reply.get("code")
        try:
            err = ErrorCode(code) if isinstance(code, int) else ErrorCode.REFUSED
        except ValueError:
            err = ErrorCode.PROTOCOL_ERROR
        raise RelayRefused(f"relay refused {what}: {str(reply.get('error', ''))[:200]}", err)
    return reply


async def _pipe_streams(a: Stream, b: Stream, account: Any, pace: Any = None) -> None:
    """Copy bytes both ways until both sides end; ``account(n) -> bool`` may stop it,
    ``pace(n) -> seconds`` slows it down (bandwidth limit)."""

    async def one_way(src: Stream, dst: Stream) -> None:
        while True:
            data = await src.read(RELAY_CHUNK)
            if not data:
                dst.write_eof()
                return
            if not account(len(data)):
                raise RelayRefused("circuit byte limit reached", ErrorCode.RATE_LIMITED)
            delay = pace(len(data)) if pace is not None else 0.0
            if delay > 0:
                await asyncio.sleep(delay)  # pacing to the bandwidth limit
            dst.write(data)
            await dst.drain()

    try:
        await asyncio.gather(one_way(a, b), one_way(b, a))
    except RemoteError as exc:
        a.reset(exc.code, exc.reason[:200])
        b.reset(exc.code, exc.reason[:200])


class RelayService:
    def __init__(self, node: Node) -> None:
        self.node = node
        cfg = node.config
        self.core: RelayCore | None = RelayCore(cfg.relay_limits) if cfg.relay else None
        #: Relays we hold a reservation on: agent ID -> expiry.
        self.reservations: dict[str, float] = {}
        self._lost: dict[str, asyncio.Event] = {}  # configured relays -> "session lost"

    def start(self) -> None:
        self.node.set_handler(RELAY_PROTOCOL, self.serve)

    def connection_closed(self, agent_id: str) -> None:
        """The last session with ``agent_id`` ended: a reservation it held on us goes;
        one we held on it is gone too, and is made again at once."""
        if self.core is not None:
            self.core.release(agent_id)
        if self.reservations.pop(agent_id, None) is not None:
            lost = self._lost.get(agent_id)
            if lost is not None:
                lost.set()

    # ---- serving ----------------------------------------------------------------------

    async def serve(self, stream: Stream) -> None:
        request = await stream.read_record(max_size=MAX_RELAY_RECORD)
        if not isinstance(request, dict) or not isinstance(request.get("t"), str):
            raise ProtocolViolation("a relay request is {t: ...}", ErrorCode.MALFORMED)
        kind = request["t"]
        try:
            if kind == "incoming":
                await self._incoming(stream, request)
                return
            if self.core is None:
                raise RelayRefused(
                    f"agent {self.node.agent_id[:12]} is not a relay", ErrorCode.REFUSED
                )
            if kind == "reserve":
                reservation = self.core.reserve(stream.peer, time.time())
                stream.write_record({"ok": True, "expires": int(reservation.expires)})
                await stream.close()
            elif kind == "connect":
                await self._relay(stream, request)
            else:
                raise ProtocolViolation(f"unknown relay request {kind[:32]!r}", ErrorCode.MALFORMED)
        except RelayRefused as exc:
            stream.write_record(_refusal(exc))
            await stream.close()

    async def _relay(self, stream: Stream, request: dict[str, Any]) -> None:
        assert self.core is not None
        target = request.get("to")
        if not isinstance(target, str):
            raise ProtocolViolation("connect needs {to: agent}", ErrorCode.MALFORMED)
        try:
            target = validate_agent_id(target)
        except SwarmlinkError:
            raise RelayRefused("connect: not an agent ID", ErrorCode.MALFORMED) from None
        circuit = self.core.connect(stream.peer, target, time.time())
        try:
            conn = self.node.connected(target)
            if conn is None:
                self.core.release(target)
                raise RelayRefused(f"agent {target[:12]} is not connected", ErrorCode.REFUSED)
            out = conn.open_stream(RELAY_PROTOCOL)
            out.write_record({"t": "incoming", "from": stream.peer})
            try:
                async with asyncio.timeout(RELAY_TIMEOUT):
                    _check_reply(await out.read_record(max_size=MAX_RELAY_RECORD), "incoming")
            except (RemoteError, TimeoutError) as exc:
                out.reset(ErrorCode.CANCEL)
                raise RelayRefused(f"agent {target[:12]} did not accept: {exc}") from None
            stream.write_record({"ok": True})
            log.info("relaying", extra={"from": stream.peer, "to": target})
            core = self.core
            await _pipe_streams(
                stream,
                out,
                lambda n: core.carried(circuit.circuit_id, n),
                lambda n: core.pace(circuit.circuit_id, n, time.monotonic()),
            )
        finally:
            self.core.close(circuit.circuit_id)

    async def _incoming(self, stream: Stream, request: dict[str, Any]) -> None:
        source = request.get("from")
        if stream.peer not in self.reservations:
            raise RelayRefused("we hold no reservation on you", ErrorCode.REFUSED)
        if not isinstance(source, str):
            raise ProtocolViolation("incoming needs {from: agent}", ErrorCode.MALFORMED)
        source = validate_agent_id(source)
        stream.write_record({"ok": True})
        # The source dials us through the stream: we are the TLS server, as on a listener.
        conn = self.node._new_connection(outbound=False, via=stream.peer)
        await self._secure(stream, conn, server_side=True)

    # ---- client side ----------------------------------------------------------------

    def start_reservations(self) -> None:
        """Reserve on the configured relays (and renew before expiry), in the background."""
        for text in self.node.config.relays:
            self.node.spawn(self._keep_reservation(text), name="relay:reserve")

    async def _keep_reservation(self, text: str) -> None:
        from ._dhtsvc import parse_bootstrap

        relay, address = parse_bootstrap(text)
        lost = self._lost.setdefault(relay, asyncio.Event())
        backoff = 1.0
        while True:
            lost.clear()
            try:
                await self.node.connection(relay, hints=[address])
                expires = await self.reserve(relay)
                self.node.dht.schedule_publish()  # our record lists the relay now
                delay, backoff = max(30.0, (expires - time.time()) / 2), 1.0
            except SwarmlinkError as exc:
                log.warning("relay reservation failed", extra={"relay": text, "error": str(exc)})
                delay = backoff = min(backoff * 2, 60.0)
            # Renew at half-life, or at once (after the backoff) if the session drops.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await lost.wait()
                    await asyncio.sleep(backoff)

    def advertised(self) -> tuple[str, ...]:
        """``RELAY@HOST:PORT`` for each relay holding a reservation for us."""
        out = []
        for relay in self.reservations:
            addresses = self.node._known_addresses(relay)
            if addresses:
                out.append(f"{relay}@{addresses[0]}")
        return tuple(out)

    async def reach(
        self,
        record: AgentRecord,
        attempt: Callable[[Sequence[str]], Awaitable[PeerConnection | None]],
        errors: list[str],
    ) -> PeerConnection | None:
        """Reach ``record``'s agent: a session the lookup opened, else its direct
        addresses (briefly, when it lists relays), else its relays. If all fail, a
        thorough lookup may find a newer record (replicas can lag behind)."""
        conn = self.node.connected(record.agent_id)
        if conn is not None:
            return conn
        for pass_ in range(2):
            if record.relays:
                conn = await self._race(record, attempt, errors)
            else:
                conn = await attempt(record.addresses)
            if conn is not None or pass_:
                return conn
            try:
                newer = await self.node.dht.resolve(record.agent_id, fresh=True, thorough=True)
            except SwarmlinkError:
                return None
            if newer.sequence <= record.sequence:
                return None
            record = newer
        return None

    async def _race(
        self,
        record: AgentRecord,
        attempt: Callable[[Sequence[str]], Awaitable[PeerConnection | None]],
        errors: list[str],
    ) -> PeerConnection | None:
        """Direct addresses first; after :data:`DIRECT_HEAD_START` (or a quick failure)
        the relays too, in parallel; the first session wins, the other try is dropped."""
        tasks: list[asyncio.Future[PeerConnection | None]] = [
            asyncio.ensure_future(attempt(record.addresses))
        ]
        try:
            await asyncio.wait(tasks, timeout=DIRECT_HEAD_START)
            if tasks[0].done() and tasks[0].result() is not None:
                return tasks[0].result()
            tasks.append(asyncio.ensure_future(self.via_record(record, errors)))
            pending = {t for t in tasks if not t.done()}
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.result() is not None:
                        return task.result()
            return None
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def via_record(self, record: Any, errors: list[str]) -> PeerConnection | None:
        """Reach ``record``'s agent through one of the relays it lists."""
        from ._dhtsvc import parse_bootstrap

        for text in record.relays:
            try:
                relay, address = parse_bootstrap(text)
                await self.node.connection(relay, hints=[address], resolve=False)
                return await self.dial_via(relay, record.agent_id)
            except (SwarmlinkError, OSError, TimeoutError) as exc:
                errors.append(f"via relay {text[:24]}…: {exc}")
        return None

    async def reserve(self, relay: str) -> float:
        """Reserve a slot on ``relay`` (a session to it must be possible); its expiry."""
        conn = await self.node.connection(relay)
        stream = conn.open_stream(RELAY_PROTOCOL)
        stream.write_record({"t": "reserve"})
        async with asyncio.timeout(RELAY_TIMEOUT):
            reply = _check_reply(await stream.read_record(max_size=MAX_RELAY_RECORD), "reserve")
        expires = reply.get("expires")
        if isinstance(expires, bool) or not isinstance(expires, int):
            raise ProtocolViolation("reserve reply without expiry", ErrorCode.MALFORMED)
        self.reservations[conn.agent_id] = float(expires)
        self.node.punch.warm()  # we are behind a NAT: punches will come
        log.info("relay reservation", extra={"relay": conn.agent_id, "expires": expires})
        return float(expires)

    async def dial_via(self, relay: str, target: str) -> PeerConnection:
        """A session with ``target`` through ``relay`` (end-to-end TLS, verified)."""
        if self.node._closing:
            raise StateError("node is shutting down")
        conn = await self.node.connection(relay, resolve=False)
        stream = conn.open_stream(RELAY_PROTOCOL)
        stream.write_record({"t": "connect", "to": target})
        try:
            async with asyncio.timeout(RELAY_TIMEOUT):
                _check_reply(await stream.read_record(max_size=MAX_RELAY_RECORD), "connect")
        except TimeoutError:
            stream.reset(ErrorCode.CANCEL)
            raise NetworkError(f"relay {relay[:12]} did not answer") from None
        peer = self.node._new_connection(outbound=True, expected=target, via=relay)
        await self._secure(stream, peer, server_side=False)
        async with asyncio.timeout(self.node.config.connect_timeout):
            return await asyncio.shield(peer.ready)

    async def _secure(self, stream: Stream, conn: PeerConnection, *, server_side: bool) -> None:
        """End-to-end TLS straight over the relay stream (see :mod:`._streamtransport`)."""
        node = self.node
        transport = StreamTransport(stream)
        try:
            tls = await start_tls(
                transport,
                conn,
                node._server_ctx if server_side else node._client_ctx,
                server_side=server_side,
                server_hostname=None if server_side else "swarmlink",
                handshake_timeout=node.config.connect_timeout,
            )
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            transport.abort()
            raise NetworkError(f"relayed TLS handshake failed: {exc}") from None
        conn.connection_made(tls)
