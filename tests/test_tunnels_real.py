"""Unmodified HTTP, gRPC and SSH through swarmlink's tunnels, and prompt refusals.

Real daemons started with the real CLI (``python -m swarmlink``), real servers bound to
127.0.0.1 on agent b, real clients on agent a's side:

- HTTP (``python -m http.server`` and a ``ThreadingHTTPServer``, the ``curl`` client):
  a 64 MiB seeded random file checked by SHA-256, and 100 requests with 20 in flight
  (a barrier in the server proves the 20 tunnels are open at the same time), each body
  checked — through a ``forward``, through the SOCKS5 proxy with ``--socks5-hostname``
  and with ``-x socks5h://``.
- gRPC (grpcio generic handlers, no codegen): unary, unary-stream, a bulk
  stream-stream and a ping-pong stream-stream (each reply awaited before the next
  request: a tunnel that buffered until end of stream would deadlock), through a
  forward and through the proxy port's HTTP CONNECT.
- SSH (own sshd, own keys and config): a command with stdin through a forward, an
  ``sftp -b`` upload and download through the SOCKS5 proxy (``nc -X 5`` ProxyCommand).
- Refusals: b exposes one port to a only (``--allow``), one to every trusted agent.
  c is connected to b but not trusted; d is trusted by b but not on the allow list.
  Forwards accept then close at once (curl: empty reply), the SOCKS5 proxy answers
  NOT_ALLOWED / CONNECTION_REFUSED at once (curl exit 97), never a timeout; a
  port nothing is exposed on is refused too; a keeps working afterwards.

Daemons inherit the environment, so under ``make test`` they run in asyncio debug mode.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import http.client
import queue
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import ssh_server
from helpers import run, run_json, wait_for
from test_e2e_cli import Daemon, _port_open, establish_trust, free_port

from swarmlink.identity import virtual_address
from swarmlink.tunnel import CONNECTION_REFUSED, NOT_ALLOWED

CURL = shutil.which("curl")
# Serial: big transfers and many processes; they run alone after the parallel phase.
pytestmark = [pytest.mark.serial, pytest.mark.skipif(CURL is None, reason="needs curl")]

#: Seed of the 64 MiB file (printed by the fixture).
SEED = 20261127
BIG = 64 * 1024 * 1024
#: Concurrent-request run: TOTAL requests, IN_FLIGHT at a time.
TOTAL, IN_FLIGHT = 100, 20
#: A refusal must come back well before this (seconds); curl's --max-time is larger.
PROMPT = 5.0


@dataclass
class Net:
    a: Daemon  # client side: trusted by b and allowed
    b: Daemon  # server side: every server runs next to it
    c: Daemon  # connected to b, not trusted
    d: Daemon  # trusted by b, not on the --allow list
    web_port: int  # python -m http.server, exposed as "web" to a only
    big_sha: str
    proxy_a: str  # a's SOCKS5 (and HTTP CONNECT) proxy, HOST:PORT
    forward_web: int  # a's forward to b:web_port


def parallel(*calls: Callable[[], Any]) -> list[Any]:
    """Run independent CLI steps side by side (each is a Python start-up); their results."""
    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        return [f.result() for f in [pool.submit(call) for call in calls]]


def crossed_trust(x: Daemon, y: Daemon) -> None:
    """Mutual trust by crossed requests (each approves the other's), fewer CLI steps than
    request + approve."""
    run(x.home, "connect", y.target)
    parallel(
        lambda: run(x.home, "trust", "request", y.agent_id),
        lambda: run(y.home, "trust", "request", x.agent_id),
    )
    for me, other in ((x, y), (y, x)):
        wait_for(
            lambda me=me, other=other: any(
                t["agent_id"] == other.agent_id for t in run_json(me.home, "trust", "list")
            ),
            f"{me.home.name} trusts {other.home.name}",
        )


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    tmp = tmp_path_factory.mktemp("tunnels")
    www = tmp / "www"
    www.mkdir()
    (www / "hello.txt").write_text("hello through the overlay\n")
    web_port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(web_port), "--bind", "127.0.0.1"],
        cwd=www,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    daemons = [Daemon(tmp / n, free_port()) for n in ("a", "b", "c", "d")]
    a, b, c, d = daemons

    def big_file() -> str:
        print(f"random file seed: {SEED}")
        blob = random.Random(SEED).randbytes(BIG)
        (www / "big.bin").write_bytes(blob)
        return hashlib.sha256(blob).hexdigest()

    try:
        big_sha, *_ = parallel(big_file, *(dm.up for dm in daemons))
        wait_for(lambda: _port_open(web_port), "http.server listening")
        parallel(
            lambda: establish_trust(a, b),
            lambda: crossed_trust(d, b),
            lambda: run(c.home, "connect", b.target),
        )
        _, proxy, fwd = parallel(
            lambda: run(b.home, "expose", str(web_port), "--name", "web", "--allow", a.agent_id),
            lambda: run_json(a.home, "proxy", "--socks5", "127.0.0.1:0"),
            lambda: run_json(a.home, "forward", "0", f"{b.agent_id}:{web_port}"),
        )
        yield Net(
            a=a,
            b=b,
            c=c,
            d=d,
            web_port=web_port,
            big_sha=big_sha,
            proxy_a=proxy["socks5"],
            forward_web=fwd["local_port"],
        )
    finally:
        parallel(*(dm.down for dm in daemons))
        web.terminate()
        web.wait(10)
        for dm in daemons:
            log = dm.home / "swarmlink.log"
            if log.exists():
                tail = "\n".join(log.read_text().splitlines()[-20:])
                print(f"--- {dm.home.name} log tail ---\n{tail}")


# ---- clients ----------------------------------------------------------------------------


def curl(*args: str, max_time: float = 60) -> subprocess.CompletedProcess[bytes]:
    """curl with a time bound; the caller says which proxy (or ``--noproxy '*'``)."""
    return subprocess.run(
        [CURL or "curl", "-sS", "--max-time", str(max_time), *args],
        capture_output=True,
        timeout=max_time + 30,
    )


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def socks_reply(proxy: str, host: str, port: int, timeout: float = 20) -> int:
    """The REP byte the proxy answers to a SOCKS5 CONNECT (a hand-written client)."""
    phost, pport = proxy.rsplit(":", 1)
    with socket.create_connection((phost, int(pport)), timeout=timeout) as s:
        name = host.encode()
        s.sendall(b"\x05\x01\x00" + b"\x05\x01\x00\x03" + bytes([len(name)]) + name)
        s.sendall(port.to_bytes(2, "big"))
        head = b""
        while len(head) < 6:
            more = s.recv(6 - len(head))
            assert more, f"proxy closed after {head!r}"
            head += more
        assert head[:3] == b"\x05\x00\x05", head
        return head[3]


def assert_refused_fast(proc: subprocess.CompletedProcess[bytes], took: float, *codes: int) -> None:
    """curl failed with one of ``codes`` (never 28, a timeout) within PROMPT seconds."""
    assert proc.returncode in codes, (proc.returncode, proc.stderr)
    assert took < PROMPT, f"refusal took {took:.1f}s: {proc.stderr!r}"


def timed_curl(*args: str) -> tuple[subprocess.CompletedProcess[bytes], float]:
    started = time.monotonic()
    proc = curl(*args, max_time=20)
    return proc, time.monotonic() - started


def forward_closes_at_once(port: int) -> None:
    """A refused forward accepts the TCP connection, then closes it without a byte."""
    with socket.create_connection(("127.0.0.1", port), timeout=PROMPT) as s:
        s.settimeout(PROMPT)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        try:
            data = s.recv(1024)
        except ConnectionResetError:
            data = b""
        assert data == b""


# ---- HTTP -------------------------------------------------------------------------------


def test_http_64mib_download_through_forward_and_socks5(net: Net, tmp_path: Path) -> None:
    b = net.b
    targets = {
        "forward": (f"http://127.0.0.1:{net.forward_web}/big.bin", "--noproxy", "*"),
        "socks5-hostname": (
            f"http://{b.agent_id}.swarm:{net.web_port}/big.bin",
            "--socks5-hostname",
            net.proxy_a,
        ),
        "socks5h": (f"http://web.{b.agent_id}.swarm/big.bin", "-x", f"socks5h://{net.proxy_a}"),
    }
    for how, (url, *proxy) in targets.items():
        out = tmp_path / f"{how}.bin"
        started = time.monotonic()
        done = curl("--fail", *proxy, "-o", str(out), url)
        took = time.monotonic() - started
        assert done.returncode == 0, (how, done.stderr)
        assert out.stat().st_size == BIG, how
        assert sha256_file(out) == net.big_sha, how
        print(f"64 MiB via {how}: {took:.2f}s ({BIG / 2**20 / took:.0f} MiB/s)")
        out.unlink()


class _Quiet(BaseHTTPRequestHandler):
    """A handler that answers with a body and logs nothing."""

    def reply(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class _Burst(_Quiet):
    """Each request waits at a barrier of IN_FLIGHT parties: the run only completes if
    IN_FLIGHT tunnels are open at once. The body is derived from the path."""

    barrier: threading.Barrier

    def do_GET(self) -> None:
        try:
            self.barrier.wait()
        except threading.BrokenBarrierError:
            self.send_error(500, "fewer than IN_FLIGHT requests arrived together")
            return
        self.reply(burst_body(self.path))


def burst_body(path: str) -> bytes:
    return path.encode() + b"\n" + hashlib.sha256(path.encode()).digest() * 256


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # IN_FLIGHT connections arrive together
    daemon_threads = True


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_http_concurrent_requests_through_forward_and_socks5(net: Net, tmp_path: Path) -> None:
    a, b = net.a, net.b
    burst = f"burst.{b.agent_id}.swarm"

    class Handler(_Burst):
        barrier = threading.Barrier(IN_FLIGHT, timeout=30)

    with http_server(Handler) as port:
        # Through a forward (by service name): a pool of IN_FLIGHT HTTP clients.
        _, fwd = parallel(
            lambda: run(b.home, "expose", str(port), "--name", "burst", "--allow", a.agent_id),
            lambda: run_json(a.home, "forward", "0", f"{b.agent_id}:burst")["local_port"],
        )

        def get(i: int) -> tuple[int, bytes]:
            conn = http.client.HTTPConnection("127.0.0.1", fwd, timeout=30)
            try:
                conn.request("GET", f"/forward/{i}")
                resp = conn.getresponse()
                return resp.status, resp.read()
            finally:
                conn.close()

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(IN_FLIGHT) as pool:
            replies = list(pool.map(get, range(TOTAL)))
        print(f"{TOTAL} requests via forward: {time.monotonic() - started:.2f}s")
        for i, (status, body) in enumerate(replies):
            assert status == 200 and body == burst_body(f"/forward/{i}"), (i, status)

        # Through SOCKS5: curl --parallel, both ways of naming the proxy.
        for how, proxy, host in (
            ("socks5-hostname", ["--socks5-hostname", net.proxy_a], burst),
            ("socks5h", ["-x", f"socks5h://{net.proxy_a}"], f"{b.agent_id}.swarm:{port}"),
        ):
            out = tmp_path / how
            out.mkdir()
            urls: list[str] = []
            for i in range(TOTAL):
                urls += [f"http://{host}/{how}/{i}", "-o", str(out / str(i))]
            started = time.monotonic()
            done = curl(
                "--fail",
                "--parallel",
                "--parallel-immediate",
                "--parallel-max",
                str(IN_FLIGHT),
                *proxy,
                *urls,
            )
            print(f"{TOTAL} requests via {how}: {time.monotonic() - started:.2f}s")
            assert done.returncode == 0, (how, done.stderr)
            for i in range(TOTAL):
                assert (out / str(i)).read_bytes() == burst_body(f"/{how}/{i}"), (how, i)


# ---- gRPC -------------------------------------------------------------------------------


def test_grpc_unary_and_streams_through_forward_and_proxy(net: Net) -> None:
    grpc = pytest.importorskip("grpc")
    a, b = net.a, net.b

    def chat(requests: Iterator[bytes], ctx: Any) -> Iterator[bytes]:
        for m in requests:
            yield b"echo:" + m.upper()

    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Tunnel",
                {
                    "Ping": grpc.unary_unary_rpc_method_handler(lambda r, ctx: b"pong:" + r),
                    "Many": grpc.unary_stream_rpc_method_handler(
                        lambda r, ctx: (r + str(i).encode() for i in range(100))
                    ),
                    "Chat": grpc.stream_stream_rpc_method_handler(chat),
                },
            ),
        )
    )
    gport = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        _, fwd = parallel(
            lambda: run(b.home, "expose", str(gport), "--name", "grpc", "--allow", a.agent_id),
            lambda: run_json(a.home, "forward", "0", f"{b.agent_id}:{gport}")["local_port"],
        )
        # grpc-core has no SOCKS5 client: through the proxy it speaks HTTP CONNECT, which
        # the same proxy port answers (grpc.http_proxy), with the overlay name unresolved.
        channels = {
            "forward": (f"127.0.0.1:{fwd}", [("grpc.enable_http_proxy", 0)]),
            "http-connect": (
                f"{b.agent_id}.swarm:{gport}",
                [("grpc.http_proxy", f"http://{net.proxy_a}")],
            ),
        }
        for how, (target, options) in channels.items():
            with grpc.insecure_channel(target, options=options) as channel:
                _check_grpc_calls(channel, how)
    finally:
        server.stop(None)


def _check_grpc_calls(channel: Any, how: str) -> None:
    ping = channel.unary_unary("/test.Tunnel/Ping")
    assert ping(b"hi", timeout=15) == b"pong:hi", how
    big = random.Random(SEED).randbytes(1024 * 1024)
    assert ping(big, timeout=30) == b"pong:" + big, how

    many = channel.unary_stream("/test.Tunnel/Many")
    assert list(many(b"n", timeout=15)) == [b"n" + str(i).encode() for i in range(100)], how

    chat = channel.stream_stream("/test.Tunnel/Chat")
    sent = [f"bulk-{i}-{how}".encode() for i in range(500)]
    assert list(chat(iter(sent), timeout=30)) == [b"echo:" + m.upper() for m in sent], how

    # Ping-pong: each request is sent only after the previous reply came back.
    outbox: queue.Queue[bytes | None] = queue.Queue()

    def requests() -> Iterator[bytes]:
        while (m := outbox.get()) is not None:
            yield m

    replies = chat(requests(), timeout=30)
    try:
        for i in range(50):
            outbox.put(f"turn-{i}".encode())
            assert next(replies) == f"echo:TURN-{i}".encode(), how
    finally:
        outbox.put(None)
    assert list(replies) == [], how


# ---- SSH --------------------------------------------------------------------------------


@contextmanager
def sshd(d: Path) -> Iterator[tuple[int, list[str]]]:
    """An sshd of our own on 127.0.0.1 (see ssh_server): its port and ssh options."""
    port = free_port()
    with ssh_server.sshd(d, port, ready=lambda: wait_for(lambda: _port_open(port), "sshd")) as o:
        yield port, o


def test_ssh_command_via_forward_and_sftp_via_socks5(net: Net, tmp_path: Path) -> None:
    a, b = net.a, net.b
    with sshd(tmp_path / "ssh") as (port, opts):
        _, fwd = parallel(
            lambda: run(b.home, "expose", str(port), "--name", "ssh", "--allow", a.agent_id),
            lambda: run_json(a.home, "forward", "0", f"{b.agent_id}:ssh")["local_port"],
        )
        # A command through the forward, with 4 MiB on stdin hashed at the far end.
        data = random.Random(SEED + 1).randbytes(4 * 1024 * 1024)
        out = subprocess.run(
            ["ssh", "-p", str(fwd), *opts, "root@127.0.0.1", "sha256sum"],
            input=data,
            capture_output=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()

        # sftp batch through the SOCKS5 proxy, by agent ID (OpenBSD netcat).
        nc = shutil.which("nc")
        if (
            nc is None
            or "-X" not in subprocess.run([nc, "-h"], capture_output=True, text=True).stderr
        ):
            pytest.skip("needs OpenBSD netcat (nc -X 5) as ssh's ProxyCommand")
        payload = tmp_path / "payload.bin"
        payload.write_bytes(random.Random(SEED + 2).randbytes(8 * 1024 * 1024 + 7))
        remote = tmp_path / "remote"
        remote.mkdir()
        back = tmp_path / "back.bin"
        batch = tmp_path / "batch"
        batch.write_text(
            f"put {payload} {remote / 'up.bin'}\nls -l {remote}\nget {remote / 'up.bin'} {back}\n"
        )
        out = subprocess.run(
            [
                "sftp",
                "-b",
                str(batch),
                "-P",
                str(port),
                *opts,
                "-o",
                f"ProxyCommand={nc} -X 5 -x {net.proxy_a} %h %p",
                f"root@{b.agent_id}.swarm",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert "up.bin" in out.stdout
        assert (remote / "up.bin").read_bytes() == payload.read_bytes()
        assert back.read_bytes() == payload.read_bytes()


# ---- refusals ---------------------------------------------------------------------------


class _Open(_Quiet):
    def do_GET(self) -> None:
        self.reply(b"open to trusted agents\n")


def test_refusals_are_prompt_and_the_node_keeps_serving(net: Net) -> None:
    a, b, c, d = net.a, net.b, net.c, net.d
    web = net.web_port
    unexposed = free_port()
    with http_server(_Open) as open_port:
        # Refused: (agent, port, SOCKS5 reply code, also through a forward). Every case
        # goes through the SOCKS5 proxy; forwards cost a CLI call each, so one per kind.
        refusals = [
            (c, web, NOT_ALLOWED, True),  # c is not trusted by b
            (c, open_port, NOT_ALLOWED, True),
            (c, unexposed, NOT_ALLOWED, False),
            (d, web, NOT_ALLOWED, True),  # d is trusted but not on the allow list
            (d, unexposed, CONNECTION_REFUSED, False),
            (a, unexposed, CONNECTION_REFUSED, True),  # nothing exposed on that port
        ]

        def forward(agent: Daemon, remote: object) -> int:
            return int(run_json(agent.home, "forward", "0", f"{b.agent_id}:{remote}")["local_port"])

        # The CLI steps side by side; a forward listens whatever b exposes.
        _, proxy_c, proxy_d, open_fwd, *forwards = parallel(
            lambda: run(b.home, "expose", str(open_port), "--name", "open"),  # every trusted
            lambda: run_json(c.home, "proxy", "--socks5", "127.0.0.1:0")["socks5"],
            lambda: run_json(d.home, "proxy", "--socks5", "127.0.0.1:0")["socks5"],
            lambda: forward(d, "open"),
            *(lambda ag=ag, port=port: forward(ag, port) for ag, port, _, fw in refusals if fw),
        )
        refused_fwds = iter(forwards)
        proxies = {"a": net.proxy_a, "c": proxy_c, "d": proxy_d}
        # What each agent is told b exposes to it.
        a_sees, d_sees, c_sees = parallel(
            lambda: run_json(a.home, "services", b.agent_id)["services"],
            lambda: run_json(d.home, "services", b.agent_id)["services"],
            lambda: run(c.home, "services", b.agent_id, check=False),
        )
        assert {"web", "open"} <= {s["name"] for s in a_sees}
        assert [s["name"] for s in d_sees] == ["open"]
        assert c_sees.returncode == 1 and "Traceback" not in c_sees.stderr

        # d (trusted, not on web's allow list) reaches the trusted-only port.
        ok = curl("--noproxy", "*", f"http://127.0.0.1:{open_fwd}/", max_time=20)
        assert ok.stdout == b"open to trusted agents\n", ok.stderr
        ok = curl("-x", f"socks5h://{proxy_d}", f"http://open.{b.agent_id}.swarm/")
        assert ok.stdout == b"open to trusted agents\n", ok.stderr

        for agent, port, code, via_forward in refusals:
            what = (agent.home.name, port)
            proxy = proxies[agent.home.name]
            host = f"{b.agent_id}.swarm"
            assert socks_reply(proxy, host, port) == code, what
            for how in (["--socks5-hostname", proxy], ["-x", f"socks5h://{proxy}"]):
                proc, took = timed_curl(*how, f"http://{host}:{port}/hello.txt")
                assert_refused_fast(proc, took, 97)  # CURLE_PROXY
                assert f"({code})".encode() in proc.stderr, proc.stderr
            if not via_forward:
                continue
            # The same port through a forward: accepted, then closed without a byte.
            fwd = next(refused_fwds)
            proc, took = timed_curl("--noproxy", "*", f"http://127.0.0.1:{fwd}/hello.txt")
            assert_refused_fast(proc, took, 52, 56)  # empty reply / connection reset
            started = time.monotonic()
            forward_closes_at_once(fwd)
            assert time.monotonic() - started < PROMPT, what
        # By service name, too: web is not exposed to d, nor anything to c.
        for proxy in (proxy_c, proxy_d):
            assert socks_reply(proxy, f"web.{b.agent_id}.swarm", 80) == NOT_ALLOWED

        # The HTTP CONNECT face of the proxy: 403 for a refusal.
        proc, took = timed_curl(
            "-p", "-x", f"http://{proxy_d}", f"http://{b.agent_id}.swarm:{web}/"
        )
        assert_refused_fast(proc, took, 56)
        assert b"403" in proc.stderr, proc.stderr

    # After all that, b still serves a: forward, SOCKS5 by name and by virtual address.
    ok = curl("--noproxy", "*", f"http://127.0.0.1:{net.forward_web}/hello.txt", max_time=20)
    assert ok.stdout == b"hello through the overlay\n", ok.stderr
    for url in (
        f"http://web.{b.agent_id}.swarm/hello.txt",
        f"http://[{virtual_address(b.agent_id)}]:{web}/hello.txt",
    ):
        ok = curl("-x", f"socks5h://{net.proxy_a}", url, max_time=20)
        assert ok.stdout == b"hello through the overlay\n", (url, ok.stderr)
    assert run_json(b.home, "status")["agent_id"] == b.agent_id
    assert "1 received" in run(a.home, "ping", b.agent_id, "-c", "1").stdout
