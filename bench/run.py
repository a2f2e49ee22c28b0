"""swarmlink benchmarks (``make bench``): JSON on stdout, progress on stderr.

Each figure is measured next to a baseline taken in the same run, because the machine is
shared and noisy: ratios are the numbers to compare across runs.

    tunnel_throughput   bytes through ``forward`` → daemon A → TLS → daemon B → ``expose``,
                        vs. the same bytes over one direct TLS 1.3 connection
    connect_first_byte  dial a new peer (TCP + TLS 1.3 + HELLO) + open a stream + echo 1 byte,
                        vs. a bare TCP connect + 1-byte echo
    small_messages      64-byte request/response on one stream: pipelined rate and
                        sequential p50/p99 latency, vs. the same over a bare TLS socket
    daemon_rss          resident memory of a daemon idle and with 100 connected peers,
                        vs. a bare Python interpreter
    http_tunnels        curl + python -m http.server through a forward and the SOCKS5 proxy,
                        vs. the same client and server on loopback
    http_tun            the same through two agents' TUN interfaces (root: each agent in its
                        own network namespace), vs. the same client and server on loopback
    gossip              publish-to-all latency (p50/p99) and message rate among 100 daemons
                        that trust each other, vs. a control-API round trip
    dht_lookup          fresh DHT lookups (resolve an agent ID to its verified record)
                        among 100 daemons on loopback, vs. a control-API round trip
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import curl  # bench/curl.py
import gossip  # bench/gossip.py
import tun  # bench/tun.py (root: network namespaces)

from swarmlink.client import Client
from swarmlink.runtime import Node, NodeConfig, Stream

ECHO = "/bench/echo/1"
ROOT = Path(__file__).resolve().parent


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


# ---- helpers: sink process, daemons ------------------------------------------------------


def start_sink(tls: bool, workdir: Path) -> tuple[subprocess.Popen[str], int]:
    args = [sys.executable, str(ROOT / "sink.py")]
    if tls:
        args += ["--tls", str(workdir)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, port


def start_daemon(home: Path, *extra: str) -> tuple[subprocess.Popen[bytes], Client]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "swarmlink.daemon",
            "--home",
            str(home),
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "warning",
            "--no-mdns",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, Client(home)


async def wait_ready(client: Client, proc: subprocess.Popen[bytes]) -> Any:
    # Generous: 100 daemons starting at once share two cores (≈0.8 s of CPU each).
    deadline = time.monotonic() + 120
    while True:
        try:
            return await client.status()
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def push(host: str, port: int, total: int, ctx: ssl.SSLContext | None) -> float:
    reader, writer = await asyncio.open_connection(
        host, port, ssl=ctx, server_hostname="sink" if ctx else None
    )
    chunk = bytes(256 * 1024)
    started = time.perf_counter()
    writer.write(total.to_bytes(8, "big"))
    sent = 0
    while sent < total:
        writer.write(chunk)
        sent += len(chunk)
        await writer.drain()
    line = await reader.readline()
    elapsed = time.perf_counter() - started
    writer.close()
    if int(line) != total:
        raise RuntimeError(f"sink counted {int(line)} of {total}")
    return elapsed


async def trusted_daemons(
    ca: Client, da: subprocess.Popen[bytes], cb: Client, db: subprocess.Popen[bytes]
) -> tuple[Any, Any]:
    """Wait for both daemons, connect a to b and make them trust each other; their
    statuses."""
    sa, sb = await wait_ready(ca, da), await wait_ready(cb, db)
    await ca.connect(f"{sb.agent_id}@{sb.listen[0]}")
    await ca.trust_request(sb.agent_id, "bench")
    await poll(lambda: cb.trust_pending(), "trust request")
    await cb.trust_approve(sa.agent_id)
    await poll(lambda: ca.trust_list(), "trust")
    return sa, sb


# ---- benchmarks ----------------------------------------------------------------------------


async def bench_tunnel(workdir: Path, total: int) -> dict[str, Any]:
    log(f"tunnel throughput: {total >> 20} MiB, direct TLS baseline first")
    sink, sink_port = start_sink(True, workdir)
    try:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        direct = min([await push("127.0.0.1", sink_port, total, ctx) for _ in range(2)])
    finally:
        sink.terminate()
        sink.wait()
    plain_sink, plain_port = start_sink(False, workdir)
    da, ca = start_daemon(workdir / "tun-a")
    db, cb = start_daemon(workdir / "tun-b")
    try:
        _, sb = await trusted_daemons(ca, da, cb, db)
        await cb.expose(plain_port)
        fwd = await ca.forward(0, sb.agent_id, plain_port)
        await push("127.0.0.1", fwd.local_port, 16 << 20, None)  # warm-up
        tunnel = min([await push("127.0.0.1", fwd.local_port, total, None) for _ in range(2)])
    finally:
        for proc in (da, db):
            proc.terminate()
            proc.wait()
        plain_sink.terminate()
        plain_sink.wait()
    direct_mib = total / direct / 2**20
    tunnel_mib = total / tunnel / 2**20
    return {
        "bytes": total,
        "direct_tls_mib_s": round(direct_mib, 1),
        "tunnel_mib_s": round(tunnel_mib, 1),
        "ratio": round(tunnel_mib / direct_mib, 3),
        "target_ratio": 0.5,
    }


async def bench_relay(workdir: Path, total: int) -> dict[str, Any]:
    """One pair of daemons, ``total`` bytes a → b through a relay daemon, then over a
    direct session between the same two daemons (hole punching off, so each path stays
    what it is): the relayed / direct throughput ratio."""
    log(f"relayed vs direct throughput: {total >> 20} MiB each way")
    dr, cr = start_daemon(workdir / "relay", "--relay")
    procs = [dr]
    try:
        sr = await wait_ready(cr, dr)
        relay = f"{sr.agent_id}@{sr.listen[0]}"
        db, cb = start_daemon(
            workdir / "relayed-b",
            "--bootstrap", relay, "--relay-via", relay, "--advertise", "127.0.0.1:1",
            "--no-hole-punching",
        )  # fmt: skip
        da, ca = start_daemon(workdir / "relayed-a", "--bootstrap", relay, "--no-hole-punching")
        procs += [da, db]
        sb, sa = await wait_ready(cb, db), await wait_ready(ca, da)
        await poll(lambda: _reserved(cb), "b's relay reservation in its record", 30)
        await ca.trust_request(sb.agent_id, "bench")
        await poll(lambda: cb.trust_pending(), "trust request")
        await cb.trust_approve(sa.agent_id)
        await poll(lambda: ca.trust_list(), "trust")
        await ca.disconnect(sb.agent_id)
        await ca.ping_result(sb.agent_id, interval=0)
        peer = next(p for p in await ca.peers() if p.agent_id == sb.agent_id)
        assert peer.path.startswith("relayed"), peer.path
        await ca.bench(sb.agent_id, size=16 << 20)  # warm-up
        relayed = max(
            [(await ca.bench(sb.agent_id, size=total)).throughput_mib_s for _ in range(2)]
        )
        await ca.disconnect(sb.agent_id)
        await ca.connect(f"{sb.agent_id}@{sb.listen[0]}")
        peer = next(p for p in await ca.peers() if p.agent_id == sb.agent_id)
        assert peer.path == "direct", peer.path
        await ca.bench(sb.agent_id, size=16 << 20)
        direct = max([(await ca.bench(sb.agent_id, size=total)).throughput_mib_s for _ in range(2)])
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()
    return {
        "bytes": total,
        "direct_mib_s": round(direct, 1),
        "relayed_mib_s": round(relayed, 1),
        "ratio": round(relayed / direct, 3),
        "target_ratio": 0.3,
    }


async def bench_http(workdir: Path, total: int, requests: int) -> dict[str, Any]:
    """An unmodified HTTP server (python -m http.server) and client (curl): download
    throughput and request rate directly on loopback, through a port forward and through
    the SOCKS5 proxy between two daemons, as ratios to direct."""
    log(f"HTTP through forward / SOCKS5: {total >> 20} MiB download, {requests} requests")
    www = workdir / "www"
    www.mkdir()
    (www / "big.bin").write_bytes(os.urandom(1 << 20) * (total >> 20))
    (www / "small.txt").write_text("hello\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    web = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=www,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    async def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    await poll(listening, "http.server")
    native: tuple[list[subprocess.Popen[bytes]], int] | None = None
    da, ca = start_daemon(workdir / "http-a")
    db, cb = start_daemon(workdir / "http-b")
    try:
        _, sb = await trusted_daemons(ca, da, cb, db)
        await cb.expose(port)
        fwd = await ca.forward(0, sb.agent_id, port)
        proxy = await ca.start_socks5("127.0.0.1:0")
        socks = ("--socks5-hostname", proxy)
        paths: dict[str, curl.Path] = {
            "direct": (None, f"http://127.0.0.1:{port}", ()),
            "forward": (None, f"http://127.0.0.1:{fwd.local_port}", ()),
            "socks5": (None, f"http://{sb.agent_id}.swarm:{port}", socks),
        }
        # Reference: the same forward built from native tools (two socat processes with
        # OpenSSL TLS 1.3 between them): what a C relay pair reaches on this machine.
        native = curl.socat_tls_chain(workdir, port)
        if native is not None:
            paths["native_tls_relay"] = (None, f"http://127.0.0.1:{native[1]}", ())
        results: dict[str, Any] = {"bytes": total, "requests": requests}
        results.update(curl.measure(paths, requests))
        results["targets"] = {"forward": 0.5, "socks5": 0.45}
        return results
    finally:
        for proc in (da, db, web, *(native[0] if native else ())):
            proc.terminate()
            proc.wait()


async def _reserved(client: Client) -> bool:
    return bool((await client.lookup((await client.status()).agent_id)).get("relays"))


async def poll(fn: Any, what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def echo_handler(stream: Stream) -> None:
    while data := await stream.read():
        stream.write(data)
        await stream.drain()
    stream.write_eof()


async def trusted_pair(workdir: Path, a: str, b: str) -> tuple[Node, Node]:
    na = await Node.start(NodeConfig(home=workdir / a, listen=(("127.0.0.1", 0),)))
    nb = await Node.start(NodeConfig(home=workdir / b, listen=(("127.0.0.1", 0),)))
    for node in (na, nb):
        node.set_handler(ECHO, echo_handler)
    await na.connect(f"{nb.agent_id}@127.0.0.1:{nb.listen_port}")
    await na.request_trust(nb.agent_id)
    await poll(lambda: _async(nb.pending_trust()), "trust request")
    await nb.approve_trust(na.agent_id)
    await poll(lambda: _async(na.trust.is_trusted(nb.agent_id)), "trust")
    return na, nb


async def _async(value: Any) -> Any:
    return value


async def bench_connect(workdir: Path, rounds: int) -> dict[str, Any]:
    log(f"connect + first byte: {rounds} new peers")
    server = await asyncio.start_server(_tcp_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    base = []
    for _ in range(rounds):
        t = time.perf_counter()
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"x")
        await r.readexactly(1)
        base.append((time.perf_counter() - t) * 1000)
        w.close()
    server.close()
    dialer = await Node.start(NodeConfig(home=workdir / "dialer", listen=(("127.0.0.1", 0),)))
    times = []
    try:
        for i in range(rounds):
            peer = await Node.start(
                NodeConfig(home=workdir / f"peer{i}", listen=(("127.0.0.1", 0),))
            )
            peer.set_handler(ECHO, echo_handler)
            peer.trust._trusted.add(dialer.agent_id)  # bench only: pre-trusted peer
            t = time.perf_counter()
            await dialer.connect(f"{peer.agent_id}@127.0.0.1:{peer.listen_port}")
            stream = await dialer.open_stream(peer.agent_id, ECHO)
            stream.write(b"x")
            await stream.readexactly(1)
            times.append((time.perf_counter() - t) * 1000)
            await peer.close()
    finally:
        await dialer.close()
    return {
        "rounds": rounds,
        "median_ms": round(statistics.median(times), 2),
        "p90_ms": round(percentile(times, 0.9), 2),
        "tcp_baseline_median_ms": round(statistics.median(base), 3),
        "target_median_ms": 10,
    }


async def _tcp_echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    while data := await r.read(65536):
        w.write(data)
    w.close()


async def bench_messages(workdir: Path, count: int) -> dict[str, Any]:
    log(f"small messages: {count} x 64 B on one stream")
    na, nb = await trusted_pair(workdir, "msg-a", "msg-b")
    msg = bytes(64)
    try:
        stream = await na.open_stream(nb.agent_id, ECHO)
        # sequential latency
        lat = []
        for _ in range(min(count, 5000)):
            t = time.perf_counter()
            stream.write(msg)
            await stream.readexactly(64)
            lat.append((time.perf_counter() - t) * 1000)
        # pipelined rate: keep a window of messages in flight
        window = 128
        started = time.perf_counter()
        sent = received = 0
        while received < count:
            while sent < count and sent - received < window:
                stream.write(msg)
                sent += 1
            await stream.readexactly(64)
            received += 1
        rate = count / (time.perf_counter() - started)
        await stream.close()
    finally:
        await na.close()
        await nb.close()
    base_rate, base_lat = await _tls_echo_baseline(workdir, count)
    return {
        "messages": count,
        "size": 64,
        "pipelined_msgs_per_s": round(rate),
        "p50_ms": round(statistics.median(lat), 3),
        "p99_ms": round(percentile(lat, 0.99), 3),
        "tls_baseline_msgs_per_s": round(base_rate),
        "tls_baseline_p50_ms": round(base_lat, 3),
        "ratio": round(rate / base_rate, 3),
        "target_msgs_per_s": 20000,
    }


async def _tls_echo_baseline(workdir: Path, count: int) -> tuple[float, float]:
    from swarmlink.identity import KeyStore, make_ssl_context

    ks = KeyStore(workdir / "tls-base")
    ks.load_or_create(now=time.time())
    cert, key = ks.tls_files
    sctx = make_ssl_context(server=True, cert_file=cert, key_file=key)
    cctx = make_ssl_context(server=False, cert_file=cert, key_file=key)
    server = await asyncio.start_server(_tcp_echo, "127.0.0.1", 0, ssl=sctx)
    port = server.sockets[0].getsockname()[1]
    r, w = await asyncio.open_connection("127.0.0.1", port, ssl=cctx, server_hostname="x")
    msg = bytes(64)
    lat = []
    for _ in range(min(count, 5000)):
        t = time.perf_counter()
        w.write(msg)
        await r.readexactly(64)
        lat.append((time.perf_counter() - t) * 1000)
    started = time.perf_counter()
    sent = received = 0
    while received < count:
        while sent < count and sent - received < 128:
            w.write(msg)
            sent += 1
        await r.readexactly(64)
        received += 1
    rate = count / (time.perf_counter() - started)
    w.close()
    server.close()
    return rate, statistics.median(lat)


async def bench_rss(workdir: Path, peers: int) -> dict[str, Any]:
    log(f"daemon RSS: idle, then with {peers} connected peers")
    bare = subprocess.Popen(
        [sys.executable, "-c", "import sys; print('up', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert bare.stdout is not None
    bare.stdout.readline()
    bare_kib = rss_kib(bare.pid)
    bare.kill()
    bare.wait()
    proc, client = start_daemon(workdir / "rss-daemon")
    nodes: list[Node] = []
    try:
        status = await wait_ready(client, proc)
        port = int(status.listen[0].rsplit(":", 1)[1])
        idle = rss_kib(proc.pid)
        for i in range(peers):
            node = await Node.start(
                NodeConfig(home=workdir / f"rss{i}", listen=(("127.0.0.1", 0),))
            )
            nodes.append(node)
            await node.connect(f"{status.agent_id}@127.0.0.1:{port}")
        await poll(lambda: _count(client, peers), "peers connected", timeout=60)
        loaded = rss_kib(proc.pid)
    finally:
        for node in nodes:
            await node.close()
        proc.terminate()
        proc.wait()
    return {
        "python_bare_mib": round(bare_kib / 1024, 1),
        "idle_mib": round(idle / 1024, 1),
        "with_peers_mib": round(loaded / 1024, 1),
        "peers": peers,
        "target_idle_mib": 40,
        "target_with_peers_mib": 55,
    }


async def _count(client: Client, n: int) -> bool:
    return (await client.status()).peers_connected >= n


async def bench_dht(workdir: Path, nodes: int, lookups: int) -> dict[str, Any]:
    import random

    seed = 100
    rng = random.Random(seed)
    log(f"DHT lookups: starting {nodes} daemons (seed {seed})")
    procs: list[subprocess.Popen[bytes]] = []
    clients: list[Client] = []
    try:
        proc, client = start_daemon(workdir / "dht0")
        procs.append(proc)
        clients.append(client)
        first = await wait_ready(client, proc)
        boot = f"{first.agent_id}@{first.listen[0]}"
        for i in range(1, nodes):
            proc, client = start_daemon(workdir / f"dht{i}", "--bootstrap", boot)
            procs.append(proc)
            clients.append(client)
        statuses = [first]
        for i in range(1, nodes):
            statuses.append(await wait_ready(clients[i], procs[i]))
            if i % 20 == 0:
                log(f"  {i + 1}/{nodes} daemons up")
        for c in clients:
            await poll(lambda c=c: _published(c), "record published", timeout=120)
        log(f"  all joined; {lookups} fresh lookups, one at a time")
        agents = [s.agent_id for s in statuses]
        base = []
        for _ in range(200):
            started = time.perf_counter()
            await clients[0].status()
            base.append(time.perf_counter() - started)
        times = []
        for _ in range(lookups):
            i, j = rng.sample(range(nodes), 2)
            started = time.perf_counter()
            record = await clients[i].lookup(agents[j])
            times.append(time.perf_counter() - started)
            if record["agent_id"] != agents[j]:
                raise RuntimeError("wrong record")
        info = [await c.dht_info() for c in clients]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait()
    return {
        "nodes": nodes,
        "lookups": lookups,
        "seed": seed,
        "lookup_ms_p50": round(percentile(times, 0.5) * 1000, 2),
        "lookup_ms_p90": round(percentile(times, 0.9) * 1000, 2),
        "lookup_ms_p99": round(percentile(times, 0.99) * 1000, 2),
        "control_api_rtt_ms_p50": round(percentile(base, 0.5) * 1000, 2),
        "routing_table_mean": round(statistics.mean(i["contacts"] for i in info), 1),
        "target_p50_ms": 50,
    }


async def _published(client: Client) -> bool:
    return bool((await client.dht_info())["published_at"])


async def section(name: str, work: Awaitable[Any]) -> Any:
    """One benchmark's result; if it fails, the error, and the others still run."""
    try:
        return await work
    except Exception as exc:
        log(f"{name} failed: {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}"}


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes (CI smoke run)")
    parser.add_argument(
        "--only",
        choices=[
            "tunnel",
            "relay",
            "http",
            "tun",
            "connect",
            "messages",
            "rss",
            "dht",
            "gossip",
        ],
        action="append",
    )
    args = parser.parse_args()
    big = not args.quick
    results: dict[str, Any] = {"python": sys.version.split()[0], "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="swarmlink-bench-") as tmp:
        work = Path(tmp)
        only = set(
            args.only
            or ["tunnel", "relay", "http", "tun", "connect", "messages", "rss", "dht", "gossip"]
        )
        if "tunnel" in only:
            results["tunnel_throughput"] = await section(
                "tunnel_throughput", bench_tunnel(work, (512 if big else 64) << 20)
            )
        if "relay" in only:
            results["relay_throughput"] = await section(
                "relay_throughput", bench_relay(work, (256 if big else 32) << 20)
            )
        if "http" in only:
            results["http_tunnels"] = await section(
                "http_tunnels", bench_http(work, (256 if big else 32) << 20, 300 if big else 50)
            )
        if "tun" in only:
            results["http_tun"] = await section("http_tun", tun.run(work, big))
        if "connect" in only:
            results["connect_first_byte"] = await section(
                "connect_first_byte", bench_connect(work, 50 if big else 10)
            )
        if "messages" in only:
            results["small_messages"] = await section(
                "small_messages", bench_messages(work, 50_000 if big else 5_000)
            )
        if "rss" in only:
            results["daemon_rss"] = await section("daemon_rss", bench_rss(work, 100 if big else 10))
        if "dht" in only:
            results["dht_lookup"] = await section(
                "dht_lookup", bench_dht(work, 100 if big else 20, 300 if big else 50)
            )
        if "gossip" in only:
            results["gossip"] = await section(
                "gossip",
                gossip.run(work, 100 if big else 20, 100 if big else 20, 200 if big else 50),
            )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
