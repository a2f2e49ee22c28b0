"""Explicit, mutual trust between agents: signed trust messages and the TrustBook.

Trust is private by default: a node serves nothing but :data:`TRUST_PROTOCOL` to an agent
it does not trust. Trust is asked for (REQUEST), granted (APPROVE) or refused (REJECT)
by the other side, and withdrawn by either side (REVOKE). Every message is signed by the
sender's identity key, so trust binds to agent IDs and survives operational key rotation.

:class:`TrustBook` is sans-I/O: the runtime passes ``now``, nonces and envelopes in, and
moves the envelopes it returns; events are in :mod:`swarmlink.trust.events`.
"""

from __future__ import annotations

from . import events
from ._book import NONCE_PRUNE_INTERVAL, TrustBook
from ._messages import (
    MAX_CLOCK_SKEW,
    MAX_ENVELOPE_SIZE,
    MAX_REASON_BYTES,
    MAX_REASON_LENGTH,
    MAX_TIMESTAMP_MS,
    NONCE_SIZE,
    TRUST_DOMAIN,
    TRUST_PROTOCOL,
    TrustKind,
    TrustMessage,
    check_reason,
    open_envelope,
    seal,
)
from .events import TrustEstablished, TrustEvent, TrustRejected, TrustRequested, TrustRevoked

__all__ = [
    "MAX_CLOCK_SKEW",
    "MAX_ENVELOPE_SIZE",
    "MAX_REASON_BYTES",
    "MAX_REASON_LENGTH",
    "MAX_TIMESTAMP_MS",
    "NONCE_PRUNE_INTERVAL",
    "NONCE_SIZE",
    "TRUST_DOMAIN",
    "TRUST_PROTOCOL",
    "TrustBook",
    "TrustEstablished",
    "TrustEvent",
    "TrustKind",
    "TrustMessage",
    "TrustRejected",
    "TrustRequested",
    "TrustRevoked",
    "check_reason",
    "events",
    "open_envelope",
    "seal",
]
