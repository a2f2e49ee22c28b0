"""SWIM membership wire messages: probes, acks, indirect probes, NACKs, gossip, push-pull.

Every message is a deterministic-CBOR array whose first item is a small integer kind;
membership *updates* (the things SWIM disseminates) are arrays of their own and ride on
every message kind:

.. code-block:: text

    message  = [1, seq, [update...]]                       Ping
             | [2, seq, [update...]]                       Ack
             | [3, seq, target, [update...]]               PingReq (probe target for me)
             | [4, seq, [update...]]                       Nack (Lifeguard: target silent)
             | [5, [update...]]                            Gossip (updates only)
             | [6, response, more, [entry...]]             PushPull (full state, chunked)
    update   = [0, agent, incarnation, region]             Alive
             | [1, agent, incarnation, suspected_by]       Suspect
             | [2, agent, incarnation, declared_by]        Dead
             | [3, agent, incarnation]                     Left (graceful leave)

A push-pull *entry* is an update describing one member's current state. A state larger
than :data:`MAX_PUSHPULL_MEMBERS` entries travels as several PushPull messages, all but the
last with ``more`` set; each is merged on arrival (nothing is buffered) and a request is
answered once its last chunk arrived (the stream keeps them in order). ``seq`` and
``incarnation`` are unsigned 32-bit integers; agent IDs are 1..:data:`MAX_AGENT_ID_LENGTH`
printable ASCII characters without spaces (the runtime authenticates the sender; the
agents named inside are claims made by a trusted peer). Every limit below is checked by
:func:`decode_swim`, which raises :class:`~swarmlink.errors.ProtocolViolation` (code
``MALFORMED``) and nothing else on bad input; :func:`encode_swim` refuses to build a
message the decoder would refuse (:class:`~swarmlink.errors.InvalidArgument`).

:func:`encoded_size` gives the exact length of :func:`encode_swim`'s output without
encoding (the simulator counts bytes with it; a test pins the two together).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from ..errors import ErrorCode, InvalidArgument, ProtocolViolation, SwarmlinkError
from ..wire import cbor

__all__ = [
    "MAX_AGENT_ID_LENGTH",
    "MAX_INCARNATION",
    "MAX_PUSHPULL_MEMBERS",
    "MAX_REGION_LENGTH",
    "MAX_SEQ",
    "MAX_SWIM_MESSAGE",
    "MAX_UPDATES_PER_MESSAGE",
    "Ack",
    "Alive",
    "Dead",
    "Gossip",
    "Left",
    "MessageKind",
    "Nack",
    "Ping",
    "PingReq",
    "PushPull",
    "Suspect",
    "SwimMessage",
    "Update",
    "UpdateKind",
    "decode_swim",
    "encode_swim",
    "encoded_size",
    "update_size",
]

#: Longest agent ID (characters of printable ASCII) accepted in a message. Real agent IDs
#: are 52 characters; the slack lets tests and simulations use short names.
MAX_AGENT_ID_LENGTH = 64
#: Longest region label (bytes of UTF-8, printable characters only; may be empty).
MAX_REGION_LENGTH = 64
#: Largest incarnation number (an unsigned 32-bit integer).
MAX_INCARNATION = 0xFFFF_FFFF
#: Largest probe sequence number (an unsigned 32-bit integer; it wraps).
MAX_SEQ = 0xFFFF_FFFF
#: Updates piggybacked on one message (Ping, Ack, PingReq, Nack, Gossip).
MAX_UPDATES_PER_MESSAGE = 64
#: Member entries in one PushPull message (a larger state is sent in several chunks);
#: chosen so that any PushPull fits in :data:`MAX_SWIM_MESSAGE`.
MAX_PUSHPULL_MEMBERS = 448

# Largest encoded update: array head, kind, agent (2-byte head), u32, region/agent.
_MAX_UPDATE_SIZE = 1 + 1 + (2 + MAX_AGENT_ID_LENGTH) + 5 + (2 + MAX_REGION_LENGTH)

#: Largest encoded message of any kind (bytes): 63 KiB, so that one message fits in one
#: 64 KiB stream record with room to spare for an envelope. Every message built within
#: the limits above fits (checked below).
MAX_SWIM_MESSAGE = 63 * 1024

assert 16 + (2 + MAX_AGENT_ID_LENGTH) + MAX_UPDATES_PER_MESSAGE * _MAX_UPDATE_SIZE <= (
    MAX_SWIM_MESSAGE
)
assert 16 + MAX_PUSHPULL_MEMBERS * _MAX_UPDATE_SIZE <= MAX_SWIM_MESSAGE

_AGENT_RE = re.compile(f"[!-~]{{1,{MAX_AGENT_ID_LENGTH}}}")


class MessageKind(enum.IntEnum):
    """The first item of every message."""

    PING = 1
    ACK = 2
    PING_REQ = 3
    NACK = 4
    GOSSIP = 5
    PUSH_PULL = 6


class UpdateKind(enum.IntEnum):
    """The first item of every update (and the precedence order at equal incarnation)."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


