"""Pub/sub wire format: signed messages and the one RPC kind that carries everything.

A published :class:`Message` is signed by its author's identity key over the canonical
CBOR of ``[topic, author, seqno, data]`` (domain :data:`MESSAGE_DOMAIN`). Peers forward
it unchanged; every receiver verifies it (:func:`verify_message`): the key must hash to
the author's agent ID and the signature must hold.

**Message IDs.** ``message_id(msg)`` is the first :data:`MSG_ID_LENGTH` bytes of
``SHA-256(ID_DOMAIN || signed bytes)``: it covers topic, author, seqno and data, and
*not* the key or the signature. Why:

* No forger can give a *valid* message the ID of an honest one: that takes a second
  preimage of 160 bits of SHA-256 and the author's signature.
* A forger *can* send an invalid copy carrying an honest message's ID (same fields, a
  bad signature). So the core records an ID as *seen* only after the message verified;
  rejected copies are remembered by (ID, signature), which never matches the honest
  copy, so a forgery that arrives first cannot shadow the real message.
* Leaving the signature out means one content has one ID, even if a signature encoding
  were malleable (one delivery, not two).
* An author who signs two different payloads with one seqno (equivocation) produces two
  IDs, and both are delivered everywhere; an ID of author + seqno alone (libp2p's
  default) would let each node keep whichever copy came first, silently splitting the
  swarm.

**RPC.** One kind, :class:`Rpc`, a CBOR map with small integer keys (empty parts are
left out):

.. code-block:: text

    rpc = {0: 1 (kind), ?1: [[subscribe: bool, topic], ...],
           ?2: [[topic, author, key, seqno, data, sig], ...],
           ?3: [[topic, [id, ...]], ...]           IHAVE
           ?4: [[id, ...], ...]                    IWANT
           ?5: [topic, ...]                        GRAFT
           ?6: [[topic, backoff seconds], ...]     PRUNE
           ?7: [[topic, [[agent, distance], ...]], ...]}   BRIDGE (region election)

Every count, length and size is checked at decode against the limits below; garbage
raises :class:`~swarmlink.errors.ProtocolViolation` (code ``MALFORMED``) and nothing else.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any

from ..errors import ErrorCode, InvalidArgument, ProtocolViolation, SwarmlinkError
from ..identity import (
    IdentityKey,
    agent_id_from_public_key,
    validate_agent_id,
    verify_signature,
)
from ..wire import cbor

__all__ = [
    "ID_DOMAIN",
    "MAX_BACKOFF",
    "MAX_BRIDGE_DISTANCE",
    "MAX_BRIDGE_ENTRIES",
    "MAX_BRIDGE_TOPICS",
    "MAX_CONTROL_TOPICS",
    "MAX_IHAVE_IDS",
    "MAX_IWANT_IDS",
    "MAX_MESSAGES_PER_RPC",
    "MAX_MESSAGE_DATA",
    "MAX_PEER_ID_LENGTH",
    "MAX_RPC_SIZE",
    "MAX_SUBSCRIPTIONS_PER_RPC",
    "MAX_TOPIC_LENGTH",
    "MESSAGE_DOMAIN",
    "MSG_ID_LENGTH",
    "PUBSUB_PROTOCOL",
    "RPC_KIND",
    "BridgeView",
    "Graft",
    "IHave",
    "IWant",
    "Message",
    "Prune",
    "Rpc",
    "SubOpt",
    "decode_rpc",
    "encode_rpc",
    "encoded_size",
    "message_id",
    "sign_message",
    "signed_bytes",
    "validate_topic",
    "verify_message",
]

#: Stream protocol the RPCs travel on (trusted peers only), one RPC per record.
PUBSUB_PROTOCOL = "/swarmlink/gossip/1"
#: Domain separation of message signatures (:meth:`IdentityKey.sign`).
MESSAGE_DOMAIN = b"swarmlink/pubsub/1"
#: Domain separation of message IDs.
ID_DOMAIN = b"swarmlink/pubsub/id/1\0"
#: The ``kind`` field of an RPC.
RPC_KIND = 1
#: Bytes in a message ID.
MSG_ID_LENGTH = 20
#: Longest topic name, in UTF-8 bytes (untrusted input).
MAX_TOPIC_LENGTH = 256
#: Largest message payload, in bytes (untrusted input).
MAX_MESSAGE_DATA = 64 * 1024
#: Largest encoded RPC, in bytes (untrusted input). The core splits what it sends to fit.
MAX_RPC_SIZE = 1024 * 1024
#: Published messages one RPC may carry.
MAX_MESSAGES_PER_RPC = 64
#: Subscription changes one RPC may carry.
MAX_SUBSCRIPTIONS_PER_RPC = 256
#: Message IDs all the IHAVE entries of one RPC may carry together.
MAX_IHAVE_IDS = 1000
#: Message IDs all the IWANT entries of one RPC may carry together.
MAX_IWANT_IDS = 1000
#: IHAVE entries plus GRAFT plus PRUNE entries (each names a topic) one RPC may carry.
MAX_CONTROL_TOPICS = 256
#: Topics one RPC may carry region-election views for.
MAX_BRIDGE_TOPICS = 64
#: Candidates in one region-election view.
MAX_BRIDGE_ENTRIES = 8
#: Largest distance (hops) in a region-election view.
MAX_BRIDGE_DISTANCE = 255
#: Longest peer ID in a region-election view (agent IDs are 52 characters).
MAX_PEER_ID_LENGTH = 128
#: Longest PRUNE backoff, in seconds.
MAX_BACKOFF = 3600
#: Ed25519 sizes.
_KEY_LENGTH = 32
_SIG_LENGTH = 64
_MAX_SEQNO = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Message:
    """A signed publication; forwarded unchanged by every peer."""

    #: The topic it was published to.
    topic: str
    #: The author's agent ID (must be the hash of ``key``).
    author: str
    #: The author's Ed25519 identity public key (32 bytes).
    key: bytes
    #: The author's sequence number; it must grow across restarts (see the core).
    seqno: int
    #: The payload, at most :data:`MAX_MESSAGE_DATA` bytes.
    data: bytes
    #: Ed25519 signature over :func:`signed_bytes` in domain :data:`MESSAGE_DOMAIN`.
    sig: bytes


@dataclass(frozen=True, slots=True)
class SubOpt:
    """A subscription change: the sender (un)subscribed ``topic``."""

    subscribe: bool
    topic: str


@dataclass(frozen=True, slots=True)
class IHave:
    """Gossip: the sender holds these messages of ``topic`` (ask with IWANT)."""

    topic: str
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class IWant:
    """Send me these messages (answering an IHAVE)."""

    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Graft:
    """Add me to your mesh for ``topic`` (I added you to mine)."""

    topic: str


@dataclass(frozen=True, slots=True)
class Prune:
    """I removed you from my mesh for ``topic``; don't GRAFT again for ``backoff`` s."""

    topic: str
    backoff: int


