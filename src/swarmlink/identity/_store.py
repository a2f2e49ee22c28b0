"""Key files in the node home: the identity key, the operational key and certificate, and
the TLS files derived from them. Private files are 0600; the home is 0700."""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..errors import LocalError, SwarmlinkError
from ._keys import IdentityKey
from ._opcert import OperationalCertificate, OperationalKey
from ._tls import _write_private, write_tls_files

__all__ = ["DEFAULT_OPERATIONAL_LIFETIME", "KeyStore"]

#: Lifetime of an operational key certificate unless told otherwise (30 days).
DEFAULT_OPERATIONAL_LIFETIME = 30 * 24 * 3600.0


class KeyStore:
    """The key files of one node home.

    ``identity.key`` (PKCS#8 PEM, Ed25519), ``operational.key`` (PKCS#8 PEM),
    ``operational.cert`` (CBOR operational certificate), ``tls.crt`` / ``tls.key``.
    """

    def __init__(self, home: Path | str) -> None:
        self.home = Path(home)
        self.identity_path = self.home / "identity.key"
        self.operational_key_path = self.home / "operational.key"
        self.operational_cert_path = self.home / "operational.cert"

    @property
    def tls_files(self) -> tuple[Path, Path]:
        return self.home / "tls.crt", self.home / "tls.key"

    # ---- files ----------------------------------------------------------------------

    def _ensure_home(self) -> None:
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)

    @staticmethod
    def _check_private(path: Path) -> None:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise LocalError(
                f"{path} has mode {mode:04o}: a private key must not be readable by others; "
                f"run: chmod 600 {path}"
            )

    def _load_private_key(self, path: Path) -> Ed25519PrivateKey:
        self._check_private(path)
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise LocalError(f"{path} is not a valid private key file: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise LocalError(f"{path} does not hold an Ed25519 key")
        return key

    @staticmethod
    def _pem(key: Ed25519PrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def _save_operational(self, op: OperationalKey) -> None:
        _write_private(self.operational_key_path, self._pem(op.private_key))
        _write_private(self.operational_cert_path, op.certificate.encode())
        write_tls_files(op, self.home)

    # ---- API ------------------------------------------------------------------------

    def load_or_create(
        self, *, now: float, lifetime: float = DEFAULT_OPERATIONAL_LIFETIME
    ) -> tuple[IdentityKey, OperationalKey]:
        """Load the keys, creating them on first use and renewing an operational key
        that has less than a third of its lifetime left (or expired)."""
        self._ensure_home()
        if self.identity_path.exists():
            identity = IdentityKey(self._load_private_key(self.identity_path))
        else:
            identity = IdentityKey.generate()
            _write_private(self.identity_path, self._pem(identity._key))
        op = self._load_operational(identity)
        if op is None or op.certificate.not_after - now < lifetime / 3:
            serial = op.certificate.serial + 1 if op is not None else 1
            op = OperationalKey.generate(identity, now=now, lifetime=lifetime, serial=serial)
            self._save_operational(op)
        elif not all(p.exists() for p in self.tls_files):
            write_tls_files(op, self.home)
        return identity, op

    def _load_operational(self, identity: IdentityKey) -> OperationalKey | None:
        if not self.operational_key_path.exists() or not self.operational_cert_path.exists():
            return None
        key = self._load_private_key(self.operational_key_path)
        try:
            cert = OperationalCertificate.decode(self.operational_cert_path.read_bytes())
            op = OperationalKey(key, cert)
        except SwarmlinkError as exc:
            raise LocalError(f"{self.operational_cert_path} is corrupted: {exc}") from None
        if cert.identity_key != identity.public_key:
            raise LocalError(f"{self.operational_cert_path} belongs to another identity")
        return op

    def rotate(
        self, *, now: float, lifetime: float = DEFAULT_OPERATIONAL_LIFETIME
    ) -> OperationalKey:
        """Replace the operational key (serial + 1); the identity stays the same."""
        identity, current = self.load_or_create(now=now, lifetime=lifetime)
        op = OperationalKey.generate(
            identity, now=now, lifetime=lifetime, serial=current.certificate.serial + 1
        )
        self._save_operational(op)
        return op
