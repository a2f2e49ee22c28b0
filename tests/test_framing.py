"""Frame layer: golden vectors, limits enforced from the header, chunking independence."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmlink.errors import ErrorCode, InvalidArgument, ProtocolViolation
from swarmlink.wire.framing import (
    ALLOWED_FLAGS,
    HEADER_SIZE,
    MAX_CONTROL_PAYLOAD,
    MAX_FRAME_PAYLOAD,
    Flag,
    Frame,
    FrameDecoder,
    FrameType,
    encode_frame,
)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "frames.json").read_text())


def feed_bytewise(decoder: FrameDecoder, data: bytes) -> list[Frame]:
    frames: list[Frame] = []
    for i in range(len(data)):
        frames.extend(decoder.feed(data[i : i + 1]))
    return frames


def test_header_layout() -> None:
    assert HEADER_SIZE == 10
    assert encode_frame(FrameType.DATA, Flag.FIN, 0x01020304, b"ab") == (
        b"\x00\x00\x00\x02" + b"\x00" + b"\x01" + b"\x01\x02\x03\x04" + b"ab"
    )
    assert [int(t) for t in FrameType] == list(range(8))
    assert (Flag.FIN, Flag.ACK) == (1, 2)


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["name"])
def test_valid_vectors(vector: dict[str, object]) -> None:
    encoded = bytes.fromhex(str(vector["encoded"]))
    payload = bytes.fromhex(str(vector["payload"]))
    ftype, flags, sid = vector["type"], vector["flags"], vector["stream_id"]
    assert isinstance(ftype, int) and isinstance(flags, int) and isinstance(sid, int)
    assert encode_frame(ftype, flags, sid, payload) == encoded
    expected = [Frame(FrameType(ftype), flags, sid, payload)]
    assert FrameDecoder().feed(encoded) == expected
    assert feed_bytewise(FrameDecoder(), encoded) == expected
    assert expected[0].encode() == encoded


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["name"])
def test_invalid_vectors(vector: dict[str, str]) -> None:
    encoded = bytes.fromhex(vector["encoded"])
    code = ErrorCode[vector["code"]]
    with pytest.raises(ProtocolViolation) as info:
        FrameDecoder().feed(encoded)
    assert info.value.code == code
    # Byte by byte it fails exactly when the header is complete, not later.
    decoder = FrameDecoder()
    for i in range(HEADER_SIZE - 1):
        assert decoder.feed(encoded[i : i + 1]) == []
    with pytest.raises(ProtocolViolation) as info:
        decoder.feed(encoded[HEADER_SIZE - 1 : HEADER_SIZE])
    assert info.value.code == code


def test_all_vectors_in_one_stream() -> None:
    stream = b"".join(bytes.fromhex(v["encoded"]) for v in VECTORS["valid"])
    whole = FrameDecoder().feed(stream)
    assert len(whole) == len(VECTORS["valid"])
    assert feed_bytewise(FrameDecoder(), stream) == whole


def test_oversized_rejected_before_body_is_buffered() -> None:
    decoder = FrameDecoder()
    header = struct.pack("!IBBI", MAX_FRAME_PAYLOAD + 1, 0, 0, 1)
    with pytest.raises(ProtocolViolation) as info:
        decoder.feed(header)
    assert info.value.code == ErrorCode.FRAME_TOO_LARGE
    assert decoder.buffered == 0
    # The decoder is spent: the same error again, whatever follows.
    with pytest.raises(ProtocolViolation) as info:
        decoder.feed(encode_frame(FrameType.PING, 0, 0, bytes(8)))
    assert info.value.code == ErrorCode.FRAME_TOO_LARGE


def test_limits_are_exact_and_configurable() -> None:
    data = encode_frame(FrameType.DATA, 0, 1, bytes(MAX_FRAME_PAYLOAD))
    assert FrameDecoder().feed(data)[0].payload == bytes(MAX_FRAME_PAYLOAD)
    control = encode_frame(FrameType.OPEN, 0, 1, b"a" * MAX_CONTROL_PAYLOAD)
    assert len(FrameDecoder().feed(control)) == 1
    small = FrameDecoder(max_payload=100, max_control_payload=10)
    assert small.feed(encode_frame(FrameType.DATA, 0, 1, bytes(100)))[0].payload == bytes(100)
    with pytest.raises(ProtocolViolation) as info:
        small.feed(encode_frame(FrameType.DATA, 0, 1, bytes(101)))
    assert info.value.code == ErrorCode.FRAME_TOO_LARGE
    with pytest.raises(ProtocolViolation) as info:
        FrameDecoder(max_control_payload=10).feed(encode_frame(FrameType.RESET, 0, 1, bytes(11)))
    assert info.value.code == ErrorCode.FRAME_TOO_LARGE


def test_feed_raw_returns_frames_before_the_error() -> None:
    good = encode_frame(FrameType.PING, 0, 0, bytes(8))
    bad = struct.pack("!IBBI", 0, 9, 0, 0)
    frames, error = FrameDecoder().feed_raw(good + good + bad + good)
    assert [f[0] for f in frames] == [FrameType.PING, FrameType.PING]
    assert error is not None and error.code == ErrorCode.MALFORMED
    with pytest.raises(ProtocolViolation):
        FrameDecoder().feed(good + bad)


def test_accepts_bytearray_and_memoryview() -> None:
    frame = encode_frame(FrameType.DATA, 1, 7, b"xyz")
    assert FrameDecoder().feed(bytearray(frame))[0].payload == b"xyz"
    assert FrameDecoder().feed(memoryview(frame))[0].payload == b"xyz"


def test_payload_is_independent_of_later_input() -> None:
    decoder = FrameDecoder()
    frame = encode_frame(FrameType.DATA, 0, 1, b"abcdef")
    buf = bytearray(frame[:13])
    assert decoder.feed(buf) == []
    buf[:] = b"\xff" * len(buf)  # the caller reuses its buffer
    (got,) = decoder.feed(frame[13:])
    assert got.payload == b"abcdef"
    assert decoder.buffered == 0


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((8, 0, 0, b""), "unknown frame type"),
        ((FrameType.DATA, Flag.ACK, 1, b""), "not allowed"),
        ((FrameType.GOAWAY, Flag.FIN, 0, b""), "not allowed"),
        ((FrameType.DATA, 0, -1, b""), "out of range"),
        ((FrameType.DATA, 0, 2**32, b""), "out of range"),
        ((FrameType.DATA, 0, 1, bytes(MAX_FRAME_PAYLOAD + 1)), "exceeds"),
        ((FrameType.PING, 0, 0, bytes(MAX_CONTROL_PAYLOAD + 1)), "exceeds"),
    ],
)
def test_encode_frame_refuses_what_no_decoder_accepts(
    args: tuple[int, int, int, bytes], match: str
) -> None:
    with pytest.raises(InvalidArgument, match=match):
        encode_frame(*args)


def test_decoder_arguments_validated() -> None:
    with pytest.raises(InvalidArgument):
        FrameDecoder(max_payload=-1)
    with pytest.raises(InvalidArgument):
        FrameDecoder(max_control_payload=2**32)


# ---- property tests -----------------------------------------------------------------


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    ftype = draw(st.sampled_from(list(FrameType)))
    allowed = int(ALLOWED_FLAGS[ftype])
    flags = draw(st.sampled_from(sorted({0, allowed})))
    sid = draw(st.integers(0, 2**32 - 1))
    limit = 2000 if ftype is FrameType.DATA else 64
    payload = draw(st.binary(max_size=limit))
    return Frame(ftype, flags, sid, payload)


@given(st.lists(frames(), max_size=20), st.data())
def test_any_split_decodes_identically(sequence: list[Frame], data: st.DataObject) -> None:
    stream = b"".join(f.encode() for f in sequence)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    decoder = FrameDecoder()
    got: list[Frame] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        got.extend(decoder.feed(stream[start:cut]))
        start = cut
    assert got == sequence
    assert decoder.buffered == 0
    assert FrameDecoder().feed(stream) == sequence


@given(st.lists(frames(), min_size=1, max_size=5))
def test_byte_by_byte_decodes_identically(sequence: list[Frame]) -> None:
    stream = b"".join(f.encode() for f in sequence)
    assert feed_bytewise(FrameDecoder(), stream) == sequence


@given(st.binary(max_size=300), st.integers(1, 50))
def test_random_bytes_only_raise_protocol_violation(blob: bytes, chunk: int) -> None:
    decoder = FrameDecoder(max_payload=64, max_control_payload=32)
    whole_error: ErrorCode | None = None
    try:
        whole = decoder.feed(blob)
    except ProtocolViolation as exc:
        whole, whole_error = [], exc.code
    chunked: list[Frame] = []
    chunk_error: ErrorCode | None = None
    decoder = FrameDecoder(max_payload=64, max_control_payload=32)
    try:
        for i in range(0, len(blob), chunk):
            chunked.extend(decoder.feed(blob[i : i + chunk]))
    except ProtocolViolation as exc:
        chunk_error = exc.code
    assert chunk_error == whole_error
    if whole_error is None:
        assert chunked == whole