@dataclass(frozen=True, slots=True)
class BridgeView:
    """Region election: the sender's best bridge candidates of its region for ``topic``,
    as (agent ID, distance in hops from the sender)."""

    topic: str
    entries: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Rpc:
    """Everything one peer sends another in one go."""

    subscriptions: tuple[SubOpt, ...] = ()
    messages: tuple[Message, ...] = ()
    ihave: tuple[IHave, ...] = ()
    iwant: tuple[IWant, ...] = ()
    graft: tuple[Graft, ...] = ()
    prune: tuple[Prune, ...] = ()
    bridges: tuple[BridgeView, ...] = ()

    def __bool__(self) -> bool:
        return bool(
            self.subscriptions
            or self.messages
            or self.ihave
            or self.iwant
            or self.graft
            or self.prune
            or self.bridges
        )


# --------------------------------------------------------------------------- signing


def validate_topic(topic: str) -> str:
    """Check a topic name (local use); :class:`InvalidArgument` says what is wrong."""
    if not isinstance(topic, str) or not topic:
        raise InvalidArgument("a topic is a non-empty string")
    if len(topic.encode("utf-8", "surrogatepass")) > MAX_TOPIC_LENGTH:
        raise InvalidArgument(f"topic longer than {MAX_TOPIC_LENGTH} bytes")
    return topic


def signed_bytes(msg: Message) -> bytes:
    """The canonical bytes a message's signature covers (and its ID hashes)."""
    return cbor.encode([msg.topic, msg.author, msg.seqno, msg.data])


