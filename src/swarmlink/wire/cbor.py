"""Deterministic CBOR (RFC 8949) for swarmlink control messages.

Only a small, strict subset of CBOR is spoken, in the *core deterministic encoding* of
RFC 8949 §4.2.1:

* integer and length arguments in their shortest form;
* definite lengths only (no indefinite-length strings, arrays or maps);
* map keys sorted by the bytewise lexicographic order of their encodings, no duplicates.

Data model (Python ⇄ CBOR):

============================================  ==========================================
Python                                        CBOR
============================================  ==========================================
``None`` / ``False`` / ``True``               simple values 22 / 20 / 21
``int`` in [-2**64, 2**64 - 1]                major types 0 and 1
``bytes`` / ``bytearray`` / ``memoryview``    byte string (decoded as ``bytes``)
``str``                                       UTF-8 text string
``list`` / ``tuple``                          array (decoded as ``list``)
``dict`` with ``str`` or ``int`` keys         map (decoded as ``dict``)
============================================  ==========================================

Everything else (floats, tags, other simple values, big integers...) is refused:
:func:`encode` raises :class:`~swarmlink.errors.InvalidArgument`, :func:`decode` raises
:class:`~swarmlink.errors.ProtocolViolation` with code ``MALFORMED``. Because both sides
are strict and canonical, ``encode(decode(data)) == data`` for every accepted ``data``:
a message has exactly one valid encoding, which is what signatures are computed over.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any, TypeAlias

from ..errors import ErrorCode, InvalidArgument, ProtocolViolation

__all__ = [
    "MAX_DEPTH",
    "MAX_DEPTH_CEILING",
    "MAX_ENCODE_DEPTH",
    "MAX_ITEMS",
    "CborValue",
    "decode",
    "encode",
]

CborValue: TypeAlias = (
    bool
    | int
    | str
    | bytes
    | bytearray
    | memoryview
    | Sequence["CborValue"]
    | Mapping[str, "CborValue"]
    | Mapping[int, "CborValue"]
    | Mapping[str | int, "CborValue"]
    | None
)
"""A value :func:`encode` accepts.

