"""Self-certifying identity: Ed25519 identity key → agent ID and virtual address;
operational keys certified by it; TLS material and the post-handshake peer check."""

from ._keys import (
    AGENT_ID_DOMAIN,
    AGENT_ID_LENGTH,
    VIRTUAL_NETWORK,
    IdentityKey,
    agent_id_digest,
    agent_id_from_public_key,
    validate_agent_id,
    verify_signature,
    virtual_address,
)
from ._opcert import MAX_OPCERT_SIZE, OPCERT_DOMAIN, OperationalCertificate, OperationalKey
from ._store import DEFAULT_OPERATIONAL_LIFETIME, KeyStore
from ._tls import (
    ALPN_PROTOCOL,
    OPCERT_EXTENSION_OID,
    PeerIdentity,
    bootstrap_ca_pem,
    make_ssl_context,
    verify_peer_certificate,
    write_tls_files,
)

__all__ = [
    "AGENT_ID_DOMAIN",
    "AGENT_ID_LENGTH",
    "ALPN_PROTOCOL",
    "DEFAULT_OPERATIONAL_LIFETIME",
    "MAX_OPCERT_SIZE",
    "OPCERT_DOMAIN",
    "OPCERT_EXTENSION_OID",
    "VIRTUAL_NETWORK",
    "IdentityKey",
    "KeyStore",
    "OperationalCertificate",
    "OperationalKey",
    "PeerIdentity",
    "agent_id_digest",
    "agent_id_from_public_key",
    "bootstrap_ca_pem",
    "make_ssl_context",
    "validate_agent_id",
    "verify_peer_certificate",
    "verify_signature",
    "virtual_address",
    "write_tls_files",
]