# ---- sizes ------------------------------------------------------------------------------


def _head(n: int) -> int:
    if n < 24:
        return 1
    if n < 0x100:
        return 2
    if n < 0x10000:
        return 3
    if n < 0x1_0000_0000:
        return 5
    return 9


def _text(s: str) -> int:
    n = len(s) if s.isascii() else len(s.encode("utf-8"))
    return _head(n) + n


# ---- updates ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Alive:
    """``agent`` is alive at ``incarnation`` and lives in ``region`` (may be empty)."""

    agent: str
    incarnation: int
    region: str = ""
    #: Encoded size in bytes (computed once: an update is sent many times).
    wire_size: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        size = 2 + _text(self.agent) + _head(self.incarnation) + _text(self.region)
        object.__setattr__(self, "wire_size", size)


@dataclass(frozen=True, slots=True)
class Suspect:
    """``suspected_by`` failed to get an ack from ``agent`` at ``incarnation``."""

    agent: str
    incarnation: int
    suspected_by: str
    #: Encoded size in bytes.
    wire_size: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        size = 2 + _text(self.agent) + _head(self.incarnation) + _text(self.suspected_by)
        object.__setattr__(self, "wire_size", size)


@dataclass(frozen=True, slots=True)
class Dead:
    """``declared_by`` declared ``agent`` dead at ``incarnation`` (suspicion expired)."""

    agent: str
    incarnation: int
    declared_by: str
    #: Encoded size in bytes.
    wire_size: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        size = 2 + _text(self.agent) + _head(self.incarnation) + _text(self.declared_by)
        object.__setattr__(self, "wire_size", size)


@dataclass(frozen=True, slots=True)
class Left:
    """``agent`` left the swarm gracefully at ``incarnation`` (only it says this)."""

    agent: str
    incarnation: int
    #: Encoded size in bytes.
    wire_size: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "wire_size", 2 + _text(self.agent) + _head(self.incarnation))


Update: TypeAlias = Alive | Suspect | Dead | Left


# ---- messages ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ping:
    """Direct probe; the receiver answers ``Ack(seq)`` to the sender."""

    seq: int
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class Ack:
    """Answer to ``Ping(seq)``, or forwarded by an intermediary for ``PingReq(seq)``."""

    seq: int
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class PingReq:
    """Indirect probe: please ping ``target`` and forward its ack as ``Ack(seq)`` (or send
    ``Nack(seq)`` if it stays silent)."""

    seq: int
    target: str
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class Nack:
    """Lifeguard: the intermediary reached us but ``PingReq(seq)``'s target did not answer
    it in time (so *our* links work; the target may be the problem)."""

    seq: int
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class Gossip:
    """A fast dissemination round: pending updates only."""

    updates: tuple[Update, ...]


@dataclass(frozen=True, slots=True)
class PushPull:
    """Full membership state, or one chunk of it (``more``: further chunks follow); a
    request (``response=False``) is answered with ours once its last chunk arrived."""

    response: bool
    members: tuple[Update, ...]
    more: bool = False


SwimMessage: TypeAlias = Ping | Ack | PingReq | Nack | Gossip | PushPull


def update_size(update: Update) -> int:
    """Encoded size of one update (bytes)."""
    return update.wire_size


def _updates_size(updates: tuple[Update, ...]) -> int:
    size = _head(len(updates))
    for u in updates:
        size += u.wire_size
    return size


