"""End to end: real daemons started and driven through the real CLI (``python -m swarmlink``).

Covers the whole user story of the core node: identities, connect, trust, messages,
files, tunnels carrying HTTP / gRPC / SSH unchanged, persistence across ``kill -9``, and
bad input on every door (P2P port, control socket) while the node keeps serving.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import ssh_server
from helpers import CLI, run, run_json, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def no_proxy_get(url: str) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=15) as resp:
        return bytes(resp.read())


class Daemon:
    def __init__(self, home: Path, port: int) -> None:
        self.home, self.port = home, port

    def up(self) -> None:
        # Never mDNS in tests: no multicast from the test machine's network.
        run(
            self.home,
            "up",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--log-level",
            "debug",
            "--no-mdns",
        )
        status = run_json(self.home, "status")
        self.agent_id: str = status["agent_id"]
        self.pid: int = status["pid"]

    @property
    def target(self) -> str:
        return f"{self.agent_id}@127.0.0.1:{self.port}"

    def kill9(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        wait_for(lambda: not Path(f"/proc/{self.pid}").exists() or _zombie(self.pid), "exit")

    def down(self) -> None:
        if (self.home / "control.sock").exists():
            run(self.home, "down", check=False)


def _zombie(pid: int) -> bool:
    try:
        return "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Daemon, Daemon]]:
    a = Daemon(tmp_path / "a", free_port())
    b = Daemon(tmp_path / "b", free_port())
    try:
        a.up()
        b.up()
        yield a, b
    finally:
        for d in (a, b):
            d.down()
        for d in (a, b):
            log = d.home / "swarmlink.log"
            if log.exists():
                print(
                    f"--- {d.home.name} log tail ---\n"
                    + "\n".join(log.read_text().splitlines()[-30:])
                )


def establish_trust(a: Daemon, b: Daemon) -> None:
    run(a.home, "connect", b.target)
    out = run(a.home, "trust", "request", b.agent_id, "--reason", "e2e test").stdout
    assert "request" in out.lower() or "trust" in out.lower()
    pending = wait_for(lambda: run_json(b.home, "trust", "pending"), "pending request")
    assert any(p["agent_id"] == a.agent_id and p["reason"] == "e2e test" for p in pending)
    run(b.home, "trust", "approve", a.agent_id)
    wait_for(
        lambda: any(t["agent_id"] == b.agent_id for t in run_json(a.home, "trust", "list")),
        "trust at a",
    )


def test_identity_status_and_side_by_side_nodes(pair: tuple[Daemon, Daemon]) -> None:
    a, b = pair
    ident = run_json(a.home, "id")
    assert ident["agent_id"] == a.agent_id and len(a.agent_id) == 52
    assert ident["virtual_address"].startswith("fd5a:7761:726d:")
    status = run_json(a.home, "status")
    assert status["listen"] == [f"127.0.0.1:{a.port}"]
    assert a.agent_id != b.agent_id
    assert oct((a.home / "control.sock").stat().st_mode & 0o777) == "0o600"
    assert oct((a.home / "identity.key").stat().st_mode & 0o777) == "0o600"
    human = run(a.home, "status").stdout
    assert a.agent_id in human
    # A second `up` in the same home refuses clearly.
    again = run(a.home, "up", "--listen", "127.0.0.1:0", "--no-mdns", check=False)
    assert again.returncode == 1 and "already running" in (again.stderr + again.stdout)


def test_connect_refuses_wrong_key(pair: tuple[Daemon, Daemon]) -> None:
    a, b = pair
    # a's own ID at b's address: b cannot prove it holds a's key.
    wrong = f"{a.agent_id}@127.0.0.1:{b.port}"
    proc = run(a.home, "connect", wrong, check=False)
    assert proc.returncode == 1
    assert "expected agent" in proc.stderr and "Traceback" not in proc.stderr
    run(a.home, "connect", b.target)
    peers = run_json(a.home, "peers")
    assert [p["agent_id"] for p in peers if p["connected"]] == [b.agent_id]


def test_trust_messages_files_and_restart_after_kill9(
    pair: tuple[Daemon, Daemon], tmp_path: Path
) -> None:
    a, b = pair
    # Untrusted: messages are refused with a clear error.
    run(a.home, "connect", b.target)
    refused = run(a.home, "send", b.agent_id, "too early", check=False)
    assert refused.returncode == 1 and "trust" in refused.stderr
    establish_trust(a, b)

    for text in ("first", "second", "third"):
        run(a.home, "send", b.agent_id, text)
    inbox = wait_for(
        lambda: len(run_json(b.home, "inbox")) == 3 and run_json(b.home, "inbox"), "inbox"
    )
    assert [m["text"] for m in inbox] == ["first", "second", "third"]

    payload = os.urandom(5 * 1024 * 1024 + 3)
    src = tmp_path / "payload.bin"
    src.write_bytes(payload)
    sent = run(a.home, "send-file", b.agent_id, str(src), "--json")
    receipt = json.loads(sent.stdout)
    assert receipt["sha256"] == hashlib.sha256(payload).hexdigest()
    files = run_json(b.home, "files")
    assert Path(files[0]["path"]).read_bytes() == payload

    ping = run(a.home, "ping", b.agent_id, "-c", "2", "-i", "0.05")
    assert "2 received" in ping.stdout

    # kill -9 b, queue messages at a meanwhile, restart b: nothing acknowledged is lost.
    b.kill9()
    run(a.home, "send", b.agent_id, "while you were down")
    (b.home / "control.sock").unlink(missing_ok=True)
    b.up()
    assert any(t["agent_id"] == a.agent_id for t in run_json(b.home, "trust", "list"))
    run(a.home, "connect", b.target)
    inbox = wait_for(
        lambda: len(run_json(b.home, "inbox")) == 4 and run_json(b.home, "inbox"), "redelivery"
    )
    assert [m["text"] for m in inbox][-1] == "while you were down"

    run(b.home, "trust", "revoke", a.agent_id)
    wait_for(lambda: not run_json(a.home, "trust", "list"), "revocation reaches a")


def test_sdk_attach_example_drives_two_daemons(pair: tuple[Daemon, Daemon]) -> None:
    a, b = pair
    establish_trust(a, b)
    example = Path(__file__).resolve().parent.parent / "examples" / "sdk_attach.py"
    out = subprocess.run(
        [sys.executable, str(example), str(a.home), str(b.home)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "reply: HELLO THROUGH TWO DAEMONS" in out.stdout
    assert "message delivered: True" in out.stdout
    assert "hello from the SDK" in out.stdout
    assert "B advertises: ['example.upper']" in out.stdout
    assert run_json(b.home, "capability", "list") == []


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"path": self.path, "agent": "b"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_tunnels_carry_http_grpc_and_ssh(pair: tuple[Daemon, Daemon], tmp_path: Path) -> None:
    a, b = pair
    establish_trust(a, b)

    http = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        hport = http.server_address[1]
        run(b.home, "expose", str(hport), "--name", "api", "--allow", a.agent_id)
        assert [e["port"] for e in run_json(b.home, "exposures")] == [hport]
        fwd = json.loads(run(a.home, "forward", "0", f"{b.agent_id}:{hport}", "--json").stdout)
        body = json.loads(no_proxy_get(f"http://127.0.0.1:{fwd['local_port']}/hello?x=1"))
        assert body == {"path": "/hello?x=1", "agent": "b"}
    finally:
        http.shutdown()
        http.server_close()

    _check_grpc(a, b)
    _check_ssh(a, b, tmp_path)


def _check_grpc(a: Daemon, b: Daemon) -> None:
    grpc = pytest.importorskip("grpc")
    from concurrent import futures

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.unary_unary_rpc_method_handler(lambda req, ctx: b"pong:" + req)
    stream_handler = grpc.unary_stream_rpc_method_handler(
        lambda req, ctx: (req * 1000 for _ in range(50))
    )
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Echo", {"Ping": handler, "Many": stream_handler}
            ),
        )
    )
    gport = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        run(b.home, "expose", str(gport))
        fwd = json.loads(run(a.home, "forward", "0", f"{b.agent_id}:{gport}", "--json").stdout)
        with grpc.insecure_channel(
            f"127.0.0.1:{fwd['local_port']}", options=[("grpc.enable_http_proxy", 0)]
        ) as channel:
            ping = channel.unary_unary("/test.Echo/Ping")
            assert ping(b"hi", timeout=15) == b"pong:hi"
            many = channel.unary_stream("/test.Echo/Many")
            chunks = list(many(b"z", timeout=15))
            assert len(chunks) == 50 and all(c == b"z" * 1000 for c in chunks)
        # Through the daemon's proxy too: gRPC speaks HTTP CONNECT to it, by agent ID.
        proxy = json.loads(run(a.home, "proxy", "--socks5", "127.0.0.1:0", "--json").stdout)
        with grpc.insecure_channel(
            f"{b.agent_id}.swarm:{gport}",
            options=[("grpc.http_proxy", f"http://{proxy['socks5']}")],
        ) as channel:
            ping = channel.unary_unary("/test.Echo/Ping")
            assert ping(b"proxied", timeout=15) == b"pong:proxied"
            many = channel.unary_stream("/test.Echo/Many")
            assert len(list(many(b"y", timeout=15))) == 50
    finally:
        server.stop(None)


def _check_ssh(a: Daemon, b: Daemon, tmp_path: Path) -> None:
    ssh = shutil.which("ssh") or "ssh"
    port = free_port()
    ready = lambda: wait_for(lambda: _port_open(port), "sshd listening")  # noqa: E731
    with ssh_server.sshd(tmp_path / "ssh", port, ready=ready) as opts:
        d = tmp_path / "ssh"
        run(b.home, "expose", str(port), "--name", "ssh")
        fwd = json.loads(run(a.home, "forward", "0", f"{b.agent_id}:{port}", "--json").stdout)
        out = subprocess.run(
            [
                ssh,
                "-p",
                str(fwd["local_port"]),
                *opts,
                "root@127.0.0.1",
                "echo",
                "through-the-overlay",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "through-the-overlay"
        # Copy a file with scp through the forward.
        payload = d / "payload.bin"
        payload.write_bytes(os.urandom(3 * 1024 * 1024))
        copied = d / "copied.bin"
        scp = shutil.which("scp") or "scp"
        out = subprocess.run(
            [scp, "-P", str(fwd["local_port"]), *opts, str(payload), f"root@127.0.0.1:{copied}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert copied.read_bytes() == payload.read_bytes()
        # And ssh through the SOCKS5 proxy, by agent ID (OpenBSD netcat as ProxyCommand).
        nc = shutil.which("nc")
        if (
            nc is not None
            and "-X" in subprocess.run([nc, "-h"], capture_output=True, text=True).stderr
        ):
            proxy = json.loads(run(a.home, "proxy", "--socks5", "127.0.0.1:0", "--json").stdout)
            out = subprocess.run(
                [
                    ssh,
                    "-p",
                    str(port),
                    *opts,
                    "-o",
                    f"ProxyCommand={nc} -X 5 -x {proxy['socks5']} %h %p",
                    f"root@{b.agent_id}.swarm",
                    "echo",
                    "through-socks5",
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert out.returncode == 0, out.stderr
            assert out.stdout.strip() == "through-socks5"


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_bad_input_everywhere_node_keeps_serving(pair: tuple[Daemon, Daemon]) -> None:
    a, b = pair
    # Random bytes on the P2P port, then a half-open TLS client that says nothing.
    for garbage in (
        os.urandom(4096),
        b"GET / HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\xff\xff" + os.urandom(64),
    ):
        with socket.create_connection(("127.0.0.1", b.port), timeout=5) as s:
            s.sendall(garbage)
            s.settimeout(5)
            with contextlib.suppress(OSError):
                s.recv(1024)
    # Bad requests on the control socket: bad JSON, wrong types, unknown route.
    for request in (
        b"POST /v1/connect HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 7\r\n\r\n{nope!}",
        b'POST /v1/ping HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\n{"agent_id": 12}\n',
        b"GET /v1/nothing-here HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x00\x01garbage\r\n\r\n",
    ):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(b.home / "control.sock"))
            s.sendall(request)
            reply = s.recv(65536)
        assert reply.startswith(b"HTTP/1.1 4"), reply[:80]
        if b"\r\n\r\n" in reply and reply.split(b"\r\n\r\n", 1)[1].startswith(b"{"):
            assert b'"error"' in reply
    # Still serving everyone: a connects and pings b.
    run(a.home, "connect", b.target)
    assert "1 received" in run(a.home, "ping", b.agent_id, "-c", "1").stdout
    assert run_json(b.home, "status")["agent_id"] == b.agent_id


def test_not_running_is_a_clear_error(tmp_path: Path) -> None:
    proc = run(tmp_path / "nobody", "status", check=False)
    assert proc.returncode == 1
    assert "swarmlink up" in proc.stderr and "Traceback" not in proc.stderr


def test_gossip_members_publish_subscribe_and_state_through_the_cli(
    pair: tuple[Daemon, Daemon], tmp_path: Path
) -> None:
    a, b = pair
    establish_trust(a, b)

    def b_alive_at_a() -> bool:
        members = run_json(a.home, "members")["members"]
        return any(m["agent_id"] == b.agent_id and m["state"] == "alive" for m in members)

    wait_for(b_alive_at_a, "b alive in a's membership")
    table = run(a.home, "members").stdout
    assert b.agent_id in table and "alive" in table and "(this node)" in table

    out = tmp_path / "sub.out"
    with open(out, "wb") as sink:
        sub = subprocess.Popen(
            [*CLI, "--home", str(b.home), "subscribe", "news", "--count", "1", "--json"],
            stdout=sink,
            stderr=subprocess.DEVNULL,
        )
    try:
        wait_for(lambda: "news" in run_json(b.home, "members")["gossip"]["topics"], "subscribed")
        # A publication goes to the peers a knows subscribe; retry until b's subscription
        # announcement has reached a (the first one sent to a peer is the one b prints).
        wait_for(
            lambda: run_json(a.home, "publish", "news", "hello from a")["peers"] >= 1,
            "a publication that reached b",
        )
        assert sub.wait(30) == 0
    finally:
        if sub.poll() is None:
            sub.kill()
    msg = json.loads(out.read_text().splitlines()[0])
    assert msg["author"] == a.agent_id and msg["text"] == "hello from a"

    run(a.home, "state", "set", "team", "leader", '"a"')
    run(b.home, "state", "add", "team", "skills", "search")
    run(b.home, "state", "incr", "team", "tasks", "3")
    wait_for(
        lambda: (
            run_json(a.home, "state", "get", "team")
            == {"leader": "a", "skills": ["search"], "tasks": 3}
        ),
        "state replicated both ways",
    )
    assert json.loads(run(b.home, "state", "get", "team", "leader").stdout) == "a"
    assert "team" in run(a.home, "state", "list").stdout
    bad = run(a.home, "state", "set", "bad name!", "k", "1", check=False)
    assert bad.returncode == 1 and "state names" in bad.stderr
    reserved = run(a.home, "publish", "$state/team", "x", check=False)
    assert reserved.returncode == 1 and "reserved" in reserved.stderr
