"""Stateful property test: two sessions driven by random application behaviour.

Invariants checked after every step: windows never negative, the receive-side credit
identity holds, buffered_amount matches the queue, what each side received is a prefix
of what the other sent on that stream, no event after ConnectionTerminated. At the end,
once every stream is accepted and every byte acknowledged, delivery is complete.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)
from session_helpers import Peer, exchange, make_pair

from swarmlink.errors import ErrorCode
from swarmlink.session import (
    BASE_STREAM_WINDOW,
    ConnectionTerminated,
    Session,
    SessionConfig,
    SessionState,
)
from swarmlink.session._stream import StreamState

PATTERN = bytes(range(251)) * 1700  # any slice of it is position-dependent
SIZES = st.sampled_from([0, 1, 7, 100, 999, 1000, 1001, 5000, 70_000, 300_000])
WINDOW = 2 * BASE_STREAM_WINDOW


def chunk(offset: int, n: int) -> bytes:
    start = offset % 251
    return PATTERN[start : start + n]


class SessionPair(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        config = SessionConfig(initial_window=WINDOW, max_send_frame=1000, max_inbound_streams=6)
        c, s = make_pair(client=config, server=config)
        self.peers = (
            Peer(c, auto_accept=False, auto_ack=False),
            Peer(s, auto_accept=False, auto_ack=False),
        )
        self.sent: tuple[dict[int, bytearray], dict[int, bytearray]] = ({}, {})
        self.dead: set[int] = set()  # reset by either side: no delivery guarantee

    # ---- helpers --------------------------------------------------------------------

    def session(self, side: int) -> Session:
        return self.peers[side].session

    def states(self, side: int) -> dict[int, StreamState]:
        return self.session(side)._streams

    def writable(self, side: int) -> list[int]:
        return sorted(
            sid
            for sid, state in self.states(side).items()
            if not state.fin_pending and (state.local or state.accepted)
        )

    def pending(self, side: int) -> list[int]:
        return sorted(
            sid
            for sid, state in self.states(side).items()
            if not state.local and not state.accepted
        )

    def alive(self) -> bool:
        return all(p.session.state is not SessionState.CLOSED for p in self.peers)

    def pump(self) -> None:
        for peer in self.peers:
            peer.pump()
            for sid in peer.reset:  # reset by the peer, or refused (stream limit)
                self.dead.add(sid)

    # ---- rules ------------------------------------------------------------------------

    @precondition(lambda self: self.alive())
    @rule(side=st.integers(0, 1))
    def open_stream(self, side: int) -> None:
        sid = self.session(side).open_stream(f"/sm/{side}")
        self.sent[side][sid] = bytearray()

    @precondition(lambda self: self.alive())
    @rule(side=st.integers(0, 1), data=st.data(), size=SIZES, end=st.booleans())
    def send(self, side: int, data: st.DataObject, size: int, end: bool) -> None:
        candidates = self.writable(side)
        if not candidates:
            self.open_stream(side)
            candidates = self.writable(side)
        sid = data.draw(st.sampled_from(candidates))
        log = self.sent[side].setdefault(sid, bytearray())
        payload = chunk(len(log), size)
        self.session(side).send_data(sid, payload, end_stream=end)
        log.extend(payload)

    @precondition(lambda self: self.alive())
    @rule(side=st.integers(0, 1), data=st.data(), refuse=st.booleans())
    def answer_open(self, side: int, data: st.DataObject, refuse: bool) -> None:
        candidates = self.pending(side)
        if not candidates:
            return
        sid = data.draw(st.sampled_from(candidates))
        if refuse:
            self.session(side).reset_stream(sid, ErrorCode.REFUSED, "no")
            self.dead.add(sid)
        else:
            self.session(side).accept_stream(sid)

    @precondition(lambda self: self.alive())
    @rule(side=st.integers(0, 1), data=st.data())
    def reset(self, side: int, data: st.DataObject) -> None:
        candidates = sorted(self.states(side))
        if not candidates or data.draw(st.integers(0, 3)):  # resets are rare: they end checks
            return
        sid = data.draw(st.sampled_from(candidates))
        self.session(side).reset_stream(sid, ErrorCode.CANCEL, "random reset")
        self.dead.add(sid)

    @precondition(lambda self: self.alive())
    @rule(side=st.integers(0, 1), data=st.data(), fraction=st.sampled_from([0.1, 0.5, 1.0]))
    def acknowledge(self, side: int, data: st.DataObject, fraction: float) -> None:
        candidates = sorted(s for s, st_ in self.states(side).items() if st_.recv_unconsumed)
        if not candidates:
            return
        sid = data.draw(st.sampled_from(candidates))
        n = int(self.states(side)[sid].recv_unconsumed * fraction)
        self.session(side).acknowledge_received(sid, n)

    @rule(chop=st.sampled_from([0, 0, 0, 1, 5]))
    def deliver(self, chop: int) -> None:
        # Byte by byte is slow on big volumes: chop only when little is on its way.
        backlog = sum(
            sum(len(piece) for piece in p.session._out)
            + sum(state.buffered for state in p.session._streams.values())
            for p in self.peers
        )
        exchange(self.peers[0], self.peers[1], chop=chop if backlog < 20_000 else 0)
        self.pump()

    @precondition(lambda self: self.alive())
    @rule(side=st.integers(0, 1))
    def ping(self, side: int) -> None:
        self.session(side).send_ping(0.0)

    @precondition(lambda self: self.alive())
    @rule(side=st.integers(0, 1), data=st.data())
    def close(self, side: int, data: st.DataObject) -> None:
        if data.draw(st.integers(0, 29)) == 0:  # rarely: it ends the run's interest
            self.session(side).close(ErrorCode.NO_ERROR, "done")
            self.pump()
            assert self.peers[side].terminated == ConnectionTerminated(
                ErrorCode.NO_ERROR, "done", False
            )

    # ---- invariants -----------------------------------------------------------------

    @invariant()
    def windows_and_buffers(self) -> None:
        for side in (0, 1):
            for sid, state in self.states(side).items():
                assert state.send_window >= 0 and state.recv_credit >= 0
                assert state.buffered == sum(len(b) for b in state.send_queue)
                assert self.session(side).buffered_amount(sid) == state.buffered
                if not state.fin_received:
                    granted = WINDOW if (state.local or state.accepted) else BASE_STREAM_WINDOW
                    total = state.recv_credit + state.recv_unconsumed + state.recv_unannounced
                    assert total == granted, (sid, total, granted)

    @invariant()
    def delivered_in_order(self) -> None:
        for side in (0, 1):
            other = self.peers[1 - side]
            for sid, log in self.sent[side].items():
                got = other.received.get(sid, b"")
                assert log.startswith(got), sid

    @invariant()
    def closed_means_silent(self) -> None:
        for peer in self.peers:
            if peer.terminated is not None:
                assert peer.session.state is SessionState.CLOSED
                assert peer.session.get_timer() is None

    def teardown(self) -> None:
        if not self.alive():
            return
        # Accept everything, acknowledge everything, and let it all flow.
        for _ in range(100):
            for side in (0, 1):
                session = self.session(side)
                for sid in self.pending(side):
                    session.accept_stream(sid)
                for sid, state in list(self.states(side).items()):
                    if state.recv_unconsumed:
                        session.acknowledge_received(sid, state.recv_unconsumed)
            self.peers[0].auto_ack = self.peers[1].auto_ack = True
            exchange(self.peers[0], self.peers[1])
            self.pump()
            if not any(self.pending(side) for side in (0, 1)):
                break
        for side in (0, 1):
            other = self.peers[1 - side]
            for sid, log in self.sent[side].items():
                if sid in self.dead:
                    continue
                assert other.received.get(sid, b"") == log, sid
                assert self.session(side).buffered_amount(sid) == 0
        for peer in self.peers:
            assert not any(isinstance(e, ConnectionTerminated) for e in peer.events)


SessionPair.TestCase.settings = settings(max_examples=100, stateful_step_count=40)
test_session_pair = SessionPair.TestCase
