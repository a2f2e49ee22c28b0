"""DHT wire messages: requests and responses as deterministic CBOR maps.

They travel on the stream protocol :data:`DHT_PROTOCOL` as records
(:mod:`swarmlink.wire.records`). The sender needs no signature of its own: the session
already authenticated it (its agent ID is its node ID). Records carried inside are signed
by their owners and verified separately.

.. code-block:: text

    request  = {"q": kind, "n": request id, "k": 32-byte key, ?"r": record bytes,
                ?"a": [address, ...]}
    response = {"n": request id, "ok": bool, ?"c": [[agent_id, [address, ...]], ...],
                ?"r": record bytes, ?"p": [record bytes, ...], ?"e": error text}

``a`` lists the addresses the sender listens at (a hint for the receiver's routing table:
a TCP connection's source port is not a listening port). ``kind`` is one of ``ping``,
``find_node``, ``find_value``, ``store``, ``add_provider``, ``get_providers``.
Every field is checked at decode against the limits below.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from ..errors import ErrorCode, InvalidArgument, ProtocolViolation, SwarmlinkError
from ..identity import validate_agent_id
from ..wire import cbor

__all__ = [
    "DHT_PROTOCOL",
    "MAX_CONTACTS",
    "MAX_DHT_MESSAGE",
    "MAX_ERROR_TEXT",
    "MAX_PROVIDERS",
    "MAX_RECORD_BYTES",
    "Query",
    "Request",
    "Response",
    "WireContact",
    "decode_request",
    "decode_response",
]

#: Stream protocol of DHT requests (one request and one response per record pair).
DHT_PROTOCOL = "/swarmlink/dht/1"
#: Largest encoded DHT message accepted (bytes; untrusted input).
MAX_DHT_MESSAGE = 48 * 1024
#: Contacts a response may carry.
MAX_CONTACTS = 20
#: Provider records a response may carry.
MAX_PROVIDERS = 8
#: Largest record carried in a message (bytes).
MAX_RECORD_BYTES = 4096
#: Addresses per contact.
MAX_CONTACT_ADDRESSES = 8
#: Longest address text.
MAX_ADDRESS_TEXT = 128
#: Longest error text in a response.
MAX_ERROR_TEXT = 256
#: Largest request id (a u32).
MAX_REQUEST_ID = 0xFFFF_FFFF


class Query(enum.StrEnum):
    PING = "ping"
    FIND_NODE = "find_node"
    FIND_VALUE = "find_value"
    STORE = "store"
    ADD_PROVIDER = "add_provider"
    GET_PROVIDERS = "get_providers"


@dataclass(frozen=True)
class WireContact:
    """A node as another node describes it: agent ID and the addresses it was seen at."""

    agent_id: str
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class Request:
    kind: Query
    request_id: int
    key: bytes
    record: bytes | None = None
    #: Where the sender listens (self-claimed; dialing it verifies the identity anyway).
    addresses: tuple[str, ...] = ()

    def encode(self) -> bytes:
        body: dict[str, Any] = {"q": str(self.kind), "n": self.request_id, "k": self.key}
        if self.record is not None:
            body["r"] = self.record
        if self.addresses:
            body["a"] = list(self.addresses)
        data = cbor.encode(body)
        if len(data) > MAX_DHT_MESSAGE:
            raise InvalidArgument(f"DHT request of {len(data)} bytes exceeds {MAX_DHT_MESSAGE}")
        return data


@dataclass(frozen=True)
class Response:
    request_id: int
    ok: bool
    contacts: tuple[WireContact, ...] = ()
    record: bytes | None = None
    providers: tuple[bytes, ...] = ()
    error: str = ""

    def encode(self) -> bytes:
        body: dict[str, Any] = {"n": self.request_id, "ok": self.ok}
        if self.contacts:
            body["c"] = [[c.agent_id, list(c.addresses)] for c in self.contacts]
        if self.record is not None:
            body["r"] = self.record
        if self.providers:
            body["p"] = list(self.providers)
        if self.error:
            body["e"] = self.error[:MAX_ERROR_TEXT]
        data = cbor.encode(body)
        if len(data) > MAX_DHT_MESSAGE:
            raise InvalidArgument(f"DHT response of {len(data)} bytes exceeds {MAX_DHT_MESSAGE}")
        return data


def _bad(what: str) -> ProtocolViolation:
    return ProtocolViolation(f"malformed DHT message: {what}", ErrorCode.MALFORMED)


def _map(data: bytes, allowed: set[str], required: set[str]) -> dict[str, Any]:
    if len(data) > MAX_DHT_MESSAGE:
        raise _bad(f"{len(data)} bytes exceeds {MAX_DHT_MESSAGE}")
    value = cbor.decode(data, max_depth=4, max_items=1024)
    if not isinstance(value, dict):
        raise _bad("not a map")
    keys = set(value)
    if not required <= keys or not keys <= allowed:
        raise _bad(f"fields {sorted(map(str, keys))}")
    return value


def _request_id(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_REQUEST_ID:
        raise _bad("bad request id")
    return value


def _record(value: object) -> bytes:
    if not isinstance(value, bytes) or not 0 < len(value) <= MAX_RECORD_BYTES:
        raise _bad(f"records are 1..{MAX_RECORD_BYTES} bytes")
    return value


def decode_request(data: bytes) -> Request:
    msg = _map(data, {"q", "n", "k", "r", "a"}, {"q", "n", "k"})
    try:
        kind = Query(msg["q"])
    except ValueError:
        raise _bad(f"unknown query {msg['q']!r}") from None
    key = msg["k"]
    if not isinstance(key, bytes) or len(key) != 32:
        raise _bad("keys are 32 bytes")
    record = msg.get("r")
    needs_record = kind in (Query.STORE, Query.ADD_PROVIDER)
    if needs_record != (record is not None):
        raise _bad(f"{kind} {'needs' if needs_record else 'takes no'} record")
    addresses = _addresses(msg.get("a", []))
    return Request(
        kind,
        _request_id(msg["n"]),
        key,
        None if record is None else _record(record),
        addresses,
    )


def _addresses(addresses: object) -> tuple[str, ...]:
    if (
        not isinstance(addresses, list)
        or len(addresses) > MAX_CONTACT_ADDRESSES
        or not all(
            isinstance(a, str) and 0 < len(a) <= MAX_ADDRESS_TEXT and a.isprintable()
            for a in addresses
        )
    ):
        raise _bad("bad addresses")
    return tuple(addresses)


def _contact(value: object) -> WireContact:
    if not isinstance(value, list) or len(value) != 2:
        raise _bad("a contact is [agent_id, [addresses]]")
    agent, addresses = value
    if not isinstance(agent, str) or not isinstance(addresses, list):
        raise _bad("a contact is [agent_id, [addresses]]")
    try:
        agent = validate_agent_id(agent)
    except SwarmlinkError:
        raise _bad("contact has a bad agent ID") from None
    try:
        return WireContact(agent, _addresses(addresses))
    except ProtocolViolation:
        raise _bad("contact has bad addresses") from None


def decode_response(data: bytes) -> Response:
    msg = _map(data, {"n", "ok", "c", "r", "p", "e"}, {"n", "ok"})
    if not isinstance(msg["ok"], bool):
        raise _bad("ok must be a boolean")
    contacts = msg.get("c", [])
    providers = msg.get("p", [])
    error = msg.get("e", "")
    if not isinstance(contacts, list) or len(contacts) > MAX_CONTACTS:
        raise _bad(f"at most {MAX_CONTACTS} contacts")
    if not isinstance(providers, list) or len(providers) > MAX_PROVIDERS:
        raise _bad(f"at most {MAX_PROVIDERS} providers")
    if not isinstance(error, str) or len(error) > MAX_ERROR_TEXT:
        raise _bad("bad error text")
    record = msg.get("r")
    return Response(
        request_id=_request_id(msg["n"]),
        ok=msg["ok"],
        contacts=tuple(_contact(c) for c in contacts),
        record=None if record is None else _record(record),
        providers=tuple(_record(p) for p in providers),
        error=error,
    )
