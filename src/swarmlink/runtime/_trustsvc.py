"""Trust glue: turns TrustBook events into node events, pushes queued trust messages to
peers the moment they are connected, and serves the trust protocol."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ErrorCode, RemoteError, SwarmlinkError
from ..trust import TRUST_PROTOCOL
from ..trust import events as trust_events
from . import events as ev
from ._stream import Stream

if TYPE_CHECKING:
    from .node import Node

__all__ = ["TrustService"]

log = logging.getLogger("swarmlink.trust")

#: Seconds to wait for the peer to acknowledge a trust message.
TRUST_REPLY_TIMEOUT = 30.0
#: Trust messages one peer may send us per minute (any agent may open the trust protocol,
#: and each accepted message costs a database write); more are refused RATE_LIMITED.
MAX_TRUST_MESSAGES_PER_MINUTE = 30
#: Refusals worth retrying on the next delivery (clock skew, our rate limit).
_RETRYABLE = frozenset({int(ErrorCode.STALE), int(ErrorCode.RATE_LIMITED)})


class TrustService:
    """The node's side of the trust protocol (the TrustBook core decides; this moves bytes)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._budget: dict[str, tuple[float, float]] = {}  # peer -> (tokens, last refill)

    def _allow(self, peer: str, now: float) -> bool:
        """Token bucket: MAX_TRUST_MESSAGES_PER_MINUTE per peer, bursts up to that many."""
        rate = MAX_TRUST_MESSAGES_PER_MINUTE / 60.0
        tokens, last = self._budget.get(peer, (float(MAX_TRUST_MESSAGES_PER_MINUTE), now))
        tokens = min(float(MAX_TRUST_MESSAGES_PER_MINUTE), tokens + (now - last) * rate)
        if len(self._budget) > 4096:  # forget idle peers (their buckets are full anyway)
            self._budget.clear()
        if tokens < 1.0:
            self._budget[peer] = (tokens, now)
            return False
        self._budget[peer] = (tokens - 1.0, now)
        return True

    def publish_events(self, events: Sequence[object]) -> None:
        for event in events:
            if isinstance(event, trust_events.TrustRequested):
                self.node.publish(ev.TrustRequested(agent_id=event.agent_id, reason=event.reason))
            elif isinstance(event, trust_events.TrustEstablished):
                self.node.publish(ev.TrustEstablished(agent_id=event.agent_id))
                self.node.gossip.peer_trusted(event.agent_id)
                self.node.spawn(
                    self.node._deliver_messages(event.agent_id), name="deliver-messages"
                )
            elif isinstance(event, trust_events.TrustRejected):
                self.node.publish(ev.TrustRejected(agent_id=event.agent_id, reason=event.reason))
            elif isinstance(event, trust_events.TrustRevoked):
                self.cut_streams(event.agent_id)
                self.node.gossip.peer_untrusted(event.agent_id)
                self.node.publish(ev.TrustRevoked(agent_id=event.agent_id, by_peer=event.by_peer))

    def cut_streams(self, peer: str) -> None:
        """Revocation takes effect at once: reset every non-trust stream with ``peer``."""
        conn = self.node.connected(peer)
        if conn is None:
            return
        for stream in list(conn.streams.values()):
            if stream.protocol != TRUST_PROTOCOL:
                stream.reset(ErrorCode.REVOKED, "trust revoked")

    async def command(self, peer: str, events: Sequence[object]) -> str:
        self.publish_events(events)
        delivered = await self.deliver(peer, dial=True)
        if self.node.trust.is_trusted(peer):
            return "trusted"
        return "sent" if delivered else "queued"

    async def deliver(self, peer: str, *, dial: bool = False) -> bool:
        """Push the queued trust messages for ``peer`` now; True if all were delivered."""
        async with self.node._lock("trust", peer):
            conn = self.node.connected(peer)
            if conn is None:
                if not dial:
                    return False
                try:
                    conn = await self.node.connection(peer)
                except SwarmlinkError as exc:
                    log.info("trust message queued", extra={"peer": peer, "why": str(exc)})
                    return False
            items = self.node.trust.outgoing(peer, time.time(), lambda: os.urandom(16))
            if not items:
                return True
            stream = conn.open_stream(TRUST_PROTOCOL)
            try:
                for _, envelope in items:
                    stream.write_record(envelope)
                stream.write_eof()
                for outbox_id, _ in items:
                    reply = await asyncio.wait_for(stream.read_record(), TRUST_REPLY_TIMEOUT)
                    if isinstance(reply, dict) and reply.get("ok") is True:
                        self.node.trust.mark_delivered(outbox_id)
                        continue
                    code = reply.get("code") if isinstance(reply, dict) else None
                    log.warning(
                        "peer refused trust message", extra={"peer": peer, "reply": repr(reply)}
                    )
                    if code not in _RETRYABLE:
                        # A permanent refusal: retrying the same message cannot help.
                        self.node.trust.mark_delivered(outbox_id)
            except (RemoteError, TimeoutError) as exc:
                log.info("trust delivery interrupted", extra={"peer": peer, "error": str(exc)})
                stream.reset()
                return False
            return True

    async def serve(self, stream: Stream) -> None:
        """Handler for TRUST_PROTOCOL: the one protocol untrusted peers may open."""
        peer = stream.peer
        while not await stream.at_end():
            envelope = await stream.read_record()
            if not isinstance(envelope, bytes):
                reply: dict[str, Any] = {
                    "ok": False,
                    "code": int(ErrorCode.MALFORMED),
                    "error": "a trust record must be a signed envelope (bytes)",
                }
            elif not self._allow(peer, time.monotonic()):
                reply = {
                    "ok": False,
                    "code": int(ErrorCode.RATE_LIMITED),
                    "error": f"more than {MAX_TRUST_MESSAGES_PER_MINUTE} trust messages a minute",
                }
            else:
                try:
                    events = self.node.trust.receive(peer, envelope, time.time())
                except RemoteError as exc:
                    log.warning("rejected trust message", extra={"peer": peer, "error": str(exc)})
                    reply = {"ok": False, "code": int(exc.code), "error": exc.reason}
                else:
                    reply = {"ok": True}
                    self.publish_events(events)
            stream.write_record(reply)
            await stream.drain()
        stream.write_eof()
        self.node.spawn(self.deliver(peer), name="deliver-trust")
