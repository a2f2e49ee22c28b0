"""Address discovery and reachability glue (the sans-I/O cores in :mod:`swarmlink.nat`
decide what to believe).

- **identify**: on every new session each side opens one ``/swarmlink/identify/1``
  stream and sends ``{"oa": "host:port"}``, the address it sees the other end at. Any
  authenticated peer may send it; one observation per session is taken.
- **dial-back** (``/swarmlink/autonat/1``): we ask a few peers to dial us back at our
  advertised addresses, ``{"a": [...]}`` → ``{"ok": bool, "a": address}``. A peer only
  dials addresses on the IP it sees us at (no traffic amplification against third
  parties), with a fresh TCP + TLS connection that must prove our agent ID.
- **auto relay**: a node that is private (no peer could dial it back) and has no
  configured relays finds relays in the DHT (capability :data:`RELAY_CAPABILITY`) and
  keeps reservations on :data:`WANTED_RELAYS` of them; its record lists them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from typing import TYPE_CHECKING, Any

from ..errors import ErrorCode, InvalidArgument, ProtocolViolation, SwarmlinkError
from ..identity import verify_peer_certificate
from ..nat import NatReport, ObservedAddresses, Reachability, ReachabilityTracker
from ..wire.address import parse_hostport
from ._addresses import advertised_addresses, interface_addresses
from ._connection import PeerConnection
from ._stream import Stream

if TYPE_CHECKING:
    from .node import Node

__all__ = [
    "AUTONAT_PROTOCOL",
    "IDENTIFY_PROTOCOL",
    "MAX_IDENTIFY_RECORD",
    "RELAY_CAPABILITY",
    "WANTED_RELAYS",
    "NatService",
]

log = logging.getLogger("swarmlink.nat")

#: Stream protocol carrying one observed address.
IDENTIFY_PROTOCOL = "/swarmlink/identify/1"
#: Largest identify record accepted (bytes; untrusted input).
MAX_IDENTIFY_RECORD = 256
#: Stream protocol of dial-back requests.
AUTONAT_PROTOCOL = "/swarmlink/autonat/1"
#: Largest dial-back request (bytes; untrusted input) and addresses tried from it.
MAX_AUTONAT_RECORD = 1024
MAX_DIALBACK_ADDRESSES = 4
#: Seconds one dial-back may take; seconds between two dial-backs for one peer.
DIALBACK_TIMEOUT = 5.0
DIALBACK_INTERVAL = 60.0
#: Peers asked per reachability check.
DIALBACK_PEERS = 3
#: Seconds between reachability checks once known (sooner while unknown).
CHECK_INTERVAL = 300.0
#: Capability tag relays advertise in their records.
RELAY_CAPABILITY = "swarmlink/relay"
#: Relays a private node keeps reservations on.
WANTED_RELAYS = 2


class NatService:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.observed = ObservedAddresses()
        self._told: set[int] = set()  # sessions (id) whose observation we took
        self.reachability = ReachabilityTracker()
        self._dialed_back: dict[str, float] = {}

    def start(self) -> None:
        self.node.set_handler(IDENTIFY_PROTOCOL, self.serve)
        self.node.set_handler(AUTONAT_PROTOCOL, self.serve_dialback)
        self.node.spawn(self._maintain(), name="nat:maintain")

    @property
    def state(self) -> Reachability:
        return self.reachability.state(time.time())

    def connection_ready(self, conn: PeerConnection) -> None:
        """Tell the new peer where we see it."""
        if not conn.address:
            return
        try:
            stream = conn.open_stream(IDENTIFY_PROTOCOL)
            stream.write_record({"oa": conn.address})
            stream.write_eof()
        except SwarmlinkError as exc:
            log.debug("identify not sent", extra={"peer": conn.agent_id, "error": str(exc)})

    async def serve(self, stream: Stream) -> None:
        conn = stream.connection
        value = await stream.read_record(max_size=MAX_IDENTIFY_RECORD)
        if not isinstance(value, dict) or set(value) != {"oa"} or not isinstance(value["oa"], str):
            raise ProtocolViolation("identify is {oa: host:port}", ErrorCode.MALFORMED)
        if id(conn) in self._told:
            raise ProtocolViolation("one identify per session", ErrorCode.PROTOCOL_ERROR)
        self._told.add(id(conn))
        if len(self._told) > 4096:
            self._told = {id(c) for c in self.node._all_conns}
        try:
            self.observed.record(
                stream.peer, conn.address, conn.local_address, value["oa"], time.time()
            )
        except InvalidArgument as exc:
            raise ProtocolViolation(f"bad observed address: {exc}", ErrorCode.MALFORMED) from None

    def report(self) -> NatReport:
        hosts = {parse_hostport(a)[0] for a in self.node.listen_addresses}
        hosts |= set(interface_addresses(ipv6=True))
        return self.observed.report(time.time(), hosts)

    # ---- dial-back ------------------------------------------------------------------

    async def serve_dialback(self, stream: Stream) -> None:
        request = await stream.read_record(max_size=MAX_AUTONAT_RECORD)
        addresses = request.get("a") if isinstance(request, dict) else None
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise ProtocolViolation("dial-back request is {a: [host:port]}", ErrorCode.MALFORMED)
        now = time.time()
        if now - self._dialed_back.get(stream.peer, 0.0) < DIALBACK_INTERVAL:
            raise ProtocolViolation("one dial-back a minute", ErrorCode.RATE_LIMITED)
        self._dialed_back[stream.peer] = now
        if len(self._dialed_back) > 4096:
            self._dialed_back = {p: t for p, t in self._dialed_back.items() if now - t < 60}
        seen_host = (
            parse_hostport(stream.connection.address)[0] if stream.connection.address else ""
        )
        reached = ""
        for text in addresses[:MAX_DIALBACK_ADDRESSES]:
            try:
                host, port = parse_hostport(text)
            except InvalidArgument:
                continue
            if host != seen_host or port == 0:
                continue  # only the IP the request came from: no amplification
            if await self._dial_back(stream.peer, host, port):
                reached = text
                break
        stream.write_record({"ok": bool(reached), "a": reached})
        await stream.close()

    async def _dial_back(self, agent_id: str, host: str, port: int) -> bool:
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(DIALBACK_TIMEOUT):
                _, writer = await asyncio.open_connection(
                    host, port, ssl=self.node._client_ctx, server_hostname="swarmlink"
                )
            ssl_object: Any = writer.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            if not der:
                return False
            verify_peer_certificate(der, now=time.time(), expected_agent_id=agent_id)
            return True
        except (OSError, TimeoutError, ssl.SSLError, SwarmlinkError):
            return False
        finally:
            if writer is not None:
                writer.close()

    async def probe(self) -> Reachability:
        """Ask up to :data:`DIALBACK_PEERS` directly connected peers to dial us back."""
        now = time.time()
        asked = self.reachability.asked(now)
        # Our reflexive addresses first: a yes there makes them worth publishing.
        reflexive = self.report().reflexive
        addresses = list(dict.fromkeys([*reflexive, *self.node.dht._published_addresses]))
        peers = [
            c
            for c in list(self.node._conns.values())
            if not c.closed and c.via is None and c.agent_id not in asked
        ]
        random.shuffle(peers)
        for conn in peers[:DIALBACK_PEERS]:
            try:
                stream = conn.open_stream(AUTONAT_PROTOCOL)
                stream.write_record({"a": addresses})
                async with asyncio.timeout(DIALBACK_TIMEOUT * MAX_DIALBACK_ADDRESSES + 5):
                    reply = await stream.read_record(max_size=MAX_AUTONAT_RECORD)
            except (SwarmlinkError, TimeoutError) as exc:
                log.debug(
                    "dial-back request failed", extra={"peer": conn.agent_id, "error": str(exc)}
                )
                continue
            if isinstance(reply, dict) and isinstance(reply.get("ok"), bool):
                self.reachability.record(conn.agent_id, reply["ok"], time.time())
        state = self.state
        log.info("reachability", extra={"state": str(state)})
        return state

    # ---- relays for private nodes -----------------------------------------------------

    async def ensure_relays(self) -> int:
        """A private node without configured relays reserves on relays found in the DHT;
        returns how many reservations it holds."""
        relay = self.node.relay
        if self.node.config.relays or self.node.config.relay or self.state != Reachability.PRIVATE:
            return len(relay.reservations)
        if len(relay.reservations) >= WANTED_RELAYS:
            return len(relay.reservations)
        try:
            candidates = await self.node.dht.find(RELAY_CAPABILITY)
        except SwarmlinkError as exc:
            log.info("no relays found", extra={"error": str(exc)})
            return len(relay.reservations)
        random.shuffle(candidates)
        for record in candidates:
            if len(relay.reservations) >= WANTED_RELAYS:
                break
            if record.agent_id in relay.reservations or record.agent_id == self.node.agent_id:
                continue
            try:
                await self.node.connection(record.agent_id, hints=record.addresses, resolve=False)
                await relay.reserve(record.agent_id)
            except (SwarmlinkError, TimeoutError) as exc:
                log.info("relay refused", extra={"relay": record.agent_id, "error": str(exc)})
        self.node.dht.schedule_publish()
        return len(relay.reservations)

    async def check(self) -> Reachability:
        """One round: dial-back probe, then relays if private."""
        state = await self.probe()
        if advertised_addresses(self.node) != self.node.dht._published_addresses:
            self.node.dht.schedule_publish()  # proven reachable: publish the public address
        await self.ensure_relays()
        return state

    async def _maintain(self) -> None:
        delay = 5.0
        while True:
            await asyncio.sleep(delay * (0.75 + random.random() / 2))
            if not self.node._conns:
                continue
            try:
                state = await self.check()
            except SwarmlinkError as exc:
                log.info("reachability check failed", extra={"error": str(exc)})
                continue
            delay = CHECK_INTERVAL if state != Reachability.UNKNOWN else 15.0
