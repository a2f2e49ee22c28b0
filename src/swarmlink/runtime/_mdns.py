"""LAN discovery with mDNS / DNS-SD (zeroconf): announce this node, hear the others.

Each node registers the service instance ``<agent ID>._swarmlink._tcp.local.`` (agent IDs
are 52 lowercase base32 characters: valid DNS labels) with its listening port, its
addresses and the TXT properties ``id=<agent ID>`` and ``v=1``, and browses the same type.
Every other instance it resolves and validates is handed to ``on_found(agent_id,
("host:port", ...))`` (the node feeds these to the DHT routing table); addresses are in
the project's text form (``10.0.0.2:7420``, ``[fd00::2]:7420``, see
:func:`swarmlink.wire.address.format_hostport`).

mDNS is unauthenticated: anyone on the LAN can announce anything, under any name.
Announcements are therefore only **hints** about where an agent might be reached. A hint
costs at most a failed dial: the node always verifies the peer's agent ID in the TLS
handshake on every connection, and agent records come from the DHT, signed. Untrusted
input is bounded by the limits below, and malformed announcements are ignored (logged at
debug level); nothing raises into zeroconf.

Link-local IPv6 addresses are neither announced nor reported: they are usable only with
a zone (interface) that means nothing to other hosts, and reports end up in DHT records.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..errors import StateError, SwarmlinkError
from ..identity import validate_agent_id
from ..wire.address import format_hostport
from ._addresses import interface_addresses

if TYPE_CHECKING:
    from zeroconf import ServiceStateChange, Zeroconf
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

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
#: Addresses taken from one announcement (the rest are ignored); also the most we announce.
MAX_MDNS_ADDRESSES = 8
#: Instances tracked at once (reported plus being resolved); beyond that new ones are
#: ignored until some leave. Also bounds the concurrent resolve tasks.
MAX_MDNS_PEERS = 256
#: Seconds to wait for an announced instance's SRV/TXT/address records.
MDNS_RESOLVE_TIMEOUT = 3.0
#: One instance is reported at most this often (seconds) unless its addresses change.
MIN_REPORT_INTERVAL = 5.0

Found = Callable[[str, tuple[str, ...]], None]


def _usable(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Worth announcing / dialing across a LAN: unicast, not loopback, not link-local."""
    return not (addr.is_link_local or addr.is_loopback or addr.is_multicast or addr.is_unspecified)


def peer_from_service(
    name: str,
    properties: dict[bytes, bytes | None],
    port: int | None,
    addresses: Sequence[str],
    *,
    local_agent_id: str,
    service_type: str = MDNS_SERVICE_TYPE,
) -> tuple[str, tuple[str, ...]] | None:
    """Validate one resolved announcement: ``(agent ID, ("host:port", ...))``, or None if
    it is malformed, our own, or has nothing to dial. ``name`` is the full instance name;
    at most :data:`MAX_MDNS_ADDRESSES` addresses are kept."""
    if not name.endswith("." + service_type):
        return None
    instance = name[: -len(service_type) - 1]
    claimed = properties.get(b"id")
    if claimed is None or claimed.decode("ascii", "replace") != instance:
        log.debug("mDNS: instance name and TXT id differ", extra={"name": name[:100]})
        return None
    try:
        agent_id = validate_agent_id(instance)
    except SwarmlinkError:
        agent_id = ""
    if agent_id != instance:  # strict: no normalisation of what a stranger sent
        log.debug("mDNS: not an agent ID", extra={"name": name[:100]})
        return None
    if agent_id == local_agent_id:
        return None
    if port is None or not 1 <= port <= 65535:
        log.debug("mDNS: bad port", extra={"name": name[:100], "port": port})
        return None
    out: list[str] = []
    for text in addresses[: MAX_MDNS_ADDRESSES * 4]:
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            continue
        if _usable(addr):
            out.append(format_hostport(str(addr), port))
    if not out:
        log.debug("mDNS: no usable address", extra={"name": name[:100]})
        return None
    return agent_id, tuple(dict.fromkeys(out))[:MAX_MDNS_ADDRESSES]


