"""The control server: the Unix socket, its connections, and :func:`serve`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import h11

from ..errors import InvalidArgument, LocalError
from ._errors import error_body, error_status
from ._http import REQUEST_READ_TIMEOUT, HttpConnection, Rejection
from ._nodeapi import NodeAPI
from ._routes import Router
from ._streams import INCOMING_ATTACH_TIMEOUT

__all__ = [
    "MAX_CONTROL_CONNECTIONS",
    "MAX_SOCKET_PATH",
    "PID_FILE_NAME",
    "PROBE_TIMEOUT",
    "SOCKET_NAME",
    "ControlServer",
    "check_no_daemon",
    "serve",
]

log = logging.getLogger("swarmlink.daemon")

#: File name of the control socket inside the node home.
SOCKET_NAME = "control.sock"
#: File name of the daemon's pid file inside the node home.
PID_FILE_NAME = "swarmlink.pid"
#: Control connections served at once (streams, handlers and event feeds included);
#: beyond, new connections get ``503`` and are closed.
MAX_CONTROL_CONNECTIONS = 64
#: Longest Unix socket path the kernel accepts (bytes, without the final NUL).
MAX_SOCKET_PATH = 107
#: Seconds to wait for an existing socket to answer before calling it stale.
PROBE_TIMEOUT = 2.0
#: Listen backlog of the control socket.
_BACKLOG = 64


def _check_socket_path(path: Path) -> None:
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise InvalidArgument(
            f"control socket path {str(path)!r} is longer than {MAX_SOCKET_PATH} bytes, "
            "the Unix socket limit; use a shorter node home"
        )


async def _running_daemon_pid(path: Path) -> int | None:
    """Ask the daemon answering on ``path`` for its pid (None if it does not say)."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        conn = h11.Connection(h11.CLIENT)
        writer.write(
            conn.send(h11.Request(method="GET", target="/v1/status", headers=[("Host", "x")]))
            + (conn.send(h11.EndOfMessage()) or b"")
        )
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > 1024 * 1024:
                    return None
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
        status = json.loads(body)
        pid = status.get("pid") if isinstance(status, dict) else None
        return pid if isinstance(pid, int) else None
    finally:
        writer.close()


def _socket_exists(path: Path) -> bool:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(mode):
        raise LocalError(f"{path} exists and is not a socket; move it out of the way")
    return True


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


async def check_no_daemon(socket_path: Path) -> None:
    """Raise :class:`LocalError` if a daemon answers on ``socket_path``; remove a stale one."""
    _check_socket_path(socket_path)
    home = socket_path.parent
    if not _socket_exists(socket_path):
        return
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            pid = await _running_daemon_pid(socket_path)
    except (ConnectionRefusedError, FileNotFoundError):
        log.info("removing a stale control socket", extra={"path": str(socket_path)})
        _unlink(socket_path)
        return
    except PermissionError:
        raise LocalError(f"cannot use {socket_path}: permission denied") from None
    except (TimeoutError, OSError, ValueError, h11.ProtocolError):
        pid = None  # something accepts connections there: do not take it over
    if pid is None:
        pid = _read_pid(home / PID_FILE_NAME)
    raise LocalError(
        f"a swarmlink daemon is already running in {home} (pid {pid if pid else 'unknown'})"
    )


def _bind_private(path: Path) -> socket.socket:
    """A listening Unix socket at ``path``, mode 0600 from the moment it exists."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old_umask = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        sock.listen(_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class ControlServer:
    """Serves the control API for ``node`` on the Unix socket ``socket_path``.

    ``on_shutdown`` is called after ``POST /v1/shutdown`` has been answered.
    """

    def __init__(
        self,
        node: NodeAPI,
        socket_path: Path,
        *,
        on_shutdown: Callable[[], None] | None = None,
        request_timeout: float = REQUEST_READ_TIMEOUT,
        attach_timeout: float = INCOMING_ATTACH_TIMEOUT,
        max_connections: int = MAX_CONTROL_CONNECTIONS,
    ) -> None:
        self.node = node
        self.socket_path = Path(socket_path)
        self.request_timeout = request_timeout
        self.max_connections = max_connections
        self.router = Router(node, on_shutdown=on_shutdown, attach_timeout=attach_timeout)
        self._server: asyncio.Server | None = None
        self._inode: tuple[int, int] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def connections(self) -> int:
        """Control connections currently open."""
        return len(self._tasks)

    async def start(self) -> None:
        if self._server is not None:
            return
        await check_no_daemon(self.socket_path)
        try:
            sock = _bind_private(self.socket_path)
        except OSError as exc:
            raise LocalError(f"cannot listen on {self.socket_path}: {exc.strerror}") from None
        st = self.socket_path.stat()
        self._inode = (st.st_dev, st.st_ino)
        self._server = await asyncio.start_unix_server(self._on_connection, sock=sock)
        log.info("control socket listening", extra={"path": str(self.socket_path)})

    async def stop(self) -> None:
        """Stop listening, remove the socket, and drop every control connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        self._remove_socket()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await server.wait_closed()
        log.info("control socket closed", extra={"path": str(self.socket_path)})

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _remove_socket(self) -> None:
        try:
            st = self.socket_path.stat()
        except FileNotFoundError:
            return
        if (st.st_dev, st.st_ino) == self._inode:  # never remove another daemon's socket
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()

    def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Our own task (not asyncio's): cancelling it at stop() must not log errors.
        task = asyncio.get_running_loop().create_task(self._connection(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        http = HttpConnection(reader, writer, read_timeout=self.request_timeout)
        linger = False
        try:
            if len(self._tasks) > self.max_connections:
                log.warning("too many control connections", extra={"limit": self.max_connections})
                await http.reject(
                    Rejection(
                        503,
                        f"too many control connections (limit {self.max_connections})",
                        error_type="StateError",
                    )
                )
                linger = True
                return
            linger = await self._serve_connection(http)
        except (ConnectionError, OSError) as exc:
            log.info("control connection ended", extra={"error": repr(exc)})
        except Exception:
            log.exception("control connection failed")
        finally:
            await http.close(linger=linger)

    async def _serve_connection(self, http: HttpConnection) -> bool:
        """Serve requests until the connection ends; True if the close should linger."""
        while True:
            request = await http.next_request()
            if request is None:
                return False
            if isinstance(request, Rejection):
                log.info(
                    "bad control request",
                    extra={"status": request.status, "error": request.message},
                )
                await http.reject(request)
                return True
            log.debug("control request", extra={"method": request.method, "path": request.path})
            try:
                await self.router.dispatch(http, request)
            except Exception as exc:
                if not http.can_respond:
                    if not isinstance(exc, ConnectionError | OSError):
                        log.error("control request failed after its response began", exc_info=exc)
                    return False
                status = error_status(exc)
                log.log(
                    logging.ERROR if status >= 500 else logging.INFO,
                    "control request failed",
                    extra={"path": request.path, "status": status, "error": str(exc)},
                    exc_info=exc if status >= 500 else None,
                )
                await http.respond_json(
                    status, error_body(exc, where=f"{request.method} {request.path}")
                )
            if not http.next_cycle():
                return False


async def serve(node: NodeAPI, socket_path: Path, stop: asyncio.Event) -> None:
    """Serve the control API for ``node`` on ``socket_path`` until ``stop`` is set."""
    server = ControlServer(node, socket_path, on_shutdown=stop.set)
    await server.start()
    try:
        await stop.wait()
    finally:
        await server.stop()