def encoded_size(msg: SwimMessage) -> int:
    """Exact length of ``encode_swim(msg)`` (bytes), computed without encoding."""
    cls = msg.__class__
    if cls is Gossip:
        return 2 + _updates_size(msg.updates)  # type: ignore[union-attr]
    if cls is PushPull:
        return 4 + _updates_size(msg.members)  # type: ignore[union-attr]
    size = 2 + _head(msg.seq) + _updates_size(msg.updates)  # type: ignore[union-attr]
    if cls is PingReq:
        size += _text(msg.target)  # type: ignore[union-attr]
    return size


# ---- encoding ---------------------------------------------------------------------------


def _update_value(u: Update) -> list[Any]:
    cls = u.__class__
    if cls is Alive:
        return [0, u.agent, u.incarnation, u.region]  # type: ignore[union-attr]
    if cls is Suspect:
        return [1, u.agent, u.incarnation, u.suspected_by]  # type: ignore[union-attr]
    if cls is Dead:
        return [2, u.agent, u.incarnation, u.declared_by]  # type: ignore[union-attr]
    if cls is Left:
        return [3, u.agent, u.incarnation]
    raise InvalidArgument(f"not a SWIM update: {type(u).__name__}")


def _check_update(u: Update) -> None:
    _check_agent(u.agent)
    _check_u32(u.incarnation, "incarnation")
    if isinstance(u, Alive):
        check_region(u.region)
    elif isinstance(u, Suspect):
        _check_agent(u.suspected_by)
    elif isinstance(u, Dead):
        _check_agent(u.declared_by)


def _check_agent(agent: object) -> None:
    if not isinstance(agent, str) or _AGENT_RE.fullmatch(agent) is None:
        raise InvalidArgument(f"bad agent ID in a SWIM message: {agent!r:.80}")


def check_region(region: object) -> str:
    """``region`` if it can go on the wire (printable text of at most
    :data:`MAX_REGION_LENGTH` UTF-8 bytes); else :class:`InvalidArgument`."""
    try:
        ok = (
            isinstance(region, str)
            and len(region.encode("utf-8")) <= MAX_REGION_LENGTH
            and region.isprintable()
        )
    except UnicodeEncodeError:
        ok = False
    if not ok:
        raise InvalidArgument(
            f"a region label is printable text of at most {MAX_REGION_LENGTH} bytes, "
            f"not {region!r:.80}"
        )
    assert isinstance(region, str)
    return region