``Sequence`` and ``Mapping`` appear here (rather than ``list`` and ``dict``) only so that
``list[int]`` or ``dict[str, str]`` type-check as CBOR values; at run time :func:`encode`
accepts exactly ``list``, ``tuple`` and ``dict`` (and their subclasses).
"""

#: Default limit on nesting: at most this many levels of arrays/maps inside one another
#: (a scalar at the top level has depth 0, ``[[1]]`` has depth 2). Untrusted input.
MAX_DEPTH = 16

#: Default limit on the total number of items in one decoded value: every array element
#: and every map entry (key + value pair) counts as one. Untrusted input.
MAX_ITEMS = 4096

#: Largest ``max_depth`` :func:`decode` accepts (the decoder recurses once per level).
MAX_DEPTH_CEILING = 256

#: Deepest nesting :func:`encode` follows before refusing (also catches cyclic values).
MAX_ENCODE_DEPTH = 256

_UINT64_LIMIT = 1 << 64

# Pre-shifted major types.
_MT_UINT = 0x00
_MT_NINT = 0x20
_MT_BYTES = 0x40
_MT_TEXT = 0x60
_MT_ARRAY = 0x80
_MT_MAP = 0xA0

_FALSE = b"\xf4"
_TRUE = b"\xf5"
_NULL = b"\xf6"

_ONE_BYTE = tuple(bytes((i,)) for i in range(256))
_pack_u8 = struct.Struct(">BB").pack
_pack_u16 = struct.Struct(">BH").pack
_pack_u32 = struct.Struct(">BI").pack
_pack_u64 = struct.Struct(">BQ").pack
_unpack_u16 = struct.Struct(">H").unpack_from
_unpack_u32 = struct.Struct(">I").unpack_from
_unpack_u64 = struct.Struct(">Q").unpack_from
_first = itemgetter(0)


# --------------------------------------------------------------------------- encoding


def _head(major: int, n: int) -> bytes:
    """Initial byte(s) for ``major`` (pre-shifted) with argument ``n`` (0 <= n < 2**64)."""
    if n < 24:
        return _ONE_BYTE[major | n]
    if n < 0x100:
        return _pack_u8(major | 24, n)
    if n < 0x10000:
        return _pack_u16(major | 25, n)
    if n < 0x100000000:
        return _pack_u32(major | 26, n)
    return _pack_u64(major | 27, n)


def _encode_int(value: int) -> bytes:
    if value >= 0:
        if value >= _UINT64_LIMIT:
            raise InvalidArgument(f"CBOR cannot encode integer {value}: larger than 2**64-1")
        return _head(_MT_UINT, value)
    value = -1 - value
    if value >= _UINT64_LIMIT:
        raise InvalidArgument(f"CBOR cannot encode integer {-1 - value}: smaller than -2**64")
    return _head(_MT_NINT, value)


def _encode_text(value: str) -> bytes:
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgument(f"CBOR cannot encode text that is not valid Unicode: {exc}") from None
    return _head(_MT_TEXT, len(raw)) + raw


def _encode_key(key: object) -> bytes:
    kind = type(key)
    if kind is str:
        return _encode_text(key)  # type: ignore[arg-type]
    if kind is int:
        return _encode_int(key)  # type: ignore[arg-type]
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        raise InvalidArgument(
            f"CBOR map keys must be str or int, not {type(key).__name__} ({key!r:.40})"
        )
    return _encode_text(str(key)) if isinstance(key, str) else _encode_int(int(key))


def _encode_into(value: object, out: list[bytes], depth: int) -> None:
    kind = type(value)
    if kind is str:
        out.append(_encode_text(value))  # type: ignore[arg-type]
    elif kind is int:
        out.append(_encode_int(value))  # type: ignore[arg-type]
    elif value is None:
        out.append(_NULL)
    elif value is True:
        out.append(_TRUE)
    elif value is False:
        out.append(_FALSE)
    elif kind is bytes:
        out.append(_head(_MT_BYTES, len(value)))  # type: ignore[arg-type]
        out.append(value)  # type: ignore[arg-type]
    elif kind is list or kind is tuple:
        _encode_array(value, out, depth)  # type: ignore[arg-type]
    elif kind is dict:
        _encode_map(value, out, depth)  # type: ignore[arg-type]
    else:
        _encode_other(value, out, depth)


def _encode_array(value: Sequence[object], out: list[bytes], depth: int) -> None:
    if depth >= MAX_ENCODE_DEPTH:
        raise InvalidArgument(f"CBOR value nested deeper than {MAX_ENCODE_DEPTH} (cyclic?)")
    out.append(_head(_MT_ARRAY, len(value)))
    depth += 1
    for element in value:
        _encode_into(element, out, depth)


def _encode_map(value: Mapping[object, object], out: list[bytes], depth: int) -> None:
    if depth >= MAX_ENCODE_DEPTH:
        raise InvalidArgument(f"CBOR value nested deeper than {MAX_ENCODE_DEPTH} (cyclic?)")
    entries = [(_encode_key(key), item) for key, item in value.items()]
    entries.sort(key=_first)
    out.append(_head(_MT_MAP, len(entries)))
    depth += 1
    previous = b""
    for key_bytes, item in entries:
        if key_bytes == previous:  # e.g. an int subclass equal to an int key
            raise InvalidArgument(f"CBOR map has duplicate key encoding {key_bytes.hex()}")
        previous = key_bytes
        out.append(key_bytes)
        _encode_into(item, out, depth)


def _encode_other(value: object, out: list[bytes], depth: int) -> None:
    """Slow path: subclasses of the supported types, other bytes-likes; refuse the rest."""
    if isinstance(value, bool):  # pragma: no cover - bool cannot be subclassed
        out.append(_TRUE if value else _FALSE)
    elif isinstance(value, int):
        out.append(_encode_int(int(value)))
    elif isinstance(value, str):
        out.append(_encode_text(str(value)))
    elif isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        out.append(_head(_MT_BYTES, len(raw)))
        out.append(raw)
    elif isinstance(value, (list, tuple)):
        _encode_array(value, out, depth)
    elif isinstance(value, dict):
        _encode_map(value, out, depth)
    elif isinstance(value, float):
        raise InvalidArgument(f"CBOR cannot encode float {value!r}: floats are not supported")
    else:
        raise InvalidArgument(f"CBOR cannot encode a value of type {type(value).__name__}")


def encode(value: CborValue) -> bytes:
    """Encode ``value`` in deterministic CBOR.

    Raises :class:`~swarmlink.errors.InvalidArgument` for anything outside the supported
    data model (see the module docstring).
    """
    out: list[bytes] = []
    _encode_into(value, out, 0)
    return out[0] if len(out) == 1 else b"".join(out)


# --------------------------------------------------------------------------- decoding


def _malformed(what: str, offset: int) -> ProtocolViolation:
    return ProtocolViolation(f"CBOR: {what} at offset {offset}", ErrorCode.MALFORMED)


_SIMPLE_VALUES: dict[int, str] = {
    23: "undefined is not allowed",
    24: "simple values other than false/true/null are not allowed",
    25: "half-precision floats are not allowed",
    26: "single-precision floats are not allowed",
    27: "double-precision floats are not allowed",
    28: "reserved additional information 28",
    29: "reserved additional information 29",
    30: "reserved additional information 30",
    31: "unexpected break (indefinite lengths are not allowed)",
}

_KEY_MAJORS = frozenset({0, 1, 3})


class _Decoder:
    __slots__ = ("data", "end", "items_left", "max_depth", "pos")

    def __init__(self, data: bytes, max_depth: int, max_items: int) -> None:
        self.data = data
        self.end = len(data)
        self.pos = 0
        self.max_depth = max_depth
        self.items_left = max_items

    def item(self, depth: int) -> Any:
        data = self.data
        end = self.end
        start = self.pos
        if start >= end:
            raise _malformed("truncated input, expected a data item", start)
        initial = data[start]
        major = initial >> 5
        info = initial & 0x1F
        pos = start + 1

        if major == 7:
            self.pos = pos
            if info == 20:
                return False
            if info == 21:
                return True
            if info == 22:
                return None
            raise _malformed(_SIMPLE_VALUES.get(info, f"simple value {info} is not allowed"), start)
        if major == 6:
            raise _malformed("tags are not allowed", start)

        if info < 24:
            arg = info
        elif info == 24:
            if pos + 1 > end:
                raise _malformed("truncated 1-byte argument", start)
            arg = data[pos]
            pos += 1
            if arg < 24:
                raise _malformed("non-shortest argument encoding", start)
        elif info == 25:
            if pos + 2 > end:
                raise _malformed("truncated 2-byte argument", start)
            arg = _unpack_u16(data, pos)[0]
            pos += 2
            if arg < 0x100:
                raise _malformed("non-shortest argument encoding", start)
        elif info == 26:
            if pos + 4 > end:
                raise _malformed("truncated 4-byte argument", start)
            arg = _unpack_u32(data, pos)[0]
            pos += 4
            if arg < 0x10000:
                raise _malformed("non-shortest argument encoding", start)
        elif info == 27:
            if pos + 8 > end:
                raise _malformed("truncated 8-byte argument", start)
            arg = _unpack_u64(data, pos)[0]
            pos += 8
            if arg < 0x100000000:
                raise _malformed("non-shortest argument encoding", start)
        elif info == 31:
            raise _malformed("indefinite lengths are not allowed", start)
        else:
            raise _malformed(f"reserved additional information {info}", start)

        if major == 0:
            self.pos = pos
            return arg
        if major == 1:
            self.pos = pos
            return -1 - arg
        if major == 2 or major == 3:
            if arg > end - pos:
                raise _malformed(
                    f"string length {arg} exceeds the {end - pos} remaining bytes", start
                )
            self.pos = pos + arg
            raw = data[pos : pos + arg]
            if major == 2:
                return raw
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _malformed(f"invalid UTF-8 in text string ({exc.reason})", start) from None

        # Containers: arrays (4) and maps (5).
        if depth >= self.max_depth:
            raise _malformed(f"nesting deeper than {self.max_depth} levels", start)
        if arg > self.items_left:
            raise _malformed(f"more than the allowed total of items ({arg} declared)", start)
        self.items_left -= arg
        self.pos = pos
        depth += 1
        if major == 4:
            if arg > end - pos:
                raise _malformed(
                    f"array of {arg} items cannot fit in the {end - pos} remaining bytes", start
                )
            item = self.item
            return [item(depth) for _ in range(arg)]

        if 2 * arg > end - pos:
            raise _malformed(
                f"map of {arg} entries cannot fit in the {end - pos} remaining bytes", start
            )
        result: dict[Any, Any] = {}
        previous = b""
        for _ in range(arg):
            key_start = self.pos
            if key_start < end and (data[key_start] >> 5) not in _KEY_MAJORS:
                raise _malformed("map key must be an integer or a text string", key_start)
            key = self.item(depth)
            key_bytes = data[key_start : self.pos]
            if key_bytes <= previous:
                what = "duplicate map key" if key_bytes == previous else "unsorted map key"
                raise _malformed(what, key_start)
            previous = key_bytes
            result[key] = self.item(depth)
        return result


def decode(data: bytes, *, max_depth: int = MAX_DEPTH, max_items: int = MAX_ITEMS) -> Any:
    """Decode exactly one deterministic-CBOR value occupying all of ``data``.

    Returns ``None``, ``bool``, ``int``, ``bytes``, ``str``, ``list`` or ``dict``.
    ``max_depth`` bounds the nesting of arrays/maps and ``max_items`` the total number of
    array elements plus map entries. Any deviation from the strict subset described in
    the module docstring raises :class:`~swarmlink.errors.ProtocolViolation` with code
    ``MALFORMED``, naming the problem and its byte offset. Declared lengths are checked
    against the remaining input before anything is allocated.
    """
    if type(data) is not bytes:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidArgument(f"CBOR decode needs bytes, not {type(data).__name__}")
        data = bytes(data)
    if not 0 <= max_depth <= MAX_DEPTH_CEILING:
        raise InvalidArgument(f"max_depth must be in 0..{MAX_DEPTH_CEILING}, not {max_depth}")
    if max_items < 0:
        raise InvalidArgument(f"max_items must not be negative, not {max_items}")
    decoder = _Decoder(data, max_depth, max_items)
    value = decoder.item(0)
    if decoder.pos != decoder.end:
        raise _malformed(f"{decoder.end - decoder.pos} trailing bytes", decoder.pos)
    return value
