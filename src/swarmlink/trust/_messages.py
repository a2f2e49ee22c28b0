"""Signed trust messages: the envelope format, sealing, and strict validation.

Wire format (deterministic CBOR, see :mod:`swarmlink.wire.cbor`)::

    envelope = {"b": body (bytes), "k": identity public key (32 bytes), "s": signature (64)}
    body     = {"kind": "request" | "approve" | "reject" | "revoke",
                "from": agent ID, "to": agent ID, "reason": text,
                "ts": unix milliseconds, "nonce": 16 bytes, "ref": 16 bytes | null}

``s`` is the Ed25519 signature by the sender's *identity* key over ``body`` in the domain
:data:`TRUST_DOMAIN`, and ``k`` must hash to the ``from`` agent ID. Trust is therefore bound
to the agent ID itself, never to an operational (TLS) key: rotating operational keys keeps
every trust relation intact.

``ref`` links an answer to the request it answers: APPROVE and REJECT carry the nonce of
the REQUEST they decide; REQUEST and REVOKE carry ``null``.

Every field is checked by :func:`open_envelope` before anything else looks at it; the
limits below are the whole budget an unauthenticated peer gets.
"""

from __future__ import annotations

import enum
import unicodedata
from dataclasses import dataclass
from typing import Any

from ..errors import (
    ErrorCode,
    InvalidArgument,
    ProtocolViolation,
    SwarmlinkError,
    VerificationFailed,
)
from ..identity import IdentityKey, agent_id_from_public_key, validate_agent_id, verify_signature
from ..wire import cbor

__all__ = [
    "MAX_CLOCK_SKEW",
    "MAX_ENVELOPE_SIZE",
    "MAX_REASON_BYTES",
    "MAX_REASON_LENGTH",
    "MAX_TIMESTAMP_MS",
    "NONCE_SIZE",
    "TRUST_DOMAIN",
    "TRUST_PROTOCOL",
    "TrustKind",
    "TrustMessage",
    "check_reason",
    "open_envelope",
    "seal",
]

#: Stream protocol that carries trust messages (the only protocol an untrusted peer may
#: open). Each record on it is one envelope; the receiver answers each with a status.
TRUST_PROTOCOL = "/swarmlink/trust/1"

#: Signature domain of trust message bodies (keeps these signatures from being valid as
#: any other swarmlink signature, and vice versa).
TRUST_DOMAIN = b"swarmlink/trust/v1"

#: Largest envelope accepted, in bytes (untrusted input; checked before decoding).
#: Every message :func:`seal` can produce fits: the fixed part is under 320 bytes and the
#: reason is capped at :data:`MAX_REASON_BYTES`.
MAX_ENVELOPE_SIZE = 2048

#: Longest reason accepted, in characters (Unicode code points).
MAX_REASON_LENGTH = 512

#: Longest reason accepted, in bytes of UTF-8. Together with :data:`MAX_REASON_LENGTH` it
#: guarantees a sealed envelope stays within :data:`MAX_ENVELOPE_SIZE` whatever the script.
MAX_REASON_BYTES = 1024

#: Size of a message nonce (and of ``ref``), in bytes.
NONCE_SIZE = 16

#: Largest timestamp accepted (milliseconds since the Unix epoch): 2**53 - 1, the largest
#: integer a float ``now`` represents exactly. Anything later is malformed, not just stale.
MAX_TIMESTAMP_MS = 2**53 - 1

#: Default tolerance, in seconds, between a message's timestamp and our clock; a message
#: further off (in either direction) is refused as stale. Replay protection remembers
#: nonces for twice this long, so a replay is either remembered or stale.
MAX_CLOCK_SKEW = 300.0

_BODY_KEYS = frozenset({"kind", "from", "to", "reason", "ts", "nonce", "ref"})
_ENVELOPE_KEYS = frozenset({"b", "k", "s"})
_KEY_SIZE = 32
_SIGNATURE_SIZE = 64
#: Unicode categories refused in a reason: control characters (C0, DEL, C1, so no
#: terminal escapes) and line/paragraph separators (a reason is one line of text).
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})


