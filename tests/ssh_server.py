"""A real OpenSSH server for tests: its own host key, config, port, pid file and sftp
subsystem, logging in as root with a key made for it. Used by the tunnel tests (forward,
SOCKS5, TUN)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def sshd(
    d: Path,
    port: int,
    *,
    listen: str = "127.0.0.1",
    prefix: Sequence[str] = (),
    ready: Callable[[], object] | None = None,
) -> Iterator[list[str]]:
    """Run sshd on ``listen``:``port`` (``prefix`` runs it elsewhere, e.g. ``ip netns exec
    NS``) until the block ends; yields the ssh options that log in as root. ``ready``:
    called (it should wait) once sshd runs. Skips without OpenSSH or root."""
    server = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else None)
    keygen = shutil.which("ssh-keygen")
    if not (server and keygen and shutil.which("ssh") and shutil.which("sftp")):
        pytest.skip("needs openssh-server and openssh-client (make sysdeps installs them)")
    if os.geteuid() != 0:
        pytest.skip("sshd as a test server needs root")
    d.mkdir(exist_ok=True)
    for key in ("host", "user"):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    (d / "authorized_keys").write_text((d / "user.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    config = d / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress {listen}\nHostKey {d / 'host'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPidFile {d / 'sshd.pid'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\n"
        "Subsystem sftp internal-sftp\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    options = ["-i", str(d / "user"), "-o", "StrictHostKeyChecking=no"]
    options += ["-o", f"UserKnownHostsFile={d / 'known'}", "-o", "BatchMode=yes"]
    with (d / "sshd.log").open("wb") as log:
        proc = subprocess.Popen([*prefix, server, "-D", "-e", "-f", str(config)], stderr=log)
        try:
            if ready is not None:
                ready()
            yield options
        finally:
            proc.terminate()
            proc.wait(10)
