"""Session behaviour between two honest peers: handshake, streams, data, flow control."""

from __future__ import annotations

import pytest
from session_helpers import (
    Peer,
    drain,
    exchange,
    frames_of,
    goaway_of,
    make_pair,
    run_clock,
    transfer,
    transfer_chopped,
)

from swarmlink.errors import ErrorCode, InvalidArgument, StateError
from swarmlink.session import (
    BASE_STREAM_WINDOW,
    MAX_REASON_BYTES,
    ConnectionTerminated,
    DataReceived,
    HandshakeCompleted,
    Session,
    SessionConfig,
    SessionState,
    StreamAccepted,
    StreamClosed,
    StreamOpened,
    StreamReset,
    StreamWritable,
)
from swarmlink.wire.framing import Flag, FrameType
from swarmlink.wire.version import Hello

# ---- handshake ----------------------------------------------------------------------


def test_hello_is_queued_first() -> None:
    s = Session(is_client=True, now=0.0)
    sid = s.open_stream("/test/1")  # allowed while handshaking: queued behind HELLO
    s.send_data(sid, b"early")
    frames = frames_of(s.data_to_send())
    assert [f.type for f in frames] == [
        FrameType.HELLO,
        FrameType.OPEN,
        FrameType.WINDOW,
        FrameType.DATA,
    ]
    assert Hello.decode(frames[0].payload) == SessionConfig().hello()
    assert s.state is SessionState.HANDSHAKING
    assert s.data_to_send() == b""


@pytest.mark.parametrize("chop", [0, 1, 7])
def test_handshake(chop: int) -> None:
    c = Session(is_client=True, config=SessionConfig(user_agent="client/1"), now=0.0)
    s = Session(is_client=False, config=SessionConfig(user_agent="server/2"), now=0.0)
    assert c.is_client and not s.is_client
    if chop:
        transfer_chopped(c, s, chunk=chop)
    else:
        transfer(c, s)
    assert drain(c) == [HandshakeCompleted(1, frozenset({"mux", "trust"}), "server/2")]
    assert drain(s) == [HandshakeCompleted(1, frozenset({"mux", "trust"}), "client/1")]
    assert c.state is s.state is SessionState.OPEN
    assert c.peer_user_agent == "server/2" and s.peer_user_agent == "client/1"
    assert c.negotiated is not None and c.negotiated.version == 1


def test_features_are_intersected() -> None:
    c, s = make_pair(
        client=SessionConfig(features=frozenset({"mux", "x"})),
        server=SessionConfig(features=frozenset({"mux", "y"})),
        handshake=False,
    )
    transfer(c, s)
    for session in (c, s):
        (event,) = drain(session)
        assert isinstance(event, HandshakeCompleted) and event.features == frozenset({"mux"})


def test_version_mismatch_is_explained_on_both_sides() -> None:
    c, s = make_pair(
        client=SessionConfig(versions=(2, 3)), server=SessionConfig(versions=(1,)), handshake=False
    )
    c_out, s_out = c.data_to_send(), s.data_to_send()
    c.receive_data(s_out, 0.0)
    s.receive_data(c_out, 0.0)
    for session, out, ours, theirs in (
        (c, c.data_to_send(), "2, 3", "1"),
        (s, s.data_to_send(), "1", "2, 3"),
    ):
        assert session.state is SessionState.CLOSED
        (event,) = drain(session)
        assert isinstance(event, ConnectionTerminated)
        assert event.code == ErrorCode.VERSION_MISMATCH and not event.by_peer
        assert f"we speak {ours}" in event.reason and f"speaks {theirs}" in event.reason
        assert goaway_of(out) == (ErrorCode.VERSION_MISMATCH, event.reason)
    assert c.negotiated is None


def test_streams_opened_during_handshake_work() -> None:
    c, s = make_pair(handshake=False)
    sid = c.open_stream("/early/1")
    c.send_data(sid, b"optimistic", end_stream=True)
    transfer(c, s)
    events = drain(s)
    assert isinstance(events[0], HandshakeCompleted)
    assert events[1:] == [
        StreamOpened(sid, "/early/1"),
        DataReceived(sid, b"optimistic", True),
    ]