class TrustKind(enum.StrEnum):
    """What a trust message asks or announces."""

    #: "Please trust me" (``reason`` says why).
    REQUEST = "request"
    #: "I approved your request ``ref``": trust now holds on my side.
    APPROVE = "approve"
    #: "I rejected your request ``ref``" (``reason`` may say why).
    REJECT = "reject"
    #: "I no longer trust you."
    REVOKE = "revoke"


_KIND_NAMES = frozenset(kind.value for kind in TrustKind)
#: Kinds that answer a request and therefore must carry ``ref``.
_ANSWERS = frozenset({TrustKind.APPROVE, TrustKind.REJECT})


@dataclass(frozen=True)
class TrustMessage:
    """The signed body of a trust message."""

    #: What the message asks or announces.
    kind: TrustKind
    #: Agent ID of the sender (the identity key in the envelope must hash to it).
    sender: str
    #: Agent ID of the intended recipient (a receiver refuses messages for others).
    recipient: str
    #: Free text from the sender: why it asks (REQUEST) or why it refuses (REJECT).
    reason: str
    #: When the message was sealed, in milliseconds since the Unix epoch.
    timestamp_ms: int
    #: :data:`NONCE_SIZE` random bytes; a receiver accepts each nonce once.
    nonce: bytes
    #: For APPROVE and REJECT, the nonce of the REQUEST being answered; else ``None``.
    ref: bytes | None = None

    def body(self) -> bytes:
        """The canonical CBOR body that is signed."""
        return cbor.encode(
            {
                "kind": str(self.kind),
                "from": self.sender,
                "to": self.recipient,
                "reason": self.reason,
                "ts": self.timestamp_ms,
                "nonce": self.nonce,
                "ref": self.ref,
            }
        )


def check_reason(reason: object) -> str | None:
    """What is wrong with ``reason`` as a trust message reason, or ``None`` if it is fine."""
    if not isinstance(reason, str):
        return "reason must be text"
    if len(reason) > MAX_REASON_LENGTH:
        return f"reason is {len(reason)} characters, more than {MAX_REASON_LENGTH}"
    try:
        size = len(reason.encode("utf-8"))
    except UnicodeEncodeError:
        return "reason is not valid Unicode text (lone surrogate)"
    if size > MAX_REASON_BYTES:
        return f"reason is {size} bytes of UTF-8, more than {MAX_REASON_BYTES}"
    for char in reason:
        if unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
            return f"reason contains the control or line-break character U+{ord(char):04X}"
    return None


