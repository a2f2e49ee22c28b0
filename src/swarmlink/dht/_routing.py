"""The Kademlia routing table (sans-I/O: time and randomness are passed in).

Buckets are indexed by common prefix length with the local node ID (see
:mod:`swarmlink.dht._ids`): bucket ``i`` holds contacts whose XOR distance ``d`` to the
local node satisfies ``2**(255 - i) <= d < 2**(256 - i)``. Bucket 0 covers the far half
of the keyspace, bucket 255 the one ID that differs only in the last bit; higher index
means closer. Each bucket keeps at most ``k`` contacts ordered from least to most
recently seen, plus a small replacement cache of newcomers that found it full.

Kademlia prefers long-lived nodes: :meth:`RoutingTable.observe` never evicts a live
contact to make room. When a bucket is full it parks the newcomer in the replacement
cache and returns the bucket's least recently seen contact; the caller pings it and
reports with :meth:`RoutingTable.ping_result`. Only a dead (or repeatedly failing)
contact makes room, and the most recently seen replacement takes its place.
"""

from __future__ import annotations

import functools
import heapq
import random
from collections import OrderedDict
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from ..errors import InvalidArgument
from ..identity import validate_agent_id
from ._ids import ID_BITS, ID_BYTES, bucket_index, node_id
from ._messages import MAX_ADDRESS_TEXT, MAX_CONTACT_ADDRESSES

__all__ = [
    "BUCKET_REFRESH",
    "MAX_FAILURES",
    "REPLACEMENT_CACHE",
    "Contact",
    "K",
    "RoutingTable",
]

#: Contacts per bucket (Kademlia's k; also the default size of :meth:`RoutingTable.closest`).
K = 20
#: Newcomers remembered per full bucket, to replace contacts that die.
REPLACEMENT_CACHE = 8
#: Seconds after which a bucket nobody touched should be refreshed by a lookup.
BUCKET_REFRESH = 3600.0
#: Consecutive failed requests after which a contact is evicted (if a replacement exists).
MAX_FAILURES = 3
#: Recently built contacts shared by :meth:`Contact.from_agent` (immutable values).
CONTACT_CACHE = 65536


@dataclass(frozen=True)
class Contact:
    """A DHT node: its agent ID, the node ID bound to it and where it can be reached.

    Construct with :meth:`from_agent`; the constructor checks that ``agent_id`` is
    normalised and that ``node_id`` is its digest.
    """

    agent_id: str
    node_id: bytes
    addresses: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.agent_id, str) or validate_agent_id(self.agent_id) != self.agent_id:
            raise InvalidArgument(f"contact agent ID {self.agent_id!r} is not normalised")
        if self.node_id != node_id(self.agent_id):
            raise InvalidArgument(f"node ID does not match agent ID {self.agent_id}")
        if not isinstance(self.addresses, tuple):
            raise InvalidArgument("contact addresses must be a tuple")
        if len(self.addresses) > MAX_CONTACT_ADDRESSES:
            raise InvalidArgument(
                f"a contact has at most {MAX_CONTACT_ADDRESSES} addresses, "
                f"got {len(self.addresses)}"
            )
        for address in self.addresses:
            if not isinstance(address, str) or not 1 <= len(address) <= MAX_ADDRESS_TEXT:
                raise InvalidArgument(
                    f"a contact address is a string of 1 to {MAX_ADDRESS_TEXT} characters"
                )

    @classmethod
    def from_agent(cls, agent_id: str, addresses: Iterable[str] = ()) -> Contact:
        """The contact of ``agent_id`` (normalised) reachable at ``addresses``.

        Contacts are immutable, so recent ones are shared from a cache: the same contact
        is observed again and again, and validating its agent ID each time is slow."""
        return _contact(agent_id, tuple(addresses))


@functools.lru_cache(maxsize=CONTACT_CACHE)
def _contact(agent_id: str, addresses: tuple[str, ...]) -> Contact:
    value = validate_agent_id(agent_id)
    return Contact(value, node_id(value), addresses)


class _Entry:
    __slots__ = ("contact", "failures", "key", "last_seen")

    def __init__(self, contact: Contact, last_seen: float) -> None:
        self.contact = contact
        self.key = int.from_bytes(contact.node_id, "big")  # for XOR without decoding
        self.last_seen = last_seen
        self.failures = 0


class _Bucket:
    __slots__ = ("entries", "replacements", "touched")

    def __init__(self) -> None:
        # Least recently seen first; most recently seen at the end.
        self.entries: OrderedDict[str, _Entry] = OrderedDict()
        # Oldest first; the most recent newcomer at the end.
        self.replacements: OrderedDict[str, _Entry] = OrderedDict()
        # Last activity or lookup in this bucket's range (None: never).
        self.touched: float | None = None


