"""swarmlink.wire: the bytes on the wire.

- :mod:`~swarmlink.wire.cbor`: deterministic CBOR codec (``encode`` / ``decode``).
- :mod:`~swarmlink.wire.version`: HELLO message and protocol-version negotiation.
- :mod:`~swarmlink.wire.records`: length-prefixed CBOR records for service streams.
"""

from __future__ import annotations

from . import cbor
from .cbor import MAX_DEPTH, MAX_ITEMS, CborValue
from .records import MAX_RECORD_SIZE, RECORD_HEADER_SIZE, RecordDecoder, encode_record
from .version import (
    DEFAULT_USER_AGENT,
    FEATURES,
    MAX_FEATURE_LENGTH,
    MAX_FEATURES,
    MAX_USER_AGENT_LENGTH,
    MAX_VERSION,
    MAX_VERSIONS,
    PROTOCOL_VERSIONS,
    Hello,
    Negotiated,
    negotiate,
)

__all__ = [
    "DEFAULT_USER_AGENT",
    "FEATURES",
    "MAX_DEPTH",
    "MAX_FEATURES",
    "MAX_FEATURE_LENGTH",
    "MAX_ITEMS",
    "MAX_RECORD_SIZE",
    "MAX_USER_AGENT_LENGTH",
    "MAX_VERSION",
    "MAX_VERSIONS",
    "PROTOCOL_VERSIONS",
    "RECORD_HEADER_SIZE",
    "CborValue",
    "Hello",
    "Negotiated",
    "RecordDecoder",
    "cbor",
    "encode_record",
    "negotiate",
]