# ---- opening, accepting, refusing -----------------------------------------------------


def test_stream_ids_follow_parity() -> None:
    c, s = make_pair()
    assert [c.open_stream("/p/1") for _ in range(3)] == [1, 3, 5]
    assert [s.open_stream("/p/1") for _ in range(3)] == [2, 4, 6]
    transfer(c, s)
    assert [e.stream_id for e in drain(s) if isinstance(e, StreamOpened)] == [1, 3, 5]
    assert [e.stream_id for e in drain(c) if isinstance(e, StreamOpened)] == [2, 4, 6]
    assert c.open_stream_count == s.open_stream_count == 6
    assert c.stream_protocol(1) == c.stream_protocol(2) == "/p/1"


def test_open_accept_exchange_and_half_close_both_ways() -> None:
    c, s = make_pair()
    sid = c.open_stream("/echo/1")
    c.send_data(sid, b"ping")
    transfer(c, s)
    assert drain(s) == [StreamOpened(sid, "/echo/1"), DataReceived(sid, b"ping", False)]
    s.accept_stream(sid)
    s.send_data(sid, b"pong")
    transfer(c, s)
    assert drain(c) == [StreamAccepted(sid), DataReceived(sid, b"pong", False)]
    # Client half-closes first; the server can still send.
    c.send_eof(sid)
    transfer(c, s)
    assert drain(s) == [DataReceived(sid, b"", True)]
    s.send_data(sid, b"more")
    s.send_data(sid, b"last", end_stream=True)
    assert drain(s) == [StreamClosed(sid)]
    transfer(c, s)
    assert drain(c) == [
        DataReceived(sid, b"more", False),
        DataReceived(sid, b"last", True),
        StreamClosed(sid),
    ]
    assert c.open_stream_count == s.open_stream_count == 0
    assert c.buffered_amount(sid) == 0
    with pytest.raises(StateError, match="closed or was reset"):
        c.send_data(sid, b"x")


def test_server_half_closes_first() -> None:
    c, s = make_pair()
    sid = s.open_stream("/srv/1")
    s.send_data(sid, b"hello", end_stream=True)
    transfer(c, s)
    assert drain(c) == [StreamOpened(sid, "/srv/1"), DataReceived(sid, b"hello", True)]
    c.accept_stream(sid)
    c.send_eof(sid)
    assert drain(c) == [StreamClosed(sid)]
    transfer(c, s)
    assert drain(s) == [StreamAccepted(sid), DataReceived(sid, b"", True), StreamClosed(sid)]


def test_refusal_reaches_the_opener() -> None:
    c, s = make_pair()
    sid = c.open_stream("/nope/1")
    c.send_data(sid, b"data the server will drop")
    transfer(c, s)
    assert isinstance(drain(s)[0], StreamOpened)
    s.reset_stream(sid, ErrorCode.UNKNOWN_PROTOCOL, "no handler for /nope/1")
    assert drain(s) == []  # a local reset reports no event
    transfer(c, s)
    assert drain(c) == [
        StreamReset(sid, ErrorCode.UNKNOWN_PROTOCOL, "no handler for /nope/1", True)
    ]
    assert c.open_stream_count == s.open_stream_count == 0
    with pytest.raises(StateError):
        c.send_data(sid, b"x")


@pytest.mark.parametrize("resetter", ["client", "server"])
def test_reset_either_direction_and_crossing_frames_are_ignored(resetter: str) -> None:
    c, s = make_pair()
    sid = c.open_stream("/r/1")
    transfer(c, s)
    drain(s)
    s.accept_stream(sid)
    transfer(c, s)
    drain(c)
    a, b = (c, s) if resetter == "client" else (s, c)
    a.reset_stream(sid, ErrorCode.CANCEL, "changed my mind")
    # b has not seen the RESET yet and keeps talking: those frames cross it.
    b.send_data(sid, b"x" * 1000)
    b.send_eof(sid)
    transfer(c, s)
    assert drain(a) == []
    assert drain(b) == [StreamReset(sid, ErrorCode.CANCEL, "changed my mind", True)]
    assert a.state is b.state is SessionState.OPEN
    # Resetting again, accepting or acknowledging a gone stream are harmless no-ops.
    a.reset_stream(sid, ErrorCode.CANCEL)
    b.acknowledge_received(sid, 0)
    assert a.data_to_send() == b""


