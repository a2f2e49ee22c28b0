"""LAN discovery with mDNS / DNS-SD (zeroconf): announce this node, hear the others.

Each node registers the service instance ``<agent ID>._swarmlink._tcp.local.`` with its
listening port, its addresses and the TXT properties ``id=<agent ID>`` and ``v=1``, and
browses the same type. Every instance it resolves is handed to ``on_found(agent_id,
("host:port", ...))``, which feeds the DHT routing table.

mDNS is unauthenticated: anyone on the LAN can announce anything. Announcements are
therefore only **hints**. A hint costs at most a failed dial: the TLS handshake proves the
agent ID on every connection, and records come from the DHT, signed. Untrusted input is
bounded by the limits below and malformed announcements are ignored (logged at debug).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import SwarmlinkError
from ..identity import validate_agent_id
from ..wire.address import format_hostport
from ._addresses import interface_addresses

__all__ = [
    "MAX_MDNS_ADDRESSES",
    "MAX_MDNS_PEERS",
    "MDNS_RESOLVE_TIMEOUT",
    "MDNS_SERVICE_TYPE",
    "MIN_REPORT_INTERVAL",
    "MdnsDiscovery",
    "peer_from_service",
]

log = logging.getLogger("swarmlink.mdns")

#: DNS-SD service type of swarmlink nodes.
MDNS_SERVICE_TYPE = "_swarmlink._tcp.local."
#: Addresses taken from one announcement (the rest are ignored).
MAX_MDNS_ADDRESSES = 8
#: Distinct instances remembered; beyond that new ones are ignored until some leave.
MAX_MDNS_PEERS = 256
#: Seconds to wait for an announced instance's SRV/TXT/address records.
MDNS_RESOLVE_TIMEOUT = 3.0
#: One instance is reported at most this often (seconds) unless its addresses change.
MIN_REPORT_INTERVAL = 5.0

Found = Callable[[str, tuple[str, ...]], None]


def peer_from_service(
    name: str,
    properties: dict[bytes, bytes | None],
    port: int | None,
    addresses: Sequence[str],
    *,
    local_agent_id: str,
) -> tuple[str, tuple[str, ...]] | None:
    """Validate one resolved announcement: (agent ID, addresses) or None if it is bad,
    our own, or useless. ``name`` is the full instance name."""
    if not name.endswith("." + MDNS_SERVICE_TYPE):
        return None
    instance = name[: -len(MDNS_SERVICE_TYPE) - 1]
    claimed = properties.get(b"id")
    if claimed is None or claimed.decode("ascii", "replace") != instance:
        log.debug("mDNS: instance name and TXT id differ", extra={"name": name[:100]})
        return None
    try:
        agent_id = validate_agent_id(instance)
    except SwarmlinkError:
        log.debug("mDNS: not an agent ID", extra={"name": name[:100]})
        return None
    if agent_id == local_agent_id:
        return None
    if port is None or not 1 <= port <= 65535:
        return None
    out: list[str] = []
    for text in addresses[: MAX_MDNS_ADDRESSES * 2]:
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            continue
        if addr.is_link_local or addr.is_multicast or addr.is_unspecified:
            continue  # link-local needs a zone we cannot carry in a record
        out.append(format_hostport(str(addr), port))
    if not out:
        return None
    return agent_id, tuple(dict.fromkeys(out))[:MAX_MDNS_ADDRESSES]


class MdnsDiscovery:
    """Announce ``agent_id`` on ``port`` and report other swarmlink nodes on the LAN."""

    def __init__(
        self,
        agent_id: str,
        port: int,
        on_found: Found,
        *,
        addresses: Sequence[str] = (),
        interfaces: Sequence[str] | None = None,
        service_type: str = MDNS_SERVICE_TYPE,
    ) -> None:
        self.agent_id = agent_id
        self.port = port
        self.on_found = on_found
        self.addresses = tuple(addresses)
        self.interfaces = list(interfaces) if interfaces is not None else None
        self.service_type = service_type
        self._zc: Any = None
        self._browser: Any = None
        self._info: Any = None
        self._reported: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def running(self) -> bool:
        return self._zc is not None and not self._closed

    async def start(self) -> None:
        from zeroconf import IPVersion
        from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

        addresses = list(self.addresses) or interface_addresses(ipv6=True)
        kwargs: dict[str, Any] = {"ip_version": IPVersion.All}
        if self.interfaces is not None:
            kwargs["interfaces"] = self.interfaces
        self._zc = AsyncZeroconf(**kwargs)
        self._info = AsyncServiceInfo(
            self.service_type,
            f"{self.agent_id}.{self.service_type}",
            port=self.port,
            properties={"id": self.agent_id, "v": "1"},
            server=f"{self.agent_id}.local.",
            parsed_addresses=addresses[:MAX_MDNS_ADDRESSES] or None,
        )
        try:
            await self._zc.async_register_service(self._info)
            self._browser = AsyncServiceBrowser(
                self._zc.zeroconf, self.service_type, handlers=[self._on_change]
            )
        except BaseException:
            await self.close()
            raise
        log.info("mDNS discovery on", extra={"addresses": addresses[:MAX_MDNS_ADDRESSES]})

    def _on_change(self, zeroconf: Any, service_type: str, name: str, state_change: Any) -> None:
        from zeroconf import ServiceStateChange

        if self._closed:
            return
        instance = name[: -len(service_type) - 1] if name.endswith(service_type) else name
        if state_change is ServiceStateChange.Removed:
            self._reported.pop(instance, None)
            return
        if instance == self.agent_id:
            return
        if instance not in self._reported and len(self._reported) >= MAX_MDNS_PEERS:
            return
        task = asyncio.get_running_loop().create_task(self._resolve(service_type, name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, service_type: str, name: str) -> None:
        from zeroconf.asyncio import AsyncServiceInfo

        info = AsyncServiceInfo(service_type, name)
        try:
            if not await info.async_request(self._zc.zeroconf, int(MDNS_RESOLVE_TIMEOUT * 1000)):
                return
        except Exception as exc:  # a malformed packet must never hurt the node
            log.debug("mDNS: resolve failed", extra={"error": repr(exc)})
            return
        found = peer_from_service(
            name,
            dict(info.properties or {}),
            info.port,
            info.parsed_addresses(),
            local_agent_id=self.agent_id,
        )
        if found is None or self._closed:
            return
        agent_id, addresses = found
        now = time.monotonic()
        last = self._reported.get(agent_id)
        if last is not None and last[1] == addresses and now - last[0] < MIN_REPORT_INTERVAL:
            return
        self._reported[agent_id] = (now, addresses)
        try:
            self.on_found(agent_id, addresses)
        except Exception:
            log.exception("mDNS: on_found failed")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        if self._browser is not None:
            with contextlib.suppress(Exception):
                await self._browser.async_cancel()
        if self._zc is not None:
            with contextlib.suppress(Exception):
                if self._info is not None:
                    await self._zc.async_unregister_service(self._info)
            with contextlib.suppress(Exception):
                await self._zc.async_close()