class MdnsDiscovery:
    """Announce ``agent_id`` on ``port`` and report other swarmlink nodes on the LAN.

    ``on_found(agent_id, ("host:port", ...))`` is called in the event loop for every valid
    announcement of another node (at most once per :data:`MIN_REPORT_INTERVAL` per agent
    unless its addresses change); it should not block, and its exceptions are logged.
    Reports are unauthenticated hints (see the module docstring).

    ``addresses``: the IP addresses to announce (the node passes its bound address when it
    listens on a specific one); by default the host's non-loopback, non-link-local
    interface addresses. ``interfaces``: zeroconf's interface choice, a list of the IP
    addresses of the interfaces to use (default: all). ``service_type`` is for tests.

    Usage: ``await d.start()`` (raises if multicast sockets cannot be opened) ...
    ``await d.close()`` (idempotent; also fine before ``start``).
    """

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
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._info: AsyncServiceInfo | None = None
        self._reported: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._resolving: set[str] = set()  # instance names with a resolve task
        self._again: set[str] = set()  # ... that changed again meanwhile
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def running(self) -> bool:
        return self._zc is not None and not self._closed

    def _announced(self) -> list[str]:
        if not self.addresses:
            return interface_addresses(ipv6=True)[:MAX_MDNS_ADDRESSES]
        out: list[str] = []
        for text in self.addresses:
            with contextlib.suppress(ValueError):
                addr = ipaddress.ip_address(text.strip("[]"))
                if _usable(addr):
                    out.append(str(addr))
        return list(dict.fromkeys(out))[:MAX_MDNS_ADDRESSES]

    async def start(self) -> None:
        """Open the multicast sockets, announce ourselves (if we have a LAN address) and
        start browsing."""
        from zeroconf import IPVersion
        from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

        if self._closed or self._zc is not None:
            raise StateError("mDNS discovery can be started once")
        addresses = self._announced()
        if self.interfaces is not None:
            self._zc = AsyncZeroconf(ip_version=IPVersion.All, interfaces=self.interfaces)
        else:
            self._zc = AsyncZeroconf(ip_version=IPVersion.All)
        try:
            if addresses:
                self._info = AsyncServiceInfo(
                    self.service_type,
                    f"{self.agent_id}.{self.service_type}",
                    port=self.port,
                    properties={"id": self.agent_id, "v": "1"},
                    server=f"{self.agent_id}.local.",
                    parsed_addresses=addresses,
                )
                await self._zc.async_register_service(self._info)
            else:  # e.g. listening on loopback only: nothing a LAN peer could dial
                log.info("mDNS: no LAN address to announce; only listening")
            self._browser = AsyncServiceBrowser(
                self._zc.zeroconf, self.service_type, handlers=[self._on_change]
            )
        except BaseException:
            await self.close()
            raise
        log.info("mDNS discovery on", extra={"addresses": addresses})

    def _on_change(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        """zeroconf's browser callback (in the event loop): must never raise."""
        from zeroconf import ServiceStateChange

        if self._closed or not name.endswith("." + service_type):
            return
        instance = name[: -len(service_type) - 1]
        if state_change is ServiceStateChange.Removed:
            self._reported.pop(instance, None)
            return
        if instance == self.agent_id:
            return
        try:  # cheap pre-check: a flood of junk names costs no resolves
            if validate_agent_id(instance) != instance:
                return
        except SwarmlinkError:
            log.debug("mDNS: not an agent ID", extra={"name": name[:100]})
            return
        if name in self._resolving:
            self._again.add(name)
            return
        tracked = len(self._reported) + len(self._resolving)
        if instance not in self._reported and tracked >= MAX_MDNS_PEERS:
            log.debug("mDNS: too many instances", extra={"name": name[:100]})
            return
        self._resolving.add(name)
        task = asyncio.get_running_loop().create_task(self._resolve(zeroconf, service_type, name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, zeroconf: Zeroconf, service_type: str, name: str) -> None:
        try:
            while not self._closed:
                self._again.discard(name)
                await self._resolve_once(zeroconf, service_type, name)
                if name not in self._again:
                    break
        finally:
            self._resolving.discard(name)
            self._again.discard(name)

    async def _resolve_once(self, zeroconf: Zeroconf, service_type: str, name: str) -> None:
        from zeroconf.asyncio import AsyncServiceInfo

        try:
            info = AsyncServiceInfo(service_type, name)
            if not await info.async_request(zeroconf, MDNS_RESOLVE_TIMEOUT * 1000):
                log.debug("mDNS: resolve timed out", extra={"name": name[:100]})
                return
            found = peer_from_service(
                name,
                dict(info.properties or {}),
                info.port,
                info.parsed_addresses(),
                local_agent_id=self.agent_id,
                service_type=service_type,
            )
        except Exception as exc:  # a malformed packet must never hurt the node
            log.debug("mDNS: resolve failed", extra={"name": name[:100], "error": repr(exc)})
            return
        if found is not None:
            self._report(*found, now=time.monotonic())

    def _report(self, agent_id: str, addresses: tuple[str, ...], *, now: float) -> bool:
        """Call ``on_found`` unless closed or rate-limited; True if it was called."""
        if self._closed:
            return False
        last = self._reported.get(agent_id)
        if last is not None and last[1] == addresses and now - last[0] < MIN_REPORT_INTERVAL:
            return False
        self._reported[agent_id] = (now, addresses)
        try:
            self.on_found(agent_id, addresses)
        except Exception:
            log.exception("mDNS: on_found failed")
        return True

    async def close(self) -> None:
        """Withdraw our announcement (goodbye packets) and stop; idempotent."""
        if self._closed:
            return
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._browser is not None:
            with contextlib.suppress(Exception):
                await self._browser.async_cancel()
        if self._zc is not None:
            if self._info is not None:
                with contextlib.suppress(Exception):
                    await self._zc.async_unregister_service(self._info)
            with contextlib.suppress(Exception):
                await self._zc.async_close()