def test_long_reasons_are_truncated() -> None:
    c, s = make_pair()
    sid = c.open_stream("/r/1")
    transfer(c, s)
    drain(s)
    s.reset_stream(sid, ErrorCode.REFUSED, "é" * 1000)
    transfer(c, s)
    (event,) = drain(c)
    assert isinstance(event, StreamReset)
    assert event.reason == "é" * (MAX_REASON_BYTES // 2)


# ---- data and flow control ------------------------------------------------------------


def test_large_transfer_is_chunked_and_intact() -> None:
    config = SessionConfig(max_send_frame=16 * 1024)
    c, s = make_pair(client=config, server=config)
    cp, sp = Peer(c), Peer(s)
    payload = bytes(range(256)) * 40_000  # ~10 MB, ten windows' worth
    sid = c.open_stream("/bulk/1")
    c.send_data(sid, payload, end_stream=True)
    out = c.data_to_send()
    frames = frames_of(out)
    data_frames = [f for f in frames if f.type is FrameType.DATA]
    assert all(len(f.payload) <= 16 * 1024 for f in data_frames)
    assert sum(len(f.payload) for f in data_frames) == BASE_STREAM_WINDOW
    s.receive_data(out, 0.0)
    exchange(cp, sp)
    assert sp.received[sid] == payload and sid in sp.finished
    s.send_eof(sid)
    exchange(cp, sp)
    assert sid in cp.closed and sid in sp.closed


def test_bidirectional_data_byte_by_byte() -> None:
    c, s = make_pair()
    cp, sp = Peer(c), Peer(s)
    sid = c.open_stream("/bi/1")
    up, down = b"u" * 5000 + b"!", b"d" * 7000 + b"?"
    c.send_data(sid, up, end_stream=True)
    exchange(cp, sp, chop=1)
    s.send_data(sid, down, end_stream=True)
    exchange(cp, sp, chop=3)
    assert sp.received[sid] == up and cp.received[sid] == down
    assert sid in cp.closed and sid in sp.closed


def test_fin_rides_on_the_last_data_frame() -> None:
    c, _s = make_pair(client=SessionConfig(max_send_frame=1000))
    sid = c.open_stream("/fin/1")
    c.send_data(sid, b"z" * 2500, end_stream=True)
    frames = [f for f in frames_of(c.data_to_send()) if f.type is FrameType.DATA]
    assert [(len(f.payload), f.flags) for f in frames] == [(1000, 0), (1000, 0), (500, Flag.FIN)]


def test_receiver_that_never_acknowledges_stops_sender_at_initial_window() -> None:
    window = 512 * 1024
    config = SessionConfig(initial_window=window)
    c, s = make_pair(client=config, server=config)
    cp, sp = Peer(c), Peer(s, auto_ack=False)
    sid = c.open_stream("/fc/1")
    total = 3 * window + 12345
    c.send_data(sid, b"q" * total)
    exchange(cp, sp)
    assert len(sp.received[sid]) == window  # exactly the window, not a byte more
    assert c.buffered_amount(sid) == total - window
    # The acceptor's extra grant (initial_window - BASE) let buffered data go once.
    assert [e for e in cp.events if isinstance(e, StreamWritable)] == [StreamWritable(sid)]
    # Acknowledging less than half the window announces nothing yet.
    s.acknowledge_received(sid, window // 2 - 1)
    assert s.data_to_send() == b""
    s.acknowledge_received(sid, 1)
    exchange(cp, sp)
    assert len(sp.received[sid]) == window + window // 2
    assert c.buffered_amount(sid) == total - window - window // 2
    assert [e for e in cp.events if isinstance(e, StreamWritable)] == [StreamWritable(sid)] * 2
    # Acknowledge everything as it arrives: the rest flows and the buffer empties.
    sp.auto_ack = True
    s.acknowledge_received(sid, len(sp.received[sid]) - window // 2)
    exchange(cp, sp)
    assert len(sp.received[sid]) == total and c.buffered_amount(sid) == 0


def test_optimistic_data_is_limited_to_the_base_window_until_accepted() -> None:
    c, s = make_pair()
    cp, sp = Peer(c), Peer(s, auto_accept=False)
    sid = c.open_stream("/opt/1")
    c.send_data(sid, b"o" * (BASE_STREAM_WINDOW * 2))
    exchange(cp, sp)
    assert len(sp.received[sid]) == BASE_STREAM_WINDOW
    assert c.buffered_amount(sid) == BASE_STREAM_WINDOW
    s.accept_stream(sid)  # grants the rest of initial_window
    exchange(cp, sp)
    assert len(sp.received[sid]) == 2 * BASE_STREAM_WINDOW
    assert c.buffered_amount(sid) == 0


def test_acknowledge_more_than_received_is_refused() -> None:
    c, s = make_pair()
    sid = c.open_stream("/a/1")
    c.send_data(sid, b"12345")
    transfer(c, s)
    drain(s)
    with pytest.raises(InvalidArgument, match="only 5"):
        s.acknowledge_received(sid, 6)
    with pytest.raises(InvalidArgument):
        s.acknowledge_received(sid, -1)
    s.acknowledge_received(sid, 5)


def test_thousand_concurrent_streams() -> None:
    c, s = make_pair()
    cp, sp = Peer(c), Peer(s)
    sids = [c.open_stream(f"/many/{i}") for i in range(1000)]
    for sid in sids:
        c.send_data(sid, sid.to_bytes(4, "big") * 100, end_stream=True)
    exchange(cp, sp)
    assert s.open_stream_count == 1000
    for sid in sids:
        assert sp.received[sid] == sid.to_bytes(4, "big") * 100
        assert sp.opened[sid] == f"/many/{sids.index(sid)}"
        s.send_data(sid, b"ok", end_stream=True)
    exchange(cp, sp)
    assert cp.closed == sp.closed == set(sids)
    assert c.open_stream_count == s.open_stream_count == 0


def test_inbound_stream_limit() -> None:
    c, s = make_pair(server=SessionConfig(max_inbound_streams=2))
    cp, sp = Peer(c), Peer(s)
    first, second, third = (c.open_stream("/lim/1") for _ in range(3))
    c.send_data(third, b"dropped")
    exchange(cp, sp)
    assert set(sp.opened) == {first, second}
    assert cp.reset[third].code == ErrorCode.STREAM_LIMIT and cp.reset[third].by_peer
    assert "limit 2" in cp.reset[third].reason
    assert s.state is SessionState.OPEN
    # Closing one makes room again; the server's own streams do not count.
    c.reset_stream(first, ErrorCode.CANCEL)
    s.open_stream("/srv/1")
    fourth = c.open_stream("/lim/1")
    exchange(cp, sp)
    assert fourth in sp.opened and fourth not in cp.reset


# ---- ping, timers, close ----------------------------------------------------------------


def test_ping_rtt_with_virtual_time() -> None:
    c, s = make_pair()
    first = c.send_ping(10.0)
    second = c.send_ping(10.5)
    assert first != second
    s.receive_data(c.data_to_send(), 10.6)
    c.receive_data(s.data_to_send(), 11.25)
    events = drain(c)
    assert [(e.ping_id, e.rtt) for e in events] == [(first, 1.25), (second, 0.75)]  # type: ignore[union-attr]
    assert drain(s) == []


def test_keepalive_pings_when_silent_and_peer_answers() -> None:
    config = SessionConfig(keepalive_interval=15.0, dead_peer_timeout=45.0)
    c, s = make_pair(client=config, server=config)
    assert c.get_timer() == 15.0
    c.handle_timer(14.9)
    assert c.data_to_send() == b""
    c.handle_timer(15.0)
    out = c.data_to_send()
    assert [(f.type, f.flags) for f in frames_of(out)] == [(FrameType.PING, 0)]
    s.receive_data(out, 15.0)
    echo = s.data_to_send()
    assert [(f.type, f.flags) for f in frames_of(echo)] == [(FrameType.PING, Flag.ACK)]
    c.receive_data(echo, 15.2)
    assert drain(c) == []  # keepalive echoes are not reported
    assert c.get_timer() == pytest.approx(30.2)
    # Two sessions that keep answering each other live forever.
    run_clock([c, s], until=1000.0, start=15.2)
    assert c.state is s.state is SessionState.OPEN


def test_dead_peer_timeout() -> None:
    config = SessionConfig(keepalive_interval=15.0, dead_peer_timeout=45.0)
    c, _s = make_pair(client=config)
    run_clock([c], until=44.9)
    assert c.get_timer() == 45.0
    c.handle_timer(45.0)
    assert c.state is SessionState.CLOSED
    (event,) = drain(c)
    assert isinstance(event, ConnectionTerminated)
    assert event.code == ErrorCode.IDLE_TIMEOUT and not event.by_peer
    assert "45s" in event.reason
    assert goaway_of(c.data_to_send())[0] == ErrorCode.IDLE_TIMEOUT
    assert c.get_timer() is None


def test_keepalive_sends_one_ping_per_interval() -> None:
    c, _s = make_pair()
    pings = 0
    for t in (15.0, 20.0, 30.0, 44.0):
        c.handle_timer(t)
        pings += sum(f.type is FrameType.PING for f in frames_of(c.data_to_send()))
    assert pings == 2


def test_handshake_timeout() -> None:
    c = Session(is_client=True, config=SessionConfig(handshake_timeout=5.0), now=100.0)
    assert c.get_timer() == 105.0
    c.handle_timer(104.0)
    assert c.state is SessionState.HANDSHAKING
    c.handle_timer(105.0)
    (event,) = drain(c)
    assert isinstance(event, ConnectionTerminated) and event.code == ErrorCode.IDLE_TIMEOUT
    assert "handshake" in event.reason


def test_idle_timeout_closes_gracefully_only_without_streams() -> None:
    config = SessionConfig(idle_timeout=60.0)
    c, s = make_pair(client=config)
    sid = c.open_stream("/keep/1")
    transfer(c, s)
    drain(s)
    run_clock([c, s], until=500.0)
    assert c.state is SessionState.OPEN  # a stream is open: never idle
    # Commands carry no time: a stream that ends in one counts from the last input.
    c.handle_timer(500.0)
    c.reset_stream(sid, ErrorCode.CANCEL)
    transfer(c, s, 500.0)
    run_clock([c, s], until=559.0, start=500.0)
    assert c.state is SessionState.OPEN
    run_clock([c, s], until=560.0, start=559.0)
    assert c.state is s.state is SessionState.CLOSED
    assert drain(c)[-1] == ConnectionTerminated(ErrorCode.NO_ERROR, "idle", False)
    assert drain(s)[-1] == ConnectionTerminated(ErrorCode.NO_ERROR, "idle", True)


def test_graceful_close_resets_streams_on_both_sides() -> None:
    c, s = make_pair()
    cp, sp = Peer(c), Peer(s)
    a = c.open_stream("/x/1")
    b = s.open_stream("/x/1")
    c.send_data(a, b"pending")
    exchange(cp, sp)
    c.close(ErrorCode.SHUTDOWN, "node stopping")
    assert c.state is SessionState.CLOSED
    assert drain(c) == [
        StreamReset(a, ErrorCode.SHUTDOWN, "node stopping", False),
        StreamReset(b, ErrorCode.SHUTDOWN, "node stopping", False),
        ConnectionTerminated(ErrorCode.SHUTDOWN, "node stopping", False),
    ]
    out = c.data_to_send()
    assert goaway_of(out) == (ErrorCode.SHUTDOWN, "node stopping")
    s.receive_data(out, 0.0)
    assert drain(s) == [  # in the order the streams came to exist on that side
        StreamReset(b, ErrorCode.SHUTDOWN, "node stopping", True),
        StreamReset(a, ErrorCode.SHUTDOWN, "node stopping", True),
        ConnectionTerminated(ErrorCode.SHUTDOWN, "node stopping", True),
    ]
    assert s.data_to_send() == b""  # no GOAWAY in answer to a GOAWAY
    c.close()  # idempotent
    assert drain(c) == [] and c.data_to_send() == b""


def test_connection_lost() -> None:
    c, s = make_pair()
    sid = c.open_stream("/x/1")
    c.send_data(sid, b"never sent")
    c.connection_lost(3.0)
    assert drain(c) == [
        StreamReset(sid, ErrorCode.NO_ERROR, "connection lost", True),
        ConnectionTerminated(ErrorCode.NO_ERROR, "connection lost", True),
    ]
    assert c.data_to_send() == b""
    c.connection_lost(4.0)
    c.receive_data(s.data_to_send() or b"\x00", 5.0)
    assert drain(c) == []


# ---- command errors -------------------------------------------------------------------


def test_command_errors() -> None:
    c, s = make_pair()
    with pytest.raises(StateError, match="never opened"):
        c.send_data(1, b"x")
    with pytest.raises(StateError, match="never opened"):
        c.accept_stream(2)
    with pytest.raises(StateError, match="never opened"):
        c.reset_stream(7, ErrorCode.CANCEL)
    with pytest.raises(StateError, match="never opened"):
        c.buffered_amount(9)
    with pytest.raises(StateError):
        c.stream_protocol(1)
    for bad in ("", "has space", "x" * 129, "caf\u00e9", "tab\t"):
        with pytest.raises(InvalidArgument):
            c.open_stream(bad)
    sid = c.open_stream("/ok/1")
    with pytest.raises(StateError, match="opened by this side"):
        c.accept_stream(sid)
    c.send_eof(sid)
    with pytest.raises(StateError, match="sending side is ended"):
        c.send_data(sid, b"late")
    with pytest.raises(InvalidArgument):
        c.send_data(c.open_stream("/ok/1"), "text")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        c.reset_stream(sid, 3)  # type: ignore[arg-type]
    transfer(c, s)
    drain(s)
    with pytest.raises(StateError, match="accept it first"):
        s.send_data(sid, b"too soon")
    s.accept_stream(sid)
    with pytest.raises(StateError, match="already accepted"):
        s.accept_stream(sid)
    c.close()
    for command in (
        lambda: c.open_stream("/x/1"),
        lambda: c.send_data(sid, b"x"),
        lambda: c.send_ping(0.0),
    ):
        with pytest.raises(StateError, match="closed"):
            command()
    # Race-tolerant commands do nothing once the session ended.
    c.accept_stream(sid)
    c.reset_stream(sid, ErrorCode.CANCEL)
    c.acknowledge_received(sid, 0)


def test_send_accepts_bytes_like_and_copies_them() -> None:
    c, s = make_pair()
    cp, sp = Peer(c), Peer(s)
    sid = c.open_stream("/copy/1")
    buf = bytearray(b"a" * (BASE_STREAM_WINDOW + 10))  # more than the window: buffered
    c.send_data(sid, buf)
    buf[:] = b"b" * len(buf)
    c.send_data(sid, memoryview(b"tail"), end_stream=True)
    exchange(cp, sp)
    assert sp.received[sid] == b"a" * (BASE_STREAM_WINDOW + 10) + b"tail"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_send_frame": 0},
        {"max_send_frame": 256 * 1024 + 1},
        {"initial_window": BASE_STREAM_WINDOW - 1},
        {"initial_window": 2**31},
        {"max_inbound_streams": -1},
        {"max_protocol_name": 0},
        {"keepalive_interval": 0},
        {"keepalive_interval": float("nan")},
        {"dead_peer_timeout": 10.0, "keepalive_interval": 20.0},
        {"idle_timeout": -1.0},
        {"handshake_timeout": float("inf")},
        {"user_agent": "bad\nagent"},
        {"versions": ()},
        {"features": "mux"},
        {"max_send_frame": True},
    ],
)
def test_config_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        SessionConfig(**kwargs)  # type: ignore[arg-type]


def test_config_defaults() -> None:
    config = SessionConfig()
    assert config.max_send_frame == 64 * 1024
    assert config.initial_window == 1024 * 1024
    assert config.max_inbound_streams == 1024
    assert config.max_protocol_name == 128
    assert (config.keepalive_interval, config.dead_peer_timeout) == (15.0, 45.0)
    assert config.idle_timeout is None and config.handshake_timeout == 10.0
    assert config.versions == (1,) and "mux" in config.features
