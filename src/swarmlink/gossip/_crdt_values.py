"""Values stored in replicated state, their canonical encoding, and the checks on keys
and agent names shared by every CRDT.

A *value* is JSON-like: ``None``, ``bool``, ``int`` (CBOR range), finite ``float``,
``str``, ``bytes``, ``list`` (tuples are accepted and become lists) and ``dict`` with
``str`` keys, nested at most :data:`MAX_VALUE_DEPTH` levels. The CRDTs keep every value
as its *canonical encoding*: deterministic CBOR (:mod:`swarmlink.wire.cbor`), where a
float, which that CBOR subset cannot carry, is the one-entry map ``{0: 8-byte IEEE 754
big-endian}`` (user maps have text keys only, so this is unambiguous). Keeping bytes
means that two values are equal exactly when their encodings are (``1``, ``1.0`` and
``True`` are three different values), that sizes are known without re-encoding, and
that readers get a fresh copy they cannot use to mutate the replica.
"""

from __future__ import annotations

import math
import struct
from typing import Any, TypeAlias

from ..errors import ErrorCode, InvalidArgument, ProtocolViolation
from ..wire import cbor

__all__ = [
    "MAX_AGENT_LENGTH",
    "MAX_KEY_LENGTH",
    "MAX_VALUE_DEPTH",
    "MAX_VALUE_SIZE",
    "Value",
    "check_agent",
    "check_key",
    "decode_value",
    "encode_value",
    "value_sort_key",
]

Value: TypeAlias = bool | int | float | str | bytes | list["Value"] | dict[str, "Value"] | None
"""A JSON-like value (``tuple`` is accepted wherever ``list`` is and is read back as a list)."""

#: Largest canonical encoding of one value (a register's value or a set element), bytes.
MAX_VALUE_SIZE = 4096
#: Deepest nesting of lists and dicts inside one value (a scalar has depth 0).
MAX_VALUE_DEPTH = 8
#: Longest key of a state document or LWW map, in UTF-8 bytes (at least 1).
MAX_KEY_LENGTH = 256
#: Longest agent name in stamps, dots and counters, in UTF-8 bytes (agent IDs are 52).
MAX_AGENT_LENGTH = 64

_FLOAT_TAG = 0
_pack_double = struct.Struct(">d").pack
_unpack_double = struct.Struct(">d").unpack


def bad(what: str) -> ProtocolViolation:
    """The error for malformed replicated-state input from a peer."""
    return ProtocolViolation(f"malformed replicated state: {what}", ErrorCode.MALFORMED)


# --------------------------------------------------------------------------- encoding


