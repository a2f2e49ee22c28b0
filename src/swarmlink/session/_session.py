"""The sans-I/O session: HELLO, stream multiplexing, flow control, keepalive.

Wire rules this module enforces (a violation ends the session with GOAWAY):

* The first frame from the peer is HELLO (``PROTOCOL_ERROR`` otherwise); a second one is
  a ``PROTOCOL_ERROR``; no common version is ``VERSION_MISMATCH``.
* HELLO, PING and GOAWAY travel on stream 0, every other type on a non-zero stream.
* The client opens odd stream IDs, the server even ones, each strictly greater than the
  last it opened. A frame other than OPEN on a stream its opener never opened is a
  ``PROTOCOL_ERROR``; frames on a stream that existed but was closed or reset are
  ignored (they may have crossed our RESET).
* An OPEN beyond ``max_inbound_streams`` concurrent peer streams is answered with RESET
  ``STREAM_LIMIT`` (not a session error).
* The acceptor sends nothing but WINDOW/RESET on a stream before its ACCEPT; DATA after
  FIN is a ``PROTOCOL_ERROR``; DATA beyond the granted window is ``FLOW_CONTROL``.
* Every stream starts with :data:`BASE_STREAM_WINDOW` of credit in each direction; the
  side granting more (``initial_window``) sends a WINDOW frame right after its OPEN or
  ACCEPT. The receiver sends WINDOW(n) once the application acknowledged ``n >=
  initial_window // 2`` bytes, so at most ``initial_window`` is ever in flight.
* Payloads: OPEN = protocol name (1..``max_protocol_name`` printable ASCII, no space),
  ACCEPT = empty, WINDOW = u32 increment > 0, PING = 8 bytes, RESET/GOAWAY = CBOR
  ``{"c": code, "r": reason}``; anything else is ``MALFORMED``.
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from typing import NoReturn

from ..errors import ErrorCode, InvalidArgument, ProtocolViolation, RemoteError, StateError
from ..wire.framing import (
    HEADER,
    MAX_CONTROL_PAYLOAD,
    MAX_FRAME_PAYLOAD,
    MAX_STREAM_ID,
    FrameDecoder,
    FrameType,
)
from ..wire.version import Hello, Negotiated, negotiate
from ._payloads import decode_close, decode_protocol_name, encode_close, encode_protocol_name
from ._stream import StreamState
from .config import BASE_STREAM_WINDOW, MAX_WINDOW, SessionConfig
from .events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    HandshakeCompleted,
    PingAcknowledged,
    StreamAccepted,
    StreamClosed,
    StreamOpened,
    StreamReset,
    StreamWritable,
)

__all__ = ["JOIN_BELOW", "Session", "SessionState"]

#: :meth:`Session.data_to_send_pieces` joins pieces shorter than this (bytes); longer
#: ones (bulk DATA payloads) are passed on without a copy.
JOIN_BELOW = 16 * 1024


class SessionState(enum.Enum):
    """Lifecycle of a :class:`Session`."""

    #: Our HELLO is queued; the peer's has not arrived yet.
    HANDSHAKING = "handshaking"
    #: Versions agreed; streams flow.
    OPEN = "open"
    #: Ended (GOAWAY either way, violation, timeout, transport lost). Final.
    CLOSED = "closed"


_HANDSHAKING = SessionState.HANDSHAKING
_OPEN = SessionState.OPEN
_CLOSED = SessionState.CLOSED

_DATA = 0
_OPEN_T = int(FrameType.OPEN)
_ACCEPT = int(FrameType.ACCEPT)
_RESET = int(FrameType.RESET)
_WINDOW = int(FrameType.WINDOW)
_PING = int(FrameType.PING)
_GOAWAY = int(FrameType.GOAWAY)
_HELLO = int(FrameType.HELLO)
_FIN = 1
_ACK = 2

_pack = HEADER.pack
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_TYPE_NAMES = tuple(t.name for t in FrameType)


def _violation(reason: str, code: ErrorCode = ErrorCode.PROTOCOL_ERROR) -> ProtocolViolation:
    return ProtocolViolation(reason, code)


class Session:
    """One multiplexed session over a reliable, ordered byte stream (a TLS connection).

    Sans-I/O: feed it bytes and time, send what :meth:`data_to_send` returns, process
    :meth:`next_event` until ``None``, and call :meth:`handle_timer` at
    :meth:`get_timer`. It never raises out of :meth:`receive_data`: bad input ends the
    session with GOAWAY and :class:`~swarmlink.session.events.ConnectionTerminated`.

    Command errors: :class:`~swarmlink.errors.InvalidArgument` for bad arguments;
    :class:`~swarmlink.errors.StateError` for a stream that was never opened, a send on
    a stream whose sending side is finished, closed or reset (by either side, even if
    the StreamReset event is still queued), a send on a peer stream not yet accepted, or
    any sending command after the session ended. ``accept_stream``, ``reset_stream`` and
    ``acknowledge_received`` on a stream that existed but is gone, or after the session
    ended, do nothing (they race with the peer by nature); ``buffered_amount`` is 0 then.
    A frame from the peer on a stream that is gone is ignored for the same reason.

    Time: commands take no ``now``; when one ends the last stream, the idle timeout
    counts from the ``now`` of the latest input (``receive_data``, ``handle_timer``,
    ``send_ping``). Timers: handshake (``IDLE_TIMEOUT``), keepalive PING after
    ``keepalive_interval`` of silence (repeated each interval; echoes are not reported),
    dead peer after ``dead_peer_timeout`` of silence (``IDLE_TIMEOUT``), idle close.
    """

    def __init__(self, *, is_client: bool, config: SessionConfig | None = None, now: float) -> None:
        cfg = SessionConfig() if config is None else config
        if not isinstance(cfg, SessionConfig):
            raise InvalidArgument(f"config must be a SessionConfig, not {type(cfg).__name__}")
        self._config = cfg
        self._is_client = bool(is_client)
        self._state = _HANDSHAKING
        self._hello = cfg.hello()
        self._negotiated: Negotiated | None = None
        self._peer_user_agent: str | None = None
        self._decoder = FrameDecoder(MAX_FRAME_PAYLOAD, MAX_CONTROL_PAYLOAD)
        self._out: list[bytes | memoryview] = []
        self._events: deque[Event] = deque()
        self._streams: dict[int, StreamState] = {}
        self._local_parity = 1 if self._is_client else 0
        self._next_local_id = 1 if self._is_client else 2
        self._last_peer_id = 0
        self._inbound = 0
        self._pings: dict[int, float] = {}
        self._keepalive_pings: set[int] = set()
        self._next_ping_id = 1
        self._max_send_frame = cfg.max_send_frame
        self._initial_window = cfg.initial_window
        self._extra_window = cfg.initial_window - BASE_STREAM_WINDOW
        self._announce_at = cfg.initial_window // 2
        self._now = now
        self._started = now
        self._last_received = now
        self._last_keepalive = now
        self._idle_since = now
        self._handlers = (
            self._recv_data,
            self._recv_open,
            self._recv_accept,
            self._recv_reset,
            self._recv_window,
            self._recv_ping,
            self._recv_goaway,
            self._recv_hello,
        )
        self._control(_HELLO, 0, 0, self._hello.encode())

    # ---- properties -----------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        """HANDSHAKING, OPEN or CLOSED."""
        return self._state

    @property
    def negotiated(self) -> Negotiated | None:
        """Agreed version and features once the handshake completed, else ``None``."""
        return self._negotiated

    @property
    def peer_user_agent(self) -> str | None:
        """The user agent from the peer's HELLO (``None`` before it arrived)."""
        return self._peer_user_agent

    @property
    def is_client(self) -> bool:
        """True on the side that initiated the connection (it opens odd stream IDs)."""
        return self._is_client

    @property
    def config(self) -> SessionConfig:
        """The configuration this session runs with."""
        return self._config

    @property
    def open_stream_count(self) -> int:
        """Streams with state: opened (by either side) and not yet closed or reset."""
        return len(self._streams)

    def stream_protocol(self, stream_id: int) -> str:
        """The protocol name a stream was opened with (:class:`StateError` if it has none)."""
        stream = self._streams.get(stream_id)
        if stream is None:
            raise StateError(f"stream {stream_id} is not open")
        return stream.protocol

    def buffered_amount(self, stream_id: int) -> int:
        """Bytes queued on a stream waiting for the peer's window (0 once it is gone)."""
        stream = self._streams.get(stream_id)
        if stream is not None:
            return stream.buffered
        self._check_existed(stream_id)
        return 0

    # ---- outputs --------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Everything queued for the peer since the last call (``b""`` if nothing)."""
        out = self._out
        if not out:
            return b""
        data = b"".join(out)
        out.clear()
        return data

    def data_to_send_pieces(self) -> list[bytes | memoryview]:
        """:meth:`data_to_send` as pieces to write in order (e.g. with ``writelines``):
        runs of small pieces are joined, each piece of :data:`JOIN_BELOW` bytes or more
        is handed out as it is (a bulk payload is not copied once more just to glue a
        10-byte header in front of it)."""
        out = self._out
        if not out:
            return []
        self._out = []
        pieces: list[bytes | memoryview] = []
        small: list[bytes | memoryview] = []
        for piece in out:
            if len(piece) < JOIN_BELOW:
                small.append(piece)
                continue
            if small:
                pieces.append(b"".join(small) if len(small) > 1 else small[0])
                small = []
            pieces.append(piece)
        if small:
            pieces.append(b"".join(small) if len(small) > 1 else small[0])
        return pieces

    def next_event(self) -> Event | None:
        """The oldest unreported event, or ``None``."""
        events = self._events
        return events.popleft() if events else None

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` should next run (``None`` once CLOSED)."""
        state = self._state
        if state is _CLOSED:
            return None
        cfg = self._config
        when = self._last_received + cfg.dead_peer_timeout
        if state is _HANDSHAKING:
            return min(when, self._started + cfg.handshake_timeout)
        when = min(when, max(self._last_received, self._last_keepalive) + cfg.keepalive_interval)
        if cfg.idle_timeout is not None and not self._streams:
            when = min(when, self._idle_since + cfg.idle_timeout)
        return when

    # ---- inputs ---------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Process bytes from the peer. Never raises; ignored once CLOSED."""
        if self._state is _CLOSED or not data:
            return
        self._now = self._last_received = now
        frames, error = self._decoder.feed_raw(data)
        handlers = self._handlers
        try:
            for ftype, flags, stream_id, payload in frames:
                if self._state is not _OPEN:
                    if self._state is _CLOSED:
                        return
                    if ftype != _HELLO:
                        raise _violation(
                            f"expected HELLO as the first frame, got {_TYPE_NAMES[ftype]}"
                        )
                handlers[ftype](flags, stream_id, payload)
            if error is not None and self._state is not _CLOSED:
                raise error
        except RemoteError as exc:
            self._terminate(exc.code, exc.reason, by_peer=False, goaway=True)

    def handle_timer(self, now: float) -> None:
        """Run whatever timers are due at ``now`` (calling it early is harmless)."""
        state = self._state
        if state is _CLOSED:
            return
        self._now = now
        cfg = self._config
        if state is _HANDSHAKING and now >= self._started + cfg.handshake_timeout:
            self._terminate(
                ErrorCode.IDLE_TIMEOUT,
                f"handshake timed out: no HELLO from the peer within {cfg.handshake_timeout:g}s",
                by_peer=False,
                goaway=True,
            )
            return
        if now >= self._last_received + cfg.dead_peer_timeout:
            self._terminate(
                ErrorCode.IDLE_TIMEOUT,
                f"peer unresponsive: nothing received for {cfg.dead_peer_timeout:g}s",
                by_peer=False,
                goaway=True,
            )
            return
        if state is not _OPEN:
            return
        if (
            cfg.idle_timeout is not None
            and not self._streams
            and now >= self._idle_since + cfg.idle_timeout
        ):
            self.close(ErrorCode.NO_ERROR, "idle")
            return
        if now >= max(self._last_received, self._last_keepalive) + cfg.keepalive_interval:
            ping_id = self._new_ping_id()
            self._keepalive_pings.add(ping_id)
            self._last_keepalive = now
            self._control(_PING, 0, 0, _U64.pack(ping_id))

    def connection_lost(self, now: float) -> None:
        """The transport is gone: streams reset and ``ConnectionTerminated(NO_ERROR,
        "connection lost", by_peer=True)`` unless the session had already ended."""
        if self._state is _CLOSED:
            return
        self._now = now
        self._terminate(ErrorCode.NO_ERROR, "connection lost", by_peer=True, goaway=False)
        self._out.clear()

    # ---- commands -------------------------------------------------------------------

    def open_stream(self, protocol: str) -> int:
        """Open a stream for ``protocol``; returns its ID. Data may follow at once."""
        if self._state is _CLOSED:
            raise StateError("cannot open a stream: the session is closed")
        name = encode_protocol_name(protocol, self._config.max_protocol_name)
        stream_id = self._next_local_id
        if stream_id > MAX_STREAM_ID:
            raise StateError("stream IDs exhausted: open a new session")
        self._next_local_id = stream_id + 2
        self._streams[stream_id] = StreamState(
            stream_id,
            protocol,
            local=True,
            send_window=BASE_STREAM_WINDOW,
            recv_credit=self._initial_window,
        )
        self._control(_OPEN_T, 0, stream_id, name)
        if self._extra_window:
            self._control(_WINDOW, 0, stream_id, _U32.pack(self._extra_window))
        return stream_id

    def accept_stream(self, stream_id: int) -> None:
        """Accept a stream the peer opened (see the class docstring for races)."""
        if self._state is _CLOSED:
            return
        stream = self._streams.get(stream_id)
        if stream is None:
            self._check_existed(stream_id)
            return
        if stream.local:
            raise StateError(f"stream {stream_id} was opened by this side, not the peer")
        if stream.accepted:
            raise StateError(f"stream {stream_id} was already accepted")
        stream.accepted = True
        self._control(_ACCEPT, 0, stream_id, b"")
        if self._extra_window and not stream.fin_received:
            stream.recv_credit += self._extra_window
            self._control(_WINDOW, 0, stream_id, _U32.pack(self._extra_window))

    def reset_stream(self, stream_id: int, code: ErrorCode, reason: str = "") -> None:
        """Abort a stream both ways (or refuse a peer's OPEN). Reports no event."""
        payload = encode_close(code, reason)
        if self._state is _CLOSED:
            return
        stream = self._streams.get(stream_id)
        if stream is None:
            self._check_existed(stream_id)
            return
        self._free(stream)
        self._control(_RESET, 0, stream_id, payload)

    def send_data(
        self, stream_id: int, data: bytes | bytearray | memoryview, end_stream: bool = False
    ) -> None:
        """Queue ``data`` (and FIN if ``end_stream``); sent as the peer's window allows."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.fin_pending or not (stream.accepted or stream.local):
            self._raise_not_writable(stream_id, stream)
        if type(data) is not bytes:
            if not isinstance(data, bytearray | memoryview):
                raise InvalidArgument(f"data must be bytes, not {type(data).__name__}")
            data = bytes(data)  # our own immutable copy
        n = len(data)
        if end_stream:
            stream.fin_pending = True
        if n:
            if not stream.buffered and n <= stream.send_window and n <= self._max_send_frame:
                # Fast path: one frame, straight out.
                stream.send_window -= n
                out = self._out
                if end_stream:
                    out.append(_pack(n, _DATA, _FIN, stream_id))
                    out.append(data)
                    stream.fin_sent = True
                    if stream.fin_received:
                        self._finish(stream)
                else:
                    out.append(_pack(n, _DATA, 0, stream_id))
                    out.append(data)
                return
            stream.send_queue.append(data)
            stream.buffered += n
        self._flush(stream)
        if stream.fin_sent and stream.fin_received:
            self._finish(stream)

    def send_eof(self, stream_id: int) -> None:
        """End our sending side (FIN after whatever is still buffered)."""
        self.send_data(stream_id, b"", end_stream=True)

    def acknowledge_received(self, stream_id: int, n: int) -> None:
        """The application consumed ``n`` bytes of this stream: reopen the peer's window."""
        if type(n) is not int or n < 0:
            raise InvalidArgument(f"acknowledged byte count must be a non-negative int, not {n!r}")
        if self._state is _CLOSED:
            return
        stream = self._streams.get(stream_id)
        if stream is None:
            self._check_existed(stream_id)
            return
        if n > stream.recv_unconsumed:
            raise InvalidArgument(
                f"cannot acknowledge {n} bytes on stream {stream_id}: only "
                f"{stream.recv_unconsumed} were received and not yet acknowledged"
            )
        stream.recv_unconsumed -= n
        if stream.fin_received:
            return  # the peer sends nothing more: no need for credit
        pending = stream.recv_unannounced + n
        if pending >= self._announce_at:
            stream.recv_unannounced = 0
            stream.recv_credit += pending
            self._out.append(_pack(4, _WINDOW, 0, stream_id))
            self._out.append(_U32.pack(pending))
        else:
            stream.recv_unannounced = pending

    def send_ping(self, now: float) -> int:
        """Send a PING; :class:`PingAcknowledged` with this ID reports the round trip."""
        if self._state is _CLOSED:
            raise StateError("cannot ping: the session is closed")
        self._now = now
        ping_id = self._new_ping_id()
        self._pings[ping_id] = now
        self._control(_PING, 0, 0, _U64.pack(ping_id))
        return ping_id

    def close(self, code: ErrorCode = ErrorCode.NO_ERROR, reason: str = "") -> None:
        """Send GOAWAY and end the session now (open streams are reported reset)."""
        encode_close(code, reason)  # validate before changing any state
        if self._state is _CLOSED:
            return
        self._terminate(code, reason, by_peer=False, goaway=True)

    # ---- frame handlers (each may raise ProtocolViolation) ------------------------------

    def _recv_data(self, flags: int, stream_id: int, payload: bytes) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            self._unknown_stream(stream_id, _DATA)
            return
        if not stream.accepted and stream.local:
            raise _violation(f"DATA on stream {stream_id} before the peer accepted it")
        if stream.fin_received:
            raise _violation(f"DATA on stream {stream_id} after its FIN")
        n = len(payload)
        if n > stream.recv_credit:
            raise _violation(
                f"stream {stream_id}: {n} bytes of DATA exceed the granted window of "
                f"{stream.recv_credit}",
                ErrorCode.FLOW_CONTROL,
            )
        stream.recv_credit -= n
        stream.recv_unconsumed += n
        if flags:  # FIN (the only flag DATA may carry)
            stream.fin_received = True
            self._events.append(DataReceived(stream_id, payload, True))
            if stream.fin_sent:
                self._finish(stream)
        elif n:
            self._events.append(DataReceived(stream_id, payload, False))

    def _recv_open(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0 or stream_id & 1 == self._local_parity:
            opener = "client" if self._local_parity == 0 else "server"
            raise _violation(f"OPEN of stream {stream_id}: not a {opener} stream ID")
        if stream_id <= self._last_peer_id:
            raise _violation(
                f"OPEN of stream {stream_id}: IDs must increase (last was {self._last_peer_id})"
            )
        self._last_peer_id = stream_id
        protocol = decode_protocol_name(payload, self._config.max_protocol_name)
        if self._inbound >= self._config.max_inbound_streams:
            self._control(
                _RESET,
                0,
                stream_id,
                encode_close(
                    ErrorCode.STREAM_LIMIT,
                    f"too many open streams (limit {self._config.max_inbound_streams})",
                ),
            )
            return
        self._inbound += 1
        self._streams[stream_id] = StreamState(
            stream_id,
            protocol,
            local=False,
            send_window=BASE_STREAM_WINDOW,
            recv_credit=BASE_STREAM_WINDOW,
        )
        self._events.append(StreamOpened(stream_id, protocol))

    def _recv_accept(self, flags: int, stream_id: int, payload: bytes) -> None:
        if payload:
            raise _violation("ACCEPT frame with a payload", ErrorCode.MALFORMED)
        stream = self._streams.get(stream_id)
        if stream is None:
            self._unknown_stream(stream_id, _ACCEPT)
            return
        if not stream.local:
            raise _violation(f"ACCEPT of stream {stream_id}, which the peer opened itself")
        if stream.accepted:
            raise _violation(f"second ACCEPT of stream {stream_id}")
        stream.accepted = True
        self._events.append(StreamAccepted(stream_id))

    def _recv_reset(self, flags: int, stream_id: int, payload: bytes) -> None:
        code, reason = decode_close(payload, "RESET")
        stream = self._streams.get(stream_id)
        if stream is None:
            self._unknown_stream(stream_id, _RESET)
            return
        self._free(stream)
        self._events.append(StreamReset(stream_id, code, reason, True))

    def _recv_window(self, flags: int, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise _violation(f"WINDOW payload of {len(payload)} bytes, not 4", ErrorCode.MALFORMED)
        (increment,) = _U32.unpack(payload)
        if not increment:
            raise _violation("WINDOW increment of 0", ErrorCode.MALFORMED)
        stream = self._streams.get(stream_id)
        if stream is None:
            self._unknown_stream(stream_id, _WINDOW)
            return
        window = stream.send_window + increment
        if window > MAX_WINDOW:
            raise _violation(
                f"WINDOW on stream {stream_id} grows the window beyond {MAX_WINDOW}",
                ErrorCode.FLOW_CONTROL,
            )
        stream.send_window = window
        if stream.buffered:
            before = stream.buffered
            self._flush(stream)
            if stream.buffered < before:
                self._events.append(StreamWritable(stream_id))
            if stream.fin_sent and stream.fin_received:
                self._finish(stream)

    def _recv_ping(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id:
            raise _violation(f"PING on stream {stream_id}, not 0")
        if len(payload) != 8:
            raise _violation(f"PING payload of {len(payload)} bytes, not 8", ErrorCode.MALFORMED)
        if not flags:
            self._control(_PING, _ACK, 0, payload)
            return
        (ping_id,) = _U64.unpack(payload)
        sent = self._pings.pop(ping_id, None)
        if sent is not None:
            self._events.append(PingAcknowledged(ping_id, self._now - sent))
        else:
            self._keepalive_pings.discard(ping_id)  # an unknown echo is ignored

    def _recv_goaway(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id:
            raise _violation(f"GOAWAY on stream {stream_id}, not 0")
        code, reason = decode_close(payload, "GOAWAY")
        self._terminate(code, reason, by_peer=True, goaway=False)

    def _recv_hello(self, flags: int, stream_id: int, payload: bytes) -> None:
        if self._state is not _HANDSHAKING:
            raise _violation("second HELLO")
        if stream_id:
            raise _violation(f"HELLO on stream {stream_id}, not 0")
        remote = Hello.decode(payload)
        negotiated = negotiate(self._hello, remote)  # VersionMismatch is a RemoteError
        self._negotiated = negotiated
        self._peer_user_agent = remote.user_agent
        self._state = _OPEN
        self._idle_since = self._now
        self._events.append(
            HandshakeCompleted(negotiated.version, negotiated.features, remote.user_agent)
        )

    # ---- internals ------------------------------------------------------------------

    def _control(self, ftype: int, flags: int, stream_id: int, payload: bytes) -> None:
        self._out.append(_pack(len(payload), ftype, flags, stream_id))
        self._out.append(payload)

    def _new_ping_id(self) -> int:
        ping_id = self._next_ping_id
        self._next_ping_id = ping_id + 1 if ping_id < 0xFFFF_FFFF_FFFF_FFFF else 1
        return ping_id

    def _flush(self, stream: StreamState) -> None:
        """Send as much of the stream's queue as its window allows, then a pending FIN.

        The caller checks whether the stream is now finished (it may report an event
        that must come before StreamClosed).
        """
        buffered = stream.buffered
        window = stream.send_window
        if buffered and window:
            out = self._out
            queue = stream.send_queue
            stream_id = stream.stream_id
            max_frame = self._max_send_frame
            fin_pending = stream.fin_pending
            while buffered and window:
                size = min(max_frame, window, buffered)
                buffered -= size
                window -= size
                if fin_pending and not buffered:
                    out.append(_pack(size, _DATA, _FIN, stream_id))
                    stream.fin_sent = True
                else:
                    out.append(_pack(size, _DATA, 0, stream_id))
                while size:
                    head = queue[0]
                    length = len(head)
                    if length <= size:
                        out.append(head)
                        queue.popleft()
                        size -= length
                    else:
                        view = head if type(head) is memoryview else memoryview(head)
                        out.append(view[:size])
                        queue[0] = view[size:]
                        size = 0
            stream.buffered = buffered
            stream.send_window = window
        if stream.fin_pending and not buffered and not stream.fin_sent:
            self._out.append(_pack(0, _DATA, _FIN, stream.stream_id))
            stream.fin_sent = True

    def _finish(self, stream: StreamState) -> None:
        """Both directions ended cleanly."""
        self._free(stream)
        self._events.append(StreamClosed(stream.stream_id))

    def _free(self, stream: StreamState) -> None:
        del self._streams[stream.stream_id]
        if not stream.local:
            self._inbound -= 1
        if not self._streams:
            self._idle_since = self._now
        stream.send_queue.clear()
        stream.buffered = 0

    def _existed(self, stream_id: int) -> bool:
        if stream_id <= 0 or stream_id > MAX_STREAM_ID:
            return False
        if stream_id & 1 == self._local_parity:
            return stream_id < self._next_local_id
        return stream_id <= self._last_peer_id

    def _check_existed(self, stream_id: int) -> None:
        if type(stream_id) is not int:
            raise InvalidArgument(f"stream ID must be an int, not {type(stream_id).__name__}")
        if not self._existed(stream_id):
            raise StateError(f"stream {stream_id} was never opened")

    def _unknown_stream(self, stream_id: int, ftype: int) -> None:
        """A frame for a stream without state: ignore it if the stream existed."""
        if stream_id == 0:
            raise _violation(f"{_TYPE_NAMES[ftype]} frame on stream 0")
        if not self._existed(stream_id):
            raise _violation(f"{_TYPE_NAMES[ftype]} frame on stream {stream_id}, never opened")

    def _raise_not_writable(self, stream_id: int, stream: StreamState | None) -> NoReturn:
        if self._state is _CLOSED:
            raise StateError(f"cannot send on stream {stream_id}: the session is closed")
        if stream is None:
            self._check_existed(stream_id)
            raise StateError(f"cannot send on stream {stream_id}: it is closed or was reset")
        if stream.fin_pending:
            raise StateError(f"cannot send on stream {stream_id}: its sending side is ended")
        raise StateError(f"cannot send on stream {stream_id}: accept it first")

    def _terminate(self, code: ErrorCode, reason: str, *, by_peer: bool, goaway: bool) -> None:
        if goaway:
            self._control(_GOAWAY, 0, 0, encode_close(code, reason))
        self._state = _CLOSED
        events = self._events
        for stream_id in self._streams:
            events.append(StreamReset(stream_id, code, reason, by_peer))
        self._streams.clear()
        self._inbound = 0
        self._pings.clear()
        self._keepalive_pings.clear()
        events.append(ConnectionTerminated(code, reason, by_peer))