class RoutingTable:
    """Kademlia k-buckets around the local node (which is never inserted)."""

    def __init__(self, local_agent_id: str, *, k: int = K) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidArgument(f"bucket size k must be a positive integer, got {k!r}")
        self.local_agent_id: str = validate_agent_id(local_agent_id)
        self.local_id: bytes = node_id(self.local_agent_id)
        self.k: int = k
        self._local_int = int.from_bytes(self.local_id, "big")
        self._buckets = [_Bucket() for _ in range(ID_BITS)]
        self._where: dict[str, int] = {}  # agent ID -> bucket index, for contacts in buckets
        self._nonempty: set[int] = set()  # indices of buckets holding contacts

    # -- queries ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, agent_id: object) -> bool:
        return isinstance(agent_id, str) and agent_id.strip().lower() in self._where

    def get(self, agent_id: str) -> Contact | None:
        """The contact of ``agent_id`` if it is in a bucket (replacements do not count)."""
        aid = validate_agent_id(agent_id)
        index = self._where.get(aid)
        if index is None:
            return None
        return self._buckets[index].entries[aid].contact

    def contacts(self) -> list[Contact]:
        """Every contact, bucket 0 (farthest) first, least recently seen first in a bucket."""
        return [e.contact for b in self._buckets for e in b.entries.values()]

    def bucket_contacts(self, index: int) -> list[Contact]:
        """The contacts of bucket ``index``, least recently seen first."""
        return [e.contact for e in self._bucket(index).entries.values()]

    def replacements(self, index: int) -> list[Contact]:
        """The replacement cache of bucket ``index``, most recent last."""
        return [e.contact for e in self._bucket(index).replacements.values()]

    def failures(self, agent_id: str) -> int:
        """Consecutive failures recorded for a contact in the table (0 if unknown)."""
        aid = validate_agent_id(agent_id)
        index = self._where.get(aid)
        return 0 if index is None else self._buckets[index].entries[aid].failures

    def closest(self, target: bytes, n: int = K, *, exclude: Collection[str] = ()) -> list[Contact]:
        """Up to ``n`` contacts closest to ``target`` by XOR distance, closest first.

        Walks buckets outward from the target's bucket and stops once ``n`` are found.
        With ``j`` the target's bucket (its common prefix length with the local ID):
        bucket ``j`` holds the closest contacts, then buckets ``j+1 ... 255`` together
        (all at the same top distance bit as the local node), then ``j-1, j-2, ... 0``,
        each strictly farther than the one before.
        """
        if not isinstance(target, bytes | bytearray) or len(target) != ID_BYTES:
            raise InvalidArgument(f"a DHT target is {ID_BYTES} bytes")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InvalidArgument(f"n must be a non-negative integer, got {n!r}")
        t = int.from_bytes(target, "big")
        j = ID_BITS - (t ^ self._local_int).bit_length()  # ID_BITS when target == local
        # Only non-empty buckets are visited: bucket j, then all deeper ones together,
        # then the shallower ones one by one (each strictly farther than the last).
        nonempty = sorted(self._nonempty)
        groups: list[list[int]] = []
        if j < ID_BITS:
            groups.append([i for i in nonempty if i == j])
            groups.append([i for i in nonempty if i > j])
        groups.extend([i] for i in reversed(nonempty) if i < j)
        skip = {a.strip().lower() for a in exclude} if exclude else set()
        result: list[Contact] = []
        for group in groups:
            if len(result) >= n:
                break
            found = [
                (e.key ^ t, e.contact)
                for i in group
                for aid, e in self._buckets[i].entries.items()
                if aid not in skip
            ]
            if not found:
                continue
            want = n - len(result)
            if len(found) > want:
                found = heapq.nsmallest(want, found, key=lambda p: p[0])
            else:
                found.sort(key=lambda p: p[0])
            result.extend(c for _, c in found)
        return result

    def stale_buckets(self, now: float, *, interval: float = BUCKET_REFRESH) -> list[int]:
        """Buckets to refresh: not touched for ``interval`` seconds (or never).

        Only buckets up to the deepest non-empty one are considered: deeper buckets cover
        ranges that are almost surely empty, and a lookup of the local ID (which every
        node does on joining) already explores them. Empty table: nothing to refresh.
        """
        deepest = max(self._where.values(), default=-1)
        return [
            i
            for i in range(deepest + 1)
            if (touched := self._buckets[i].touched) is None or now - touched >= interval
        ]

    def random_id_in_bucket(self, index: int, rng: random.Random) -> bytes:
        """A uniformly random ID that falls in bucket ``index`` (target of a refresh lookup)."""
        self._bucket(index)
        free_bits = ID_BITS - 1 - index
        d = (1 << free_bits) | rng.getrandbits(free_bits)
        return (self._local_int ^ d).to_bytes(ID_BYTES, "big")

    # -- updates ---------------------------------------------------------------------------

    def touch_bucket(self, index: int, now: float) -> None:
        """Record a lookup in bucket ``index``'s range (it is fresh until ``now + refresh``)."""
        self._bucket(index).touched = now

    def refresh(self, agent_id: str, addresses: tuple[str, ...], now: float) -> bool:
        """Fast path of :meth:`observe` for a contact already in a bucket whose addresses
        are unchanged (or not given): mark it seen. False if it is not that simple."""
        index = self._where.get(agent_id)
        if index is None:
            return False
        bucket = self._buckets[index]
        if addresses and addresses != bucket.entries[agent_id].contact.addresses:
            return False
        self._seen(bucket, agent_id, now)
        return True

    def observe(self, contact: Contact, now: float) -> Contact | None:
        """Record that ``contact`` was seen alive at ``now`` (it answered or contacted us).

        A known contact is refreshed (most recently seen, new addresses, failures cleared);
        a new one is inserted if its bucket has room, or replaces a contact that failed
        :data:`MAX_FAILURES` times. Otherwise the newcomer goes to the bucket's replacement
        cache and the bucket's least recently seen contact is returned: ping it and call
        :meth:`ping_result`. The local node is ignored.
        """
        if not isinstance(contact, Contact):
            raise InvalidArgument("observe() takes a Contact")
        aid = contact.agent_id
        if aid == self.local_agent_id:
            return None
        index = bucket_index(self.local_id, contact.node_id)
        bucket = self._buckets[index]
        bucket.touched = now
        entry = bucket.entries.get(aid)
        if entry is not None:
            entry.contact = contact
            self._seen(bucket, aid, now)
            return None
        if len(bucket.entries) >= self.k:
            dead = next((a for a, e in bucket.entries.items() if e.failures >= MAX_FAILURES), None)
            if dead is None:
                bucket.replacements.pop(aid, None)
                fresh = _Entry(contact, now)
                bucket.replacements[aid] = fresh
                while len(bucket.replacements) > REPLACEMENT_CACHE:
                    bucket.replacements.popitem(last=False)
                return next(iter(bucket.entries.values())).contact
            del bucket.entries[dead]
            del self._where[dead]
        bucket.replacements.pop(aid, None)
        bucket.entries[aid] = _Entry(contact, now)
        self._where[aid] = index
        self._nonempty.add(index)
        return None

    def ping_result(self, agent_id: str, alive: bool, now: float) -> None:
        """Report the ping of a contact returned by :meth:`observe`.

        Alive: it becomes the most recently seen. Dead: it is evicted and the most recent
        replacement takes its place. Unknown agent IDs (already removed) are ignored.
        """
        aid = validate_agent_id(agent_id)
        index = self._where.get(aid)
        if index is None:
            return
        bucket = self._buckets[index]
        if alive:
            self._seen(bucket, aid, now)
        else:
            self._evict(index, aid)

    def failed(self, agent_id: str, now: float) -> bool:
        """Count a failed request to ``agent_id``; True if it was evicted.

        After :data:`MAX_FAILURES` consecutive failures the contact is evicted if a
        replacement is waiting (else it stays: a stale contact beats none, e.g. while our
        own link is down). A failing replacement candidate is dropped from the cache.
        ``now`` is accepted for symmetry with the other updates.
        """
        aid = validate_agent_id(agent_id)
        index = self._where.get(aid)
        if index is None:
            if aid != self.local_agent_id:
                bucket = self._buckets[bucket_index(self.local_id, node_id(aid))]
                bucket.replacements.pop(aid, None)
            return False
        bucket = self._buckets[index]
        entry = bucket.entries[aid]
        entry.failures += 1
        if entry.failures >= MAX_FAILURES and bucket.replacements:
            self._evict(index, aid)
            return True
        return False

    def remove(self, agent_id: str) -> bool:
        """Forget ``agent_id`` (from its bucket, promoting a replacement, or from a cache).

        True if it was known.
        """
        aid = validate_agent_id(agent_id)
        index = self._where.get(aid)
        if index is not None:
            self._evict(index, aid)
            return True
        if aid == self.local_agent_id:
            return False
        bucket = self._buckets[bucket_index(self.local_id, node_id(aid))]
        return bucket.replacements.pop(aid, None) is not None

    # -- internals -------------------------------------------------------------------------

    def _bucket(self, index: int) -> _Bucket:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < ID_BITS:
            raise InvalidArgument(f"bucket index must be 0..{ID_BITS - 1}, got {index!r}")
        return self._buckets[index]

    @staticmethod
    def _seen(bucket: _Bucket, aid: str, now: float) -> None:
        """``aid`` (in ``bucket``) is alive: most recently seen, failures forgotten."""
        entry = bucket.entries[aid]
        entry.last_seen = now
        entry.failures = 0
        bucket.entries.move_to_end(aid)
        bucket.touched = now

    def _evict(self, index: int, aid: str) -> None:
        bucket = self._buckets[index]
        del bucket.entries[aid]
        del self._where[aid]
        if bucket.replacements:
            new_aid, entry = bucket.replacements.popitem(last=True)
            bucket.entries[new_aid] = entry
            self._where[new_aid] = index
        if not bucket.entries:
            self._nonempty.discard(index)
