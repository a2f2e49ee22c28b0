"""Signed trust messages: the envelope format and its strict validation."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..errors import ErrorCode, ProtocolViolation, SwarmlinkError, VerificationFailed
from ..identity import IdentityKey, agent_id_from_public_key, validate_agent_id, verify_signature
from ..wire import cbor

__all__ = [
    "MAX_CLOCK_SKEW",
    "MAX_ENVELOPE_SIZE",
    "MAX_REASON_LENGTH",
    "NONCE_SIZE",
    "TRUST_DOMAIN",
    "TRUST_PROTOCOL",
    "TrustKind",
    "TrustMessage",
    "open_envelope",
    "seal",
]

#: Stream protocol of trust messages (the only one an untrusted peer may open).
TRUST_PROTOCOL = "/swarmlink/trust/1"
#: Signature domain of trust message bodies.
TRUST_DOMAIN = b"swarmlink/trust/v1"
#: Largest envelope accepted (bytes; untrusted input).
MAX_ENVELOPE_SIZE = 2048
#: Longest reason accepted (characters).
MAX_REASON_LENGTH = 512
#: Nonce length (bytes).
NONCE_SIZE = 16
#: A message whose timestamp is further than this from our clock is stale (seconds).
MAX_CLOCK_SKEW = 300.0


class TrustKind(enum.StrEnum):
    REQUEST = "request"
    APPROVE = "approve"
    REJECT = "reject"
    REVOKE = "revoke"


@dataclass(frozen=True)
class TrustMessage:
    """The signed body: who asks whom for what, when, with which nonce."""

    kind: TrustKind
    sender: str
    recipient: str
    reason: str
    timestamp_ms: int
    nonce: bytes
    ref: bytes | None = None

    def body(self) -> bytes:
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


def seal(identity: IdentityKey, msg: TrustMessage) -> bytes:
    """Sign ``msg`` with the identity key: CBOR ``{"b": body, "k": key, "s": signature}``."""
    if msg.sender != identity.agent_id:
        raise SwarmlinkError("a trust message must be sent by the signing identity")
    body = msg.body()
    return cbor.encode(
        {"b": body, "k": identity.public_key, "s": identity.sign(TRUST_DOMAIN, body)}
    )


def _malformed(what: str) -> ProtocolViolation:
    return ProtocolViolation(f"malformed trust message: {what}", ErrorCode.MALFORMED)


def open_envelope(data: bytes) -> TrustMessage:
    """Verify an envelope and return its message (signature and sender checked)."""
    if len(data) > MAX_ENVELOPE_SIZE:
        raise _malformed(f"{len(data)} bytes exceeds {MAX_ENVELOPE_SIZE}")
    env = cbor.decode(data, max_depth=2, max_items=16)
    if not isinstance(env, dict) or set(env) != {"b", "k", "s"}:
        raise _malformed("envelope must be a map of b, k, s")
    body, key, sig = env["b"], env["k"], env["s"]
    if not (isinstance(body, bytes) and isinstance(key, bytes) and len(key) == 32):
        raise _malformed("bad body or key")
    if not (isinstance(sig, bytes) and len(sig) == 64):
        raise _malformed("bad signature length")
    fields = cbor.decode(body, max_depth=2, max_items=16)
    if not isinstance(fields, dict) or set(fields) != {
        "kind",
        "from",
        "to",
        "reason",
        "ts",
        "nonce",
        "ref",
    }:
        raise _malformed("body has the wrong fields")
    try:
        kind = TrustKind(fields["kind"])
    except ValueError:
        raise _malformed(f"unknown kind {fields['kind']!r}") from None
    sender, recipient, reason = fields["from"], fields["to"], fields["reason"]
    ts, nonce, ref = fields["ts"], fields["nonce"], fields["ref"]
    if not (isinstance(sender, str) and isinstance(recipient, str)):
        raise _malformed("from/to must be agent IDs")
    try:
        sender, recipient = validate_agent_id(sender), validate_agent_id(recipient)
    except SwarmlinkError:
        raise _malformed("from/to must be agent IDs") from None
    if not isinstance(reason, str) or len(reason) > MAX_REASON_LENGTH:
        raise _malformed(f"reason must be text of at most {MAX_REASON_LENGTH} characters")
    if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0:
        raise _malformed("bad timestamp")
    if not (isinstance(nonce, bytes) and len(nonce) == NONCE_SIZE):
        raise _malformed(f"nonce must be {NONCE_SIZE} bytes")
    if ref is not None and not (isinstance(ref, bytes) and len(ref) == NONCE_SIZE):
        raise _malformed("bad ref")
    verify_signature(key, TRUST_DOMAIN, body, sig)
    if agent_id_from_public_key(key) != sender:
        raise VerificationFailed(
            f"trust message claims to be from {sender} but is signed by another key",
            ErrorCode.AGENT_MISMATCH,
        )
    return TrustMessage(kind, sender, recipient, reason, ts, nonce, ref)
