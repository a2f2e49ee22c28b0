"""TLS material: certificates that carry the operational certificate, SSL contexts, and
the post-handshake peer check.

Python's :mod:`ssl` offers no certificate-verify callback, and OpenSSL refuses a client
certificate it cannot chain to a trust anchor. So every swarmlink leaf certificate is
issued by a **publicly known bootstrap CA** whose private key is derived from a published
constant. Anyone can mint such a certificate: the chain check is a formality and NOT a
security boundary. Security comes from :func:`verify_peer_certificate`, run on every
connection right after the handshake: TLS 1.3 CertificateVerify proves possession of the
leaf (operational) key, and the operational certificate in our extension proves that the
identity key, which hashes to the agent ID, vouches for that key.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
import secrets
import ssl
from dataclasses import dataclass
from ipaddress import IPv6Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID

from ..errors import ErrorCode, ProtocolViolation, VerificationFailed
from ._keys import validate_agent_id, virtual_address
from ._opcert import OperationalCertificate, OperationalKey

__all__ = [
    "ALPN_PROTOCOL",
    "BOOTSTRAP_CA_SEED_LABEL",
    "OPCERT_EXTENSION_OID",
    "PeerIdentity",
    "bootstrap_ca_pem",
    "make_ssl_context",
    "verify_peer_certificate",
    "write_tls_files",
]

#: ALPN protocol identifier of swarmlink sessions.
ALPN_PROTOCOL = "swarmlink/1"
#: Private extension carrying the encoded :class:`OperationalCertificate`
#: (an experimental arc; see docs/protocol.md).
OPCERT_EXTENSION_OID = x509.ObjectIdentifier("1.3.6.1.4.1.59999.7.1")
#: The published constant the bootstrap CA key is derived from (SHA-256 of it = seed).
BOOTSTRAP_CA_SEED_LABEL = b"swarmlink public bootstrap CA v1"
#: Largest peer certificate we parse (bytes; untrusted input).
MAX_PEER_CERT_SIZE = 4096

_NOT_BEFORE = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
_NOT_AFTER = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)


@functools.cache
def _bootstrap_ca() -> tuple[Ed25519PrivateKey, x509.Certificate]:
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(BOOTSTRAP_CA_SEED_LABEL).digest())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "swarmlink public bootstrap CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, None)
    )
    return key, cert


def bootstrap_ca_pem() -> bytes:
    """PEM of the public bootstrap CA certificate (deterministic)."""
    return _bootstrap_ca()[1].public_bytes(serialization.Encoding.PEM)


def _leaf_certificate(op: OperationalKey) -> x509.Certificate:
    ca_key, ca_cert = _bootstrap_ca()
    cert = op.certificate
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cert.agent_id)]))
        .issuer_name(ca_cert.subject)
        .public_key(op.private_key.public_key())
        .serial_number(int.from_bytes(hashlib.sha256(cert.encode()).digest()[:16], "big") >> 1)
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.UnrecognizedExtension(OPCERT_EXTENSION_OID, cert.encode()), critical=False
        )
        .sign(ca_key, None)
    )


def _write_private(path: Path, data: bytes) -> None:
    """Write atomically with mode 0600 from the first byte."""
    tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_tls_files(op: OperationalKey, directory: Path) -> tuple[Path, Path]:
    """Write ``tls.crt`` (leaf) and ``tls.key`` (PKCS#8) for ``op`` into ``directory``."""
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    _write_private(cert_path, _leaf_certificate(op).public_bytes(serialization.Encoding.PEM))
    _write_private(
        key_path,
        op.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    return cert_path, key_path


def make_ssl_context(*, server: bool, cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A TLS 1.3-only, mutually authenticated context presenting our certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=bootstrap_ca_pem().decode())
    ctx.load_cert_chain(cert_file, key_file)
    ctx.set_alpn_protocols([ALPN_PROTOCOL])
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_TICKET
    if server:
        ctx.num_tickets = 0
    return ctx


@dataclass(frozen=True)
class PeerIdentity:
    """Who the peer proved to be."""

    agent_id: str
    identity_key: bytes
    certificate: OperationalCertificate

    @property
    def virtual_address(self) -> IPv6Address:
        return virtual_address(self.agent_id)


def verify_peer_certificate(
    cert_der: bytes, *, now: float, expected_agent_id: str | None = None
) -> PeerIdentity:
    """Check a peer's TLS certificate; the peer's proven identity, or VerificationFailed."""
    if len(cert_der) > MAX_PEER_CERT_SIZE:
        raise VerificationFailed(f"peer certificate of {len(cert_der)} bytes is too large")
    try:
        cert = x509.load_der_x509_certificate(cert_der)
        ext = cert.extensions.get_extension_for_oid(OPCERT_EXTENSION_OID)
        public_key = cert.public_key()
    except x509.ExtensionNotFound:
        raise VerificationFailed(
            "peer certificate is not a swarmlink certificate: no operational key certificate"
        ) from None
    except ValueError as exc:
        raise VerificationFailed(
            f"peer certificate is not a swarmlink certificate: {exc}"
        ) from None
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension) or not isinstance(
        public_key, Ed25519PublicKey
    ):
        raise VerificationFailed("peer certificate is not a swarmlink certificate: wrong key type")
    try:
        opcert = OperationalCertificate.decode(value.value)
    except ProtocolViolation as exc:
        raise VerificationFailed(
            f"peer's operational key certificate is malformed: {exc.reason}"
        ) from None
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if raw != opcert.operational_key:
        raise VerificationFailed("peer's TLS key is not the one its operational certificate names")
    opcert.verify(now)
    agent_id = opcert.agent_id
    if expected_agent_id is not None and validate_agent_id(expected_agent_id) != agent_id:
        raise VerificationFailed(
            f"expected agent {expected_agent_id} but the peer proved it is {agent_id}",
            ErrorCode.AGENT_MISMATCH,
        )
    return PeerIdentity(agent_id=agent_id, identity_key=opcert.identity_key, certificate=opcert)
