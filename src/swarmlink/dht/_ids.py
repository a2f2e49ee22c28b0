"""Node IDs, XOR distance, bucket indices and capability keys.

A node ID is the 32-byte SHA-256 digest that an agent ID encodes
(:func:`swarmlink.identity.agent_id_digest`), so a node cannot choose its place in the
keyspace without also holding the identity key that hashes to it.

Bucket indexing (used by :class:`swarmlink.dht.RoutingTable`): the bucket of ``other``
as seen from ``local`` is the length of their common bit prefix, 0..255. Bucket ``i``
holds exactly the IDs at XOR distance ``d`` with ``2**(255 - i) <= d < 2**(256 - i)``:
bucket 0 is the far half of the keyspace, bucket 255 the single ID that differs from
``local`` only in its last bit. Closer nodes get higher indices.
"""

from __future__ import annotations

import functools
import hashlib

from ..errors import InvalidArgument
from ..identity import agent_id_digest

__all__ = [
    "CAPABILITY_DOMAIN",
    "ID_BITS",
    "ID_BYTES",
    "MAX_CAPABILITY_TAG",
    "bucket_index",
    "capability_key",
    "distance",
    "node_id",
]

#: Bytes in a node ID (and in any DHT key).
ID_BYTES = 32
#: Bits in a node ID; also the number of routing table buckets.
ID_BITS = ID_BYTES * 8
#: Domain separation prefix of :func:`capability_key`.
CAPABILITY_DOMAIN = b"swarmlink/capability/v1\0"
#: Longest capability tag (characters).
MAX_CAPABILITY_TAG = 64
#: Agent IDs whose node IDs are kept decoded.
NODE_ID_CACHE = 65536

_TAG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-/")


@functools.lru_cache(maxsize=NODE_ID_CACHE)
def node_id(agent_id: str) -> bytes:
    """The DHT node ID of an agent: the 32-byte digest its agent ID encodes (cached:
    every contact in every response needs it, and base32 decoding is slow in Python)."""
    return agent_id_digest(agent_id)


def _check_id(value: bytes, name: str) -> int:
    if not isinstance(value, bytes | bytearray) or len(value) != ID_BYTES:
        raise InvalidArgument(f"{name} must be {ID_BYTES} bytes")
    return int.from_bytes(value, "big")


def distance(a: bytes, b: bytes) -> int:
    """XOR distance between two 32-byte IDs, as a non-negative integer (< 2**256)."""
    return _check_id(a, "a") ^ _check_id(b, "b")


def bucket_index(local: bytes, other: bytes) -> int:
    """The bucket of ``other`` seen from ``local``: their common prefix length in bits.

    0 (far half of the keyspace) ... 255 (differs only in the last bit). Identical IDs
    have no bucket: :class:`InvalidArgument`.
    """
    d = distance(local, other)
    if d == 0:
        raise InvalidArgument("identical IDs have no bucket")
    return ID_BITS - d.bit_length()


def capability_key(tag: str) -> bytes:
    """The DHT key under which providers of capability ``tag`` are announced.

    ``tag`` is 1..:data:`MAX_CAPABILITY_TAG` characters of lowercase ``a-z 0-9 . _ - /``.
    """
    if not isinstance(tag, str) or not 1 <= len(tag) <= MAX_CAPABILITY_TAG:
        raise InvalidArgument(f"a capability tag is 1 to {MAX_CAPABILITY_TAG} characters")
    if not set(tag) <= _TAG_CHARS:
        raise InvalidArgument(
            f"capability tag {tag!r} may only contain lowercase a-z, 0-9, '.', '_', '-', '/'"
        )
    return hashlib.sha256(CAPABILITY_DOMAIN + tag.encode()).digest()
