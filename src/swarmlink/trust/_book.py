"""TrustBook: the trust state machine over the node database (sans-I/O).

Time (``now``, float Unix seconds) and nonces are passed in; nothing here reads a clock,
draws randomness or touches a socket. State lives in four tables of the node database:

``trust``           agents we trust (and since when);
``trust_requests``  pending requests, ``direction`` ``in`` (they asked us, ``nonce`` is
                    their request's nonce) or ``out`` (we asked them, ``nonce`` is that of
                    the last REQUEST we sealed, empty before the first);
``trust_outbox``    messages we owe a peer, kept as *intents* and sealed at delivery with
                    a fresh timestamp and nonce, so a late delivery is never stale;
``seen_nonces``     nonces of accepted messages, kept ``2 * max_skew`` for replay checks.

Every command commits before it returns (a ``kill -9`` right after loses nothing), and
the in-memory set behind :meth:`TrustBook.is_trusted` is updated only after the commit.

Convergence. Messages to one peer are delivered in order (one stream at a time, each
acknowledged before it is forgotten; a message may arrive twice if its acknowledgement is
lost). Under that assumption trust holds on both sides or on neither once every queued
message has been delivered, whatever the interleaving of the two directions; the tests
check this over every reachable state. The rules that ensure it:

* an APPROVE or REJECT names the request it answers (``ref``); an answer to a request
  other than the last one we sealed is ignored, because the newer one is on its way and
  will be answered in turn (re-asking resets this, so an old answer cannot settle it);
* the outbox keeps at most one REQUEST per peer and drops it once the question is
  settled; a REVOKE supersedes a still-queued APPROVE, which becomes a REJECT of the same
  request (the peer never learned of the approval, so for it the request was refused);
* a REQUEST from a peer we trust is answered with APPROVE again (it lost its state or
  our answer); an APPROVE we cannot place (we neither asked nor trust the peer) is
  answered with REVOKE, so a peer that believes trust holds learns that it does not;
* a REVOKE from a peer we do not trust cancels its pending request but keeps ours.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from sqlite3 import Row

from ..errors import (
    ErrorCode,
    InvalidArgument,
    NotFound,
    ProtocolViolation,
    VerificationFailed,
)
from ..identity import IdentityKey, validate_agent_id
from ..runtime.model import PendingTrust, TrustedPeer
from ..storage import Database
from ._messages import (
    MAX_CLOCK_SKEW,
    MAX_TIMESTAMP_MS,
    NONCE_SIZE,
    TrustKind,
    TrustMessage,
    check_reason,
    open_envelope,
    seal,
)
from .events import TrustEstablished, TrustEvent, TrustRejected, TrustRequested, TrustRevoked

__all__ = ["NONCE_PRUNE_INTERVAL", "TrustBook"]

#: Seconds of (caller-supplied) time between two sweeps of expired replay nonces.
NONCE_PRUNE_INTERVAL = 60.0

#: Extra seconds a nonce is remembered beyond ``2 * max_skew``: by the time it is
#: forgotten, any replay of its message is stale even with rounding.
_NONCE_MARGIN = 1.0
_IN = "in"
_OUT = "out"


def _check_now(now: float) -> float:
    if not isinstance(now, (int, float)) or not math.isfinite(now) or now < 0:
        raise InvalidArgument(f"now must be a finite, non-negative Unix time, not {now!r}")
    if now * 1000 > MAX_TIMESTAMP_MS:
        raise InvalidArgument(f"now {now!r} is too far in the future for a trust timestamp")
    return float(now)


class TrustBook:
    """Who we trust, who asked, and which trust messages we still owe each peer.

    ``identity`` is our identity key (messages are signed with it; trust binds to agent
    IDs, so operational key rotation never affects it). ``max_skew`` is the largest
    distance, in seconds, between a received message's timestamp and ``now``.
    """

    def __init__(
        self, identity: IdentityKey, db: Database, *, max_skew: float = MAX_CLOCK_SKEW
    ) -> None:
        if not math.isfinite(max_skew) or max_skew <= 0:
            raise InvalidArgument(f"max_skew must be a positive number of seconds, not {max_skew}")
        self.identity = identity
        self.db = db
        self.max_skew = float(max_skew)
        self._trusted: set[str] = {str(r[0]) for r in db.query("SELECT agent_id FROM trust")}
        self._next_prune = -math.inf

    @property
    def agent_id(self) -> str:
        """Our own agent ID."""
        return self.identity.agent_id

    # ---- queries --------------------------------------------------------------------------

    def is_trusted(self, agent_id: str) -> bool:
        """Whether we trust ``agent_id`` (an in-memory lookup; safe on every stream open)."""
        return agent_id in self._trusted

    def trusted(self) -> list[TrustedPeer]:
        """Every trusted agent, oldest first."""
        return [
            TrustedPeer(agent_id=str(r["agent_id"]), since=float(r["since"]))
            for r in self.db.query("SELECT agent_id, since FROM trust ORDER BY since, agent_id")
        ]

    def pending(self) -> list[PendingTrust]:
        """Pending requests both ways (``direction`` ``"in"`` or ``"out"``), oldest first."""
        return [
            PendingTrust(
                agent_id=str(r["agent_id"]),
                direction=str(r["direction"]),
                reason=str(r["reason"]),
                created=float(r["created"]),
            )
            for r in self.db.query(
                "SELECT agent_id, direction, reason, created FROM trust_requests "
                "ORDER BY created, agent_id, direction"
            )
        ]

    def has_outgoing(self, peer: str) -> bool:
        """Whether trust messages for ``peer`` are waiting for delivery."""
        row = self.db.query_one("SELECT 1 FROM trust_outbox WHERE agent_id = ? LIMIT 1", (peer,))
        return row is not None

    def outbox_peers(self) -> list[str]:
        """Agents we owe trust messages to (e.g. to dial them after a restart)."""
        return [
            str(r[0])
            for r in self.db.query(
                "SELECT agent_id FROM trust_outbox GROUP BY agent_id ORDER BY MIN(id)"
            )
        ]

    # ---- commands -------------------------------------------------------------------------

    def request(self, peer: str, reason: str, now: float) -> list[TrustEvent]:
        """Ask ``peer`` for trust, giving ``reason``.

        If ``peer`` already asked us, the requests cross: trust holds at once (we answer
        with APPROVE) and :class:`TrustEstablished` is returned. If we already trust
        ``peer`` nothing happens. Repeating a pending request re-sends it (with the new
        reason). Asking ourselves, or a bad reason, raises
        :class:`~swarmlink.errors.InvalidArgument`.
        """
        peer = self._check_peer(peer)
        now = _check_now(now)
        problem = check_reason(reason)
        if problem is not None:
            raise InvalidArgument(problem)
        if self.is_trusted(peer):
            return []
        events: list[TrustEvent] = []
        with self._changing(peer):
            incoming = self._request_row(peer, _IN)
            if incoming is not None:
                self._trust(peer, now, str(incoming["reason"]))
                self._queue(peer, TrustKind.APPROVE, now, ref=bytes(incoming["nonce"]))
                events.append(TrustEstablished(peer))
            else:
                self.db.execute(
                    "INSERT OR REPLACE INTO trust_requests "
                    "(agent_id, direction, reason, created, nonce) VALUES (?, ?, ?, ?, ?)",
                    (peer, _OUT, reason, now, b""),
                )
                self._queue(peer, TrustKind.REQUEST, now, reason=reason)
        return events

    def approve(self, peer: str, now: float) -> list[TrustEvent]:
        """Approve ``peer``'s pending request: we trust it, and tell it so.

        Raises :class:`~swarmlink.errors.NotFound` if ``peer`` has no pending request.
        """
        peer = self._check_peer(peer)
        now = _check_now(now)
        with self._changing(peer):
            incoming = self._request_row(peer, _IN)
            if incoming is None:
                raise NotFound(f"no pending trust request from {peer}")
            self._trust(peer, now, str(incoming["reason"]))
            self._queue(peer, TrustKind.APPROVE, now, ref=bytes(incoming["nonce"]))
        return [TrustEstablished(peer)]

    def reject(self, peer: str, now: float, reason: str = "") -> list[TrustEvent]:
        """Reject ``peer``'s pending request (optionally saying why). Returns no event.

        Raises :class:`~swarmlink.errors.NotFound` if ``peer`` has no pending request.
        """
        peer = self._check_peer(peer)
        now = _check_now(now)
        problem = check_reason(reason)
        if problem is not None:
            raise InvalidArgument(problem)
        with self.db.transaction():
            incoming = self._request_row(peer, _IN)
            if incoming is None:
                raise NotFound(f"no pending trust request from {peer}")
            self._drop_request(peer, _IN)
            self._queue(peer, TrustKind.REJECT, now, reason=reason, ref=bytes(incoming["nonce"]))
        return []

    def revoke(self, peer: str, now: float) -> list[TrustEvent]:
        """Stop trusting ``peer`` and tell it so; returns ``TrustRevoked(by_peer=False)``.

        Raises :class:`~swarmlink.errors.NotFound` if ``peer`` is not trusted.
        """
        peer = self._check_peer(peer)
        now = _check_now(now)
        if not self.is_trusted(peer):
            raise NotFound(f"{peer} is not trusted")
        with self._changing(peer):
            self._untrust(peer)
            self._queue(peer, TrustKind.REVOKE, now)
        return [TrustRevoked(peer, by_peer=False)]

    # ---- delivery -------------------------------------------------------------------------

    def outgoing(
        self, peer: str, now: float, nonce_source: Callable[[], bytes]
    ) -> list[tuple[int, bytes]]:
        """The messages queued for ``peer`` as ``(outbox_id, envelope)``, oldest first.

        Each is sealed now, with timestamp ``now`` and a nonce from ``nonce_source`` (which
        must return :data:`~swarmlink.trust.NONCE_SIZE` fresh random bytes per call). A
        message stays queued until :meth:`mark_delivered`; sealing it again later gives a
        new envelope, never a stale one.
        """
        peer = validate_agent_id(peer)
        now = _check_now(now)
        timestamp_ms = int(now * 1000)
        out: list[tuple[int, bytes]] = []
        with self.db.transaction():
            rows = self.db.query(
                "SELECT id, kind, reason, ref FROM trust_outbox WHERE agent_id = ? ORDER BY id",
                (peer,),
            )
            for row in rows:
                nonce = nonce_source()
                if type(nonce) is not bytes or len(nonce) != NONCE_SIZE:
                    raise InvalidArgument(f"nonce_source must return {NONCE_SIZE} bytes")
                kind = TrustKind(str(row["kind"]))
                ref = row["ref"]
                msg = TrustMessage(
                    kind=kind,
                    sender=self.agent_id,
                    recipient=peer,
                    reason=str(row["reason"]),
                    timestamp_ms=timestamp_ms,
                    nonce=nonce,
                    ref=None if ref is None else bytes(ref),
                )
                out.append((int(row["id"]), seal(self.identity, msg)))
                if kind is TrustKind.REQUEST:
                    # An answer must name this request to count (see REJECT in _apply).
                    self.db.execute(
                        "UPDATE trust_requests SET nonce = ? WHERE agent_id = ? AND direction = ?",
                        (nonce, peer, _OUT),
                    )
        return out

    def mark_delivered(self, outbox_id: int) -> None:
        """The peer acknowledged message ``outbox_id``: forget it (unknown ids are ignored)."""
        self.db.execute("DELETE FROM trust_outbox WHERE id = ?", (int(outbox_id),))

    # ---- receiving ------------------------------------------------------------------------

    def receive(self, peer: str, envelope: bytes, now: float) -> list[TrustEvent]:
        """Check and apply a message that arrived over a session authenticated as ``peer``.

        Raises (leaving the state untouched) :class:`~swarmlink.errors.ProtocolViolation`
        for malformed input (``MALFORMED``), a message for another agent
        (``PROTOCOL_ERROR``), a timestamp more than ``max_skew`` from ``now`` (``STALE``)
        or a nonce seen before (``REPLAY``); :class:`~swarmlink.errors.VerificationFailed`
        for a bad signature (``AUTH_FAILED``) or a sender other than ``peer``
        (``AGENT_MISMATCH``). The nonce is recorded before the message takes effect.
        """
        now = _check_now(now)
        msg = open_envelope(envelope)
        if msg.sender != peer:
            raise VerificationFailed(
                f"trust message signed by {msg.sender} arrived over a session with {peer}",
                ErrorCode.AGENT_MISMATCH,
            )
        if msg.recipient != self.agent_id:
            raise ProtocolViolation(
                f"trust message addressed to {msg.recipient} arrived at {self.agent_id}"
            )
        skew = now - msg.timestamp_ms / 1000
        if abs(skew) > self.max_skew:
            when = "old" if skew > 0 else "in the future"
            raise ProtocolViolation(
                f"stale trust request: its timestamp is {abs(skew):.0f} s {when} (limit "
                f"{self.max_skew:.0f} s); check the clock of {peer} and ours",
                ErrorCode.STALE,
            )
        with self._changing(peer):
            if self.db.query_one("SELECT 1 FROM seen_nonces WHERE nonce = ?", (msg.nonce,)):
                raise ProtocolViolation(
                    f"replayed trust message from {peer} (nonce {msg.nonce.hex()} seen before)",
                    ErrorCode.REPLAY,
                )
            self._prune(now)
            self.db.execute(
                "INSERT INTO seen_nonces (nonce, agent_id, expires) VALUES (?, ?, ?)",
                (msg.nonce, peer, now + 2 * self.max_skew + _NONCE_MARGIN),
            )
            events = self._apply(peer, msg, now)
        return events

    def _apply(self, peer: str, msg: TrustMessage, now: float) -> list[TrustEvent]:
        """The effect of an authenticated, fresh message (inside a transaction)."""
        trusted = self.is_trusted(peer)
        outgoing = self._request_row(peer, _OUT)
        if msg.kind is TrustKind.REQUEST:
            if trusted:  # the peer lost its state (or our APPROVE): tell it again
                self._queue(peer, TrustKind.APPROVE, now, ref=msg.nonce)
                return []
            if outgoing is not None:  # crossed requests approve each other
                self._trust(peer, now, str(outgoing["reason"]))
                self._queue(peer, TrustKind.APPROVE, now, ref=msg.nonce)
                return [TrustEstablished(peer)]
            previous = self._request_row(peer, _IN)
            self.db.execute(
                "INSERT OR REPLACE INTO trust_requests "
                "(agent_id, direction, reason, created, nonce) VALUES (?, ?, ?, ?, ?)",
                (peer, _IN, msg.reason, now, msg.nonce),
            )
            if previous is not None and str(previous["reason"]) == msg.reason:
                return []  # the same request again (e.g. a redelivery): nothing new
            return [TrustRequested(peer, msg.reason)]
        if msg.kind is TrustKind.APPROVE:
            if trusted:
                return []  # a duplicate
            if outgoing is not None:
                if bytes(outgoing["nonce"]) != msg.ref:
                    return []  # approves an older request: the newer one is on its way
                self._trust(peer, now, str(outgoing["reason"]))
                return [TrustEstablished(peer)]
            # The peer believes trust holds, but we did not ask (or asked no more).
            self._drop_request(peer, _IN)
            self._queue(peer, TrustKind.REVOKE, now)
            return []
        if msg.kind is TrustKind.REJECT:
            if outgoing is not None and bytes(outgoing["nonce"]) == msg.ref:
                self._drop_request(peer, _OUT)
                self._unqueue(peer, TrustKind.REQUEST)
                return [TrustRejected(peer, msg.reason)]
            return []  # an answer to an older request: the newer one is on its way
        # REVOKE
        self._unqueue(peer, TrustKind.APPROVE)
        if trusted:
            self._untrust(peer)
            return [TrustRevoked(peer, by_peer=True)]
        self._drop_request(peer, _IN)  # it no longer asks; our own request stands
        return []

    # ---- helpers (called inside a transaction) --------------------------------------------

    def _check_peer(self, peer: str) -> str:
        peer = validate_agent_id(peer)
        if peer == self.agent_id:
            raise InvalidArgument("an agent cannot trust itself")
        return peer

    @contextmanager
    def _changing(self, peer: str) -> Iterator[None]:
        """A transaction about ``peer``; the in-memory trust set follows what committed."""
        try:
            with self.db.transaction():
                yield
        finally:
            self._refresh(peer)

    def _refresh(self, peer: str) -> None:
        """Mirror ``peer``'s committed trust row into the in-memory set."""
        if self.db.query_one("SELECT 1 FROM trust WHERE agent_id = ?", (peer,)) is None:
            self._trusted.discard(peer)
        else:
            self._trusted.add(peer)

    def _request_row(self, peer: str, direction: str) -> Row | None:
        return self.db.query_one(
            "SELECT reason, created, nonce FROM trust_requests "
            "WHERE agent_id = ? AND direction = ?",
            (peer, direction),
        )

    def _drop_request(self, peer: str, direction: str) -> None:
        self.db.execute(
            "DELETE FROM trust_requests WHERE agent_id = ? AND direction = ?", (peer, direction)
        )

    def _trust(self, peer: str, now: float, reason: str) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO trust (agent_id, since, reason) VALUES (?, ?, ?)",
            (peer, now, reason),
        )
        self.db.execute("DELETE FROM trust_requests WHERE agent_id = ?", (peer,))
        self._unqueue(peer, TrustKind.REQUEST)
        self._trusted.add(peer)  # visible to _apply at once; _refresh re-syncs after commit

    def _untrust(self, peer: str) -> None:
        self.db.execute("DELETE FROM trust WHERE agent_id = ?", (peer,))
        self.db.execute("DELETE FROM trust_requests WHERE agent_id = ?", (peer,))
        self._trusted.discard(peer)

    def _unqueue(self, peer: str, kind: TrustKind) -> None:
        self.db.execute(
            "DELETE FROM trust_outbox WHERE agent_id = ? AND kind = ?", (peer, str(kind))
        )

    def _queue(
        self, peer: str, kind: TrustKind, now: float, *, reason: str = "", ref: bytes | None = None
    ) -> None:
        """Append a message intent for ``peer``, collapsing what it makes redundant."""
        if kind is TrustKind.REVOKE:
            # The peer never learned of a still-queued APPROVE: for it, that request was
            # rejected. Then the REVOKE, in case an earlier APPROVE did arrive.
            approvals = self.db.query(
                "SELECT ref FROM trust_outbox WHERE agent_id = ? AND kind = ? ORDER BY id",
                (peer, str(TrustKind.APPROVE)),
            )
            for k in (TrustKind.REQUEST, TrustKind.APPROVE, TrustKind.REVOKE):
                self._unqueue(peer, k)
            if approvals:
                self._queue(peer, TrustKind.REJECT, now, ref=bytes(approvals[-1]["ref"]))
        elif kind is TrustKind.APPROVE:
            for k in (TrustKind.REQUEST, TrustKind.APPROVE, TrustKind.REJECT):
                self._unqueue(peer, k)
        else:  # REQUEST, REJECT: only the latest one matters
            self._unqueue(peer, kind)
        self.db.execute(
            "INSERT INTO trust_outbox (agent_id, kind, reason, ref, created) "
            "VALUES (?, ?, ?, ?, ?)",
            (peer, str(kind), reason, ref, now),
        )

    def _prune(self, now: float) -> None:
        """Forget expired replay nonces, at most once per :data:`NONCE_PRUNE_INTERVAL`."""
        if now >= self._next_prune:
            self._next_prune = now + NONCE_PRUNE_INTERVAL
            self.db.execute("DELETE FROM seen_nonces WHERE expires < ?", (now,))