def _check_u32(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEQ:
        raise InvalidArgument(f"{what} must be an unsigned 32-bit integer, not {value!r}")


def encode_swim(msg: SwimMessage) -> bytes:
    """The wire form of ``msg`` (deterministic CBOR); InvalidArgument if out of limits."""
    if isinstance(msg, PushPull):
        if len(msg.members) > MAX_PUSHPULL_MEMBERS:
            raise InvalidArgument(f"push-pull state of {len(msg.members)} members is too big")
        for u in msg.members:
            _check_update(u)
        value: list[Any] = [
            int(MessageKind.PUSH_PULL),
            bool(msg.response),
            bool(msg.more),
            [_update_value(u) for u in msg.members],
        ]
        return cbor.encode(value)
    updates = msg.updates
    if len(updates) > MAX_UPDATES_PER_MESSAGE:
        raise InvalidArgument(f"{len(updates)} updates exceed {MAX_UPDATES_PER_MESSAGE}")
    for u in updates:
        _check_update(u)
    body = [_update_value(u) for u in updates]
    if isinstance(msg, Gossip):
        value = [int(MessageKind.GOSSIP), body]
    else:
        _check_u32(msg.seq, "seq")
        if isinstance(msg, Ping):
            value = [int(MessageKind.PING), msg.seq, body]
        elif isinstance(msg, Ack):
            value = [int(MessageKind.ACK), msg.seq, body]
        elif isinstance(msg, Nack):
            value = [int(MessageKind.NACK), msg.seq, body]
        elif isinstance(msg, PingReq):
            _check_agent(msg.target)
            value = [int(MessageKind.PING_REQ), msg.seq, msg.target, body]
        else:
            raise InvalidArgument(f"not a SWIM message: {type(msg).__name__}")
    data = cbor.encode(value)
    if len(data) > MAX_SWIM_MESSAGE:  # cannot happen within the limits; kept as a guard
        raise InvalidArgument(f"SWIM message of {len(data)} bytes exceeds {MAX_SWIM_MESSAGE}")
    return data


# ---- decoding ---------------------------------------------------------------------------


def _bad(what: str) -> ProtocolViolation:
    return ProtocolViolation(f"malformed SWIM message: {what}", ErrorCode.MALFORMED)


def _agent(value: object) -> str:
    if not isinstance(value, str) or _AGENT_RE.fullmatch(value) is None:
        raise _bad("bad agent ID")
    return value


def _u32(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_SEQ:
        raise _bad(f"bad {what}")
    return value


def _region(value: object) -> str:
    if (
        not isinstance(value, str)
        or len(value) > MAX_REGION_LENGTH
        or len(value.encode("utf-8")) > MAX_REGION_LENGTH
        or not value.isprintable()
    ):
        raise _bad("bad region")
    return value


def _update(value: object) -> Update:
    if not isinstance(value, list) or not 3 <= len(value) <= 4:
        raise _bad("an update is [kind, agent, incarnation, ...]")
    kind = value[0]
    agent = _agent(value[1])
    inc = _u32(value[2], "incarnation")
    if kind == UpdateKind.LEFT and type(kind) is int and len(value) == 3:
        return Left(agent, inc)
    if type(kind) is not int or len(value) != 4:
        raise _bad("bad update kind or length")
    if kind == UpdateKind.ALIVE:
        return Alive(agent, inc, _region(value[3]))
    if kind == UpdateKind.SUSPECT:
        return Suspect(agent, inc, _agent(value[3]))
    if kind == UpdateKind.DEAD:
        return Dead(agent, inc, _agent(value[3]))
    raise _bad(f"unknown update kind {kind}")


def _updates(value: object, limit: int) -> tuple[Update, ...]:
    if not isinstance(value, list) or len(value) > limit:
        raise _bad(f"at most {limit} updates")
    return tuple(map(_update, value))


def decode_swim(data: bytes) -> SwimMessage:
    """Parse one message; ProtocolViolation (MALFORMED) on anything malformed or too big."""
    try:
        return _decode(data)
    except ProtocolViolation:
        raise
    except SwarmlinkError as exc:  # e.g. InvalidArgument for a non-bytes argument
        raise _bad(str(exc)) from None


def _decode(data: bytes) -> SwimMessage:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise _bad("not bytes")
    if len(data) > MAX_SWIM_MESSAGE:
        raise _bad(f"{len(data)} bytes exceeds {MAX_SWIM_MESSAGE}")
    items = 4 + 5 * max(MAX_PUSHPULL_MEMBERS, MAX_UPDATES_PER_MESSAGE)
    value = cbor.decode(bytes(data), max_depth=3, max_items=items)
    if not isinstance(value, list) or not value or type(value[0]) is not int:
        raise _bad("not an array starting with a kind")
    kind = value[0]
    n = len(value)
    if kind == MessageKind.PUSH_PULL and n == 4:
        if not isinstance(value[1], bool) or not isinstance(value[2], bool):
            raise _bad("push-pull flags must be booleans")
        return PushPull(value[1], _updates(value[3], MAX_PUSHPULL_MEMBERS), value[2])
    if kind == MessageKind.GOSSIP and n == 2:
        return Gossip(_updates(value[1], MAX_UPDATES_PER_MESSAGE))
    if kind == MessageKind.PING_REQ and n == 4:
        return PingReq(
            _u32(value[1], "seq"), _agent(value[2]), _updates(value[3], MAX_UPDATES_PER_MESSAGE)
        )
    if n == 3 and kind in (MessageKind.PING, MessageKind.ACK, MessageKind.NACK):
        seq = _u32(value[1], "seq")
        updates = _updates(value[2], MAX_UPDATES_PER_MESSAGE)
        if kind == MessageKind.PING:
            return Ping(seq, updates)
        if kind == MessageKind.ACK:
            return Ack(seq, updates)
        return Nack(seq, updates)
    raise _bad(f"unknown kind {kind} or wrong length {n}")
