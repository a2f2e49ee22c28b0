"""Identity keys, agent IDs and virtual addresses."""

from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
from ipaddress import IPv6Address, IPv6Network

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import InvalidArgument, VerificationFailed

__all__ = [
    "AGENT_ID_DOMAIN",
    "AGENT_ID_LENGTH",
    "VIRTUAL_NETWORK",
    "IdentityKey",
    "agent_id_digest",
    "agent_id_from_public_key",
    "validate_agent_id",
    "verify_signature",
    "virtual_address",
]

#: Domain separation for the agent ID hash.
AGENT_ID_DOMAIN = b"swarmlink/agent-id/v1"
#: Characters in an agent ID: base32 of a 32-byte digest, unpadded.
AGENT_ID_LENGTH = 52
#: The ULA /48 every virtual address lives in (fd + "swarm" in hex-ish: fd5a:7761:726d).
VIRTUAL_NETWORK = IPv6Network("fd5a:7761:726d::/48")
_B32 = frozenset("abcdefghijklmnopqrstuvwxyz234567")


def _digest(public_key: bytes) -> bytes:
    return hashlib.sha256(AGENT_ID_DOMAIN + public_key).digest()


def agent_id_from_public_key(public_key: bytes) -> str:
    """The agent ID of an Ed25519 identity public key (52 chars of lowercase base32)."""
    if len(public_key) != 32:
        raise InvalidArgument("an Ed25519 public key is 32 bytes")
    return _agent_id(bytes(public_key))


@functools.lru_cache(maxsize=1024)
def _agent_id(public_key: bytes) -> str:
    # Cached: gossip checks the author of every message it relays against its key.
    return base64.b32encode(_digest(public_key)).decode().rstrip("=").lower()


@functools.lru_cache(maxsize=1024)
def _public_key(public_key: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(public_key)


def validate_agent_id(text: str) -> str:
    """Normalise and check an agent ID; :class:`InvalidArgument` explains what is wrong."""
    value = str(text).strip().lower()
    if len(value) != AGENT_ID_LENGTH or not set(value) <= _B32:
        shown = value if len(value) <= 60 else value[:57] + "..."
        raise InvalidArgument(
            f"{shown!r} is not an agent ID: expected {AGENT_ID_LENGTH} characters of "
            "base32 (a-z, 2-7)"
        )
    if value[-1] not in "aq":  # 256 bits: the last 5-bit group is 1 data bit + 4 zero bits
        raise InvalidArgument(f"{value!r} is not an agent ID: bad final character")
    return value


def agent_id_digest(agent_id: str) -> bytes:
    """The 32-byte SHA-256 digest an agent ID encodes."""
    value = validate_agent_id(agent_id)
    return base64.b32decode(value.upper() + "====")


def virtual_address(agent_id: str) -> IPv6Address:
    """The agent's IPv6 address: :data:`VIRTUAL_NETWORK` + the first 80 bits of its digest."""
    digest = agent_id_digest(agent_id)
    prefix = int(VIRTUAL_NETWORK.network_address)
    return ipaddress.IPv6Address(prefix | int.from_bytes(digest[:10], "big"))


def verify_signature(public_key: bytes, domain: bytes, message: bytes, signature: bytes) -> None:
    """Check an Ed25519 signature made by :meth:`IdentityKey.sign` (domain-separated)."""
    try:
        _public_key(bytes(public_key)).verify(signature, domain + b"\0" + message)
    except (InvalidSignature, ValueError):
        raise VerificationFailed(f"invalid {domain.decode(errors='replace')} signature") from None


class IdentityKey:
    """An agent's long-term Ed25519 identity key (it names the agent; never used for TLS)."""

    __slots__ = ("_key", "agent_id", "public_key")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_key: bytes = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.agent_id: str = agent_id_from_public_key(self.public_key)

    @classmethod
    def generate(cls) -> IdentityKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, seed: bytes) -> IdentityKey:
        if len(seed) != 32:
            raise InvalidArgument("an Ed25519 private key seed is 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def private_bytes(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    @property
    def virtual_address(self) -> IPv6Address:
        return virtual_address(self.agent_id)

    def sign(self, domain: bytes, message: bytes) -> bytes:
        return self._key.sign(domain + b"\0" + message)

    def __repr__(self) -> str:
        return f"<IdentityKey {self.agent_id}>"
