"""curl against an HTTP server (``python -m http.server`` in the benchmarks): download
speed, request rate, and both for several paths as ratios to the ``direct`` one. Used by
``run.py`` (forward, SOCKS5) and ``tun.py`` (TUN mode, in network namespaces)."""

from __future__ import annotations

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
