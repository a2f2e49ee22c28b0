"""curl against an HTTP server (``python -m http.server`` in the benchmarks): download
speed, request rate, and both for several paths as ratios to the ``direct`` one. Used by
``run.py`` (forward, SOCKS5) and ``tun.py`` (TUN mode, in network namespaces)."""

from __future__ import annotations

import pathlib
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from typing import Any

#: A path to measure: (network namespace to run curl in or None, base URL, curl options).
Path = tuple[str | None, str, Sequence[str]]


def _in(ns: str | None, args: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *args] if ns else args


def curl_speed(url: str, *extra: str, ns: str | None = None) -> float:
    """Download ``url`` with curl; MiB/s."""
    out = subprocess.run(
        _in(ns, ["curl", "-sf", "-o", "/dev/null", "-w", "%{speed_download}", *extra, url]),
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return float(out.stdout) / 2**20


def curl_rate(url: str, n: int, *extra: str, ns: str | None = None) -> float:
    """``n`` small requests, 8 at a time, each on a new connection; requests/s."""
    args = ["curl", "-sf", "--parallel", "--parallel-max", "8", *extra]
    for i in range(n):
        args += ["-o", "/dev/null", f"{url}?{i}"]
    started = time.perf_counter()
    subprocess.run(_in(ns, args), check=True, timeout=300, stdout=subprocess.DEVNULL)
    return n / (time.perf_counter() - started)


def measure(paths: dict[str, Path], requests: int) -> dict[str, Any]:
    """``/big.bin`` (best of two after a warm-up) and ``requests`` times ``/small.txt`` over
    each path; every path but ``direct`` also as ratios to ``direct``."""
    results: dict[str, Any] = {}
    for name, (ns, base, extra) in paths.items():
        curl_speed(f"{base}/big.bin", *extra, ns=ns)  # warm-up
        speed = max(curl_speed(f"{base}/big.bin", *extra, ns=ns) for _ in range(2))
        rate = curl_rate(f"{base}/small.txt", requests, *extra, ns=ns)
        results[name] = {"mib_s": round(speed, 1), "requests_s": round(rate, 1)}
    direct = results["direct"]
    for name, entry in results.items():
        if name != "direct":
            entry["throughput_ratio"] = round(entry["mib_s"] / direct["mib_s"], 3)
            entry["rate_ratio"] = round(entry["requests_s"] / direct["requests_s"], 3)
    return results


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def socat_tls_chain(
    workdir: pathlib.Path, port: int
) -> tuple[list[subprocess.Popen[bytes]], int] | None:
    """``client → socat (TCP → TLS 1.3) → socat (TLS → TCP) → 127.0.0.1:port``, the native
    equivalent of a forward between two daemons; (processes, entry port), or None without
    socat. 256 KiB buffers; OpenSSL picks the cipher (AES-256-GCM, as our sessions)."""
    if shutil.which("socat") is None or shutil.which("openssl") is None:
        return None
    key, cert = workdir / "socat.key", workdir / "socat.crt"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ed25519",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=bench",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    tls_port, entry = _free_port(), _free_port()
    server = subprocess.Popen(
        [
            "socat",
            "-b",
            "262144",
            f"OPENSSL-LISTEN:{tls_port},bind=127.0.0.1,reuseaddr,fork,cert={cert},key={key},verify=0",
            f"TCP:127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = subprocess.Popen(
        [
            "socat",
            "-b",
            "262144",
            f"TCP-LISTEN:{entry},bind=127.0.0.1,reuseaddr,fork",
            f"OPENSSL:127.0.0.1:{tls_port},verify=0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    for p in (tls_port, entry):
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", p)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("socat did not start")
            time.sleep(0.02)
    return [server, client], entry