def _to_cbor(value: object, depth: int) -> cbor.CborValue:
    if value is None or isinstance(value, (bool, str, bytes)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgument(f"values must be finite numbers, not {value!r}")
        return {_FLOAT_TAG: _pack_double(value)}
    if isinstance(value, (list, tuple, dict)):
        if depth >= MAX_VALUE_DEPTH:
            raise InvalidArgument(f"value nested deeper than {MAX_VALUE_DEPTH} levels")
        if isinstance(value, dict):
            out: dict[str, cbor.CborValue] = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    raise InvalidArgument(f"dict keys in values must be str, not {key!r:.40}")
                out[key] = _to_cbor(item, depth + 1)
            return out
        return [_to_cbor(item, depth + 1) for item in value]
    raise InvalidArgument(f"values cannot hold a {type(value).__name__}")


def encode_value(value: object) -> bytes:
    """The canonical encoding of ``value``; :class:`InvalidArgument` if it is not a
    :data:`Value` or encodes to more than :data:`MAX_VALUE_SIZE` bytes."""
    data = cbor.encode(_to_cbor(value, 0))
    if len(data) > MAX_VALUE_SIZE:
        raise InvalidArgument(f"value of {len(data)} bytes exceeds {MAX_VALUE_SIZE}")
    return data


# --------------------------------------------------------------------------- decoding


def _from_cbor(item: Any, depth: int) -> Value:
    if isinstance(item, list):
        if depth >= MAX_VALUE_DEPTH:
            raise bad("value nested too deep")
        return [_from_cbor(x, depth + 1) for x in item]
    if isinstance(item, dict):
        if _FLOAT_TAG in item:
            raw = item[_FLOAT_TAG]
            if len(item) != 1 or not isinstance(raw, bytes) or len(raw) != 8:
                raise bad("bad float")
            number: float = _unpack_double(raw)[0]
            if not math.isfinite(number):
                raise bad("non-finite float")
            return number
        if depth >= MAX_VALUE_DEPTH:
            raise bad("value nested too deep")
        if not all(isinstance(k, str) for k in item):
            raise bad("dict keys in values must be text")
        return {k: _from_cbor(v, depth + 1) for k, v in item.items()}
    return item  # type: ignore[no-any-return]  # None, bool, int, str or bytes


def decode_value(data: bytes) -> Value:
    """Decode a canonical value encoding; :class:`ProtocolViolation` (``MALFORMED``) if it
    is not one (the CBOR decoder is strict, so accepted bytes are exactly canonical)."""
    if not isinstance(data, bytes) or not 0 < len(data) <= MAX_VALUE_SIZE:
        raise bad(f"a value is 1..{MAX_VALUE_SIZE} bytes")
    item = cbor.decode(data, max_depth=MAX_VALUE_DEPTH + 1, max_items=MAX_VALUE_SIZE)
    return _from_cbor(item, 0)


def value_sort_key(value: Value, encoding: bytes) -> tuple[int, Any, bytes]:
    """Order in which set elements are listed: ``None``, booleans, numbers, text, bytes,
    lists, dicts; naturally within each of the scalar kinds, by canonical encoding for
    containers and for equal numbers (``1`` before ``1.0``)."""
    if value is None:
        return (0, 0, encoding)
    if isinstance(value, bool):
        return (1, value, encoding)
    if isinstance(value, (int, float)):
        return (2, value, encoding)
    if isinstance(value, str):
        return (3, value, encoding)
    if isinstance(value, bytes):
        return (4, value, encoding)
    return (5 if isinstance(value, list) else 6, 0, encoding)


# --------------------------------------------------------------------------- names


def _utf8_length(text: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return -1


def check_key(key: object) -> str:
    """A valid key (``str`` of 1..:data:`MAX_KEY_LENGTH` UTF-8 bytes) or
    :class:`InvalidArgument`."""
    if not isinstance(key, str) or not 0 < _utf8_length(key) <= MAX_KEY_LENGTH:
        raise InvalidArgument(f"keys are text of 1..{MAX_KEY_LENGTH} UTF-8 bytes, not {key!r:.60}")
    return key


def check_agent(agent: object) -> str:
    """A valid agent name (printable ``str`` of 1..:data:`MAX_AGENT_LENGTH` UTF-8 bytes)
    or :class:`InvalidArgument`."""
    if (
        not isinstance(agent, str)
        or not 0 < _utf8_length(agent) <= MAX_AGENT_LENGTH
        or not agent.isprintable()
    ):
        raise InvalidArgument(
            f"agents are printable text of 1..{MAX_AGENT_LENGTH} bytes, not {agent!r:.80}"
        )
    return agent


def key_or_bad(key: object) -> str:
    """:func:`check_key` for untrusted input (raises :class:`ProtocolViolation`)."""
    if not isinstance(key, str) or not 0 < _utf8_length(key) <= MAX_KEY_LENGTH:
        raise bad("bad key")
    return key


def agent_or_bad(agent: object) -> str:
    """:func:`check_agent` for untrusted input (raises :class:`ProtocolViolation`)."""
    if (
        not isinstance(agent, str)
        or not 0 < _utf8_length(agent) <= MAX_AGENT_LENGTH
        or not agent.isprintable()
    ):
        raise bad("bad agent name")
    return agent


def value_or_bad(data: object) -> bytes:
    """Check that ``data`` is a canonical value encoding and return it."""
    if not isinstance(data, bytes):
        raise bad("a value must be a byte string")
    decode_value(data)
    return data


def int_or_bad(item: object, low: int, high: int, what: str) -> int:
    """An ``int`` (not ``bool``) in ``low..high`` or :class:`ProtocolViolation`."""
    if isinstance(item, bool) or not isinstance(item, int) or not low <= item <= high:
        raise bad(f"{what} must be an integer in {low}..{high}")
    return item


def list_or_bad(item: object, max_len: int, what: str, *, multiple: int = 1) -> list[Any]:
    """A ``list`` of at most ``max_len`` groups of ``multiple`` items, or
    :class:`ProtocolViolation`."""
    if not isinstance(item, list) or len(item) % multiple or len(item) > max_len * multiple:
        raise bad(f"{what} must be a list of at most {max_len} entries")
    return item