@functools.lru_cache(maxsize=1024)
def message_id(msg: Message) -> bytes:
    """The message's ID (see the module docstring for why it is derived this way).

    Cached (a node meets each message several times); equal messages have equal IDs, and
    the cache compares every field, so a forgery never gets an honest message's entry.
    """
    return hashlib.sha256(ID_DOMAIN + signed_bytes(msg)).digest()[:MSG_ID_LENGTH]


def sign_message(identity: IdentityKey, topic: str, seqno: int, data: bytes) -> Message:
    """A message by ``identity`` on ``topic``, signed."""
    validate_topic(topic)
    if isinstance(seqno, bool) or not isinstance(seqno, int) or not 0 <= seqno <= _MAX_SEQNO:
        raise InvalidArgument("seqno must be an integer in [0, 2**64)")
    data = bytes(data)
    if len(data) > MAX_MESSAGE_DATA:
        raise InvalidArgument(f"message data larger than {MAX_MESSAGE_DATA} bytes")
    unsigned = Message(topic, identity.agent_id, identity.public_key, seqno, data, b"")
    sig = identity.sign(MESSAGE_DOMAIN, signed_bytes(unsigned))
    return Message(topic, identity.agent_id, identity.public_key, seqno, data, sig)


def verify_message(msg: Message) -> bool:
    """True if ``msg.key`` names ``msg.author`` and the signature over it holds."""
    try:
        if agent_id_from_public_key(msg.key) != msg.author:
            return False
        verify_signature(msg.key, MESSAGE_DOMAIN, signed_bytes(msg), msg.sig)
    except SwarmlinkError:
        return False
    return True


# --------------------------------------------------------------------------- encoding


def _array_head(n: int) -> bytes:
    head = cbor.encode(n)  # major type 0 with the same argument; switch to 4 (array)
    return bytes((0x80 | head[0],)) + head[1:]


@functools.lru_cache(maxsize=256)
def _encode_message(msg: Message) -> bytes:
    # Cached: a forwarded message is encoded once per peer it goes to (small cache, so
    # at most 256 payloads of up to 64 KiB stay referenced).
    return cbor.encode([msg.topic, msg.author, msg.key, msg.seqno, msg.data, msg.sig])


def encode_rpc(rpc: Rpc) -> bytes:
    """The RPC's deterministic CBOR; :class:`InvalidArgument` if over :data:`MAX_RPC_SIZE`.

    (Exactly ``cbor.encode`` of the map in the module docstring, assembled part by part so
    that message bodies are encoded once each.)
    """
    parts: list[bytes] = [b"\x00" + cbor.encode(RPC_KIND)]
    if rpc.subscriptions:
        parts.append(b"\x01" + cbor.encode([[s.subscribe, s.topic] for s in rpc.subscriptions]))
    if rpc.messages:
        body = b"".join(_encode_message(m) for m in rpc.messages)
        parts.append(b"\x02" + _array_head(len(rpc.messages)) + body)
    if rpc.ihave:
        parts.append(b"\x03" + cbor.encode([[h.topic, list(h.ids)] for h in rpc.ihave]))
    if rpc.iwant:
        parts.append(b"\x04" + cbor.encode([list(w.ids) for w in rpc.iwant]))
    if rpc.graft:
        parts.append(b"\x05" + cbor.encode([g.topic for g in rpc.graft]))
    if rpc.prune:
        parts.append(b"\x06" + cbor.encode([[p.topic, p.backoff] for p in rpc.prune]))
    if rpc.bridges:
        views: list[Any] = [[b.topic, [[a, d] for a, d in b.entries]] for b in rpc.bridges]
        parts.append(b"\x07" + cbor.encode(views))
    data = bytes((0xA0 | len(parts),)) + b"".join(parts)
    if len(data) > MAX_RPC_SIZE:
        raise InvalidArgument(f"RPC of {len(data)} bytes exceeds {MAX_RPC_SIZE}")
    return data


def _head_size(n: int) -> int:
    return 1 if n < 24 else 2 if n < 0x100 else 3 if n < 0x10000 else 5 if n < 1 << 32 else 9


@functools.lru_cache(maxsize=4096)
def _text_size(text: str) -> int:
    n = len(text.encode("utf-8"))
    return _head_size(n) + n


