"""Address discovery glue: tells every peer where we see it, and feeds what peers tell us
into :class:`~swarmlink.nat.ObservedAddresses` (the sans-I/O core decides what to
believe).

On every new session each side opens one ``/swarmlink/identify/1`` stream and sends one
record ``{"oa": "host:port"}``: the address it sees the other end at. Any authenticated
peer may send it (no trust needed); one observation per session is taken.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ..errors import ErrorCode, InvalidArgument, ProtocolViolation, SwarmlinkError
from ..nat import NatReport, ObservedAddresses
from ..wire.address import parse_hostport
from ._addresses import interface_addresses
from ._connection import PeerConnection
from ._stream import Stream

if TYPE_CHECKING:
    from .node import Node

__all__ = ["IDENTIFY_PROTOCOL", "MAX_IDENTIFY_RECORD", "NatService"]

log = logging.getLogger("swarmlink.nat")

#: Stream protocol carrying one observed address.
IDENTIFY_PROTOCOL = "/swarmlink/identify/1"
#: Largest identify record accepted (bytes; untrusted input).
MAX_IDENTIFY_RECORD = 256


class NatService:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.observed = ObservedAddresses()
        self._told: set[int] = set()  # sessions (id) whose observation we took

    def start(self) -> None:
        self.node.set_handler(IDENTIFY_PROTOCOL, self.serve)

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
