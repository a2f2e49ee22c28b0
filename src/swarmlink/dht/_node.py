"""The DHT node core (sans-I/O): answers requests, keeps the routing table, starts lookups.

The runtime (or the simulator) owns the network: it hands each authenticated request to
:meth:`DhtNode.handle` and sends back the response, reports who it heard from with
:meth:`observe`, and drives :class:`~swarmlink.dht.Lookup` objects created by
:meth:`new_lookup`. Records are verified by the record store before they are kept.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any, Protocol

from ..errors import ErrorCode, RemoteError
from ._ids import capability_key, node_id
from ._lookup import ALPHA, DISJOINT_PATHS, QUERY_TIMEOUT, Lookup, Peer
from ._messages import MAX_CONTACTS, MAX_PROVIDERS, Query, Request, Response, WireContact
from ._routing import Contact, K, RoutingTable

__all__ = [
    "MAX_PENDING_PINGS",
    "MAX_PROVIDER_KEYS",
    "MAX_REQUESTS_BURST",
    "MAX_REQUESTS_PER_SECOND",
    "PROVIDER_TTL",
    "DhtNode",
    "RecordStoreAPI",
]

#: Sustained DHT requests per second one peer may make (untrusted input).
MAX_REQUESTS_PER_SECOND = 50.0
#: Burst of requests one peer may make at once.
MAX_REQUESTS_BURST = 100.0
#: Capability keys we hold provider records for.
MAX_PROVIDER_KEYS = 10_000
#: Seconds a provider announcement lives unless renewed.
PROVIDER_TTL = 3600.0
#: Liveness checks waiting to be sent (more are dropped until these are taken).
MAX_PENDING_PINGS = 64
#: Peers whose request budgets we remember (the oldest are forgotten).
_MAX_BUDGETS = 8192


@functools.lru_cache(maxsize=65536)
def _wire(contact: Contact) -> WireContact:
    """The wire form of a (immutable) contact, shared: responses repeat the same ones."""
    return WireContact(contact.agent_id, contact.addresses)


class RecordStoreAPI(Protocol):
    """What the node needs from a verified record store (see ``_records.RecordStore``)."""

    def put(self, data: bytes, now: float) -> object: ...

    def get_encoded(self, agent_id: str, now: float) -> bytes | None: ...


class DhtNode:
    """One node's DHT state: routing table, request budgets, provider records."""

    def __init__(self, local_agent_id: str, records: RecordStoreAPI, *, k: int = K) -> None:
        self.agent_id = local_agent_id
        self.node_id = node_id(local_agent_id)
        self.k = k
        self.table = RoutingTable(local_agent_id, k=k)
        self.records = records
        self._budgets: dict[str, tuple[float, float]] = {}
        # capability key -> agent ID -> (encoded record, expiry)
        self._providers: dict[bytes, dict[str, tuple[bytes, float]]] = {}
        self._record_by_key: dict[bytes, str] = {}
        self._to_ping: dict[str, None] = {}
        #: (smoothed RTT, variance) of the last lookup, to seed the next one's timeouts.
        self.rtt: tuple[float, float] | None = None

    # ---- routing table ------------------------------------------------------------------

    def observe(self, agent_id: str, addresses: Iterable[str], now: float) -> str | None:
        """We heard from ``agent_id`` (authenticated). Returns an agent to ping, if any."""
        if agent_id == self.agent_id:
            return None
        addresses = tuple(addresses)
        if self.table.refresh(agent_id, addresses, now):
            return None
        stale = self.table.observe(Contact.from_agent(agent_id, addresses), now)
        if stale is None:
            return None
        if stale.agent_id not in self._to_ping and len(self._to_ping) < MAX_PENDING_PINGS:
            self._to_ping[stale.agent_id] = None
        return stale.agent_id

    def take_pings(self) -> list[str]:
        """Contacts to PING (least recently seen of a full bucket a newcomer wants into);
        report each answer with ``table.ping_result``. Kademlia keeps a live old contact
        and replaces a dead one, which is how tables heal under churn."""
        out = list(self._to_ping)
        self._to_ping.clear()
        return out

    def new_lookup(
        self,
        target: bytes,
        now: float,
        *,
        find_value: bool = False,
        paths: int = DISJOINT_PATHS,
        alpha: int = ALPHA,
        timeout: float = QUERY_TIMEOUT,
    ) -> Lookup[Any]:
        """A lookup seeded from our table (``paths=1`` for cheap table maintenance, such as
        the self-lookup on joining; disjoint paths where an eclipse would matter)."""
        seeds = [Peer(c.agent_id, c.node_id) for c in self.table.closest(target, self.k)]
        return Lookup(
            target,
            seeds,
            local_agent_id=self.agent_id,
            now=now,
            find_value=find_value,
            paths=paths,
            alpha=alpha,
            timeout=timeout,
            rtt=self.rtt,
        )

    def finished(self, lookup: Lookup[Any]) -> None:
        """A lookup ended: keep its RTT estimate to time the next one's queries."""
        estimate = lookup.rtt_estimate
        if estimate is not None:
            self.rtt = estimate

    def _contacts(self, key: bytes, exclude: str) -> tuple[WireContact, ...]:
        closest = self.table.closest(key, min(self.k, MAX_CONTACTS), exclude=(exclude,))
        return tuple(map(_wire, closest))

    def adopt(self, agent_id: str) -> None:
        """Answer FIND_VALUE for ``agent_id`` from the record store (our own record, and
        records restored from disk)."""
        self._record_by_key[node_id(agent_id)] = agent_id

    # ---- requests -------------------------------------------------------------------------

    def _allow(self, peer: str, now: float) -> bool:
        tokens, last = self._budgets.pop(peer, (MAX_REQUESTS_BURST, now))
        tokens = min(MAX_REQUESTS_BURST, tokens + (now - last) * MAX_REQUESTS_PER_SECOND)
        if len(self._budgets) >= _MAX_BUDGETS:
            del self._budgets[next(iter(self._budgets))]  # forget the least recent peer
        if tokens < 1.0:
            self._budgets[peer] = (tokens, now)
            return False
        self._budgets[peer] = (tokens - 1.0, now)
        return True

    def handle(self, peer: str, addresses: Iterable[str], request: Request, now: float) -> Response:
        """Answer one request from the authenticated ``peer``."""
        rid = request.request_id
        if not self._allow(peer, now):
            return Response(rid, False, error="rate limited")
        self.observe(peer, addresses, now)
        kind = request.kind
        if kind == Query.PING:
            return Response(rid, True)
        if kind == Query.FIND_NODE:
            return Response(rid, True, contacts=self._contacts(request.key, peer))
        if kind == Query.FIND_VALUE:
            found = self._value_for(request.key, now)
            if found is not None:
                return Response(rid, True, record=found)
            return Response(rid, True, contacts=self._contacts(request.key, peer))
        if kind == Query.GET_PROVIDERS:
            providers = self.providers(request.key, now)
            return Response(
                rid, True, providers=providers, contacts=self._contacts(request.key, peer)
            )
        assert request.record is not None  # decode_request guarantees it for these kinds
        try:
            self._store(kind, request.key, request.record, now)
        except RemoteError as exc:
            return Response(rid, False, error=f"{exc.reason} [{exc.code.name.lower()}]")
        return Response(rid, True)

    def _value_for(self, key: bytes, now: float) -> bytes | None:
        agent_id = self._record_by_key.get(key)
        return None if agent_id is None else self.records.get_encoded(agent_id, now)

    def _store(self, kind: Query, key: bytes, record: bytes, now: float) -> None:
        stored = self.records.put(record, now)
        agent_id = str(getattr(stored, "agent_id", ""))
        if kind == Query.STORE:
            if node_id(agent_id) != key:
                raise RemoteError(
                    "record stored under a key that is not its agent's ID", ErrorCode.MALFORMED
                )
            self._record_by_key[key] = agent_id
            return
        # ADD_PROVIDER: the record must advertise the capability the key names.
        tags = [str(getattr(c, "tag", "")) for c in getattr(stored, "capabilities", ())]
        if key not in {capability_key(t) for t in tags if t}:
            raise RemoteError(
                "provider record does not advertise that capability", ErrorCode.MALFORMED
            )
        entries = self._providers.get(key)
        if entries is None:
            if len(self._providers) >= MAX_PROVIDER_KEYS:
                self._expire_providers(now)
                if len(self._providers) >= MAX_PROVIDER_KEYS:
                    raise RemoteError("provider table full", ErrorCode.RATE_LIMITED)
            entries = self._providers[key] = {}
        entries[agent_id] = (record, now + PROVIDER_TTL)
        if len(entries) > MAX_PROVIDERS * 4:
            oldest = min(entries, key=lambda a: entries[a][1])
            del entries[oldest]

    def providers(self, key: bytes, now: float) -> tuple[bytes, ...]:
        entries = self._providers.get(key, {})
        live = [(exp, rec) for rec, exp in entries.values() if exp > now]
        live.sort(reverse=True)
        return tuple(rec for _, rec in live[:MAX_PROVIDERS])

    def provider_entries(self) -> list[tuple[bytes, str, bytes, float]]:
        """Every provider record held: (key, agent ID, record, expiry), for persistence."""
        return [
            (key, agent, record, expires)
            for key, entries in self._providers.items()
            for agent, (record, expires) in entries.items()
        ]

    def restore_provider(
        self, key: bytes, agent_id: str, record: bytes, expires: float, now: float
    ) -> None:
        """Put back a provider record loaded from disk (verified again by the store)."""
        if expires > now:
            self._store(Query.ADD_PROVIDER, key, record, now)
            self._providers[key][agent_id] = (record, expires)

    def expire(self, now: float) -> None:
        """Drop expired provider records (records expire in the record store)."""
        self._expire_providers(now)

    def _expire_providers(self, now: float) -> None:
        for key in list(self._providers):
            entries = self._providers[key]
            for agent in [a for a, (_, exp) in entries.items() if exp <= now]:
                del entries[agent]
            if not entries:
                del self._providers[key]
