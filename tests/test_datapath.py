"""The bulk data path's copy-avoiding pieces: decoding out of a reused buffer, sending
pieces without joining them, and the stream's chunked receive buffer."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmlink.errors import ErrorCode, ProtocolViolation
from swarmlink.runtime._stream import Stream
from swarmlink.session import Session
from swarmlink.session._session import JOIN_BELOW
from swarmlink.wire.framing import FrameDecoder, FrameType, encode_frame


def test_frames_decoded_from_a_reused_buffer_own_their_payloads() -> None:
    wire = encode_frame(FrameType.DATA, 0, 1, b"a" * 100) + encode_frame(
        FrameType.DATA, 0, 1, b"b" * 100
    )
    buf = bytearray(len(wire))
    view = memoryview(buf)
    decoder = FrameDecoder()
    buf[:] = wire
    first, error = decoder.feed_raw(view[:150])  # one whole frame, a part of the next
    buf[:] = bytes(len(buf))  # the buffer is reused for the next read
    buf[: len(wire) - 150] = wire[150:]
    second, error2 = decoder.feed_raw(view[: len(wire) - 150])
    assert error is None and error2 is None
    assert [f[3] for f in first + second] == [b"a" * 100, b"b" * 100]
    assert all(type(f[3]) is bytes for f in first + second)


def _session_pair() -> tuple[Session, Session]:
    a, b = Session(is_client=True, now=0.0), Session(is_client=False, now=0.0)
    b.receive_data(a.data_to_send(), 0.0)
    a.receive_data(b.data_to_send(), 0.0)
    return a, b


@given(st.lists(st.integers(min_value=0, max_value=3 * JOIN_BELOW), max_size=6))
def test_pieces_carry_the_same_bytes_as_data_to_send(sizes: list[int]) -> None:
    joined, pieces = _session_pair(), _session_pair()
    for a, _ in (joined, pieces):
        sid = a.open_stream("/x")
        for i, size in enumerate(sizes):
            a.send_data(sid, bytes([i % 256]) * size)
        a.send_eof(sid)
    out = pieces[0].data_to_send_pieces()
    assert b"".join(out) == joined[0].data_to_send()
    small = [len(p) < JOIN_BELOW for p in out]
    assert not any(x and y for x, y in itertools.pairwise(small))  # runs joined
    assert pieces[0].data_to_send_pieces() == []


class _Conn:
    def __init__(self) -> None:
        self.acked = 0

    def acknowledge(self, stream_id: int, n: int) -> None:
        self.acked += n


@given(
    st.lists(st.binary(min_size=1, max_size=20), min_size=1, max_size=8),
    st.lists(st.integers(min_value=-1, max_value=30), min_size=1, max_size=20),
)
def test_stream_reads_across_chunks(chunks: list[bytes], sizes: list[int]) -> None:
    async def run() -> None:
        conn: Any = _Conn()
        stream = Stream(conn, 1, "/x", "peer", outbound=False)
        for chunk in chunks:
            stream._on_data(chunk, False)
        stream._on_data(b"", True)
        expected = b"".join(chunks)
        got = b""
        for n in sizes:
            if stream.at_eof():
                break
            if n >= 0 and n <= stream.unread and n % 2:
                part = await stream.readexactly(n)
                assert len(part) == n
            else:
                part = await stream.read(n)
            got += part
            assert stream.unread == len(expected) - len(got)
        got += await stream.read()
        assert got == expected
        assert conn.acked == len(expected)
        assert await stream.read() == b""

    asyncio.run(run())


def test_read_chunks_hands_on_the_received_chunks() -> None:
    async def run() -> None:
        conn: Any = _Conn()
        stream = Stream(conn, 1, "/x", "peer", outbound=False)
        first, second = b"a" * 100, b"b" * 50
        stream._on_data(first, False)
        stream._on_data(second, False)
        assert await stream.readexactly(10) == b"a" * 10
        chunks = await stream.read_chunks()
        assert chunks == [b"a" * 90, second] and chunks[1] is second  # not copied
        assert stream.unread == 0 and conn.acked == 150
        stream._on_data(b"", True)
        assert await stream.read_chunks() == []

    asyncio.run(run())


@given(
    st.lists(st.binary(max_size=40), min_size=1, max_size=6),
    st.lists(st.integers(min_value=1, max_value=17), min_size=1, max_size=30),
)
def test_read_frame_nowait_takes_whole_records_only(bodies: list[bytes], cuts: list[int]) -> None:
    """Records fed in arbitrary pieces: ``read_frame_nowait`` hands out exactly the
    bodies, in order, each once it has wholly arrived, and acknowledges what it took."""

    async def run() -> None:
        conn: Any = _Conn()
        stream = Stream(conn, 1, "/x", "peer", outbound=False)
        wire = b"".join(len(b).to_bytes(4, "big") + b for b in bodies)
        got: list[bytes] = []
        pos, i = 0, 0
        while pos < len(wire):
            n = cuts[i % len(cuts)]
            i += 1
            stream._on_data(wire[pos : pos + n], False)
            pos += n
            while (body := stream.read_frame_nowait(max_size=64)) is not None:
                got.append(body)
            consumed = sum(4 + len(b) for b in got)
            assert conn.acked == consumed and stream.unread == min(pos, len(wire)) - consumed
        assert got == bodies

    asyncio.run(run())


def test_read_frame_nowait_refuses_an_oversized_length_before_the_body() -> None:
    async def run() -> None:
        conn: Any = _Conn()
        stream = Stream(conn, 1, "/x", "peer", outbound=False)
        stream._on_data((1000).to_bytes(4, "big") + b"x", False)
        with pytest.raises(ProtocolViolation) as info:
            stream.read_frame_nowait(max_size=999)
        assert info.value.code == ErrorCode.FRAME_TOO_LARGE
        assert stream.read_frame_nowait(max_size=1000) is None  # not all here yet

    asyncio.run(run())
