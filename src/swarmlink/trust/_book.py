"""TrustBook: the trust state machine (sans-I/O: ``now`` and nonces are passed in).

State lives in the node database (tables ``trust``, ``trust_requests``,
``trust_outbox``, ``seen_nonces``); every command commits before it returns, so an
acknowledged decision survives ``kill -9``. Messages to peers are queued as *intents* in
``trust_outbox`` and sealed at delivery time (fresh timestamp and nonce), so a message
delivered hours later is never stale.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ErrorCode, InvalidArgument, NotFound, ProtocolViolation, VerificationFailed
from ..identity import IdentityKey, validate_agent_id
from ..runtime.model import PendingTrust, TrustedPeer
from ..storage import Database
from ._messages import (
    MAX_CLOCK_SKEW,
    MAX_REASON_LENGTH,
    TrustKind,
    TrustMessage,
    open_envelope,
    seal,
)
from .events import TrustEstablished, TrustEvent, TrustRejected, TrustRequested, TrustRevoked

__all__ = ["TrustBook"]


class TrustBook:
    """Who we trust, who asked, and what we still owe each peer."""

    def __init__(
        self, identity: IdentityKey, db: Database, *, max_skew: float = MAX_CLOCK_SKEW
    ) -> None:
        self.identity = identity
        self.db = db
        self.max_skew = max_skew
        self._trusted: set[str] = {r[0] for r in db.query("SELECT agent_id FROM trust")}
        self._last_prune = 0.0

    # ---- queries ----------------------------------------------------------------------

    def is_trusted(self, agent_id: str) -> bool:
        return agent_id in self._trusted

    def trusted(self) -> list[TrustedPeer]:
        return [
            TrustedPeer(agent_id=r[0], since=r[1])
            for r in self.db.query("SELECT agent_id, since FROM trust ORDER BY since")
        ]

    def pending(self) -> list[PendingTrust]:
        return [
            PendingTrust(agent_id=r[0], direction=r[1], reason=r[2], created=r[3])
            for r in self.db.query(
                "SELECT agent_id, direction, reason, created FROM trust_requests ORDER BY created"
            )
        ]

    def _pending(self, peer: str, direction: str) -> bool:
        return (
            self.db.query_one(
                "SELECT 1 FROM trust_requests WHERE agent_id = ? AND direction = ?",
                (peer, direction),
            )
            is not None
        )

    # ---- state changes (call inside a transaction) ------------------------------------

    def _queue(self, peer: str, kind: TrustKind, reason: str, now: float) -> None:
        if kind == TrustKind.REVOKE:
            # A revocation supersedes anything still queued for that peer.
            self.db.execute("DELETE FROM trust_outbox WHERE agent_id = ?", (peer,))
        else:
            self.db.execute(
                "DELETE FROM trust_outbox WHERE agent_id = ? AND kind = ?", (peer, str(kind))
            )
        self.db.execute(
            "INSERT INTO trust_outbox (agent_id, kind, reason, created) VALUES (?, ?, ?, ?)",
            (peer, str(kind), reason, now),
        )

    def _set_trusted(self, peer: str, now: float, reason: str) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO trust (agent_id, since, reason) VALUES (?, ?, ?)",
            (peer, now, reason),
        )
        self.db.execute("DELETE FROM trust_requests WHERE agent_id = ?", (peer,))
        self._trusted.add(peer)

    def _drop_trust(self, peer: str) -> None:
        self.db.execute("DELETE FROM trust WHERE agent_id = ?", (peer,))
        self.db.execute("DELETE FROM trust_requests WHERE agent_id = ?", (peer,))
        self._trusted.discard(peer)

    def _check_peer(self, peer: str) -> str:
        peer = validate_agent_id(peer)
        if peer == self.identity.agent_id:
            raise InvalidArgument("an agent cannot trust itself")
        return peer

    # ---- commands -----------------------------------------------------------------------

    def request(self, peer: str, reason: str, now: float) -> list[TrustEvent]:
        """Ask ``peer`` for trust (a crossed request approves at once)."""
        peer = self._check_peer(peer)
        if len(reason) > MAX_REASON_LENGTH:
            raise InvalidArgument(f"reason is longer than {MAX_REASON_LENGTH} characters")
        if self.is_trusted(peer):
            return []
        with self.db.transaction():
            if self._pending(peer, "in"):
                self._set_trusted(peer, now, reason)
                self._queue(peer, TrustKind.APPROVE, "", now)
                return [TrustEstablished(peer)]
            self.db.execute(
                "INSERT OR REPLACE INTO trust_requests (agent_id, direction, reason, created, "
                "nonce) VALUES (?, 'out', ?, ?, ?)",
                (peer, reason, now, b""),
            )
            self._queue(peer, TrustKind.REQUEST, reason, now)
        return []

    def approve(self, peer: str, now: float) -> list[TrustEvent]:
        peer = self._check_peer(peer)
        row = self.db.query_one(
            "SELECT reason FROM trust_requests WHERE agent_id = ? AND direction = 'in'", (peer,)
        )
        if row is None:
            raise NotFound(f"no pending trust request from {peer}")
        with self.db.transaction():
            self._set_trusted(peer, now, str(row[0]))
            self._queue(peer, TrustKind.APPROVE, "", now)
        return [TrustEstablished(peer)]

    def reject(self, peer: str, now: float, reason: str = "") -> list[TrustEvent]:
        peer = self._check_peer(peer)
        if not self._pending(peer, "in"):
            raise NotFound(f"no pending trust request from {peer}")
        with self.db.transaction():
            self.db.execute(
                "DELETE FROM trust_requests WHERE agent_id = ? AND direction = 'in'", (peer,)
            )
            self._queue(peer, TrustKind.REJECT, reason[:MAX_REASON_LENGTH], now)
        return []

    def revoke(self, peer: str, now: float) -> list[TrustEvent]:
        peer = self._check_peer(peer)
        if not self.is_trusted(peer):
            raise NotFound(f"{peer} is not trusted")
        with self.db.transaction():
            self._drop_trust(peer)
            self._queue(peer, TrustKind.REVOKE, "", now)
        return [TrustRevoked(peer, by_peer=False)]

    # ---- delivery -------------------------------------------------------------------------

    def outgoing(
        self, peer: str, now: float, nonce_source: Callable[[], bytes]
    ) -> list[tuple[int, bytes]]:
        """Queued messages for ``peer``, in order, each freshly sealed."""
        out = []
        for row in self.db.query(
            "SELECT id, kind, reason FROM trust_outbox WHERE agent_id = ? ORDER BY id", (peer,)
        ):
            msg = TrustMessage(
                kind=TrustKind(row[1]),
                sender=self.identity.agent_id,
                recipient=peer,
                reason=str(row[2]),
                timestamp_ms=int(now * 1000),
                nonce=nonce_source(),
            )
            out.append((int(row[0]), seal(self.identity, msg)))
        return out

    def mark_delivered(self, outbox_id: int) -> None:
        self.db.execute("DELETE FROM trust_outbox WHERE id = ?", (outbox_id,))

    def has_outgoing(self, peer: str) -> bool:
        return (
            self.db.query_one("SELECT 1 FROM trust_outbox WHERE agent_id = ?", (peer,)) is not None
        )

    # ---- receiving ----------------------------------------------------------------------

    def receive(self, peer: str, envelope: bytes, now: float) -> list[TrustEvent]:
        """Apply a message that arrived over the session authenticated as ``peer``."""
        msg = open_envelope(envelope)
        if msg.sender != peer:
            raise VerificationFailed(
                f"trust message signed by {msg.sender} arrived over a session with {peer}",
                ErrorCode.AGENT_MISMATCH,
            )
        if msg.recipient != self.identity.agent_id:
            raise ProtocolViolation(
                f"trust message is addressed to {msg.recipient}, not to us", ErrorCode.MALFORMED
            )
        skew = abs(now * 1000 - msg.timestamp_ms) / 1000
        if skew > self.max_skew:
            raise ProtocolViolation(
                f"stale trust message: its timestamp is {skew:.0f}s from our clock "
                f"(limit {self.max_skew:.0f}s); check the clocks",
                ErrorCode.STALE,
            )
        self._prune(now)
        with self.db.transaction():
            if self.db.query_one("SELECT 1 FROM seen_nonces WHERE nonce = ?", (msg.nonce,)):
                raise ProtocolViolation(
                    f"replayed trust message (nonce {msg.nonce.hex()} already seen)",
                    ErrorCode.REPLAY,
                )
            self.db.execute(
                "INSERT INTO seen_nonces (nonce, agent_id, expires) VALUES (?, ?, ?)",
                (msg.nonce, peer, now + 2 * self.max_skew),
            )
            return self._apply(peer, msg, now)

    def _apply(self, peer: str, msg: TrustMessage, now: float) -> list[TrustEvent]:
        if msg.kind == TrustKind.REQUEST:
            if self.is_trusted(peer):
                self._queue(peer, TrustKind.APPROVE, "", now)  # the peer lost its state
                return []
            if self._pending(peer, "out"):
                self._set_trusted(peer, now, msg.reason)
                self._queue(peer, TrustKind.APPROVE, "", now)
                return [TrustEstablished(peer)]
            self.db.execute(
                "INSERT OR REPLACE INTO trust_requests (agent_id, direction, reason, created, "
                "nonce) VALUES (?, 'in', ?, ?, ?)",
                (peer, msg.reason, now, msg.nonce),
            )
            return [TrustRequested(peer, msg.reason)]
        if msg.kind == TrustKind.APPROVE:
            if self._pending(peer, "out"):
                self._set_trusted(peer, now, "")
                return [TrustEstablished(peer)]
            return []
        if msg.kind == TrustKind.REJECT:
            if self._pending(peer, "out"):
                self.db.execute(
                    "DELETE FROM trust_requests WHERE agent_id = ? AND direction = 'out'", (peer,)
                )
                self.db.execute(
                    "DELETE FROM trust_outbox WHERE agent_id = ? AND kind = 'request'", (peer,)
                )
                return [TrustRejected(peer, msg.reason)]
            return []
        # REVOKE
        was_trusted = self.is_trusted(peer)
        self._drop_trust(peer)
        self.db.execute("DELETE FROM trust_outbox WHERE agent_id = ?", (peer,))
        return [TrustRevoked(peer, by_peer=True)] if was_trusted else []

    def _prune(self, now: float) -> None:
        if now - self._last_prune > 60:
            self._last_prune = now
            self.db.execute("DELETE FROM seen_nonces WHERE expires < ?", (now,))
