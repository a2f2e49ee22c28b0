"""Transport addresses as text: ``HOST:PORT`` and ``[IPV6]:PORT`` (pure parsing)."""

from __future__ import annotations

from ..errors import InvalidArgument

__all__ = ["format_hostport", "parse_hostport"]


def parse_hostport(text: str, *, default_port: int | None = None) -> tuple[str, int]:
    """Parse ``HOST:PORT``, ``[V6]:PORT`` or ``:PORT``; raise InvalidArgument if malformed."""
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise InvalidArgument(f"bad address {text!r}: missing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest.startswith(":"):
            port_text = rest[1:]
        elif rest:
            raise InvalidArgument(f"bad address {text!r}: expected ':PORT' after ']'")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif text.count(":") > 1:
        raise InvalidArgument(f"bad address {text!r}: write IPv6 addresses as [ADDR]:PORT")
    if not port_text:
        if default_port is None:
            raise InvalidArgument(f"bad address {text!r}: expected HOST:PORT")
        port = default_port
    else:
        try:
            port = int(port_text)
        except ValueError:
            raise InvalidArgument(
                f"bad address {text!r}: port {port_text!r} is not a number"
            ) from None
    if not 0 <= port <= 65535:
        raise InvalidArgument(f"bad address {text!r}: port must be 0-65535")
    return (host or "0.0.0.0", port)


def format_hostport(host: str, port: int) -> str:
    """The text form :func:`parse_hostport` reads back: IPv6 hosts go in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
