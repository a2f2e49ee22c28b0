"""TCP sockets that share the node's listening port.

A NAT keeps one public mapping per inside address and port. When every connection a
node dials leaves from its *listening* port, an endpoint-independent NAT shows every
peer the same public address, the one other peers must dial; that is what makes the
reflexive address meaningful and TCP hole punching possible (two sockets dialing each
other from their listening ports open at the same time: RFC 5382 §3 and RFC 6146's
"simultaneous open"). Linux allows it with ``SO_REUSEADDR`` + ``SO_REUSEPORT`` on the
listener and on every dialing socket.

Whenever sharing is impossible (another 4-tuple on that port is still in TIME_WAIT, the
families differ, the system has no ``SO_REUSEPORT``) the dial falls back to an ordinary
ephemeral port: slower traversal, never a failed connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket

__all__ = ["REUSE_PORT", "check_port_free", "connect_tcp", "peer_speaks_first"]

#: Whether this system can share a port between a listener and dialing sockets.
REUSE_PORT = hasattr(socket, "SO_REUSEPORT")

#: connect() errors that mean "this local port cannot be used for that peer now".
_PORT_BUSY = {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EINVAL}


def check_port_free(host: str, port: int) -> None:
    """Raise OSError(EADDRINUSE) if another socket already holds ``host:port``.

    The listener is opened with ``SO_REUSEPORT``, which would otherwise let a second
    daemon share the port silently; this probe (without it) makes that an error."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    finally:
        probe.close()


def _local_for(
    local: tuple[str, int] | None, family: int, dest: str, dest_port: int
) -> tuple[str, int] | None:
    """The listening address to dial ``dest`` from, or None (an ephemeral port)."""
    if local is None or not REUSE_PORT:
        return None
    host, port = local
    try:
        ip = ipaddress.ip_address(host) if host else None
        target = ipaddress.ip_address(dest)
    except ValueError:
        return None
    wanted = socket.AF_INET6 if target.version == 6 else socket.AF_INET
    if family != wanted or (ip is not None and ip.version != target.version):
        return None
    if ip is not None and not ip.is_unspecified and ip.is_loopback != target.is_loopback:
        return None  # a loopback listener cannot source traffic to the network (or back)
    if dest_port == port and _is_own(target, ip):
        return None  # our own listener: from the same port this would connect to itself
    return (host, port)


def _is_own(target: ipaddress.IPv4Address | ipaddress.IPv6Address, bound: object) -> bool:
    if target.is_loopback or target == bound:
        return True
    if bound is not None and not getattr(bound, "is_unspecified", False):
        return False
    from ._addresses import interface_addresses

    return str(target) in interface_addresses(ipv6=target.version == 6)


def _socket(family: int, local: tuple[str, int] | None) -> socket.socket:
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say so (without
    # it, Nagle + delayed ACK add 40 ms to every request/answer exchange).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        if local is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(local)
    except BaseException:
        sock.close()
        raise
    return sock


async def connect_tcp(
    host: str,
    port: int,
    *,
    local: tuple[str, int] | None,
    timeout: float,
    require_local: bool = False,
) -> socket.socket:
    """A non-blocking TCP socket connected to ``host:port``, dialed from ``local`` (the
    listening address) when possible. ``require_local``: never fall back to an ephemeral
    port (hole punching, where only the listening port helps). OSError/TimeoutError on
    failure."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(errno.EHOSTUNREACH, f"no address for {host}")
    family, _, _, _, sockaddr = infos[0]
    bind = _local_for(local, family, str(sockaddr[0]), int(sockaddr[1]))
    if bind is None and require_local:
        raise OSError(errno.EADDRNOTAVAIL, "cannot dial from the listening port")
    async with asyncio.timeout(timeout):
        if bind is not None:
            sock: socket.socket | None = None
            try:
                sock = _socket(family, bind)
                await loop.sock_connect(sock, sockaddr)
                return sock
            except OSError as exc:
                if sock is not None:
                    sock.close()
                if require_local or exc.errno not in _PORT_BUSY:
                    raise
            except BaseException:
                if sock is not None:
                    sock.close()
                raise
        sock = _socket(family, None)
        try:
            await loop.sock_connect(sock, sockaddr)
        except BaseException:
            sock.close()
            raise
        return sock


async def peer_speaks_first(sock: socket.socket, wait: float) -> bool:
    """Whether bytes arrive on ``sock`` within ``wait`` seconds (left unread).

    After a TCP simultaneous open neither end is "the server"; the end that must act as
    the TLS server waits to see the other's ClientHello. Silence means the other end
    is a listener (a TLS server waiting for us), so we act as the client. EOF raises."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    fd = sock.fileno()
    while True:
        try:
            if not sock.recv(1, socket.MSG_PEEK):
                raise ConnectionResetError(
                    errno.ECONNRESET, "the peer closed the punched connection"
                )
            return True
        except BlockingIOError:
            pass  # nothing yet (readiness can be spurious)
        if loop.time() >= deadline:
            return False
        ready: asyncio.Future[None] = loop.create_future()

        def readable(ready: asyncio.Future[None] = ready) -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, readable)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await ready
        finally:
            loop.remove_reader(fd)
