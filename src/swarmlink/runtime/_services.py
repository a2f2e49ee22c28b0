"""Built-in services over streams: messages, files, TCP tunnels, bench.

Every service speaks length-prefixed CBOR records (``Stream.read_record``) for its
control data; bulk bytes (file contents, tunnel traffic) go raw on the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    ErrorCode,
    InvalidArgument,
    NetworkError,
    NotFound,
    ProtocolViolation,
    RemoteError,
    StateError,
    StreamRefused,
    SwarmlinkError,
)
from ..trust import TRUST_PROTOCOL
from . import events as ev
from ._pipe import pipe
from ._stream import Stream
from .model import BenchResult, Exposure, FileReceipt, Forward

if TYPE_CHECKING:
    from .node import Node

__all__ = [
    "BENCH_PROTOCOL",
    "FILE_PROTOCOL",
    "MSG_PROTOCOL",
    "TUNNEL_PROTOCOL",
    "Services",
]

log = logging.getLogger("swarmlink.services")

MSG_PROTOCOL = "/swarmlink/msg/1"
FILE_PROTOCOL = "/swarmlink/file/1"
TUNNEL_PROTOCOL = "/swarmlink/tunnel/1"
BENCH_PROTOCOL = "/swarmlink/bench/1"
#: What an agent exposes to the asking agent (trusted peers only): ``{}`` →
#: ``{"services": [{"port", "name"}…]}``.
SERVICES_PROTOCOL = "/swarmlink/services/1"

#: Messages pushed per delivery stream before a new one is opened.
MSG_BATCH = 512
#: Chunk size for file contents and tunnel reads (bytes).
CHUNK = 256 * 1024
#: Longest file name accepted from a peer (UTF-8 characters).
MAX_FILE_NAME = 255
#: Largest bench transfer a peer may ask us to sink (bytes).
MAX_BENCH_BYTES = 8 * 1024**3
#: Seconds to wait for a service reply record.
REPLY_TIMEOUT = 30.0
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def _reply_ok(reply: object) -> dict[str, Any]:
    if not isinstance(reply, dict):
        raise ProtocolViolation(f"expected a reply map, got {type(reply).__name__}")
    return reply


def _check_port(port: int, what: str = "port") -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidArgument(f"{what} must be 1-65535, not {port!r}")
    return port


def _free_bytes(directory: Path) -> int:
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def safe_file_name(name: str) -> str:
    """A peer-supplied file name reduced to a harmless base name."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip().lstrip(".")
    return base[:MAX_FILE_NAME] or "file"


