"""The pub/sub heartbeat (private): score decay, IWANT promises, mesh maintenance (plain
and regional), fanout, IHAVE gossip, cache expiry and the bridge elections."""

from __future__ import annotations

from ._pubsub_messages import MAX_IHAVE_IDS
from ._pubsub_regions import bridge_rank
from ._pubsub_router import Router

__all__ = ["Maintenance"]

#: Authors whose expired seqnos we remember (replay floor); the oldest are forgotten.
MAX_TRACKED_AUTHORS = 65536


class Maintenance(Router):
    """The periodic part of the router."""

    def _heartbeat(self, now: float) -> None:
        if self._dirty:
            self._run_elections()  # who bridges decides the cross-region links
        self._ticks += 1
        self.stats.heartbeats += 1
        scores: dict[str, float] = {}
        for peer, state in self._peers.items():
            state.score.decay(now)
            state.ihaves = 0
            state.asked = 0
            if state.backoff:
                for topic in [t for t, until in state.backoff.items() if until <= now]:
                    del state.backoff[topic]
            scores[peer] = state.score.value()
        self._scores = scores
        self._hinted.clear()
        self._expire_promises(now)
        for topic in self._mesh:
            self._maintain(topic, now, scores)
        self._maintain_fanout(now, scores)
        self._emit_gossip(scores)
        self._shift_cache(now)
        for topic, election in self._elections.items():
            if self._neighbours(topic) != election.neighbours:  # scores crossed zero
                self._mark_dirty(topic, now)

    def _expire_promises(self, now: float) -> None:
        """IWANTs unanswered for ``iwant_followup_time`` are broken promises."""
        deadline = now - self.config.iwant_followup_time
        queue = self._promise_queue
        promises = self._promises
        while queue and queue[0][0] <= deadline:
            at, mid, peer = queue.popleft()
            asked = promises.get(mid)
            if asked is None or asked.get(peer) != at:
                continue  # delivered since
            del asked[peer]
            if not asked:
                del promises[mid]
            state = self._peers.get(peer)
            if state is not None:
                self.stats.broken_promises += 1
                state.score.penalize(1.0)

    def _candidates(self, topic: str, mesh: dict[str, None], now: float) -> list[str]:
        """Topic peers we may graft: not in the mesh, score >= 0, not backed off."""
        scores = self._scores
        peers = self._peers
        out = []
        for peer in self._topic_peers.get(topic, ()):
            if peer in mesh or scores.get(peer, 0.0) < 0:
                continue
            until = peers[peer].backoff.get(topic)
            if until is None or until <= now:
                out.append(peer)
        return out

    def _maintain(self, topic: str, now: float, scores: dict[str, float]) -> None:
        cfg = self.config
        mesh = self._mesh[topic]
        for peer in [p for p in mesh if scores.get(p, 0.0) < 0]:
            self._prune(topic, peer, now, cfg.prune_backoff)
        candidates = self._candidates(topic, mesh, now)
        if self._regional:
            self._maintain_regional(topic, mesh, candidates, now, scores)
            return
        if len(mesh) < cfg.d_low:
            self._graft_some(topic, candidates, cfg.d - len(mesh), now)
        elif len(mesh) > cfg.d_high:
            self._shrink(topic, list(mesh), now, scores)
        self._opportunistic(topic, mesh, candidates, now, scores)

    def _graft_some(self, topic: str, candidates: list[str], n: int, now: float) -> None:
        if n <= 0 or not candidates:
            return
        chosen = candidates if len(candidates) <= n else self._rng.sample(candidates, n)
        for peer in chosen:
            self._graft(topic, peer, now)

    def _shrink(self, topic: str, members: list[str], now: float, scores: dict[str, float]) -> None:
        """Prune ``members`` down to ``d``: the ``d_score`` best by score, the rest random."""
        cfg = self.config
        self._rng.shuffle(members)
        members.sort(key=lambda p: scores.get(p, 0.0), reverse=True)
        rest = members[cfg.d_score :]
        self._rng.shuffle(rest)
        for peer in rest[cfg.d - cfg.d_score :]:
            self._prune(topic, peer, now, cfg.prune_backoff)

    def _opportunistic(
        self,
        topic: str,
        mesh: dict[str, None],
        candidates: list[str],
        now: float,
        scores: dict[str, float],
    ) -> None:
        cfg = self.config
        if not cfg.opportunistic_graft_ticks or self._ticks % cfg.opportunistic_graft_ticks:
            return
        if len(mesh) < 2:
            return
        ranked = sorted(scores.get(p, 0.0) for p in mesh)
        median = ranked[len(ranked) // 2]
        if median >= self._params.opportunistic_graft_threshold:
            return
        better = [p for p in candidates if scores.get(p, 0.0) > median and p not in mesh]
        self._graft_some(topic, better, cfg.opportunistic_graft_peers, now)

    def _maintain_regional(
        self,
        topic: str,
        mesh: dict[str, None],
        candidates: list[str],
        now: float,
        scores: dict[str, float],
    ) -> None:
        cfg = self.config
        peers = self._peers
        region = self.region
        local_cands = [p for p in candidates if peers[p].region == region]
        local_mesh = [p for p in mesh if peers[p].region == region]
        if len(local_mesh) < cfg.d_low:
            self._graft_some(topic, local_cands, cfg.d - len(local_mesh), now)
        elif len(local_mesh) > cfg.d_high:
            self._shrink(topic, local_mesh, now, scores)
        else:
            self._opportunistic(topic, mesh, local_cands, now, scores)
        owned = self._owned[topic]
        keep: dict[str, None] = {}
        remote_cands = [p for p in candidates if peers[p].region != region and p not in mesh]
        election = self._elections[topic]
        if election.is_bridge() and election.neighbours:  # alone: nobody to bridge for
            # One mesh link into every other region we know a topic peer in.
            linked: dict[str, None] = {}
            for peer in sorted(owned, key=lambda p: bridge_rank(topic, p)):
                if peers[peer].region not in linked:
                    linked[peers[peer].region] = None
                    keep[peer] = None
            for peer in mesh:
                if peers[peer].region != region:
                    linked[peers[peer].region] = None
            best: dict[str, str] = {}
            for peer in remote_cands:
                r = peers[peer].region
                if r not in linked and (
                    r not in best or bridge_rank(topic, peer) < bridge_rank(topic, best[r])
                ):
                    best[r] = peer
            for r in sorted(best):
                self._graft(topic, best[r], now, owned=True)
                keep[best[r]] = None
        if not any(peers[p].region == region for p in mesh) and not local_cands:
            # Nobody of our region to mesh with: keep region_fill remote peers.
            fill = cfg.region_fill - len(mesh)
            spare = [p for p in remote_cands if p not in mesh]
            for peer in spare if len(spare) <= fill else self._rng.sample(spare, max(0, fill)):
                self._graft(topic, peer, now, owned=True)
            keep.update((p, None) for p in owned)
        for peer in [p for p in owned if p not in keep]:
            self._prune(topic, peer, now, cfg.prune_backoff)
        inbound = [p for p in mesh if peers[p].region != region and p not in owned]
        if len(inbound) > cfg.d_high:
            self._rng.shuffle(inbound)
            for peer in inbound[cfg.d_high :]:
                self._prune(topic, peer, now, cfg.prune_backoff)

    def _fill_fanout(self, topic: str, fanout: dict[str, None], scores: dict[str, float]) -> None:
        threshold = self._params.publish_threshold
        peers = self._peers
        candidates = [
            p
            for p in self._topic_peers.get(topic, ())
            if p not in fanout and scores.get(p, 0.0) >= threshold
        ]
        if self._regional:
            local = [p for p in candidates if peers[p].region == self.region]
            candidates = local if len(local) + len(fanout) >= self.config.d_low else candidates
        n = self.config.d - len(fanout)
        if n > 0 and candidates:
            chosen = candidates if len(candidates) <= n else self._rng.sample(candidates, n)
            fanout.update((p, None) for p in chosen)

    def _maintain_fanout(self, now: float, scores: dict[str, float]) -> None:
        threshold = self._params.publish_threshold
        for topic in list(self._fanout):
            if self._fanout_last[topic] + self.config.fanout_ttl < now:
                del self._fanout[topic], self._fanout_last[topic]
                continue
            fanout = self._fanout[topic]
            members = self._topic_peers.get(topic, {})
            for peer in [p for p in fanout if p not in members or scores[p] < threshold]:
                del fanout[peer]
            if len(fanout) < self.config.d:
                self._fill_fanout(topic, fanout, scores)

    def _emit_gossip(self, scores: dict[str, float]) -> None:
        cfg = self.config
        windows = self._windows[: cfg.history_gossip]
        if not any(windows):
            return
        recent: dict[str, list[bytes]] = {}
        old: dict[str, list[bytes]] = {}
        for age, window in enumerate(windows):
            for mid in window:
                topic = self._msgs[mid].msg.topic
                recent.setdefault(topic, []).append(mid)
                if age:
                    old.setdefault(topic, []).append(mid)
        threshold = self._params.gossip_threshold
        cap = min(cfg.max_ihave_length, MAX_IHAVE_IDS)
        peers = self._peers
        for topic, ids in recent.items():
            exclude = self._mesh.get(topic)
            if exclude is None:
                exclude = self._fanout.get(topic)
                if exclude is None:
                    continue
            eligible = [
                p
                for p in self._topic_peers.get(topic, ())
                if p not in exclude and scores.get(p, 0.0) >= threshold
            ]
            remote: list[str] = []
            if self._regional:
                remote = [p for p in eligible if peers[p].region != self.region]
                eligible = [p for p in eligible if peers[p].region == self.region]
            n = max(cfg.d_lazy, int(cfg.gossip_factor * len(eligible)))
            targets = eligible if len(eligible) <= n else self._rng.sample(eligible, n)
            self._send_ihave(topic, ids, targets, cap)
            old_ids = old.get(topic)
            if remote and old_ids and cfg.cross_region_gossip:
                n = cfg.cross_region_gossip
                targets = remote if len(remote) <= n else self._rng.sample(remote, n)
                self._send_ihave(topic, old_ids, targets, cap)

    def _send_ihave(self, topic: str, ids: list[bytes], targets: list[str], cap: int) -> None:
        if len(ids) > cap:
            ids = self._rng.sample(ids, cap)
        for peer in targets:
            self._box(peer).ihave.setdefault(topic, []).extend(ids)
            self.stats.ihave_sent += 1

    def _shift_cache(self, now: float) -> None:
        windows = self._windows
        windows.insert(0, [])
        if len(windows) > self.config.history_length:
            msgs = self._msgs
            for mid in windows.pop():
                msgs.pop(mid, None)
        seen = self._seen
        floors = self._floors
        while seen:
            mid, (expiry, author, seqno) = next(iter(seen.items()))
            if expiry > now:
                break
            seen.popitem(last=False)
            if seqno > floors.get(author, -1):
                floors[author] = seqno
                floors.move_to_end(author)
                if len(floors) > MAX_TRACKED_AUTHORS:
                    floors.popitem(last=False)
        rejected = self._rejected
        while rejected and next(iter(rejected.values())) <= now:
            rejected.popitem(last=False)
        for peer in [p for p, (_, until) in self._retained.items() if until <= now]:
            del self._retained[peer]

    def _neighbours(self, topic: str) -> list[str]:
        """Same-region topic peers with a non-negative score: the election's graph."""
        region = self.region
        peers = self._peers
        scores = self._scores
        return [
            p
            for p in self._topic_peers.get(topic, ())
            if peers[p].region == region and scores.get(p, 0.0) >= 0
        ]

    def _run_elections(self) -> None:
        for topic in self._dirty:
            election = self._elections.get(topic)
            if election is None:
                continue
            neighbours = self._neighbours(topic)
            election.recompute(neighbours)
            sent = election.sent
            for peer in neighbours:
                advert = election.advert_for(peer)
                previous = sent.get(peer)
                if previous != advert and (previous is not None or advert):
                    sent[peer] = advert
                    self._box(peer).bridges[topic] = advert
        self._dirty = {}
        self._election_due = None
