"""Explicit mutual trust: signed trust messages and the TrustBook state machine."""

from . import events
from ._book import TrustBook
from ._messages import (
    MAX_CLOCK_SKEW,
    MAX_ENVELOPE_SIZE,
    MAX_REASON_LENGTH,
    NONCE_SIZE,
    TRUST_DOMAIN,
    TRUST_PROTOCOL,
    TrustKind,
    TrustMessage,
    open_envelope,
    seal,
)
from .events import TrustEstablished, TrustEvent, TrustRejected, TrustRequested, TrustRevoked

__all__ = [
    "MAX_CLOCK_SKEW",
    "MAX_ENVELOPE_SIZE",
    "MAX_REASON_LENGTH",
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
    "events",
    "open_envelope",
    "seal",
]
