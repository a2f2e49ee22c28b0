"""Identity: agent IDs, virtual addresses, operational certificates, TLS certificates and
the post-handshake peer check, including forged and expired material."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import time
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from swarmlink.errors import (
    CertificateExpired,
    ErrorCode,
    InvalidArgument,
    LocalError,
    ProtocolViolation,
    VerificationFailed,
)
from swarmlink.identity import (
    VIRTUAL_NETWORK,
    IdentityKey,
    KeyStore,
    OperationalCertificate,
    OperationalKey,
    agent_id_from_public_key,
    make_ssl_context,
    validate_agent_id,
    verify_peer_certificate,
    verify_signature,
    virtual_address,
    write_tls_files,
)
from swarmlink.identity._tls import OPCERT_EXTENSION_OID, _bootstrap_ca

VECTORS = Path(__file__).parent / "vectors" / "identity.json"
SEED = bytes(range(32))
NOW = 1_790_000_000.0


def test_agent_id_is_a_dns_label_and_matches_the_golden_vector() -> None:
    ident = IdentityKey.from_private_bytes(SEED)
    vector = json.loads(VECTORS.read_text())
    assert ident.public_key.hex() == vector["public_key"]
    assert ident.agent_id == vector["agent_id"]
    assert str(ident.virtual_address) == vector["virtual_address"]
    op_key = Ed25519PrivateKey.from_private_bytes(bytes(32 * [7]))
    op_pub = op_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    cert = OperationalCertificate.issue(ident, op_pub, now=NOW, lifetime=86400, serial=3)
    assert cert.encode().hex() == vector["opcert"]
    assert len(ident.agent_id) == 52 and ident.agent_id.isalnum() and ident.agent_id.islower()


@given(st.binary(min_size=32, max_size=32))
def test_every_key_yields_a_valid_id_and_address(pk: bytes) -> None:
    agent = agent_id_from_public_key(pk)
    assert validate_agent_id(agent.upper()) == agent
    assert virtual_address(agent) in VIRTUAL_NETWORK


@pytest.mark.parametrize("bad", ["", "abc", "A" * 51, "0" * 52, "a" * 51 + "b", "a" * 53])
def test_bad_agent_ids_are_explained(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="not an agent ID"):
        validate_agent_id(bad)


def test_signatures_are_domain_separated() -> None:
    ident = IdentityKey.generate()
    sig = ident.sign(b"swarmlink/test/v1", b"hello")
    verify_signature(ident.public_key, b"swarmlink/test/v1", b"hello", sig)
    for domain, msg in ((b"swarmlink/other/v1", b"hello"), (b"swarmlink/test/v1", b"hellO")):
        with pytest.raises(VerificationFailed):
            verify_signature(ident.public_key, domain, msg, sig)


def _opkey(ident: IdentityKey, **kw: float) -> OperationalKey:
    return OperationalKey.generate(
        ident, now=kw.get("now", NOW), lifetime=kw.get("lifetime", 86400), serial=1
    )


def test_opcert_round_trip_and_tampering() -> None:
    ident = IdentityKey.generate()
    cert = _opkey(ident).certificate
    assert OperationalCertificate.decode(cert.encode()) == cert
    cert.verify(NOW)
    other = IdentityKey.generate()
    for tampered in (
        replace(cert, serial=cert.serial + 1),
        replace(cert, not_after=cert.not_after + 1),
        replace(cert, operational_key=bytes(32)),
        replace(cert, identity_key=other.public_key),
        replace(cert, signature=bytes(64)),
    ):
        with pytest.raises(VerificationFailed):
            tampered.verify(NOW)


def test_opcert_validity_period() -> None:
    cert = _opkey(IdentityKey.generate()).certificate
    with pytest.raises(CertificateExpired, match="expired at"):
        cert.verify(NOW + 86400 + 1)
    with pytest.raises(CertificateExpired, match="not valid before"):
        cert.verify(NOW - 3600)


@given(st.binary(max_size=600))
def test_opcert_decode_rejects_garbage_cleanly(data: bytes) -> None:
    with contextlib.suppress(ProtocolViolation, VerificationFailed):
        OperationalCertificate.decode(data)


def test_keystore_permissions_reload_and_rotation(tmp_path: Path) -> None:
    ks = KeyStore(tmp_path / "home")
    ident, op = ks.load_or_create(now=time.time())
    for name in ("identity.key", "operational.key", "operational.cert", "tls.key"):
        assert (tmp_path / "home" / name).stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "home").stat().st_mode & 0o777 == 0o700
    ident2, op2 = KeyStore(tmp_path / "home").load_or_create(now=time.time())
    assert ident2.agent_id == ident.agent_id and op2.public_key == op.public_key
    rotated = ks.rotate(now=time.time())
    assert rotated.agent_id == ident.agent_id
    assert rotated.certificate.serial == op.certificate.serial + 1
    assert rotated.public_key != op.public_key
    os.chmod(tmp_path / "home" / "identity.key", 0o644)
    with pytest.raises(LocalError, match="chmod 600"):
        KeyStore(tmp_path / "home").load_or_create(now=time.time())


def test_keystore_renews_an_expiring_operational_key(tmp_path: Path) -> None:
    ks = KeyStore(tmp_path)
    _, old = ks.load_or_create(now=NOW, lifetime=3000)
    _, same = ks.load_or_create(now=NOW + 100, lifetime=3000)
    assert same.public_key == old.public_key
    _, renewed = ks.load_or_create(now=NOW + 2500, lifetime=3000)
    assert renewed.public_key != old.public_key
    assert renewed.certificate.serial == old.certificate.serial + 1


def test_keystore_reports_corruption(tmp_path: Path) -> None:
    ks = KeyStore(tmp_path)
    ks.load_or_create(now=time.time())
    (tmp_path / "operational.cert").write_bytes(b"\x00garbage")
    with pytest.raises(LocalError, match="corrupted"):
        KeyStore(tmp_path).load_or_create(now=time.time())


def _der(tmp_path: Path, op: OperationalKey) -> bytes:
    cert_path, _ = write_tls_files(op, tmp_path)
    return ssl.PEM_cert_to_DER_cert(cert_path.read_text())


def test_verify_peer_certificate(tmp_path: Path) -> None:
    ident = IdentityKey.generate()
    op = _opkey(ident, now=time.time())
    der = _der(tmp_path, op)
    peer = verify_peer_certificate(der, now=time.time(), expected_agent_id=ident.agent_id)
    assert peer.agent_id == ident.agent_id and peer.identity_key == ident.public_key
    with pytest.raises(VerificationFailed) as info:
        verify_peer_certificate(
            der, now=time.time(), expected_agent_id=IdentityKey.generate().agent_id
        )
    assert info.value.code == ErrorCode.AGENT_MISMATCH
    with pytest.raises(CertificateExpired):
        verify_peer_certificate(der, now=time.time() + 2 * 86400)
    with pytest.raises(VerificationFailed, match="not a swarmlink certificate"):
        verify_peer_certificate(b"\x30\x03garbage", now=time.time())


def test_certificate_for_another_key_is_rejected(tmp_path: Path) -> None:
    """A leaf whose TLS key is not the key its operational certificate names."""
    ident = IdentityKey.generate()
    op = _opkey(ident, now=time.time())
    intruder = Ed25519PrivateKey.generate()
    ca_key, ca_cert = _bootstrap_ca()
    forged = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ident.agent_id)]))
        .issuer_name(ca_cert.subject)
        .public_key(intruder.public_key())
        .serial_number(7)
        .not_valid_before(ca_cert.not_valid_before_utc)
        .not_valid_after(ca_cert.not_valid_after_utc)
        .add_extension(
            x509.UnrecognizedExtension(OPCERT_EXTENSION_OID, op.certificate.encode()),
            critical=False,
        )
        .sign(ca_key, None)
    )
    der = forged.public_bytes(serialization.Encoding.DER)
    with pytest.raises(VerificationFailed, match="TLS key is not the one"):
        verify_peer_certificate(der, now=time.time(), expected_agent_id=ident.agent_id)


async def test_mutual_tls_handshake_between_two_identities(tmp_path: Path) -> None:
    ks_a, ks_b = KeyStore(tmp_path / "a"), KeyStore(tmp_path / "b")
    ia, _ = ks_a.load_or_create(now=time.time())
    ib, _ = ks_b.load_or_create(now=time.time())
    seen: dict[str, str] = {}

    async def on_client(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        der = w.get_extra_info("ssl_object").getpeercert(binary_form=True)
        seen["server_saw"] = verify_peer_certificate(der, now=time.time()).agent_id
        w.write(b"ok")
        await w.drain()
        w.close()

    server = await asyncio.start_server(
        on_client,
        "127.0.0.1",
        0,
        ssl=make_ssl_context(server=True, cert_file=ks_b.tls_files[0], key_file=ks_b.tls_files[1]),
    )
    port = server.sockets[0].getsockname()[1]
    ctx = make_ssl_context(server=False, cert_file=ks_a.tls_files[0], key_file=ks_a.tls_files[1])
    r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="x")
    sslobj = w.get_extra_info("ssl_object")
    assert sslobj.version() == "TLSv1.3" and sslobj.selected_alpn_protocol() == "swarmlink/1"
    client_saw = verify_peer_certificate(
        sslobj.getpeercert(binary_form=True), now=time.time(), expected_agent_id=ib.agent_id
    )
    assert await r.read() == b"ok"
    assert client_saw.agent_id == ib.agent_id and seen["server_saw"] == ia.agent_id
    w.close()
    await w.wait_closed()

    # A client whose certificate does not chain to the bootstrap CA cannot even finish TLS.
    plain_key = Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stranger")])
    plain = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(plain_key.public_key())
        .serial_number(1)
        .not_valid_before(_bootstrap_ca()[1].not_valid_before_utc)
        .not_valid_after(_bootstrap_ca()[1].not_valid_after_utc)
        .sign(plain_key, None)
    )
    (tmp_path / "p.crt").write_bytes(plain.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "p.key").write_bytes(
        plain_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    bad_ctx = make_ssl_context(
        server=False, cert_file=tmp_path / "p.crt", key_file=tmp_path / "p.key"
    )
    rejected = False
    try:
        r2, w2 = await asyncio.open_connection("127.0.0.1", port, ssl=bad_ctx, server_hostname="x")
    except (ssl.SSLError, ConnectionError):
        rejected = True
    else:
        try:  # TLS 1.3: the server's verdict on our certificate arrives after our half
            rejected = await r2.read() == b""
        except (ssl.SSLError, ConnectionError):
            rejected = True
        finally:
            w2.close()
            with contextlib.suppress(ssl.SSLError, ConnectionError):
                await w2.wait_closed()
    assert rejected
    server.close()
    await server.wait_closed()