@functools.lru_cache(maxsize=1024)
def _message_size(msg: Message) -> int:
    n = len(msg.data)
    return (
        1
        + _text_size(msg.topic)
        + _text_size(msg.author)
        + _head_size(len(msg.key))
        + len(msg.key)
        + _head_size(msg.seqno)
        + _head_size(n)
        + n
        + _head_size(len(msg.sig))
        + len(msg.sig)
    )


def encoded_size(rpc: Rpc) -> int:
    """``len(encode_rpc(rpc))``, computed without encoding (simulators count bytes)."""
    hs = _head_size
    ts = _text_size
    size = 3  # map head, key 0, kind
    if rpc.subscriptions:
        size += 1 + hs(len(rpc.subscriptions)) + sum(2 + ts(s.topic) for s in rpc.subscriptions)
    if rpc.messages:
        size += 1 + hs(len(rpc.messages)) + sum(map(_message_size, rpc.messages))
    if rpc.ihave:
        size += 1 + hs(len(rpc.ihave))
        for h in rpc.ihave:
            size += 1 + ts(h.topic) + hs(len(h.ids)) + len(h.ids) * (1 + MSG_ID_LENGTH)
    if rpc.iwant:
        size += 1 + hs(len(rpc.iwant))
        for w in rpc.iwant:
            size += hs(len(w.ids)) + len(w.ids) * (1 + MSG_ID_LENGTH)
    if rpc.graft:
        size += 1 + hs(len(rpc.graft)) + sum(ts(g.topic) for g in rpc.graft)
    if rpc.prune:
        size += 1 + hs(len(rpc.prune))
        size += sum(1 + ts(p.topic) + hs(p.backoff) for p in rpc.prune)
    if rpc.bridges:
        size += 1 + hs(len(rpc.bridges))
        for b in rpc.bridges:
            size += 1 + ts(b.topic) + hs(len(b.entries))
            size += sum(1 + ts(agent) + hs(dist) for agent, dist in b.entries)
    return size


def _bad(what: str) -> ProtocolViolation:
    return ProtocolViolation(f"malformed pub/sub RPC: {what}", ErrorCode.MALFORMED)


def _list(value: object, limit: int, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise _bad(f"{what} must be a list")
    if not value or len(value) > limit:
        raise _bad(f"{what}: 1..{limit} entries")
    return value


def _topic(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise _bad("a topic is a non-empty text string")
    if len(value.encode("utf-8")) > MAX_TOPIC_LENGTH:
        raise _bad(f"topic longer than {MAX_TOPIC_LENGTH} bytes")
    return value


def _ids(value: object, budget: list[int], what: str) -> tuple[bytes, ...]:
    if not isinstance(value, list) or not value:
        raise _bad(f"{what} ids must be a non-empty list")
    budget[0] -= len(value)
    if budget[0] < 0:
        raise _bad(f"too many {what} ids")
    for item in value:
        if not isinstance(item, bytes) or len(item) != MSG_ID_LENGTH:
            raise _bad(f"message ids are {MSG_ID_LENGTH} bytes")
    return tuple(value)


def _message(value: object) -> Message:
    if not isinstance(value, list) or len(value) != 6:
        raise _bad("a message is [topic, author, key, seqno, data, sig]")
    topic, author, key, seqno, data, sig = value
    topic = _topic(topic)
    if not isinstance(author, str):
        raise _bad("author must be an agent ID")
    try:
        if validate_agent_id(author) != author:
            raise _bad("author agent ID is not in canonical form")
    except InvalidArgument:
        raise _bad("author is not an agent ID") from None
    if not isinstance(key, bytes) or len(key) != _KEY_LENGTH:
        raise _bad(f"key must be {_KEY_LENGTH} bytes")
    if isinstance(seqno, bool) or not isinstance(seqno, int) or not 0 <= seqno <= _MAX_SEQNO:
        raise _bad("seqno must be an unsigned 64-bit integer")
    if not isinstance(data, bytes) or len(data) > MAX_MESSAGE_DATA:
        raise _bad(f"data must be at most {MAX_MESSAGE_DATA} bytes")
    if not isinstance(sig, bytes) or len(sig) != _SIG_LENGTH:
        raise _bad(f"sig must be {_SIG_LENGTH} bytes")
    return Message(topic, author, key, seqno, data, sig)


def _sub(value: object) -> SubOpt:
    if not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], bool):
        raise _bad("a subscription is [bool, topic]")
    return SubOpt(value[0], _topic(value[1]))


