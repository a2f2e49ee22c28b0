"""Signed agent records: where an agent lives and what it offers, signed by its identity.

An agent publishes one record in the DHT under its node ID. The record carries the
agent's current operational certificate, the addresses it can be reached at (direct
``host:port`` and, later, relay addresses), the protocol versions it speaks, the
capabilities it advertises, a sequence number and an expiry. The identity key (the key
the agent ID is the hash of) signs it, so nobody can forge or hijack a record: the agent
ID checks the key, the key checks the signature.

.. code-block:: text

    record = {"v": 1, "c": opcert bytes, "a": [address, ...], "r": [relay address, ...],
              "p": [protocol version, ...], "cap": [capability, ...], "seq": uint,
              "iat": issued unix seconds, "exp": expiry unix seconds, "sig": 64 bytes}
    capability = {"t": tag, ?"n": name, ?"d": description, ?"pr": protocol}

The signature covers the deterministic CBOR of every field but ``sig``, prefixed with
:data:`RECORD_DOMAIN`. Stores (:class:`RecordStore`) and readers verify every record:
they refuse unsigned, forged, expired, oversized and malformed records, and records older
(lower sequence) than the one they hold. All limits below apply at decode.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import (
    CertificateExpired,
    ErrorCode,
    InvalidArgument,
    ProtocolViolation,
    RemoteError,
    SwarmlinkError,
)
from ..identity import IdentityKey, OperationalCertificate, verify_signature
from ..wire import cbor
from ..wire.address import parse_hostport
from ._ids import MAX_CAPABILITY_TAG, capability_key, node_id
from ._messages import MAX_ADDRESS_TEXT, MAX_RECORD_BYTES

__all__ = [
    "MAX_CAPABILITIES",
    "MAX_CAPABILITY_TEXT",
    "MAX_RECORD_ADDRESSES",
    "MAX_RECORD_LIFETIME",
    "MAX_STORED_RECORDS",
    "RECORD_DOMAIN",
    "RECORD_FUTURE_SKEW",
    "RECORD_LIFETIME",
    "RECORD_VERSION",
    "AgentRecord",
    "Capability",
    "RecordStore",
]

#: Signature domain of agent records.
RECORD_DOMAIN = b"swarmlink/agent-record/v1"
#: Record format version (the ``v`` field).
RECORD_VERSION = 1
#: Direct (and, separately, relay) addresses a record may list.
MAX_RECORD_ADDRESSES = 8
#: Capabilities a record may advertise.
MAX_CAPABILITIES = 16
#: Longest capability name, description or protocol text (characters).
MAX_CAPABILITY_TEXT = 256
#: Protocol versions a record may list.
MAX_RECORD_VERSIONS = 8
#: Longest a record may claim to live (seconds); longer claims are refused.
MAX_RECORD_LIFETIME = 24 * 3600
#: Lifetime of the records a node publishes (it republishes well before they expire).
RECORD_LIFETIME = 4 * 3600
#: Seconds a record's issue time may lie in the future (clock drift between peers).
RECORD_FUTURE_SKEW = 300
#: Records one store holds (untrusted input: every peer may ask us to store one).
MAX_STORED_RECORDS = 50_000

_FIELDS = {"v", "c", "a", "r", "p", "cap", "seq", "iat", "exp", "sig"}
#: The list fields of a record and their lengths at most.
_LIST_LIMITS = {
    "a": MAX_RECORD_ADDRESSES,
    "r": MAX_RECORD_ADDRESSES,
    "p": MAX_RECORD_VERSIONS,
    "cap": MAX_CAPABILITIES,
}


def _bad(what: str) -> ProtocolViolation:
    return ProtocolViolation(f"bad agent record: {what}", ErrorCode.MALFORMED)


def _text(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit or not value.isprintable():
        raise _bad(f"{what} must be printable text of at most {limit} characters")
    return value


def _uint(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise _bad(f"{what} must be an unsigned integer")
    return value


def check_address(address: str) -> str:
    """Validate one ``host:port`` address of a record (raises :class:`InvalidArgument`)."""
    if not isinstance(address, str) or not 1 <= len(address) <= MAX_ADDRESS_TEXT:
        raise InvalidArgument(f"an address is 1 to {MAX_ADDRESS_TEXT} characters")
    if not address.isprintable() or any(c.isspace() for c in address):
        raise InvalidArgument(f"address {address!r} has unprintable characters or spaces")
    host, port = parse_hostport(address)
    if not host or port == 0 or address.startswith(":"):
        raise InvalidArgument(f"address {address!r} needs a host and a non-zero port")
    return address


@dataclass(frozen=True)
class Capability:
    """A skill an agent offers (in the spirit of an A2A agent card's skill).

    ``tag`` is the search key (lowercase ``a-z 0-9 . _ - /``); ``name``,
    ``description`` and ``protocol`` (the stream protocol or API that serves it) are for
    the humans and agents that find it.
    """

    tag: str
    name: str = ""
    description: str = ""
    protocol: str = ""

    def __post_init__(self) -> None:
        capability_key(self.tag)  # validates the tag
        for what in ("name", "description", "protocol"):
            value = getattr(self, what)
            if not isinstance(value, str) or len(value) > MAX_CAPABILITY_TEXT:
                raise InvalidArgument(
                    f"capability {what} is text of at most {MAX_CAPABILITY_TEXT} characters"
                )
            if not value.isprintable():
                raise InvalidArgument(f"capability {what} has unprintable characters")

    @property
    def key(self) -> bytes:
        return capability_key(self.tag)

    def to_cbor(self) -> dict[str, Any]:
        out: dict[str, Any] = {"t": self.tag}
        if self.name:
            out["n"] = self.name
        if self.description:
            out["d"] = self.description
        if self.protocol:
            out["pr"] = self.protocol
        return out

    @classmethod
    def from_cbor(cls, value: object) -> Capability:
        if (
            not isinstance(value, dict)
            or "t" not in value
            or not set(value) <= {"t", "n", "d", "pr"}
        ):
            raise _bad("a capability is a map {t, ?n, ?d, ?pr}")
        tag = _text(value["t"], "capability tag", MAX_CAPABILITY_TAG)
        texts = [_text(value.get(k, ""), "capability text", MAX_CAPABILITY_TEXT) for k in "nd"]
        protocol = _text(value.get("pr", ""), "capability protocol", MAX_CAPABILITY_TEXT)
        try:
            return cls(tag, texts[0], texts[1], protocol)
        except InvalidArgument as exc:
            raise _bad(str(exc)) from None

    def to_json(self) -> dict[str, str]:
        return {
            "tag": self.tag,
            "name": self.name,
            "description": self.description,
            "protocol": self.protocol,
        }


@dataclass(frozen=True)
class AgentRecord:
    """A verified-or-not agent record; :meth:`decode` + :meth:`verify` before trusting it."""

    certificate: OperationalCertificate
    addresses: tuple[str, ...]
    relays: tuple[str, ...]
    versions: tuple[int, ...]
    capabilities: tuple[Capability, ...]
    sequence: int
    issued: int
    expires: int
    signature: bytes
    encoded: bytes = field(default=b"", compare=False, repr=False)

    @property
    def agent_id(self) -> str:
        return self.certificate.agent_id

    @property
    def node_id(self) -> bytes:
        return node_id(self.agent_id)

    def _body(self) -> dict[str, Any]:
        return {
            "v": RECORD_VERSION,
            "c": self.certificate.encode(),
            "a": list(self.addresses),
            "r": list(self.relays),
            "p": list(self.versions),
            "cap": [c.to_cbor() for c in self.capabilities],
            "seq": self.sequence,
            "iat": self.issued,
            "exp": self.expires,
        }

    def signed_bytes(self) -> bytes:
        return cbor.encode(self._body())

    def encode(self) -> bytes:
        return self.encoded or cbor.encode({**self._body(), "sig": self.signature})

    # ---- creation -------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        identity: IdentityKey,
        certificate: OperationalCertificate,
        *,
        addresses: Iterable[str] = (),
        relays: Iterable[str] = (),
        versions: Iterable[int] = (1,),
        capabilities: Iterable[Capability] = (),
        sequence: int,
        now: float,
        lifetime: float = RECORD_LIFETIME,
    ) -> AgentRecord:
        """Sign a record for ``identity``; it never outlives ``certificate``."""
        if certificate.identity_key != identity.public_key:
            raise InvalidArgument("the operational certificate belongs to another identity")
        if not 0 < lifetime <= MAX_RECORD_LIFETIME:
            raise InvalidArgument(f"record lifetime must be in (0, {MAX_RECORD_LIFETIME}] s")
        addrs = tuple(dict.fromkeys(check_address(a) for a in addresses))
        relay_addrs = tuple(dict.fromkeys(check_address(a) for a in relays))
        caps = tuple({c.tag: c for c in capabilities}.values())
        if len(addrs) > MAX_RECORD_ADDRESSES or len(relay_addrs) > MAX_RECORD_ADDRESSES:
            raise InvalidArgument(f"a record lists at most {MAX_RECORD_ADDRESSES} addresses")
        if len(caps) > MAX_CAPABILITIES:
            raise InvalidArgument(f"an agent advertises at most {MAX_CAPABILITIES} capabilities")
        issued = int(now)
        expires = min(int(now + lifetime), certificate.not_after)
        if expires <= issued:
            raise InvalidArgument("the operational certificate has expired; rotate the key")
        unsigned = cls(
            certificate, addrs, relay_addrs, tuple(versions), caps, sequence, issued, expires, b""
        )
        signed = dataclasses.replace(
            unsigned, signature=identity.sign(RECORD_DOMAIN, unsigned.signed_bytes())
        )
        encoded = signed.encode()
        if len(encoded) > MAX_RECORD_BYTES:
            raise InvalidArgument(
                f"the agent record is {len(encoded)} bytes, over {MAX_RECORD_BYTES}; "
                "shorten capability descriptions"
            )
        return dataclasses.replace(signed, encoded=encoded)

    # ---- decoding and verification --------------------------------------------------

    @classmethod
    def decode(cls, data: bytes) -> AgentRecord:
        """Parse (not verify) a record; every limit is checked here."""
        if not isinstance(data, bytes) or not 0 < len(data) <= MAX_RECORD_BYTES:
            raise _bad(f"a record is 1 to {MAX_RECORD_BYTES} bytes")
        value = cbor.decode(data, max_depth=4, max_items=256)
        if not isinstance(value, dict) or set(value) != _FIELDS:
            raise _bad("wrong fields")
        if value["v"] != RECORD_VERSION:
            raise _bad(f"unknown record version {value['v']!r}")
        if not isinstance(value["c"], bytes):
            raise _bad("the certificate must be bytes")
        certificate = OperationalCertificate.decode(value["c"])
        lists = {}
        for name, limit in _LIST_LIMITS.items():
            items = value[name]
            if not isinstance(items, list) or len(items) > limit:
                raise _bad(f"field {name!r} must be a list of at most {limit} items")
            lists[name] = items
        addresses = []
        for a in lists["a"] + lists["r"]:
            try:
                addresses.append(check_address(a))
            except InvalidArgument as exc:
                raise _bad(str(exc)) from None
        versions = tuple(_uint(v, "protocol version") for v in lists["p"])
        capabilities = tuple(Capability.from_cbor(c) for c in lists["cap"])
        if len({c.tag for c in capabilities}) != len(capabilities):
            raise _bad("duplicate capability tags")
        sig = value["sig"]
        if not isinstance(sig, bytes) or len(sig) != 64:
            raise _bad("the signature must be 64 bytes")
        issued, expires = _uint(value["iat"], "issue time"), _uint(value["exp"], "expiry")
        if expires <= issued or expires - issued > MAX_RECORD_LIFETIME:
            raise _bad(f"lifetime must be in (0, {MAX_RECORD_LIFETIME}] seconds")
        n_direct = len(lists["a"])
        return cls(
            certificate,
            tuple(addresses[:n_direct]),
            tuple(addresses[n_direct:]),
            versions,
            capabilities,
            _uint(value["seq"], "sequence"),
            issued,
            expires,
            sig,
            bytes(data),
        )

    def verify(self, now: float, *, agent_id: str | None = None) -> None:
        """Signature, certificate and times; ``agent_id`` if the reader expects one.

        Raises :class:`~swarmlink.errors.VerificationFailed` (forged),
        :class:`~swarmlink.errors.CertificateExpired` (expired record or key) or
        :class:`~swarmlink.errors.ProtocolViolation` (wrong agent, issued in the future).
        """
        if agent_id is not None and self.agent_id != agent_id:
            raise ProtocolViolation(
                f"record is for {self.agent_id}, not {agent_id}", ErrorCode.AGENT_MISMATCH
            )
        verify_signature(
            self.certificate.identity_key, RECORD_DOMAIN, self.signed_bytes(), self.signature
        )
        self.certificate.verify(now)
        if now >= self.expires:
            raise CertificateExpired(f"the record of {self.agent_id} has expired")
        if self.issued > now + RECORD_FUTURE_SKEW:
            raise ProtocolViolation(
                f"the record of {self.agent_id} is issued in the future; check the clocks",
                ErrorCode.STALE,
            )
        if self.expires > self.certificate.not_after:
            raise _bad("the record outlives its operational certificate")

    @classmethod
    def verified(cls, data: bytes, now: float, *, agent_id: str | None = None) -> AgentRecord:
        record = cls.decode(data)
        record.verify(now, agent_id=agent_id)
        return record

    def to_json(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "addresses": list(self.addresses),
            "relays": list(self.relays),
            "versions": list(self.versions),
            "capabilities": [c.to_json() for c in self.capabilities],
            "sequence": self.sequence,
            "issued": self.issued,
            "expires": self.expires,
            "key_serial": self.certificate.serial,
            "key_expires": self.certificate.not_after,
        }


class RecordStore:
    """Verified agent records, at most one per agent (the highest sequence wins).

    Sans-I/O: callers pass ``now``. :meth:`put` verifies and refuses bad or older records
    with a :class:`~swarmlink.errors.RemoteError` carrying the reason and code; records
    that expire are dropped lazily. ``changed`` collects agent IDs whose record changed,
    for the runtime to persist (:meth:`take_changes`).
    """

    def __init__(self, *, capacity: int = MAX_STORED_RECORDS) -> None:
        self.capacity = capacity
        self._records: dict[str, AgentRecord] = {}
        self._changed: set[str] = set()

    def __len__(self) -> int:
        return len(self._records)

    def put(self, data: bytes, now: float) -> AgentRecord:
        try:
            record = AgentRecord.verified(data, now)
        except RemoteError:
            raise
        except SwarmlinkError as exc:  # decode-level errors from nested decoders
            raise _bad(str(exc)) from None
        return self.put_record(record, now)

    def put_record(self, record: AgentRecord, now: float) -> AgentRecord:
        """Keep an already verified record (if it is newer than what we hold)."""
        held = self._records.get(record.agent_id)
        if held is not None and held.expires > now:
            if record.sequence < held.sequence:
                raise RemoteError(
                    f"record sequence {record.sequence} is older than {held.sequence}",
                    ErrorCode.STALE,
                )
            if record.sequence == held.sequence:
                if record.encode() != held.encode():
                    raise RemoteError(
                        f"a different record with sequence {record.sequence} is already held",
                        ErrorCode.STALE,
                    )
                return held
        elif len(self._records) >= self.capacity:
            self.expire(now)
            if len(self._records) >= self.capacity:
                raise RemoteError("record store is full", ErrorCode.RATE_LIMITED)
        self._records[record.agent_id] = record
        self._changed.add(record.agent_id)
        return record

    def get(self, agent_id: str, now: float) -> AgentRecord | None:
        record = self._records.get(agent_id)
        if record is not None and record.expires <= now:
            del self._records[agent_id]
            self._changed.add(agent_id)
            return None
        return record

    def get_encoded(self, agent_id: str, now: float) -> bytes | None:
        record = self.get(agent_id, now)
        return None if record is None else record.encode()

    def remove(self, agent_id: str) -> None:
        if self._records.pop(agent_id, None) is not None:
            self._changed.add(agent_id)

    def expire(self, now: float) -> int:
        dead = [a for a, r in self._records.items() if r.expires <= now]
        for agent_id in dead:
            del self._records[agent_id]
            self._changed.add(agent_id)
        return len(dead)

    def __iter__(self) -> Iterator[AgentRecord]:
        return iter(list(self._records.values()))

    def take_changes(self) -> list[tuple[str, AgentRecord | None]]:
        """Agent IDs whose record changed since the last call, with the record (or None
        if it is gone)."""
        out = [(a, self._records.get(a)) for a in sorted(self._changed)]
        self._changed.clear()
        return out
