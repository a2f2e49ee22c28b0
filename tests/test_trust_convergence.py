"""Model check: two TrustBooks driven by random commands and deliveries always converge.

Hypothesis interleaves commands on both sides, one-message deliveries in either
direction (sometimes with the acknowledgement lost, so the message is sealed and delivered
again later), restarts and clock ticks. Whenever every queued message has been delivered,
both sides must agree on whether trust holds, and each book's in-memory trust set must
match its database.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from swarmlink.errors import NotFound
from swarmlink.identity import IdentityKey
from swarmlink.storage import Database
from swarmlink.trust import TrustBook, TrustEstablished, TrustRevoked

ALICE = IdentityKey.from_private_bytes(bytes([1]) * 32)
BOB = IdentityKey.from_private_bytes(bytes([2]) * 32)
T0 = 1_767_225_600.0
#: Upper bound on delivery rounds to drain both outboxes (each round moves everything).
MAX_DRAIN_ROUNDS = 8

sides = st.sampled_from([0, 1])
reasons = st.sampled_from(["", "hi", "please"])


class TwoBooks(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.nonces = itertools.count(1)
        self.dbs = [Database(":memory:"), Database(":memory:")]
        self.books = [TrustBook(ALICE, self.dbs[0]), TrustBook(BOB, self.dbs[1])]
        self.ids = [ALICE.agent_id, BOB.agent_id]

    def nonce(self) -> bytes:
        return next(self.nonces).to_bytes(16, "big")

    def me_other(self, side: int) -> tuple[TrustBook, str]:
        return self.books[side], self.ids[1 - side]

    def check_events(self, side: int, events: list[object]) -> None:
        me, other = self.me_other(side)
        for event in events:
            if isinstance(event, TrustEstablished):
                assert me.is_trusted(other)
            if isinstance(event, TrustRevoked):
                assert not me.is_trusted(other)

    # ---- commands ----------------------------------------------------------------------

    @rule(side=sides, reason=reasons)
    def request(self, side: int, reason: str) -> None:
        me, other = self.me_other(side)
        self.check_events(side, list(me.request(other, reason, self.now)))

    @rule(side=sides)
    def approve(self, side: int) -> None:
        me, other = self.me_other(side)
        try:
            self.check_events(side, list(me.approve(other, self.now)))
        except NotFound:
            assert not any(p.direction == "in" for p in me.pending())

    @rule(side=sides, reason=reasons)
    def reject(self, side: int, reason: str) -> None:
        me, other = self.me_other(side)
        try:
            me.reject(other, self.now, reason)
        except NotFound:
            assert not any(p.direction == "in" for p in me.pending())

    @rule(side=sides)
    def revoke(self, side: int) -> None:
        me, other = self.me_other(side)
        try:
            self.check_events(side, list(me.revoke(other, self.now)))
        except NotFound:
            assert not me.is_trusted(other)

    # ---- transport -----------------------------------------------------------------------

    @rule(side=sides, acknowledged=st.booleans())
    def deliver_one(self, side: int, acknowledged: bool) -> None:
        """Deliver the oldest message ``side`` owes the other (all are sealed, as the
        runtime does, but only the first arrives)."""
        src, dst = self.books[side], self.books[1 - side]
        items = src.outgoing(self.ids[1 - side], self.now, self.nonce)
        if not items:
            return
        outbox_id, envelope = items[0]
        self.check_events(1 - side, list(dst.receive(self.ids[side], envelope, self.now)))
        if acknowledged:
            src.mark_delivered(outbox_id)

    @rule(side=sides)
    def restart(self, side: int) -> None:
        identity = ALICE if side == 0 else BOB
        self.books[side] = TrustBook(identity, self.dbs[side])

    @rule(seconds=st.floats(0, 120))
    def tick(self, seconds: float) -> None:
        self.now += seconds

    @precondition(lambda self: True)
    @rule()
    def drain_and_compare(self) -> None:
        self.drain()
        self.assert_agreement()

    # ---- checks ----------------------------------------------------------------------------

    def drain(self) -> None:
        for _ in range(MAX_DRAIN_ROUNDS):
            moved = False
            for side in (0, 1):
                src, dst = self.books[side], self.books[1 - side]
                for outbox_id, envelope in src.outgoing(self.ids[1 - side], self.now, self.nonce):
                    events = dst.receive(self.ids[side], envelope, self.now)
                    self.check_events(1 - side, list(events))
                    src.mark_delivered(outbox_id)
                    moved = True
            if not moved:
                return
        raise AssertionError("trust messages kept flowing: the protocol does not quiesce")

    def assert_agreement(self) -> None:
        a, b = self.books
        assert not a.has_outgoing(self.ids[1]) and not b.has_outgoing(self.ids[0])
        assert a.is_trusted(self.ids[1]) == b.is_trusted(self.ids[0]), (
            f"after delivering everything, alice trusts bob: {a.is_trusted(self.ids[1])}, "
            f"bob trusts alice: {b.is_trusted(self.ids[0])}"
        )

    @invariant()
    def memory_mirrors_database(self) -> None:
        for book in self.books:
            rows = {str(r[0]) for r in book.db.query("SELECT agent_id FROM trust")}
            assert book._trusted == rows
            assert not (book.is_trusted(book.agent_id))
            directions = {p.direction for p in book.pending()}
            if book.trusted():
                assert not directions, "a trusted peer has no pending request"

    def teardown(self) -> None:
        self.drain()
        self.assert_agreement()
        for db in self.dbs:
            db.close()


TwoBooks.TestCase.settings = settings(
    settings.get_profile("ci"), max_examples=300, stateful_step_count=40
)
test_two_books_converge = TwoBooks.TestCase


# ---- exhaustive exploration -----------------------------------------------------------------
#
# The protocol state of a pair of books is finite once nonces are named by their role
# (fresh nonces make every delivered message new; time is held constant): trust rows,
# pending requests, and the (collapsed) outboxes. So instead of sampling, walk *every*
# reachable state breadth-first, from empty books, over every command and every
# one-message delivery (acknowledged or not), and check from each state that draining
# the outboxes leaves both sides in agreement.

_ACTIONS: list[tuple[Any, ...]] = []
for _side in (0, 1):
    _ACTIONS += [("request", _side, ""), ("request", _side, "x")]
    _ACTIONS += [("approve", _side), ("reject", _side), ("revoke", _side)]
    _ACTIONS += [("deliver", _side, True), ("deliver", _side, False)]
_IDENTITIES = (ALICE, BOB)
#: The walk must close (no new states) within this many steps; it closes after 10.
MAX_DEPTH = 16


def _clone(db: Database) -> Database:
    """A copy of an in-memory database (schema included, so migrations are skipped)."""
    new = Database.__new__(Database)
    new.path = db.path
    new._conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    new._conn.row_factory = sqlite3.Row
    db._conn.backup(new._conn)
    return new


def _books(dbs: list[Database]) -> list[TrustBook]:
    return [TrustBook(_IDENTITIES[i], dbs[i]) for i in (0, 1)]


def _abstract(dbs: list[Database]) -> tuple[Any, ...]:
    """The state with nonces renamed by first appearance (equalities are what matter)."""
    names: dict[bytes, int] = {}

    def name(value: Any) -> Any:
        return names.setdefault(bytes(value), len(names)) if value else value

    state = []
    for db in dbs:
        trusted = db.query_one("SELECT 1 FROM trust") is not None
        requests = tuple(
            (r["direction"], r["reason"], name(r["nonce"]))
            for r in db.query("SELECT * FROM trust_requests ORDER BY direction")
        )
        outbox = tuple(
            (r["kind"], r["reason"], name(r["ref"]))
            for r in db.query("SELECT * FROM trust_outbox ORDER BY id")
        )
        state.append((trusted, requests, outbox))
    return tuple(state)


def _act(books: list[TrustBook], action: tuple[Any, ...], nonce: Callable[[], bytes]) -> bool:
    side = action[1]
    me, other = books[side], _IDENTITIES[1 - side].agent_id
    try:
        if action[0] == "request":
            me.request(other, action[2], T0)
        elif action[0] == "approve":
            me.approve(other, T0)
        elif action[0] == "reject":
            me.reject(other, T0)
        elif action[0] == "revoke":
            me.revoke(other, T0)
        else:
            items = me.outgoing(other, T0, nonce)
            if not items:
                return False
            books[1 - side].receive(me.agent_id, items[0][1], T0)
            if action[2]:
                me.mark_delivered(items[0][0])
    except NotFound:
        return False
    return True


def _agree_after_drain(dbs: list[Database], nonce: Callable[[], bytes]) -> bool:
    copies = [_clone(db) for db in dbs]
    books = _books(copies)
    try:
        for _ in range(MAX_DRAIN_ROUNDS):
            moved = False
            for side in (0, 1):
                peer = _IDENTITIES[1 - side].agent_id
                for outbox_id, envelope in books[side].outgoing(peer, T0, nonce):
                    books[1 - side].receive(books[side].agent_id, envelope, T0)
                    books[side].mark_delivered(outbox_id)
                    moved = True
            if not moved:
                return books[0].is_trusted(BOB.agent_id) == books[1].is_trusted(ALICE.agent_id)
        raise AssertionError("trust messages kept flowing: the protocol does not quiesce")
    finally:
        for db in copies:
            db.close()


def test_every_reachable_state_converges() -> None:
    counter = itertools.count(1)

    def nonce() -> bytes:
        return next(counter).to_bytes(16, "big")

    start = [Database(":memory:"), Database(":memory:")]
    paths: dict[tuple[Any, ...], tuple[tuple[Any, ...], ...]] = {_abstract(start): ()}
    frontier: list[tuple[list[Database], tuple[tuple[Any, ...], ...]]] = [(start, ())]
    for _ in range(MAX_DEPTH):
        next_frontier: list[tuple[list[Database], tuple[tuple[Any, ...], ...]]] = []
        for dbs, path in frontier:
            for action in _ACTIONS:
                copies = [_clone(db) for db in dbs]
                state = _abstract(copies) if _act(_books(copies), action, nonce) else None
                if state is None or state in paths:
                    for db in copies:
                        db.close()
                    continue
                paths[state] = (*path, action)
                assert _agree_after_drain(copies, nonce), f"diverges after {paths[state]}"
                next_frontier.append((copies, paths[state]))
            for db in dbs:
                db.close()
        frontier = next_frontier
        if not frontier:
            break
    assert not frontier, f"state space not closed within {MAX_DEPTH} steps"
    assert len(paths) > 100  # sanity: the walk really covered the protocol
