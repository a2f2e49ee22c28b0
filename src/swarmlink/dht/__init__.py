"""Kademlia DHT: node IDs bound to agent IDs, the routing table, lookups and wire messages.

Everything here is sans-I/O: the runtime feeds in time, randomness and network results.
"""

from __future__ import annotations

from ._ids import (
    CAPABILITY_DOMAIN,
    ID_BITS,
    ID_BYTES,
    MAX_CAPABILITY_TAG,
    bucket_index,
    capability_key,
    distance,
    node_id,
)
from ._lookup import (
    ALPHA,
    DISJOINT_PATHS,
    LOOKUP_K,
    MAX_CONTACTS_PER_RESPONSE,
    QUERY_TIMEOUT,
    Lookup,
    LookupStats,
    Peer,
)
from ._messages import (
    DHT_PROTOCOL,
    MAX_CONTACTS,
    MAX_DHT_MESSAGE,
    MAX_ERROR_TEXT,
    MAX_PROVIDERS,
    MAX_RECORD_BYTES,
    Query,
    Request,
    Response,
    WireContact,
    decode_request,
    decode_response,
)
from ._node import (
    MAX_PROVIDER_KEYS,
    MAX_REQUESTS_BURST,
    MAX_REQUESTS_PER_SECOND,
    PROVIDER_TTL,
    DhtNode,
    RecordStoreAPI,
)
from ._routing import BUCKET_REFRESH, MAX_FAILURES, REPLACEMENT_CACHE, Contact, K, RoutingTable

__all__ = [
    "ALPHA",
    "BUCKET_REFRESH",
    "CAPABILITY_DOMAIN",
    "DHT_PROTOCOL",
    "DISJOINT_PATHS",
    "ID_BITS",
    "ID_BYTES",
    "LOOKUP_K",
    "MAX_CAPABILITY_TAG",
    "MAX_CONTACTS",
    "MAX_CONTACTS_PER_RESPONSE",
    "MAX_DHT_MESSAGE",
    "MAX_ERROR_TEXT",
    "MAX_FAILURES",
    "MAX_PROVIDERS",
    "MAX_PROVIDER_KEYS",
    "MAX_RECORD_BYTES",
    "MAX_REQUESTS_BURST",
    "MAX_REQUESTS_PER_SECOND",
    "PROVIDER_TTL",
    "QUERY_TIMEOUT",
    "REPLACEMENT_CACHE",
    "Contact",
    "DhtNode",
    "K",
    "Lookup",
    "LookupStats",
    "Peer",
    "Query",
    "RecordStoreAPI",
    "Request",
    "Response",
    "RoutingTable",
    "WireContact",
    "bucket_index",
    "capability_key",
    "decode_request",
    "decode_response",
    "distance",
    "node_id",
]
