"""Overlay names: what a SOCKS target (host, port) means inside the overlay.

.. code-block:: text

    AGENT_ID.swarm              the agent                      kind "agent"
    NAME.AGENT_ID.swarm         service NAME of that agent     kind "agent", name set
    NAME.swarm                  whatever is published as NAME  kind "name" (caller looks up)
    fd5a:7761:726d:... / [...]  a virtual address              kind "address"

Matching is case-insensitive and one trailing dot is allowed (``AGENT_ID.swarm.``). A NAME
is a DNS label as for exposures: 1 to 63 of ``a-z``, ``0-9`` and ``-``, not starting or
ending with ``-``. A single label that is a valid agent ID is the agent, never a name.

Errors (both from :mod:`swarmlink.errors`): :class:`~swarmlink.errors.NotFound` when the
host is outside the overlay namespace (``example.com``, ``8.8.8.8``, an IPv6 address
outside :data:`~swarmlink.identity.VIRTUAL_NETWORK`): the SOCKS glue answers
HOST_UNREACHABLE; :class:`~swarmlink.errors.InvalidArgument` when the host is in the
namespace but malformed (``a.b.c.swarm``, ``Bad_Name.swarm``, ``svc.notanagent.swarm``) or
the port is not 1..65535.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Literal, TypeAlias

from ..errors import InvalidArgument, NotFound
from ..identity import VIRTUAL_NETWORK, validate_agent_id, virtual_address

__all__ = [
    "MAX_HOST_LENGTH",
    "OVERLAY_DOMAIN",
    "OverlayKind",
    "OverlayTarget",
    "resolve_overlay_name",
]

#: The pseudo top-level domain of the overlay.
OVERLAY_DOMAIN = "swarm"
#: Longest host accepted (a SOCKS5 domain name is at most 255 bytes anyway).
MAX_HOST_LENGTH = 255
_LABEL_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_FORMS = (
    f"use AGENT_ID.{OVERLAY_DOMAIN}, NAME.AGENT_ID.{OVERLAY_DOMAIN} "
    f"or a virtual address in {VIRTUAL_NETWORK}"
)

OverlayKind: TypeAlias = Literal["agent", "name", "address"]


@dataclass(frozen=True)
class OverlayTarget:
    """Where a SOCKS target points in the overlay.

    * ``kind == "agent"``: ``agent_id`` is set; ``name`` is the service name or None.
    * ``kind == "name"``: only ``name`` is set; the caller looks up who publishes it.
    * ``kind == "address"``: ``address`` is set; ``agent_id`` is what ``by_address``
      returned for it (None when the caller does not know the address).
    """

    kind: OverlayKind
    agent_id: str | None
    name: str | None
    address: IPv6Address | None
    port: int


def _shown(host: str) -> str:
    return host if host.isprintable() and len(host) <= 80 else repr(host[:80])


def resolve_overlay_name(
    host: str,
    port: int,
    *,
    by_address: Callable[[IPv6Address], str | None] | None = None,
) -> OverlayTarget:
    """Map a SOCKS target to the overlay (see the module docstring for the forms).

    ``by_address`` maps a virtual address to the agent ID the caller knows for it (its own
    table); what it returns must be an agent ID whose virtual address is that address.
    Raises :class:`~swarmlink.errors.NotFound` for hosts outside the overlay and
    :class:`~swarmlink.errors.InvalidArgument` for malformed overlay names or ports.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 0xFFFF:
        raise InvalidArgument(f"port {port!r} is not in 1..65535")
    if len(host) > MAX_HOST_LENGTH:
        raise InvalidArgument(f"host name longer than {MAX_HOST_LENGTH} characters")
    text = host.lower()
    bracketed = text.startswith("[") and text.endswith("]")
    try:
        address = ipaddress.ip_address(text[1:-1] if bracketed else text)
    except ValueError:
        if bracketed:
            raise InvalidArgument(f"{_shown(host)} is not an IPv6 address") from None
    else:
        return _address_target(host, address, port, by_address)
    if text.endswith("."):
        text = text[:-1]
    labels = text.split(".")
    if labels[-1] != OVERLAY_DOMAIN:
        raise NotFound(f"{_shown(host)} is not an overlay name ({_FORMS})")
    labels.pop()
    if len(labels) == 1:
        (label,) = labels
        try:
            return OverlayTarget("agent", validate_agent_id(label), None, None, port)
        except InvalidArgument:
            pass
        if _LABEL_RE.fullmatch(label):
            return OverlayTarget("name", None, label, None, port)
        raise InvalidArgument(
            f"{_shown(host)}: {label!r} is neither an agent ID nor a name "
            "(a-z, 0-9 and '-', at most 63)"
        )
    if len(labels) == 2:
        name, agent = labels
        if not _LABEL_RE.fullmatch(name):
            raise InvalidArgument(
                f"{_shown(host)}: bad service name {name!r}: use a-z, 0-9 and '-' (at most 63)"
            )
        try:
            agent_id = validate_agent_id(agent)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{_shown(host)}: {exc}") from None
        return OverlayTarget("agent", agent_id, name, None, port)
    raise InvalidArgument(f"{_shown(host)} is not a valid overlay name ({_FORMS})")


def _address_target(
    host: str,
    address: ipaddress.IPv4Address | IPv6Address,
    port: int,
    by_address: Callable[[IPv6Address], str | None] | None,
) -> OverlayTarget:
    if not isinstance(address, IPv6Address) or address not in VIRTUAL_NETWORK:
        raise NotFound(f"{_shown(host)} is not an overlay name ({_FORMS})")
    if address.scope_id is not None:
        raise InvalidArgument(f"{_shown(host)}: a virtual address has no scope (zone) ID")
    agent_id = by_address(address) if by_address is not None else None
    if agent_id is not None:
        agent_id = validate_agent_id(agent_id)
        if virtual_address(agent_id) != address:
            raise InvalidArgument(f"agent {agent_id} does not have virtual address {address}")
    return OverlayTarget("address", agent_id, None, address, port)
