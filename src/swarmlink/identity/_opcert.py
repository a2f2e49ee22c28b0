"""Operational keys and the certificates that bind them to an identity key."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..errors import CertificateExpired, ErrorCode, InvalidArgument, ProtocolViolation
from ..wire import cbor
from ._keys import IdentityKey, agent_id_from_public_key, verify_signature

__all__ = [
    "CLOCK_SKEW_ALLOWANCE",
    "MAX_OPCERT_SIZE",
    "OPCERT_DOMAIN",
    "OperationalCertificate",
    "OperationalKey",
]

#: Signature domain of operational certificates.
OPCERT_DOMAIN = b"swarmlink/opcert/v1"
#: Largest encoded operational certificate accepted (bytes; untrusted input).
MAX_OPCERT_SIZE = 512
#: A new certificate is valid from this many seconds before ``now`` (peers' clocks drift).
CLOCK_SKEW_ALLOWANCE = 300


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@dataclass(frozen=True)
class OperationalCertificate:
    """``identity_key`` vouches for ``operational_key`` from ``not_before`` to ``not_after``."""

    identity_key: bytes
    operational_key: bytes
    serial: int
    not_before: int
    not_after: int
    signature: bytes

    @property
    def agent_id(self) -> str:
        return agent_id_from_public_key(self.identity_key)

    def _body(self) -> dict[str, Any]:
        return {
            "ik": self.identity_key,
            "ok": self.operational_key,
            "sn": self.serial,
            "nb": self.not_before,
            "na": self.not_after,
        }

    def signed_bytes(self) -> bytes:
        return cbor.encode(self._body())

    def encode(self) -> bytes:
        return cbor.encode({**self._body(), "sig": self.signature})

    @classmethod
    def decode(cls, data: bytes) -> OperationalCertificate:
        if len(data) > MAX_OPCERT_SIZE:
            raise ProtocolViolation(
                f"operational certificate of {len(data)} bytes exceeds {MAX_OPCERT_SIZE}",
                ErrorCode.MALFORMED,
            )
        value = cbor.decode(data, max_depth=2, max_items=16)
        if not isinstance(value, dict) or set(value) != {"ik", "ok", "sn", "nb", "na", "sig"}:
            raise ProtocolViolation(
                "operational certificate has the wrong fields", ErrorCode.MALFORMED
            )
        ik, ok, sn, nb, na, sig = (value[k] for k in ("ik", "ok", "sn", "nb", "na", "sig"))
        if not (
            isinstance(ik, bytes) and len(ik) == 32 and isinstance(ok, bytes) and len(ok) == 32
        ):
            raise ProtocolViolation(
                "operational certificate keys must be 32 bytes", ErrorCode.MALFORMED
            )
        if not (isinstance(sig, bytes) and len(sig) == 64):
            raise ProtocolViolation(
                "operational certificate signature must be 64 bytes", ErrorCode.MALFORMED
            )
        for name, v in (("serial", sn), ("not_before", nb), ("not_after", na)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ProtocolViolation(
                    f"operational certificate {name} is invalid", ErrorCode.MALFORMED
                )
        if nb >= na:
            raise ProtocolViolation(
                "operational certificate ends before it starts", ErrorCode.MALFORMED
            )
        return cls(ik, ok, sn, nb, na, sig)

    @classmethod
    def issue(
        cls,
        identity: IdentityKey,
        operational_public_key: bytes,
        *,
        now: float,
        lifetime: float,
        serial: int,
    ) -> OperationalCertificate:
        if lifetime <= 0:
            raise InvalidArgument("operational key lifetime must be positive")
        if len(operational_public_key) != 32:
            raise InvalidArgument("an Ed25519 public key is 32 bytes")
        nb = max(0, int(now) - CLOCK_SKEW_ALLOWANCE)
        unsigned = cls(
            identity.public_key, operational_public_key, serial, nb, int(now + lifetime), b""
        )
        return cls(
            identity.public_key,
            operational_public_key,
            serial,
            unsigned.not_before,
            unsigned.not_after,
            identity.sign(OPCERT_DOMAIN, unsigned.signed_bytes()),
        )

    def verify(self, now: float) -> None:
        """Signature first (VerificationFailed), then validity (CertificateExpired)."""
        verify_signature(self.identity_key, OPCERT_DOMAIN, self.signed_bytes(), self.signature)
        if now > self.not_after:
            raise CertificateExpired(
                f"operational key certificate of {self.agent_id} expired at "
                f"{_iso(self.not_after)} (now {_iso(now)})"
            )
        if now < self.not_before:
            raise CertificateExpired(
                f"operational key certificate of {self.agent_id} is not valid before "
                f"{_iso(self.not_before)} (now {_iso(now)}); check the clocks"
            )


class OperationalKey:
    """The Ed25519 key a node uses for TLS, with its certificate."""

    __slots__ = ("_key", "certificate", "public_key")

    def __init__(self, key: Ed25519PrivateKey, certificate: OperationalCertificate) -> None:
        self._key = key
        self.public_key = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        if certificate.operational_key != self.public_key:
            raise InvalidArgument("certificate does not match the operational key")
        self.certificate = certificate

    @classmethod
    def generate(
        cls, identity: IdentityKey, *, now: float, lifetime: float, serial: int
    ) -> OperationalKey:
        key = Ed25519PrivateKey.generate()
        pub = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        cert = OperationalCertificate.issue(
            identity, pub, now=now, lifetime=lifetime, serial=serial
        )
        return cls(key, cert)

    @property
    def private_key(self) -> Ed25519PrivateKey:
        return self._key

    @property
    def agent_id(self) -> str:
        return self.certificate.agent_id

    def private_bytes(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
