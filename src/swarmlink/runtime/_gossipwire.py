"""Gossip records on the wire: each is the deterministic CBOR pair ``[channel, payload]``
(see :mod:`._gossipsvc`), the payload being one core's own encoding."""

from __future__ import annotations

from ..errors import ProtocolViolation
from ..gossip import Rpc, decode_rpc
from ..wire import cbor

__all__ = [
    "CHANNEL_PUBSUB",
    "CHANNEL_STATE",
    "CHANNEL_SWIM",
    "RPC_CACHE_ENTRIES",
    "RPC_CACHE_MAX_BYTES",
    "RpcCache",
    "split_record",
]

CHANNEL_SWIM = 1
CHANNEL_PUBSUB = 2
CHANNEL_STATE = 3
_CHANNELS = (CHANNEL_SWIM, CHANNEL_PUBSUB, CHANNEL_STATE)

#: Decoded pub/sub RPCs remembered by their bytes (:class:`RpcCache`), and the largest
#: RPC remembered: at most 256 x 8 KiB of payloads stay referenced.
RPC_CACHE_ENTRIES = 256
RPC_CACHE_MAX_BYTES = 8192


def split_record(body: bytes) -> tuple[int, bytes]:
    """A gossip record's ``[channel, payload]``. The canonical form (array of two, a
    one-byte channel, a byte string with the shortest length head, nothing after it) is
    sliced without a decoder pass; anything else goes through the CBOR decoder, which
    accepts or refuses it exactly as before."""
    n = len(body)
    if n >= 3 and body[0] == 0x82 and body[1] in _CHANNELS:
        head = body[2]
        start, size = 3, -1
        if 0x40 <= head <= 0x57:
            size = head - 0x40
        elif head == 0x58 and n >= 4 and body[3] >= 24:
            start, size = 4, body[3]
        elif head == 0x59 and n >= 5:
            start, size = 5, int.from_bytes(body[3:5], "big")
            size = size if size > 0xFF else -1
        elif head == 0x5A and n >= 7:
            start, size = 7, int.from_bytes(body[3:7], "big")
            size = size if size > 0xFFFF else -1
        if size >= 0 and start + size == n:
            return body[1], body[start:]
    record = cbor.decode(body)
    if (
        not isinstance(record, list)
        or len(record) != 2
        or record[0] not in _CHANNELS
        or not isinstance(record[1], bytes)
    ):
        raise ProtocolViolation("gossip record must be [channel, payload bytes]")
    return record[0], record[1]


class RpcCache:
    """:func:`decode_rpc`, remembering recent small RPCs by their bytes: the mesh brings
    each message from several peers, usually as byte-identical RPCs, and the decoded form
    is immutable, so each copy after the first costs a dict lookup."""

    def __init__(self) -> None:
        self._cache: dict[bytes, Rpc] = {}

    def decode(self, payload: bytes) -> Rpc:
        if len(payload) > RPC_CACHE_MAX_BYTES:
            return decode_rpc(payload)
        cache = self._cache
        rpc = cache.get(payload)
        if rpc is None:
            rpc = cache[payload] = decode_rpc(payload)  # raises before caching if bad
            if len(cache) > RPC_CACHE_ENTRIES:
                del cache[next(iter(cache))]  # oldest first (insertion order)
        return rpc
