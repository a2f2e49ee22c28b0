"""DHT glue: serves the DHT protocol, drives lookups over real sessions, publishes this
node's signed record and capabilities, and keeps the routing table and records on disk.

Protocol decisions live in :mod:`swarmlink.dht` (sans-I/O); this module owns streams,
tasks, timers and the database. One DHT request travels on its own stream
(:data:`~swarmlink.dht.DHT_PROTOCOL`): a length-prefixed request, a length-prefixed
response. Any authenticated peer may open it (trust is not needed to find agents); the
core rate-limits each peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..dht import (
    DHT_PROTOCOL,
    MAX_DHT_MESSAGE,
    Contact,
    DhtNode,
    K,
    Lookup,
    Peer,
    Query,
    Request,
    Response,
    capability_key,
    decode_request,
    decode_response,
    node_id,
)
from ..dht._messages import MAX_CONTACT_ADDRESSES
from ..dht._records import AgentRecord, Capability, RecordStore
from ..errors import (
    ErrorCode,
    InvalidArgument,
    NotFound,
    ProtocolViolation,
    RemoteError,
    SwarmlinkError,
)
from ..identity import validate_agent_id
from ..wire import PROTOCOL_VERSIONS
from ..wire.address import format_hostport, parse_hostport
from ._addresses import advertised_addresses
from ._stream import Stream

if TYPE_CHECKING:
    from .node import Node

__all__ = [
    "DHT_QUERY_TIMEOUT",
    "MAINTENANCE_INTERVAL",
    "REPUBLISH_INTERVAL",
    "DhtService",
    "parse_bootstrap",
]

log = logging.getLogger("swarmlink.dht")

#: Seconds one DHT query (dial if needed + request + response) may take.
DHT_QUERY_TIMEOUT = 3.0
#: Seconds the agent itself gets to confirm its current record (it may be behind a NAT).
ASK_OWNER_TIMEOUT = 1.5
#: Seconds between maintenance rounds (persist, expire, refresh, republish checks).
MAINTENANCE_INTERVAL = 30.0
#: Seconds between republications of our own record and provider announcements.
REPUBLISH_INTERVAL = 1800.0
#: Buckets refreshed per maintenance round at most.
MAX_REFRESH_PER_ROUND = 4
#: Address hints remembered for agents learned from responses (oldest forgotten).
MAX_ADDRESS_HINTS = 16_384
#: Agents a capability search returns at most.
MAX_FIND_RESULTS = 64


def parse_bootstrap(text: str) -> tuple[str, str]:
    """``AGENT@HOST:PORT`` -> (agent ID, "host:port"); InvalidArgument if malformed."""
    agent, sep, address = text.strip().partition("@")
    if not sep:
        raise InvalidArgument(f"bad bootstrap peer {text!r}: expected AGENT_ID@HOST:PORT")
    agent = validate_agent_id(agent)
    host, port = parse_hostport(address)
    if port == 0:
        raise InvalidArgument(f"bad bootstrap peer {text!r}: the port must not be 0")
    return agent, format_hostport(host, port)


class DhtService:
    """The node's DHT: lookups, our record, capabilities, persistence."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.store = RecordStore()
        self.core = DhtNode(node.agent_id, self.store)
        self._rng = random.Random()
        self._rid = self._rng.randrange(1 << 32)
        self._hints: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._published_at = 0.0
        self._published_addresses: tuple[str, ...] = ()
        self._publishing: asyncio.Task[Any] | None = None
        self._joining: asyncio.Task[Any] | None = None
        self._publish_again = False
        self._pinging: set[str] = set()
        self._joined = asyncio.Event()
        self._contacts_dirty = True
        self.last_join_error = ""
        #: Nodes that accepted our record or provider records in the last publication.
        self.last_publish_stores = 0
        self._publish_lock = asyncio.Lock()
        self.bootstrap = tuple(parse_bootstrap(b) for b in node.config.bootstrap)

    # ---- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        self._published_addresses = advertised_addresses(self.node)
        self._load()
        self.node.set_handler(DHT_PROTOCOL, self.serve)
        self.node.spawn(self._maintain(), name="dht:maintain")
        self._joining = self.node.spawn(self.join(), name="dht:join")

    def close(self) -> None:
        """Persist what changed (called by Node.close before the database closes)."""
        with contextlib.suppress(Exception):
            self._persist(contacts=True, providers=True)

    @property
    def joined(self) -> bool:
        return self._joined.is_set()

    async def wait_joined(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._joined.wait(), timeout)
        return self._joined.is_set()

    def info(self) -> dict[str, Any]:
        return {
            "contacts": len(self.core.table),
            "records": len(self.store),
            "provider_records": len(self.core.provider_entries()),
            "joined": self.joined,
            "bootstrap": [f"{a}@{addr}" for a, addr in self.bootstrap],
            "published_at": self._published_at or None,
            "advertised": list(self._published_addresses),
            "last_error": self.last_join_error or None,
        }

    # ---- persistence ----------------------------------------------------------------

    def _load(self) -> None:
        now = time.time()
        db = self.node.db
        for agent_id, addresses, last_seen in db.query(
            "SELECT agent_id, addresses, last_seen FROM dht_contacts ORDER BY last_seen"
        ):
            with contextlib.suppress(SwarmlinkError, ValueError):
                self.core.table.observe(
                    Contact.from_agent(agent_id, tuple(json.loads(addresses))), last_seen
                )
        for (data,) in db.query("SELECT record FROM dht_records WHERE expires > ?", (now,)):
            try:
                record = self.store.put(bytes(data), now)
            except SwarmlinkError as exc:
                log.info("dropped a stored record on load", extra={"error": str(exc)})
                continue
            self.core.adopt(record.agent_id)
        for key, agent_id, expires, data in db.query(
            "SELECT key, agent_id, expires, record FROM dht_providers WHERE expires > ?", (now,)
        ):
            with contextlib.suppress(SwarmlinkError):
                self.core.restore_provider(bytes(key), agent_id, bytes(data), expires, now)
        self.store.take_changes()
        self._contacts_dirty = False

    def _persist(self, *, contacts: bool = False, providers: bool = False) -> None:
        """Write changed records; provider records and the routing table only when asked
        (maintenance rounds, when they changed, and shutdown)."""
        db = self.node.db
        changes = self.store.take_changes()
        with db.transaction():
            for agent_id, record in changes:
                if record is None:
                    db.execute("DELETE FROM dht_records WHERE agent_id = ?", (agent_id,))
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO dht_records (agent_id, expires, record) "
                        "VALUES (?, ?, ?)",
                        (agent_id, record.expires, record.encode()),
                    )
            if providers:
                db.execute("DELETE FROM dht_providers")
                db.executemany(
                    "INSERT INTO dht_providers (key, agent_id, expires, record) "
                    "VALUES (?, ?, ?, ?)",
                    [(k, a, exp, data) for k, a, data, exp in self.core.provider_entries()],
                )
            if contacts:
                db.execute("DELETE FROM dht_contacts")
                now = time.time()
                for contact in self.core.table.contacts():
                    db.execute(
                        "INSERT INTO dht_contacts (agent_id, addresses, last_seen) "
                        "VALUES (?, ?, ?)",
                        (contact.agent_id, json.dumps(list(contact.addresses)), now),
                    )
                self._contacts_dirty = False

    # ---- serving --------------------------------------------------------------------

    async def serve(self, stream: Stream) -> None:
        """Answer requests on one stream until the peer closes it."""
        while not await stream.at_end():
            data = await _read_message(stream)
            request = decode_request(data)
            before = len(self.core.table)
            addresses = request.addresses or tuple(self._addresses_of(stream.peer))
            self._hint(stream.peer, addresses)
            response = self.core.handle(stream.peer, addresses, request, time.time())
            self._send_pings()
            if len(self.core.table) != before:
                self._contacts_dirty = True
            if request.kind in (Query.STORE, Query.ADD_PROVIDER) and response.ok:
                self._persist()
            _write_message(stream, response.encode())
            await stream.drain()
            if not self._joined.is_set() and len(self.core.table):
                # Someone found us: we are part of a network now.
                self._joined.set()
        await stream.close()

    # ---- asking ---------------------------------------------------------------------

    def _hint(self, agent_id: str, addresses: Iterable[str]) -> None:
        addresses = tuple(addresses)
        if not addresses:
            return
        self._hints[agent_id] = addresses
        self._hints.move_to_end(agent_id)
        while len(self._hints) > MAX_ADDRESS_HINTS:
            self._hints.popitem(last=False)

    def _addresses_of(self, agent_id: str) -> list[str]:
        contact = self.core.table.get(agent_id)
        out = list(contact.addresses) if contact is not None else []
        out += [a for a in self._hints.get(agent_id, ()) if a not in out]
        return out[:MAX_CONTACT_ADDRESSES]

    def _observe(self, agent_id: str, addresses: Iterable[str]) -> None:
        """Tell the routing table ``agent_id`` is alive; if its bucket is full, check the
        least recently seen contact with a PING (Kademlia keeps it if it answers)."""
        self.core.observe(agent_id, tuple(addresses), time.time())
        self._contacts_dirty = True
        self._send_pings()

    def _send_pings(self) -> None:
        for stale in self.core.take_pings():
            if stale not in self._pinging:
                self._pinging.add(stale)
                self.node.spawn(self._check_alive(stale), name="dht:ping")

    async def _check_alive(self, agent_id: str) -> None:
        try:
            response = await self._query(agent_id, Query.PING, self.core.node_id)
            alive = response.ok
        except (SwarmlinkError, OSError, TimeoutError):
            alive = False
        finally:
            self._pinging.discard(agent_id)
        self.core.table.ping_result(agent_id, alive, time.time())

    async def request(
        self, agent_id: str, kind: Query, key: bytes, record: bytes | None = None
    ) -> Response:
        """One request to ``agent_id`` (dialing it if needed); raises on failure."""
        self._rid = (self._rid + 1) & 0xFFFF_FFFF
        req = Request(kind, self._rid, key, record, self._published_addresses)
        for attempt in (1, 2):
            conn = await self.node.connection(
                agent_id, hints=self._addresses_of(agent_id), resolve=False
            )
            stream = conn.open_stream(DHT_PROTOCOL)
            try:
                _write_message(stream, req.encode())
                stream.write_eof()
                response = decode_response(await _read_message(stream))
                break
            except RemoteError as exc:
                stream.reset(ErrorCode.CANCEL)
                if attempt == 1 and exc.code == ErrorCode.DUPLICATE_CONNECTION:
                    # The session lost a simultaneous-dial race (both ends dialed at once;
                    # the other session is kept): ask again on the one kept.
                    continue
                raise
            except BaseException:
                stream.reset(ErrorCode.CANCEL)
                raise
        if response.request_id != req.request_id:
            raise ProtocolViolation("DHT response to another request", ErrorCode.MALFORMED)
        return response

    async def _query(
        self, agent_id: str, kind: Query, key: bytes, record: bytes | None = None
    ) -> Response:
        async with asyncio.timeout(DHT_QUERY_TIMEOUT):
            return await self.request(agent_id, kind, key, record)

    async def run_lookup(
        self,
        lookup: Lookup[AgentRecord],
        kind: Query,
        on_response: Callable[[str, Response], AgentRecord | None] | None = None,
    ) -> Lookup[AgentRecord]:
        """Drive ``lookup`` to completion over real sessions."""
        loop = asyncio.get_running_loop()
        pending: dict[asyncio.Task[Response], str] = {}
        try:
            while True:
                now = loop.time()
                for peer in lookup.next_queries(now):
                    task = loop.create_task(self._query(peer.agent_id, kind, lookup.target))
                    pending[task] = peer.agent_id
                if lookup.done:
                    break
                timer = lookup.get_timer()
                if not pending and timer is None:
                    break
                timeout = None if timer is None else max(0.0, timer - loop.time())
                done, _ = await asyncio.wait(
                    pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                now = loop.time()
                wall = time.time()
                for task in done:
                    agent_id = pending.pop(task)
                    exc = task.exception()
                    response = None if exc is not None else task.result()
                    if response is None or not response.ok:
                        log.debug(
                            "DHT query failed",
                            extra={
                                "peer": agent_id,
                                "error": repr(exc) if response is None else response.error,
                            },
                        )
                        lookup.on_failure(agent_id, now)
                        if self.core.table.failed(agent_id, wall):
                            self._contacts_dirty = True
                        continue
                    value = on_response(agent_id, response) if on_response else None
                    contacts = []
                    for c in response.contacts:
                        if c.agent_id == self.node.agent_id:
                            continue
                        self._hint(c.agent_id, c.addresses)
                        contacts.append(Peer(c.agent_id, node_id(c.agent_id)))
                    lookup.on_response(agent_id, contacts, now, value=value)
                    self._observe(agent_id, self._addresses_of(agent_id))
                for dead in lookup.handle_timer(now):
                    self.core.table.failed(dead, wall)
        finally:
            self.core.finished(lookup)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(BaseException):
                    await task
        return lookup

    def _need_contacts(self) -> None:
        if not len(self.core.table):
            hint = (
                "start the node with --bootstrap AGENT@HOST:PORT"
                if not self.bootstrap
                else "the bootstrap peers did not answer: " + (self.last_join_error or "?")
            )
            raise NotFound(f"this node knows no other DHT node yet; {hint}")

    async def closest(self, key: bytes, *, paths: int = 3) -> list[str]:
        """The agents closest to ``key`` in the network (a FIND_NODE lookup)."""
        lookup: Lookup[AgentRecord] = self.core.new_lookup(key, time.monotonic(), paths=paths)
        await self.run_lookup(lookup, Query.FIND_NODE)
        return [p.agent_id for p in lookup.result()]

    async def resolve(
        self, agent_id: str, *, fresh: bool = False, thorough: bool = False
    ) -> AgentRecord:
        """The verified record of ``agent_id`` (from the DHT; cached unless ``fresh``).

        A lookup stops at the first record found; ``thorough`` asks all of the closest
        nodes instead and keeps the newest (for when the first one proved stale)."""
        agent_id = validate_agent_id(agent_id)
        now = time.time()
        if agent_id == self.node.agent_id:
            return await self.own_record()
        if not fresh:
            cached = self.store.get(agent_id, now)
            if cached is not None:
                return cached
        self._need_contacts()
        target = node_id(agent_id)

        seen: list[AgentRecord] = []

        def check(peer: str, response: Response) -> AgentRecord | None:
            if response.record is None:
                return None
            try:
                record = AgentRecord.verified(response.record, time.time(), agent_id=agent_id)
            except SwarmlinkError as exc:
                log.info("bad record in a DHT answer", extra={"peer": peer, "error": str(exc)})
                return None
            seen.append(record)
            return record

        lookup: Lookup[AgentRecord] = self.core.new_lookup(
            target, asyncio.get_running_loop().time(), find_value=not thorough
        )
        await self.run_lookup(lookup, Query.FIND_VALUE, check)
        if not seen:
            raise NotFound(
                f"agent {agent_id} was not found in the DHT "
                f"({lookup.stats.responses} nodes answered, {lookup.stats.failures} failed)"
            )
        best = max(seen, key=lambda r: r.sequence)
        if lookup.value_from != agent_id:
            # A node that stores the record may serve an old one (an outdated or lying
            # replica). The agent itself knows its current record: ask it at the
            # addresses found. The session is the one a dial by ID needs next anyway.
            self._hint(agent_id, best.addresses)
            try:
                async with asyncio.timeout(ASK_OWNER_TIMEOUT):
                    response = await self._query(agent_id, Query.FIND_VALUE, target)
            except (SwarmlinkError, OSError, TimeoutError):
                pass
            else:
                own = check(agent_id, response)
                if own is not None and own.sequence >= best.sequence:
                    best = own
        with contextlib.suppress(RemoteError):
            self.store.put_record(best, time.time())
        return self.store.get(agent_id, time.time()) or best

    async def find(self, tag: str, *, limit: int = MAX_FIND_RESULTS) -> list[AgentRecord]:
        """Agents that advertise capability ``tag``, with their verified records."""
        key = capability_key(tag)
        found: dict[str, AgentRecord] = {}

        def take(data: Iterable[bytes]) -> None:
            for item in data:
                try:
                    record = AgentRecord.verified(item, time.time())
                except SwarmlinkError:
                    continue
                if tag not in {c.tag for c in record.capabilities}:
                    continue
                held = found.get(record.agent_id)
                if held is None or held.sequence < record.sequence:
                    found[record.agent_id] = record

        take(self.core.providers(key, time.time()))
        own = self.store.get(self.node.agent_id, time.time())
        if own is not None:
            take([own.encode()])
        if len(self.core.table):

            def collect(peer: str, response: Response) -> None:
                take(response.providers)

            lookup: Lookup[AgentRecord] = self.core.new_lookup(
                key, asyncio.get_running_loop().time()
            )
            await self.run_lookup(lookup, Query.GET_PROVIDERS, collect)
        return sorted(found.values(), key=lambda r: r.agent_id)[:limit]

    # ---- joining and publishing -----------------------------------------------------

    def observe(self, agent_id: str, addresses: Iterable[str]) -> None:
        """A hint from outside the DHT (mDNS, a manual connect) about a node."""
        addresses = tuple(addresses)
        self._hint(agent_id, addresses)
        self._observe(agent_id, addresses)
        if not self._joined.is_set() and (self._joining is None or self._joining.done()):
            self._joining = self.node.spawn(self.join(), name="dht:join")

    async def join(self) -> None:
        """Contact the bootstrap peers, find our neighbours, publish our record."""
        errors = []
        for agent_id, address in self.bootstrap:
            if agent_id == self.node.agent_id:
                continue
            try:
                await self.node.connection(agent_id, hints=[address], resolve=False)
            except SwarmlinkError as exc:
                errors.append(f"{agent_id[:12]}@{address}: {exc}")
                continue
            self._observe(agent_id, [address])
        self.last_join_error = "; ".join(errors)
        if errors:
            log.warning("bootstrap peers failed", extra={"error": self.last_join_error})
        if not len(self.core.table):
            if not self.bootstrap:
                log.info("no bootstrap peers: this node starts its own network")
            await self.publish()
            return
        await self.closest(self.core.node_id, paths=1)
        self._joined.set()
        self._contacts_dirty = True
        await self.publish()

    def capabilities(self) -> list[Capability]:
        return [
            Capability(r[0], r[1], r[2], r[3])
            for r in self.node.db.query(
                "SELECT tag, name, description, protocol FROM capabilities ORDER BY tag"
            )
        ]

    async def add_capability(
        self, tag: str, *, name: str = "", description: str = "", protocol: str = ""
    ) -> Capability:
        cap = Capability(tag, name, description, protocol)
        caps = {c.tag: c for c in self.capabilities()}
        caps[cap.tag] = cap
        self._make_record(caps.values())  # raises if the record would be too big
        self.node.db.execute(
            "INSERT OR REPLACE INTO capabilities (tag, name, description, protocol, created) "
            "VALUES (?, ?, ?, ?, ?)",
            (cap.tag, cap.name, cap.description, cap.protocol, time.time()),
        )
        self.schedule_publish()
        return cap

    async def remove_capability(self, tag: str) -> None:
        cur = self.node.db.execute("DELETE FROM capabilities WHERE tag = ?", (tag,))
        if cur.rowcount == 0:
            raise NotFound(f"this agent does not advertise capability {tag!r}")
        self.schedule_publish()

    def _next_sequence(self) -> int:
        # Milliseconds since the epoch, and always above the last one we used: survives
        # restarts without a counter, and a restored backup cannot go back.
        row = self.node.db.query_one("SELECT value FROM meta WHERE key = 'record_seq'")
        last = int(row[0]) if row is not None else 0
        seq = max(last + 1, int(time.time() * 1000))
        self.node.db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('record_seq', ?)", (str(seq),)
        )
        return seq

    def _make_record(self, capabilities: Iterable[Capability], sequence: int = 0) -> AgentRecord:
        caps = list(capabilities)
        if self.node.config.relay:
            from ._natsvc import RELAY_CAPABILITY
            from ._relaysvc import RELAY_PROTOCOL

            caps.append(
                Capability(RELAY_CAPABILITY, "relay", "end-to-end encrypted relay", RELAY_PROTOCOL)
            )
        return AgentRecord.create(
            self.node.identity,
            self.node.operational.certificate,
            addresses=advertised_addresses(self.node),
            relays=self.node.relay.advertised(),
            versions=PROTOCOL_VERSIONS,
            capabilities=caps,
            sequence=sequence,
            now=time.time(),
        )

    async def own_record(self) -> AgentRecord:
        record = self.store.get(self.node.agent_id, time.time())
        if record is None:
            record = self._make_record(self.capabilities(), self._next_sequence())
            self.store.put_record(record, time.time())
            self.core.adopt(self.node.agent_id)
        return record

    def schedule_publish(self) -> None:
        """Publish our record soon (after a change); changes made while a publication
        runs are published right after it."""
        self._publish_again = True
        if self._publishing is None or self._publishing.done():
            self._publishing = self.node.spawn(self._publish_pending(), name="dht:publish")

    async def _publish_pending(self) -> AgentRecord | None:
        record = None
        while self._publish_again:
            self._publish_again = False
            record = await self.publish()
        return record

    async def publish(self) -> AgentRecord:
        """Sign a new record and store it (and provider records) at the closest nodes.
        One publication at a time: a slower, older one must not land after a newer one
        (the nodes refuse it as older, and it would report no stores)."""
        async with self._publish_lock:
            return await self._publish()

    async def _publish(self) -> AgentRecord:
        record = self._make_record(self.capabilities(), self._next_sequence())
        self.store.put_record(record, time.time())
        self.core.adopt(self.node.agent_id)
        for cap in record.capabilities:
            self.core.handle(
                self.node.agent_id,
                (),
                Request(Query.ADD_PROVIDER, 0, cap.key, record.encode()),
                time.time(),
            )
        self._published_addresses = record.addresses
        self._persist()
        if not len(self.core.table):
            self._published_at = time.time()
            return record
        data = record.encode()
        targets = [(Query.STORE, node_id(self.node.agent_id))]
        targets += [(Query.ADD_PROVIDER, cap.key) for cap in record.capabilities]
        stored = 0
        for kind, key in targets:
            closest = await self.closest(key, paths=1)
            results = await asyncio.gather(
                *(self._store_at(agent, kind, key, data) for agent in closest[:K]),
                return_exceptions=True,
            )
            stored += sum(1 for r in results if r is True)
        self._published_at = time.time()
        self.last_publish_stores = stored
        log.info(
            "published agent record",
            extra={"sequence": record.sequence, "stores": stored, "addresses": record.addresses},
        )
        return record

    async def _store_at(self, agent_id: str, kind: Query, key: bytes, data: bytes) -> bool:
        response = await self._query(agent_id, kind, key, data)
        if not response.ok:
            log.info(
                "a node refused our record: %s",
                response.error,
                extra={"peer": agent_id, "error": response.error},
            )
        return response.ok

    # ---- maintenance ----------------------------------------------------------------

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(MAINTENANCE_INTERVAL * (0.75 + self._rng.random() / 2))
            now = time.time()
            try:
                self.store.expire(now)
                self.core.expire(now)
                self._persist(contacts=self._contacts_dirty, providers=True)
                if not self._joined.is_set() and self.bootstrap:
                    if self._joining is None or self._joining.done():
                        self._joining = self.node.spawn(self.join(), name="dht:join")
                    continue
                addresses = advertised_addresses(self.node)
                if (
                    now - self._published_at > REPUBLISH_INTERVAL
                    or addresses != self._published_addresses
                ):
                    self.schedule_publish()
                for index in self.core.table.stale_buckets(now)[:MAX_REFRESH_PER_ROUND]:
                    self.core.table.touch_bucket(index, now)
                    await self.closest(
                        self.core.table.random_id_in_bucket(index, self._rng), paths=1
                    )
            except SwarmlinkError as exc:
                log.info("DHT maintenance step failed", extra={"error": str(exc)})


async def _read_message(stream: Stream) -> bytes:
    header = await stream.readexactly(4)
    size = int.from_bytes(header, "big")
    if size > MAX_DHT_MESSAGE:
        raise ProtocolViolation(
            f"DHT message of {size} bytes exceeds {MAX_DHT_MESSAGE}", ErrorCode.FRAME_TOO_LARGE
        )
    return await stream.readexactly(size)


def _write_message(stream: Stream, data: bytes) -> None:
    stream.write(len(data).to_bytes(4, "big") + data)