class Services:
    """The node's built-in protocols and the TCP forward listeners."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._forward_servers: dict[int, asyncio.Server] = {}
        self.socks_proxies: list[Any] = []  # _socks.Socks5Proxy

    async def start(self) -> None:
        node = self.node
        node.set_handler(TRUST_PROTOCOL, node._trustsvc.serve)
        node.set_handler(MSG_PROTOCOL, self._serve_messages)
        node.set_handler(FILE_PROTOCOL, self._serve_file)
        node.set_handler(TUNNEL_PROTOCOL, self._serve_tunnel)
        node.set_handler(BENCH_PROTOCOL, self._serve_bench)
        node.set_handler(SERVICES_PROTOCOL, self._serve_services)
        for row in node.db.query(
            "SELECT id, bind_host, local_port, agent_id, remote_port, remote_name FROM forwards"
        ):
            try:
                server = await self._listen_forward(row[1], row[2], row[3], row[5] or row[4])
                self._forward_servers[row[0]] = server
            except NetworkError as exc:
                log.warning("could not restore forward", extra={"id": row[0], "error": str(exc)})
        if node.config.socks5 is not None:
            await self.start_socks5(*node.config.socks5)

    async def stop(self) -> None:
        for proxy in self.socks_proxies:
            proxy.close()
        for server in self._forward_servers.values():
            server.close()
        self._forward_servers.clear()

    # ---- messages -------------------------------------------------------------------------

    async def deliver_messages(self, peer: str, *, dial: bool = False) -> None:
        """Push undelivered outbox messages to ``peer`` in order (at-least-once; the
        receiver drops duplicates by (sender, seq))."""
        node = self.node
        async with node._lock("msg", peer):
            while True:
                rows = node.db.query(
                    "SELECT seq, created, body FROM outbox WHERE recipient = ? AND delivered "
                    "IS NULL ORDER BY seq LIMIT ?",
                    (peer, MSG_BATCH),
                )
                if not rows or not node.trust.is_trusted(peer):
                    return
                conn = node.connected(peer)
                if conn is None:
                    if not dial:
                        return
                    try:
                        conn = await node.connection(peer)
                    except SwarmlinkError as exc:
                        log.info("messages queued", extra={"peer": peer, "why": str(exc)})
                        return
                stream = conn.open_stream(MSG_PROTOCOL)
                try:
                    for seq, created, body in rows:
                        stream.write_record({"seq": seq, "ts": int(created * 1000), "text": body})
                    stream.write_eof()
                    for seq, _, _ in rows:
                        reply = _reply_ok(
                            await asyncio.wait_for(stream.read_record(), REPLY_TIMEOUT)
                        )
                        if reply.get("ack") != seq:
                            raise ProtocolViolation(f"expected ack for {seq}, got {reply!r}")
                        node.db.execute(
                            "UPDATE outbox SET delivered = ? WHERE recipient = ? AND seq = ?",
                            (time.time(), peer, seq),
                        )
                except (RemoteError, TimeoutError) as exc:
                    log.info(
                        "message delivery interrupted", extra={"peer": peer, "error": str(exc)}
                    )
                    stream.reset()
                    return
                if len(rows) < MSG_BATCH:
                    return

    async def _serve_messages(self, stream: Stream) -> None:
        node = self.node
        limit = node.config.max_message_size
        while not await stream.at_end():
            record = await stream.read_record(max_size=limit + 256)
            if not isinstance(record, dict):
                raise ProtocolViolation("message record must be a map", ErrorCode.MALFORMED)
            seq, ts, text = record.get("seq"), record.get("ts"), record.get("text")
            if not (isinstance(seq, int) and seq >= 1 and isinstance(ts, int) and ts >= 0):
                raise ProtocolViolation("message record has a bad seq or ts", ErrorCode.MALFORMED)
            if not isinstance(text, str) or len(text.encode("utf-8")) > limit:
                raise ProtocolViolation("message text missing or too long", ErrorCode.MALFORMED)
            now = time.time()
            cur = node.db.execute(
                "INSERT OR IGNORE INTO inbox (sender, seq, sent_at, received_at, body) "
                "VALUES (?, ?, ?, ?, ?)",
                (stream.peer, seq, ts / 1000, now, text),
            )
            if cur.rowcount:
                node.publish(
                    ev.MessageReceived(
                        id=int(cur.lastrowid or 0),
                        sender=stream.peer,
                        seq=seq,
                        text=text,
                        sent_at=ts / 1000,
                        received_at=now,
                    )
                )
            stream.write_record({"ack": seq})
        stream.write_eof()

    # ---- files ------------------------------------------------------------------------------

    async def send_file(
        self, peer: str, path: Path, on_progress: Callable[[int, int], None] | None
    ) -> FileReceipt:
        node = self.node
        path = path.expanduser()
        if not path.is_file():
            raise InvalidArgument(f"{path} is not a readable file")
        if not node.trust.is_trusted(peer):
            raise StateError(f"no trust with {peer}; `swarmlink trust request {peer}` first")
        size = path.stat().st_size
        started = time.monotonic()
        stream = await node.open_stream(peer, FILE_PROTOCOL)
        try:
            stream.write_record({"name": path.name, "size": size})
            reply = _reply_ok(await asyncio.wait_for(stream.read_record(), REPLY_TIMEOUT))
            if reply.get("ok") is not True:
                raise StreamRefused(f"{peer[:12]} refused the file: {reply.get('error')}")
            digest = hashlib.sha256()
            sent = 0
            with path.open("rb") as f:
                while sent < size:
                    chunk = f.read(min(CHUNK, size - sent))
                    if not chunk:
                        raise StateError(f"{path} shrank while it was being sent")
                    digest.update(chunk)
                    stream.write(chunk)
                    sent += len(chunk)
                    await stream.drain()
                    if on_progress is not None:
                        on_progress(sent, size)
            stream.write_record({"sha256": digest.hexdigest()})
            stream.write_eof()
            result = _reply_ok(await asyncio.wait_for(stream.read_record(), REPLY_TIMEOUT))
        except BaseException:
            stream.reset()
            raise
        if result.get("ok") is not True:
            raise ProtocolViolation(f"{peer[:12]} rejected the file: {result.get('error')}")
        return FileReceipt(
            recipient=peer,
            name=path.name,
            size=size,
            sha256=digest.hexdigest(),
            seconds=time.monotonic() - started,
        )

    async def _serve_file(self, stream: Stream) -> None:
        node = self.node
        header = await stream.read_record()
        if not isinstance(header, dict):
            raise ProtocolViolation("file header must be a map", ErrorCode.MALFORMED)
        name, size = header.get("name"), header.get("size")
        if not isinstance(name, str) or not 0 < len(name) <= MAX_FILE_NAME * 4:
            raise ProtocolViolation("file header has a bad name", ErrorCode.MALFORMED)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ProtocolViolation("file header has a bad size", ErrorCode.MALFORMED)
        directory = node.home / "files"
        directory.mkdir(mode=0o700, exist_ok=True)
        error = None
        if size > node.config.max_file_size:
            error = f"file of {size} bytes exceeds the limit of {node.config.max_file_size}"
        elif _free_bytes(directory) < size + 64 * 1024 * 1024:
            error = "not enough disk space"
        if error is not None:
            stream.write_record({"ok": False, "error": error})
            stream.write_eof()
            return
        stream.write_record({"ok": True})
        safe = safe_file_name(name)
        tmp = directory / f".{safe}.{secrets.token_hex(4)}.partial"
        digest = hashlib.sha256()
        try:
            with tmp.open("wb") as f:
                remaining = size
                while remaining:
                    data = await stream.read(min(remaining, 4 * CHUNK))
                    if not data:
                        raise ProtocolViolation(
                            f"file ended after {size - remaining} of {size} bytes",
                            ErrorCode.MALFORMED,
                        )
                    f.write(data)
                    digest.update(data)
                    remaining -= len(data)
                f.flush()
                os.fsync(f.fileno())
            trailer = await stream.read_record()
            actual = digest.hexdigest()
            if not isinstance(trailer, dict) or trailer.get("sha256") != actual:
                stream.write_record({"ok": False, "error": f"checksum mismatch (got {actual})"})
                stream.write_eof()
                return
            final = self._unique_path(directory, safe)
            os.replace(tmp, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        node.db.execute(
            "INSERT INTO files (sender, name, path, size, sha256, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (stream.peer, safe, str(final), size, actual, time.time()),
        )
        node.publish(
            ev.FileReceived(
                sender=stream.peer, name=safe, path=str(final), size=size, sha256=actual
            )
        )
        stream.write_record({"ok": True, "sha256": actual})
        stream.write_eof()

    @staticmethod
    def _unique_path(directory: Path, name: str) -> Path:
        candidate = directory / name
        stem, dot, suffix = name.partition(".")
        n = 1
        while candidate.exists():
            candidate = directory / f"{stem}-{n}{dot}{suffix}"
            n += 1
        return candidate

    # ---- exposures and tunnels --------------------------------------------------------------

    def expose(self, port: int, *, name: str | None, allow: list[str]) -> Exposure:
        _check_port(port)
        if name is not None and not _NAME_RE.match(name):
            raise InvalidArgument(f"bad service name {name!r}: use a-z, 0-9 and '-'")
        self.node.db.execute(
            "INSERT OR REPLACE INTO exposures (port, name, allow, created) VALUES (?, ?, ?, ?)",
            (port, name, json.dumps(sorted(set(allow))), time.time()),
        )
        return Exposure(port=port, name=name, allow=tuple(sorted(set(allow))))

    def unexpose(self, port: int) -> None:
        cur = self.node.db.execute("DELETE FROM exposures WHERE port = ?", (port,))
        if not cur.rowcount:
            raise NotFound(f"port {port} is not exposed")

    def exposures(self) -> list[Exposure]:
        return [
            Exposure(port=r[0], name=r[1], allow=tuple(json.loads(r[2])))
            for r in self.node.db.query("SELECT port, name, allow FROM exposures ORDER BY port")
        ]

    def _find_exposure(self, target: object) -> tuple[int, list[str]] | None:
        if isinstance(target, int):
            row = self.node.db.query_one(
                "SELECT port, allow FROM exposures WHERE port = ?", (target,)
            )
        elif isinstance(target, str):
            row = self.node.db.query_one(
                "SELECT port, allow FROM exposures WHERE name = ?", (target,)
            )
        else:
            return None
        return None if row is None else (int(row[0]), list(json.loads(row[1])))

    async def _serve_tunnel(self, stream: Stream) -> None:
        header = await stream.read_record()
        target = header.get("port") if isinstance(header, dict) else None
        found = self._find_exposure(target)
        error, code = None, ErrorCode.REFUSED
        if found is None:
            error = f"{target!r} is not exposed on {self.node.agent_id[:12]}"
        elif found[1] and stream.peer not in found[1]:
            error, code = f"{target!r} is not exposed to you", ErrorCode.NOT_TRUSTED
        if error is None and found is not None:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", found[0])
            except OSError as exc:
                error = f"local service on port {found[0]} is not answering: {exc.strerror or exc}"
        if error is not None:
            stream.write_record({"ok": False, "error": error, "code": int(code)})
            stream.write_eof()
            return
        stream.write_record({"ok": True})
        await pipe(stream, reader, writer)

    def visible_to(self, peer: str) -> list[dict[str, Any]]:
        """Our exposures that ``peer`` may use."""
        return [
            {"port": e.port, "name": e.name}
            for e in self.exposures()
            if not e.allow or peer in e.allow
        ]

    async def _serve_services(self, stream: Stream) -> None:
        await stream.read_record(max_size=64)
        stream.write_record({"services": self.visible_to(stream.peer)})
        stream.write_eof()

    async def remote_services(self, peer: str) -> list[dict[str, Any]]:
        """What ``peer`` exposes to us (it must trust us)."""
        stream = await self.node.open_stream(peer, SERVICES_PROTOCOL)
        stream.write_record({})
        stream.write_eof()
        reply = await asyncio.wait_for(stream.read_record(), REPLY_TIMEOUT)
        items = reply.get("services") if isinstance(reply, dict) else None
        if not isinstance(items, list):
            raise ProtocolViolation("bad services reply", ErrorCode.MALFORMED)
        out = []
        for item in items[:1024]:
            if isinstance(item, dict) and isinstance(item.get("port"), int):
                name = item.get("name")
                out.append({"port": item["port"], "name": name if isinstance(name, str) else None})
        return out

    async def open_tunnel(self, peer: str, target: int | str) -> Stream:
        """A stream to ``peer``'s service exposed at port (or under the name) ``target``,
        accepted by the peer; TunnelRefused (with the peer's reason) otherwise."""
        from ._socks import TunnelRefused

        stream = await self.node.open_stream(peer, TUNNEL_PROTOCOL)
        stream.write_record({"port": target})
        try:
            reply = _reply_ok(await asyncio.wait_for(stream.read_record(), REPLY_TIMEOUT))
        except BaseException:
            stream.reset()
            raise
        if reply.get("ok") is not True:
            code = reply.get("code")
            try:
                err = ErrorCode(code) if isinstance(code, int) else ErrorCode.REFUSED
            except ValueError:
                err = ErrorCode.REFUSED
            raise TunnelRefused(str(reply.get("error"))[:300], err)
        return stream

    async def start_socks5(self, host: str, port: int) -> str:
        """A SOCKS5 proxy into the overlay on ``host:port`` (see :mod:`._socks`); the
        bound address. It lasts until the node stops."""
        from ._socks import Socks5Proxy

        proxy = Socks5Proxy(self.node)
        address = await proxy.start(host, port)
        self.socks_proxies.append(proxy)
        return address

    async def add_forward(
        self, bind_host: str, local_port: int, peer: str, remote: int | str
    ) -> Forward:
        """Listen on ``bind_host:local_port``; tunnel each connection to ``peer``'s service
        exposed at port (int) or under the name (str) ``remote``."""
        if not 0 <= local_port <= 65535:
            raise InvalidArgument(f"local port must be 0-65535, not {local_port}")
        if isinstance(remote, str):
            if not _NAME_RE.match(remote):
                raise InvalidArgument(f"bad service name {remote!r}: use a-z, 0-9 and '-'")
            remote_port, remote_name = 0, remote
        else:
            remote_port, remote_name = _check_port(remote, "remote port"), None
        db = self.node.db
        if local_port and db.query_one(
            "SELECT 1 FROM forwards WHERE bind_host = ? AND local_port = ?",
            (bind_host, local_port),
        ):
            raise StateError(f"{bind_host}:{local_port} is already forwarded")
        # Listen first: the row then holds the real port, so forwards asked for port 0
        # side by side never share the placeholder 0 in the UNIQUE (bind_host, local_port).
        server = await self._listen_forward(bind_host, local_port, peer, remote)
        port = int(server.sockets[0].getsockname()[1])
        try:
            cur = db.execute(
                "INSERT INTO forwards (bind_host, local_port, agent_id, remote_port, "
                "remote_name, created) VALUES (?, ?, ?, ?, ?, ?)",
                (bind_host, port, peer, remote_port, remote_name, time.time()),
            )
        except BaseException:
            server.close()
            raise
        forward_id = int(cur.lastrowid or 0)
        self._forward_servers[forward_id] = server
        return Forward(
            id=forward_id,
            bind_host=bind_host,
            local_port=port,
            agent_id=peer,
            remote_port=remote_port,
            remote_name=remote_name,
        )

    async def _listen_forward(
        self, bind_host: str, local_port: int, peer: str, remote: int | str
    ) -> asyncio.Server:
        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                stream = await self.open_tunnel(peer, remote)
            except (SwarmlinkError, TimeoutError) as exc:
                log.warning(
                    "forward refused",
                    extra={
                        "listen": f"{bind_host}:{local_port}",
                        "agent_id": peer,
                        "remote": remote,
                        "error": str(exc),
                    },
                )
                writer.close()
                return
            await pipe(stream, reader, writer)

        try:
            return await asyncio.start_server(
                lambda r, w: self.node.spawn(on_client(r, w), name="forward-conn"),
                bind_host,
                local_port,
                reuse_address=True,
            )
        except OSError as exc:
            raise NetworkError(
                f"cannot listen on {bind_host}:{local_port}: {exc.strerror or exc}"
            ) from None

    async def remove_forward(self, forward_id: int) -> None:
        cur = self.node.db.execute("DELETE FROM forwards WHERE id = ?", (forward_id,))
        server = self._forward_servers.pop(forward_id, None)
        if server is not None:
            server.close()
        if not cur.rowcount and server is None:
            raise NotFound(f"no forward with id {forward_id}")

    def forwards(self) -> list[Forward]:
        return [
            Forward(
                id=r[0],
                bind_host=r[1],
                local_port=r[2],
                agent_id=r[3],
                remote_port=r[4],
                remote_name=r[5],
            )
            for r in self.node.db.query(
                "SELECT id, bind_host, local_port, agent_id, remote_port, remote_name "
                "FROM forwards ORDER BY id"
            )
        ]

    # ---- bench ------------------------------------------------------------------------------

    async def bench(self, peer: str, size: int) -> BenchResult:
        if not 0 < size <= MAX_BENCH_BYTES:
            raise InvalidArgument(f"bench size must be 1..{MAX_BENCH_BYTES} bytes")
        conn = await self.node.connection(peer)
        rtts = []
        for _ in range(20):
            rtt = await conn.ping(5.0)
            if rtt is not None:
                rtts.append(rtt * 1000)
        stream = conn.open_stream(BENCH_PROTOCOL)
        chunk = bytes(CHUNK)
        started = time.perf_counter()
        stream.write_record({"bytes": size})
        remaining = size
        while remaining > 0:
            piece = chunk if remaining >= CHUNK else chunk[:remaining]
            stream.write(piece)
            remaining -= len(piece)
            await stream.drain()
        stream.write_eof()
        reply = _reply_ok(await asyncio.wait_for(stream.read_record(), REPLY_TIMEOUT))
        seconds = time.perf_counter() - started
        if reply.get("bytes") != size:
            raise ProtocolViolation(f"peer counted {reply.get('bytes')} of {size} bytes")
        rtts.sort()
        return BenchResult(
            agent_id=peer,
            bytes=size,
            seconds=seconds,
            throughput_mib_s=size / seconds / 1024**2,
            rtt_p50_ms=rtts[len(rtts) // 2] if rtts else 0.0,
            rtt_p99_ms=rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))] if rtts else 0.0,
        )

    async def _serve_bench(self, stream: Stream) -> None:
        header = await stream.read_record()
        size = header.get("bytes") if isinstance(header, dict) else None
        if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= MAX_BENCH_BYTES:
            raise ProtocolViolation("bad bench header", ErrorCode.MALFORMED)
        count = 0
        while data := await stream.read():
            count += len(data)
        stream.write_record({"ok": True, "bytes": count})
        stream.write_eof()
