"""TrustBook: the trust state machine, driven by hand with virtual time.

Two books on in-memory databases play Alice and Bob; messages move only when a test
calls :func:`deliver`, so every interleaving is explicit.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmlink.errors import (
    ErrorCode,
    InvalidArgument,
    NotFound,
    ProtocolViolation,
    VerificationFailed,
)
from swarmlink.identity import IdentityKey
from swarmlink.runtime.model import PendingTrust, TrustedPeer
from swarmlink.storage import Database
from swarmlink.trust import (
    MAX_CLOCK_SKEW,
    MAX_ENVELOPE_SIZE,
    MAX_REASON_LENGTH,
    NONCE_PRUNE_INTERVAL,
    TRUST_DOMAIN,
    TrustBook,
    TrustEstablished,
    TrustKind,
    TrustMessage,
    TrustRejected,
    TrustRequested,
    TrustRevoked,
    open_envelope,
    seal,
)
from swarmlink.trust.events import TrustEvent
from swarmlink.wire import cbor

ALICE = IdentityKey.from_private_bytes(bytes([1]) * 32)
BOB = IdentityKey.from_private_bytes(bytes([2]) * 32)
CAROL = IdentityKey.from_private_bytes(bytes([3]) * 32)
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z

_counter = itertools.count(1)


def nonce() -> bytes:
    """Distinct nonces for the whole test session (no randomness needed)."""
    return next(_counter).to_bytes(16, "big")


def book(identity: IdentityKey, db: Database | None = None) -> TrustBook:
    return TrustBook(identity, db if db is not None else Database(":memory:"))


@pytest.fixture
def alice() -> Iterator[TrustBook]:
    b = book(ALICE)
    yield b
    b.db.close()


@pytest.fixture
def bob() -> Iterator[TrustBook]:
    b = book(BOB)
    yield b
    b.db.close()


def deliver(src: TrustBook, dst: TrustBook, now: float = T0) -> list[TrustEvent]:
    """Move every message ``src`` owes ``dst``; acknowledge each after it was applied."""
    events: list[TrustEvent] = []
    for outbox_id, envelope in src.outgoing(dst.agent_id, now, nonce):
        events += dst.receive(src.agent_id, envelope, now)
        src.mark_delivered(outbox_id)
    return events


def queued(src: TrustBook, peer: TrustBook) -> list[TrustMessage]:
    return [open_envelope(env) for _, env in src.outgoing(peer.agent_id, T0, nonce)]


def kinds(src: TrustBook, peer: TrustBook) -> list[str]:
    return [str(m.kind) for m in queued(src, peer)]


def snapshot(tb: TrustBook) -> dict[str, Any]:
    """Everything a rejected message must leave untouched."""
    tables = {
        name: sorted(tuple(row) for row in tb.db.query(f"SELECT * FROM {name}"))
        for name in ("trust", "trust_requests", "trust_outbox", "seen_nonces")
    }
    return {**tables, "memory": sorted(tb._trusted)}


def make_trusted(alice: TrustBook, bob: TrustBook, now: float = T0) -> None:
    alice.request(bob.agent_id, "hi", now)
    deliver(alice, bob, now)
    bob.approve(alice.agent_id, now)
    deliver(bob, alice, now)
    assert alice.is_trusted(bob.agent_id) and bob.is_trusted(alice.agent_id)


# ---- the happy paths --------------------------------------------------------------------------


def test_request_then_approve(alice: TrustBook, bob: TrustBook) -> None:
    assert alice.request(bob.agent_id, "let's work together", T0) == []
    assert alice.pending() == [PendingTrust(bob.agent_id, "out", "let's work together", T0)]
    assert bob.pending() == []

    assert deliver(alice, bob, T0 + 1) == [TrustRequested(alice.agent_id, "let's work together")]
    assert bob.pending() == [PendingTrust(alice.agent_id, "in", "let's work together", T0 + 1)]
    assert not bob.is_trusted(alice.agent_id)

    assert bob.approve(alice.agent_id, T0 + 2) == [TrustEstablished(alice.agent_id)]
    assert bob.is_trusted(alice.agent_id)
    assert bob.trusted() == [TrustedPeer(alice.agent_id, T0 + 2)]
    assert bob.pending() == []
    assert not alice.is_trusted(bob.agent_id)

    assert deliver(bob, alice, T0 + 3) == [TrustEstablished(bob.agent_id)]
    assert alice.is_trusted(bob.agent_id)
    assert alice.trusted() == [TrustedPeer(bob.agent_id, T0 + 3)]
    assert alice.pending() == []
    assert not alice.has_outgoing(bob.agent_id) and not bob.has_outgoing(alice.agent_id)


def test_reject(alice: TrustBook, bob: TrustBook) -> None:
    alice.request(bob.agent_id, "please", T0)
    deliver(alice, bob)
    assert bob.reject(alice.agent_id, T0, "not today") == []
    assert bob.pending() == []
    assert deliver(bob, alice) == [TrustRejected(bob.agent_id, "not today")]
    assert alice.pending() == [] and bob.pending() == []
    assert not alice.is_trusted(bob.agent_id) and not bob.is_trusted(alice.agent_id)
    assert not alice.has_outgoing(bob.agent_id)


@pytest.mark.parametrize("revoker", ["requester", "approver"])
def test_revoke_by_either_side(alice: TrustBook, bob: TrustBook, revoker: str) -> None:
    make_trusted(alice, bob)
    me, other = (alice, bob) if revoker == "requester" else (bob, alice)
    assert me.revoke(other.agent_id, T0 + 5) == [TrustRevoked(other.agent_id, by_peer=False)]
    assert not me.is_trusted(other.agent_id) and me.trusted() == []
    assert other.is_trusted(me.agent_id)  # until it hears of it
    assert deliver(me, other, T0 + 6) == [TrustRevoked(me.agent_id, by_peer=True)]
    assert not other.is_trusted(me.agent_id) and other.trusted() == []
    assert me.pending() == [] and other.pending() == []
    # and trust can be rebuilt afterwards
    make_trusted(other, me, T0 + 10)


def test_crossed_requests_in_flight(alice: TrustBook, bob: TrustBook) -> None:
    alice.request(bob.agent_id, "a asks", T0)
    bob.request(alice.agent_id, "b asks", T0)
    assert deliver(alice, bob) == [TrustEstablished(alice.agent_id)]
    assert kinds(bob, alice) == ["approve"]  # its own REQUEST is superseded
    assert deliver(bob, alice) == [TrustEstablished(bob.agent_id)]
    assert alice.is_trusted(bob.agent_id) and bob.is_trusted(alice.agent_id)
    assert alice.pending() == [] and bob.pending() == []
    assert not alice.has_outgoing(bob.agent_id) and not bob.has_outgoing(alice.agent_id)


def test_crossed_requests_delivered_both_ways_at_once(alice: TrustBook, bob: TrustBook) -> None:
    alice.request(bob.agent_id, "a asks", T0)
    bob.request(alice.agent_id, "b asks", T0)
    a_out = alice.outgoing(bob.agent_id, T0, nonce)
    b_out = bob.outgoing(alice.agent_id, T0, nonce)
    assert bob.receive(alice.agent_id, a_out[0][1], T0) == [TrustEstablished(alice.agent_id)]
    assert alice.receive(bob.agent_id, b_out[0][1], T0) == [TrustEstablished(bob.agent_id)]
    alice.mark_delivered(a_out[0][0])
    bob.mark_delivered(b_out[0][0])
    deliver(alice, bob)
    deliver(bob, alice)  # the APPROVEs are harmless duplicates now
    assert alice.is_trusted(bob.agent_id) and bob.is_trusted(alice.agent_id)


def test_request_crossing_a_pending_incoming_request(alice: TrustBook, bob: TrustBook) -> None:
    alice.request(bob.agent_id, "a asks", T0)
    deliver(alice, bob)
    assert bob.request(alice.agent_id, "me too", T0) == [TrustEstablished(alice.agent_id)]
    assert deliver(bob, alice) == [TrustEstablished(bob.agent_id)]
    assert alice.is_trusted(bob.agent_id) and bob.is_trusted(alice.agent_id)


# ---- command preconditions ---------------------------------------------------------------


def test_request_when_trusted_is_a_no_op(alice: TrustBook, bob: TrustBook) -> None:
    make_trusted(alice, bob)
    assert alice.request(bob.agent_id, "again", T0) == []
    assert not alice.has_outgoing(bob.agent_id)
    assert alice.pending() == []


def test_command_argument_errors(alice: TrustBook, bob: TrustBook) -> None:
    with pytest.raises(InvalidArgument, match="cannot trust itself"):
        alice.request(alice.agent_id, "me", T0)
    with pytest.raises(InvalidArgument, match="not an agent ID"):
        alice.request("nobody", "", T0)
    with pytest.raises(InvalidArgument, match="characters"):
        alice.request(bob.agent_id, "x" * (MAX_REASON_LENGTH + 1), T0)
    with pytest.raises(InvalidArgument, match="U\\+001B"):
        alice.request(bob.agent_id, "\x1b]0;pwned\x07", T0)
    for bad_now in (math.nan, math.inf, -1.0, 1e300):
        with pytest.raises(InvalidArgument, match="now"):
            alice.request(bob.agent_id, "", bad_now)
    with pytest.raises(InvalidArgument, match="max_skew"):
        TrustBook(ALICE, alice.db, max_skew=0)
    assert snapshot(alice)["trust_outbox"] == []


def test_answers_need_a_pending_request(alice: TrustBook, bob: TrustBook) -> None:
    with pytest.raises(NotFound, match=f"no pending trust request from {bob.agent_id}"):
        alice.approve(bob.agent_id, T0)
    with pytest.raises(NotFound, match=f"no pending trust request from {bob.agent_id}"):
        alice.reject(bob.agent_id, T0)
    with pytest.raises(NotFound, match="is not trusted"):
        alice.revoke(bob.agent_id, T0)
    # our own outgoing request is not something we can approve
    alice.request(bob.agent_id, "", T0)
    with pytest.raises(NotFound):
        alice.approve(bob.agent_id, T0)
    assert str(NotFound(f"no pending trust request from {bob.agent_id}")).startswith("no pending")


def test_agent_ids_are_normalised(alice: TrustBook, bob: TrustBook) -> None:
    alice.request(bob.agent_id.upper(), "", T0)
    assert alice.pending()[0].agent_id == bob.agent_id


# ---- outbox: sealing, collapsing, persistence ---------------------------------------------


def test_outgoing_is_sealed_fresh_each_time(alice: TrustBook, bob: TrustBook) -> None:
    alice.request(bob.agent_id, "hi", T0)
    [(id1, env1)] = alice.outgoing(bob.agent_id, T0, nonce)
    [(id2, env2)] = alice.outgoing(bob.agent_id, T0 + 3600, nonce)
    assert id1 == id2 and env1 != env2
    m1, m2 = open_envelope(env1), open_envelope(env2)
    assert m1.nonce != m2.nonce
    assert m2.timestamp_ms == int((T0 + 3600) * 1000)
    assert cbor.decode(env2)["k"] == ALICE.public_key  # signed by the identity key
    # queued for an hour, still fresh when it finally goes out
    assert bob.receive(alice.agent_id, env2, T0 + 3600) == [TrustRequested(alice.agent_id, "hi")]


def test_outgoing_for_unknown_peer_is_empty(alice: TrustBook) -> None:
    assert alice.outgoing(CAROL.agent_id, T0, nonce) == []
    alice.mark_delivered(12345)  # unknown ids are ignored


def test_bad_nonce_source(alice: TrustBook, bob: TrustBook) -> None:
    alice.request(bob.agent_id, "", T0)
    with pytest.raises(InvalidArgument, match="16 bytes"):
        alice.outgoing(bob.agent_id, T0, lambda: b"short")
    assert kinds(alice, bob) == ["request"]


def test_one_request_per_peer(alice: TrustBook, bob: TrustBook) -> None:
    alice.request(bob.agent_id, "first", T0)
    alice.request(bob.agent_id, "second", T0 + 1)
    [msg] = queued(alice, bob)
    assert msg.kind is TrustKind.REQUEST and msg.reason == "second"
    assert alice.pending() == [PendingTrust(bob.agent_id, "out", "second", T0 + 1)]
    assert alice.outbox_peers() == [bob.agent_id]


def test_revoke_before_the_approval_left(alice: TrustBook, bob: TrustBook) -> None:
    alice.request(bob.agent_id, "hi", T0)
    deliver(alice, bob)
    bob.approve(alice.agent_id, T0)
    bob.revoke(alice.agent_id, T0 + 1)
    # the never-delivered APPROVE becomes a REJECT of that same request
    assert kinds(bob, alice) == ["reject", "revoke"]
    assert deliver(bob, alice) == [TrustRejected(bob.agent_id, "")]
    assert not alice.is_trusted(bob.agent_id) and not bob.is_trusted(alice.agent_id)
    assert alice.pending() == [] and bob.pending() == []


def test_revoke_then_request_again_keeps_order(alice: TrustBook, bob: TrustBook) -> None:
    make_trusted(alice, bob)
    alice.revoke(bob.agent_id, T0)
    alice.request(bob.agent_id, "start over", T0)
    assert kinds(alice, bob) == ["revoke", "request"]
    assert deliver(alice, bob) == [
        TrustRevoked(alice.agent_id, by_peer=True),
        TrustRequested(alice.agent_id, "start over"),
    ]


def test_outbox_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "alice.db"
    alice = book(ALICE, Database(path))
    alice.request(BOB.agent_id, "persisted", T0)
    alice.db.close()  # as if killed right after the command returned

    alice = book(ALICE, Database(path))
    bob = book(BOB)
    assert alice.pending() == [PendingTrust(BOB.agent_id, "out", "persisted", T0)]
    assert alice.outbox_peers() == [BOB.agent_id]
    assert deliver(alice, bob, T0 + 60) == [TrustRequested(ALICE.agent_id, "persisted")]
    assert not alice.has_outgoing(BOB.agent_id)
    alice.db.close()


def test_trust_survives_restart(tmp_path: Path) -> None:
    a_path, b_path = tmp_path / "a.db", tmp_path / "b.db"
    alice, bob = book(ALICE, Database(a_path)), book(BOB, Database(b_path))
    make_trusted(alice, bob)
    alice.db.close()
    bob.db.close()
    alice, bob = book(ALICE, Database(a_path)), book(BOB, Database(b_path))
    assert alice.is_trusted(BOB.agent_id) and bob.is_trusted(ALICE.agent_id)
    assert [p.agent_id for p in alice.trusted()] == [BOB.agent_id]
    alice.db.close()
    bob.db.close()


# ---- receive: answers that do not match --------------------------------------------------


def test_redelivered_request_is_absorbed(alice: TrustBook, bob: TrustBook) -> None:
    alice.request(bob.agent_id, "hi", T0)
    [(_, first)] = alice.outgoing(bob.agent_id, T0, nonce)
    assert bob.receive(alice.agent_id, first, T0) == [TrustRequested(alice.agent_id, "hi")]
    # the acknowledgement was lost: the same intent is sealed and sent again
    assert deliver(alice, bob, T0 + 1) == []
    assert len(bob.pending()) == 1
    alice.request(bob.agent_id, "hi, again", T0 + 2)
    assert deliver(alice, bob, T0 + 2) == [TrustRequested(alice.agent_id, "hi, again")]
    assert bob.pending()[0].reason == "hi, again"


def test_reject_of_an_older_request_is_ignored(alice: TrustBook, bob: TrustBook) -> None:
    alice.request(bob.agent_id, "v1", T0)
    deliver(alice, bob)
    bob.reject(alice.agent_id, T0)
    alice.request(bob.agent_id, "v2", T0 + 1)  # asks again before hearing the answer
    assert deliver(bob, alice, T0 + 2) == []  # that REJECT answered v1
    assert alice.pending()[0].reason == "v2"
    assert deliver(alice, bob, T0 + 3) == [TrustRequested(alice.agent_id, "v2")]
    bob.approve(alice.agent_id, T0 + 4)
    assert deliver(bob, alice, T0 + 4) == [TrustEstablished(bob.agent_id)]


def test_request_from_a_trusted_peer_that_lost_its_state(alice: TrustBook, bob: TrustBook) -> None:
    make_trusted(alice, bob)
    amnesiac = book(ALICE)  # same identity, fresh database
    amnesiac.request(bob.agent_id, "hello again", T0 + 10)
    assert deliver(amnesiac, bob, T0 + 10) == []  # bob still trusts alice: just re-approves
    assert kinds(bob, amnesiac) == ["approve"]
    assert deliver(bob, amnesiac, T0 + 11) == [TrustEstablished(bob.agent_id)]
    assert amnesiac.is_trusted(bob.agent_id)


def test_revoke_cancels_a_queued_reapproval(alice: TrustBook, bob: TrustBook) -> None:
    make_trusted(alice, bob)
    amnesiac = book(ALICE, alice.db)  # alice's request crosses with her own revoke
    msg = TrustMessage(TrustKind.REQUEST, ALICE.agent_id, BOB.agent_id, "", int(T0 * 1000), nonce())
    bob.receive(ALICE.agent_id, seal(ALICE, msg), T0)
    assert kinds(bob, amnesiac) == ["approve"]
    amnesiac.revoke(bob.agent_id, T0 + 1)
    assert deliver(amnesiac, bob, T0 + 1) == [TrustRevoked(ALICE.agent_id, by_peer=True)]
    assert not bob.has_outgoing(ALICE.agent_id)  # the re-approval is moot


def test_unsolicited_approve_is_answered_with_revoke(alice: TrustBook, bob: TrustBook) -> None:
    msg = TrustMessage(
        TrustKind.APPROVE, bob.agent_id, alice.agent_id, "", int(T0 * 1000), nonce(), nonce()
    )
    assert alice.receive(bob.agent_id, seal(BOB, msg), T0) == []
    assert not alice.is_trusted(bob.agent_id)
    assert kinds(alice, bob) == ["revoke"]


def test_duplicate_approve_is_ignored(alice: TrustBook, bob: TrustBook) -> None:
    make_trusted(alice, bob)
    msg = TrustMessage(
        TrustKind.APPROVE, bob.agent_id, alice.agent_id, "", int(T0 * 1000), nonce(), nonce()
    )
    assert alice.receive(bob.agent_id, seal(BOB, msg), T0) == []
    assert alice.is_trusted(bob.agent_id) and not alice.has_outgoing(bob.agent_id)


def test_revoke_from_untrusted_peer_cancels_its_request_only(
    alice: TrustBook, bob: TrustBook
) -> None:
    bob.request(alice.agent_id, "b asks", T0)
    deliver(bob, alice)
    msg = TrustMessage(TrustKind.REVOKE, bob.agent_id, alice.agent_id, "", int(T0 * 1000), nonce())
    assert alice.receive(bob.agent_id, seal(BOB, msg), T0) == []
    assert alice.pending() == []
    alice.request(bob.agent_id, "a asks", T0)
    msg = TrustMessage(TrustKind.REVOKE, bob.agent_id, alice.agent_id, "", int(T0 * 1000), nonce())
    assert alice.receive(bob.agent_id, seal(BOB, msg), T0) == []
    assert [p.direction for p in alice.pending()] == ["out"]


def test_stray_reject_is_ignored(alice: TrustBook, bob: TrustBook) -> None:
    msg = TrustMessage(
        TrustKind.REJECT, bob.agent_id, alice.agent_id, "no", int(T0 * 1000), nonce(), nonce()
    )
    assert alice.receive(bob.agent_id, seal(BOB, msg), T0) == []
    assert alice.pending() == [] and not alice.has_outgoing(bob.agent_id)


# ---- receive: hostile and broken input ----------------------------------------------------


def captured_request(alice: TrustBook, bob: TrustBook, now: float = T0) -> bytes:
    alice.request(bob.agent_id, "hi", now)
    [(_, envelope)] = alice.outgoing(bob.agent_id, now, nonce)
    return envelope


def test_replay_is_rejected(alice: TrustBook, bob: TrustBook) -> None:
    envelope = captured_request(alice, bob)
    assert bob.receive(alice.agent_id, envelope, T0) == [TrustRequested(alice.agent_id, "hi")]
    bob.reject(alice.agent_id, T0 + 1)
    before = snapshot(bob)
    with pytest.raises(ProtocolViolation, match="replayed trust message") as info:
        bob.receive(alice.agent_id, envelope, T0 + 2)
    assert info.value.code == ErrorCode.REPLAY
    assert snapshot(bob) == before
    assert bob.pending() == []  # the rejected request did not come back


def test_replay_is_rejected_after_restart(tmp_path: Path, alice: TrustBook) -> None:
    path = tmp_path / "bob.db"
    bob = book(BOB, Database(path))
    envelope = captured_request(alice, bob)
    bob.receive(alice.agent_id, envelope, T0)
    bob.db.close()
    bob = book(BOB, Database(path))
    with pytest.raises(ProtocolViolation) as info:
        bob.receive(alice.agent_id, envelope, T0 + 100)
    assert info.value.code == ErrorCode.REPLAY
    bob.db.close()


@pytest.mark.parametrize("offset", [-(MAX_CLOCK_SKEW + 1), MAX_CLOCK_SKEW + 1, 86400.0])
def test_stale_and_future_timestamps(alice: TrustBook, bob: TrustBook, offset: float) -> None:
    envelope = captured_request(alice, bob, T0)
    before = snapshot(bob)
    with pytest.raises(ProtocolViolation, match="stale trust request") as info:
        bob.receive(alice.agent_id, envelope, T0 + offset)
    assert info.value.code == ErrorCode.STALE
    assert snapshot(bob) == before


@pytest.mark.parametrize("offset", [-(MAX_CLOCK_SKEW - 1), MAX_CLOCK_SKEW - 1])
def test_timestamps_within_the_skew_are_fine(
    alice: TrustBook, bob: TrustBook, offset: float
) -> None:
    envelope = captured_request(alice, bob, T0)
    assert bob.receive(alice.agent_id, envelope, T0 + offset) != []


def test_custom_skew(alice: TrustBook) -> None:
    strict = TrustBook(BOB, Database(":memory:"), max_skew=5)
    envelope = captured_request(alice, strict, T0)
    with pytest.raises(ProtocolViolation) as info:
        strict.receive(alice.agent_id, envelope, T0 + 6)
    assert info.value.code == ErrorCode.STALE


def test_nonces_expire_and_late_replays_are_stale(alice: TrustBook, bob: TrustBook) -> None:
    envelope = captured_request(alice, bob, T0)
    bob.receive(alice.agent_id, envelope, T0)
    later = T0 + 2 * MAX_CLOCK_SKEW + NONCE_PRUNE_INTERVAL + 2
    # any other accepted message triggers the sweep
    carol = book(CAROL)
    carol.request(bob.agent_id, "", later)
    deliver(carol, bob, later)
    assert [row["agent_id"] for row in bob.db.query("SELECT agent_id FROM seen_nonces")] == [
        carol.agent_id
    ]
    with pytest.raises(ProtocolViolation) as info:
        bob.receive(alice.agent_id, envelope, later)
    assert info.value.code == ErrorCode.STALE


def test_sender_must_be_the_session_peer(alice: TrustBook, bob: TrustBook) -> None:
    envelope = captured_request(alice, bob)
    before = snapshot(bob)
    with pytest.raises(VerificationFailed) as info:
        bob.receive(CAROL.agent_id, envelope, T0)
    assert info.value.code == ErrorCode.AGENT_MISMATCH
    assert str(info.value).startswith(
        f"trust message signed by {alice.agent_id} arrived over a session with {CAROL.agent_id}"
    )
    assert snapshot(bob) == before
    # the genuine delivery still works: the nonce was not burnt
    assert bob.receive(alice.agent_id, envelope, T0) != []


def test_message_for_another_recipient(alice: TrustBook, bob: TrustBook) -> None:
    carol = book(CAROL)
    envelope = captured_request(alice, carol)  # addressed to Carol
    before = snapshot(bob)
    with pytest.raises(ProtocolViolation, match="addressed to") as info:
        bob.receive(alice.agent_id, envelope, T0)
    assert info.value.code == ErrorCode.PROTOCOL_ERROR
    assert snapshot(bob) == before


def _hostile(alice: TrustBook, bob: TrustBook, kind: str) -> bytes:
    good = cbor.decode(captured_request(alice, bob))
    body = cbor.decode(good["b"])
    if kind == "forged signature":
        sig = bytearray(good["s"])
        sig[0] ^= 0x80
        return cbor.encode({**good, "s": bytes(sig)})
    if kind == "wrong key for the agent ID":
        b = cbor.encode(body)
        return cbor.encode({"b": b, "k": CAROL.public_key, "s": CAROL.sign(TRUST_DOMAIN, b)})
    if kind == "oversized reason":
        b = cbor.encode({**body, "reason": "x" * (MAX_REASON_LENGTH + 1)})
        return cbor.encode({"b": b, "k": ALICE.public_key, "s": ALICE.sign(TRUST_DOMAIN, b)})
    if kind == "oversized envelope":
        b = cbor.encode({**body, "pad": "x" * MAX_ENVELOPE_SIZE})
        return cbor.encode({"b": b, "k": ALICE.public_key, "s": ALICE.sign(TRUST_DOMAIN, b)})
    assert kind == "garbage"
    return b"\x00garbage\xff"


@pytest.mark.parametrize(
    ("kind", "error", "code"),
    [
        ("forged signature", VerificationFailed, ErrorCode.AUTH_FAILED),
        ("wrong key for the agent ID", VerificationFailed, ErrorCode.AGENT_MISMATCH),
        ("oversized reason", ProtocolViolation, ErrorCode.MALFORMED),
        ("oversized envelope", ProtocolViolation, ErrorCode.MALFORMED),
        ("garbage", ProtocolViolation, ErrorCode.MALFORMED),
    ],
)
def test_hostile_envelopes_change_nothing(
    alice: TrustBook, bob: TrustBook, kind: str, error: type[Exception], code: ErrorCode
) -> None:
    envelope = _hostile(alice, bob, kind)
    before = snapshot(bob)
    with pytest.raises(error) as info:
        bob.receive(alice.agent_id, envelope, T0)
    assert getattr(info.value, "code", None) == code
    assert snapshot(bob) == before


@pytest.fixture(scope="module")
def busy_bob() -> Iterator[TrustBook]:
    """Bob with some state (a trusted peer, a pending request) for garbage to hit."""
    bob, alice, carol = book(BOB), book(ALICE), book(CAROL)
    make_trusted(alice, bob)
    carol.request(bob.agent_id, "pending", T0)
    deliver(carol, bob)
    yield bob
    for b in (bob, alice, carol):
        b.db.close()


@given(st.binary(max_size=MAX_ENVELOPE_SIZE + 16))
def test_random_bytes_are_refused_without_effect(busy_bob: TrustBook, data: bytes) -> None:
    before = snapshot(busy_bob)
    try:
        busy_bob.receive(ALICE.agent_id, data, T0)
    except (ProtocolViolation, VerificationFailed):
        pass
    else:  # pragma: no cover
        pytest.fail("random bytes were accepted")
    assert snapshot(busy_bob) == before


def test_receive_validates_now(alice: TrustBook, bob: TrustBook) -> None:
    envelope = captured_request(alice, bob)
    with pytest.raises(InvalidArgument):
        bob.receive(alice.agent_id, envelope, math.nan)
    assert bob.pending() == []


# ---- rotation: trust is bound to the agent ID ---------------------------------------------


def test_trust_is_bound_to_the_identity_key(alice: TrustBook, bob: TrustBook) -> None:
    """Operational keys never appear in trust messages: rotating them changes nothing here,
    while a different identity key (a different agent) is never treated as the peer."""
    make_trusted(alice, bob)
    envelope = captured_request(book(CAROL), bob)
    with pytest.raises(VerificationFailed):
        bob.receive(alice.agent_id, envelope, T0)
    assert bob.is_trusted(alice.agent_id) and not bob.is_trusted(CAROL.agent_id)
