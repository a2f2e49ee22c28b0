"""Node configuration: small dataclasses, sane defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidArgument

__all__ = ["DEFAULT_HOME", "DEFAULT_PORT", "NodeConfig", "parse_hostport", "resolve_home"]

#: Port a node listens on when ``--listen`` gives none.
DEFAULT_PORT = 7420
#: Node home when neither ``--home`` nor ``SWARMLINK_HOME`` is given.
DEFAULT_HOME = Path("~/.swarmlink")


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The node home: the argument, else ``$SWARMLINK_HOME``, else ``~/.swarmlink``."""
    if home is None or str(home) == "":
        home = os.environ.get("SWARMLINK_HOME") or DEFAULT_HOME
    return Path(home).expanduser().absolute()


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


@dataclass(frozen=True)
class NodeConfig:
    """Everything needed to start a node.

    ``listen`` is a list of ``(host, port)``; port 0 picks a free port (``status`` shows it).
    """

    home: Path
    listen: tuple[tuple[str, int], ...] = (("0.0.0.0", DEFAULT_PORT),)
    #: Lifetime of a freshly issued operational key certificate (seconds).
    operational_key_lifetime: float = 30 * 24 * 3600.0
    #: Seconds to wait for a TCP connect + TLS handshake + HELLO when dialing.
    connect_timeout: float = 10.0
    #: Close sessions that carried no stream for this long (seconds; None keeps them).
    idle_timeout: float | None = 600.0
    #: Largest file ``send-file`` accepts from a peer (bytes).
    max_file_size: int = 16 * 1024**3
    #: Largest message ``send`` accepts (UTF-8 bytes).
    max_message_size: int = 16 * 1024
    user_agent: str = field(default="swarmlink/0.1.0")
