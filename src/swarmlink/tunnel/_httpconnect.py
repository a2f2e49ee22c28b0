"""HTTP CONNECT (RFC 9110 §9.3.6) requests, for clients that speak only HTTP proxies
(gRPC's ``grpc.http_proxy``, ``https_proxy`` in many tools). Pure functions: the proxy
reads the request head, :func:`parse_connect` validates it, :func:`connect_reply` writes
the answer."""

from __future__ import annotations

from ..errors import InvalidArgument, ProtocolViolation
from ..wire.address import parse_hostport

__all__ = ["MAX_CONNECT_HEAD", "connect_reply", "parse_connect"]

#: Largest request head (request line + headers) accepted, bytes.
MAX_CONNECT_HEAD = 8192

_REASONS = {
    200: "Connection established",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    502: "Bad Gateway",
    504: "Gateway Timeout",
}


def parse_connect(head: bytes) -> tuple[str, int]:
    """``(host, port)`` of a complete CONNECT request head (ending in a blank line).
    ProtocolViolation for anything else (the caller answers 400 or 405)."""
    if len(head) > MAX_CONNECT_HEAD or not head.endswith(b"\r\n\r\n"):
        raise ProtocolViolation("incomplete or oversized HTTP request head")
    try:
        line = head.split(b"\r\n", 1)[0].decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolViolation("request line is not ASCII") from None
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ProtocolViolation(f"bad request line {line[:80]!r}")
    if parts[0] != "CONNECT":
        raise ProtocolViolation(f"only CONNECT is supported here, not {parts[0][:16]!r}")
    try:
        host, port = parse_hostport(parts[1])
    except InvalidArgument as exc:
        raise ProtocolViolation(f"bad CONNECT target: {exc}") from None
    if not 0 < port < 65536:
        raise ProtocolViolation("CONNECT target needs a port")
    return host, port


def connect_reply(status: int, detail: str = "") -> bytes:
    """The response head for ``status`` (200 opens the tunnel; others close it)."""
    reason = _REASONS.get(status, "Error")
    if status == 200:
        return f"HTTP/1.1 200 {reason}\r\n\r\n".encode()
    body = (detail[:300] + "\n").encode("utf-8", "replace")
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