def _canonical_agent_id(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return validate_agent_id(value) == value
    except SwarmlinkError:
        return False


def _check_fields(
    kind: object,
    sender: object,
    recipient: object,
    reason: object,
    ts: object,
    nonce: object,
    ref: object,
) -> str | None:
    """Shared validation of a body's fields; the problem in words, or ``None``."""
    if not isinstance(kind, TrustKind):
        return f"unknown kind {kind!r}"
    if not _canonical_agent_id(sender):
        return "'from' is not a canonical agent ID"
    if not _canonical_agent_id(recipient):
        return "'to' is not a canonical agent ID"
    if sender == recipient:
        return "sender and recipient are the same agent"
    problem = check_reason(reason)
    if problem is not None:
        return problem
    if type(ts) is not int or not 0 <= ts <= MAX_TIMESTAMP_MS:
        return f"timestamp must be an integer in 0..{MAX_TIMESTAMP_MS} (milliseconds)"
    if type(nonce) is not bytes or len(nonce) != NONCE_SIZE:
        return f"nonce must be {NONCE_SIZE} bytes"
    if kind in _ANSWERS:
        if type(ref) is not bytes or len(ref) != NONCE_SIZE:
            return f"{kind} must name the request it answers ('ref' of {NONCE_SIZE} bytes)"
    elif ref is not None:
        return f"{kind} must not carry 'ref'"
    return None


def seal(identity: IdentityKey, msg: TrustMessage) -> bytes:
    """Sign ``msg`` with ``identity``: CBOR ``{"b": body, "k": public key, "s": signature}``.

    Raises :class:`~swarmlink.errors.InvalidArgument` if ``msg`` is not from ``identity``
    or is not a message :func:`open_envelope` would accept.
    """
    if msg.sender != identity.agent_id:
        raise InvalidArgument(
            f"a trust message from {msg.sender} cannot be signed by {identity.agent_id}"
        )
    problem = _check_fields(
        msg.kind, msg.sender, msg.recipient, msg.reason, msg.timestamp_ms, msg.nonce, msg.ref
    )
    if problem is not None:
        raise InvalidArgument(f"cannot seal trust message: {problem}")
    body = msg.body()
    envelope = cbor.encode(
        {"b": body, "k": identity.public_key, "s": identity.sign(TRUST_DOMAIN, body)}
    )
    if len(envelope) > MAX_ENVELOPE_SIZE:  # pragma: no cover - excluded by the limits
        raise InvalidArgument(f"sealed trust message exceeds {MAX_ENVELOPE_SIZE} bytes")
    return envelope


def _malformed(what: str) -> ProtocolViolation:
    return ProtocolViolation(f"malformed trust message: {what}", ErrorCode.MALFORMED)


def _decode_map(data: bytes, keys: frozenset[str], what: str) -> dict[str, Any]:
    value = cbor.decode(data, max_depth=1, max_items=len(keys))
    if not isinstance(value, dict) or set(value) != keys:
        raise _malformed(f"{what} must be a map with exactly the keys {', '.join(sorted(keys))}")
    return value


def open_envelope(data: bytes | bytearray | memoryview) -> TrustMessage:
    """Check an envelope completely and return the message it carries.

    Structure errors (size over :data:`MAX_ENVELOPE_SIZE`, bad CBOR, missing or extra
    keys, wrong types, limits) raise :class:`~swarmlink.errors.ProtocolViolation` with
    code ``MALFORMED``. A bad signature raises
    :class:`~swarmlink.errors.VerificationFailed` (``AUTH_FAILED``), and a key that does
    not hash to the ``from`` agent ID raises it with code ``AGENT_MISMATCH``.

    This checks the message in isolation; freshness, replay and addressing are checked
    by :meth:`~swarmlink.trust.TrustBook.receive`.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise _malformed(f"an envelope is bytes, not {type(data).__name__}")
    size = memoryview(data).nbytes
    if size > MAX_ENVELOPE_SIZE:
        raise _malformed(f"envelope of {size} bytes exceeds the limit of {MAX_ENVELOPE_SIZE}")
    envelope = _decode_map(bytes(data), _ENVELOPE_KEYS, "an envelope")
    body, key, signature = envelope["b"], envelope["k"], envelope["s"]
    if type(body) is not bytes:
        raise _malformed("'b' must be the body as bytes")
    if type(key) is not bytes or len(key) != _KEY_SIZE:
        raise _malformed(f"'k' must be a {_KEY_SIZE}-byte Ed25519 public key")
    if type(signature) is not bytes or len(signature) != _SIGNATURE_SIZE:
        raise _malformed(f"'s' must be a {_SIGNATURE_SIZE}-byte Ed25519 signature")
    fields = _decode_map(body, _BODY_KEYS, "the body")
    raw_kind = fields["kind"]
    if raw_kind not in _KIND_NAMES:
        raise _malformed(f"unknown kind {repr(raw_kind)[:40]}")
    kind = TrustKind(raw_kind)
    sender, recipient, reason = fields["from"], fields["to"], fields["reason"]
    ts, nonce, ref = fields["ts"], fields["nonce"], fields["ref"]
    problem = _check_fields(kind, sender, recipient, reason, ts, nonce, ref)
    if problem is not None:
        raise _malformed(problem)
    verify_signature(key, TRUST_DOMAIN, body, signature)
    if agent_id_from_public_key(key) != sender:
        raise VerificationFailed(
            f"trust message claims to be from {sender} but is signed by the identity key "
            f"of {agent_id_from_public_key(key)}",
            ErrorCode.AGENT_MISMATCH,
        )
    return TrustMessage(kind, sender, recipient, reason, ts, nonce, ref)