def _prune(value: object) -> Prune:
    if not isinstance(value, list) or len(value) != 2:
        raise _bad("a prune is [topic, backoff]")
    backoff = value[1]
    if isinstance(backoff, bool) or not isinstance(backoff, int) or not 0 <= backoff <= MAX_BACKOFF:
        raise _bad(f"backoff must be 0..{MAX_BACKOFF} seconds")
    return Prune(_topic(value[0]), backoff)


def _entry(value: object) -> tuple[str, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise _bad("a bridge entry is [agent, distance]")
    agent, dist = value
    if not isinstance(agent, str) or not 0 < len(agent) <= MAX_PEER_ID_LENGTH:
        raise _bad(f"bridge agent must be 1..{MAX_PEER_ID_LENGTH} characters")
    if isinstance(dist, bool) or not isinstance(dist, int) or not 0 <= dist <= MAX_BRIDGE_DISTANCE:
        raise _bad(f"bridge distance must be 0..{MAX_BRIDGE_DISTANCE}")
    return agent, dist


def _bridge(value: object) -> BridgeView:
    if not isinstance(value, list) or len(value) != 2 or not isinstance(value[1], list):
        raise _bad("a bridge view is [topic, [[agent, distance], ...]]")
    if len(value[1]) > MAX_BRIDGE_ENTRIES:
        raise _bad(f"at most {MAX_BRIDGE_ENTRIES} bridge entries")
    return BridgeView(_topic(value[0]), tuple(_entry(e) for e in value[1]))


def decode_rpc(data: bytes) -> Rpc:
    """Parse and check one RPC; :class:`ProtocolViolation` for anything malformed."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise _bad("not bytes")
    if len(data) > MAX_RPC_SIZE:
        raise _bad(f"{len(data)} bytes exceeds {MAX_RPC_SIZE}")
    value = cbor.decode(bytes(data), max_depth=5, max_items=16384)
    if not isinstance(value, dict):
        raise _bad("not a map")
    if not set(value) <= {0, 1, 2, 3, 4, 5, 6, 7} or value.get(0) != RPC_KIND:
        raise _bad(f"fields {sorted(map(str, value))} / kind")
    subs = _list(value[1], MAX_SUBSCRIPTIONS_PER_RPC, "subscriptions") if 1 in value else []
    msgs = _list(value[2], MAX_MESSAGES_PER_RPC, "messages") if 2 in value else []
    ihave = _list(value[3], MAX_CONTROL_TOPICS, "ihave") if 3 in value else []
    iwant = _list(value[4], MAX_IWANT_IDS, "iwant") if 4 in value else []
    graft = _list(value[5], MAX_CONTROL_TOPICS, "graft") if 5 in value else []
    prune = _list(value[6], MAX_CONTROL_TOPICS, "prune") if 6 in value else []
    bridges = _list(value[7], MAX_BRIDGE_TOPICS, "bridges") if 7 in value else []
    if len(ihave) + len(graft) + len(prune) > MAX_CONTROL_TOPICS:
        raise _bad(f"more than {MAX_CONTROL_TOPICS} control entries")
    have_budget = [MAX_IHAVE_IDS]
    want_budget = [MAX_IWANT_IDS]
    ihaves: list[IHave] = []
    for h in ihave:
        if not isinstance(h, list) or len(h) != 2:
            raise _bad("an ihave is [topic, [id, ...]]")
        ihaves.append(IHave(_topic(h[0]), _ids(h[1], have_budget, "ihave")))
    return Rpc(
        subscriptions=tuple(_sub(s) for s in subs),
        messages=tuple(_message(m) for m in msgs),
        ihave=tuple(ihaves),
        iwant=tuple(IWant(_ids(w, want_budget, "iwant")) for w in iwant),
        graft=tuple(Graft(_topic(g)) for g in graft),
        prune=tuple(_prune(p) for p in prune),
        bridges=tuple(_bridge(b) for b in bridges),
    )
