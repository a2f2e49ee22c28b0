"""The control API routes: request validation, node calls, JSON / NDJSON / upgrade replies.

See ``docs/control-api.md`` for the contract.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import re
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from ..dht import MAX_CAPABILITY_TAG, capability_key
from ..dht._records import MAX_CAPABILITY_TEXT
from ..errors import InvalidArgument, StateError
from ..identity import validate_agent_id
from ._args import Args, parse_json_body, parse_query, path_param
from ._errors import error_body, error_object, error_status
from ._gossiproutes import add_gossip_routes
from ._http import HttpConnection, Request, serve_ndjson
from ._nodeapi import NodeAPI
from ._streams import (
    INCOMING_ATTACH_TIMEOUT,
    MAX_PROTOCOL_NAME,
    MAX_TOKEN_LENGTH,
    UPGRADE_PROTOCOL,
    StreamHub,
)

__all__ = ["MAX_PING_COUNT", "MAX_PING_INTERVAL", "Router"]

log = logging.getLogger("swarmlink.daemon")

#: Most pings one ``POST /v1/ping`` may ask for.
MAX_PING_COUNT = 10_000
#: Longest pause between pings (seconds).
MAX_PING_INTERVAL = 60.0
#: Longest ``target``, ``agent_id``, ``bind_host`` or exposure ``name`` accepted (characters).
MAX_NAME_LENGTH = 512
#: Longest trust request reason accepted (characters).
MAX_REASON_LENGTH = 1024
#: Longest file path accepted (characters).
MAX_PATH_LENGTH = 4096

RouteHandler = Callable[[HttpConnection, Request, dict[str, str]], Awaitable[None]]


@dataclass(frozen=True)
class _Route:
    pattern: re.Pattern[str]
    methods: dict[str, RouteHandler]
    query: bool  # True if the route reads query parameters


def _upgrade_required(req: Request) -> None:
    if not req.upgrade_to(UPGRADE_PROTOCOL):
        raise InvalidArgument(
            f"{req.method} {req.path} needs the headers 'Connection: Upgrade' and "
            f"'Upgrade: {UPGRADE_PROTOCOL}'"
        )


class Router:
    """Dispatches requests to the node. One per control server."""

    def __init__(
        self,
        node: NodeAPI,
        *,
        on_shutdown: Callable[[], None] | None = None,
        attach_timeout: float = INCOMING_ATTACH_TIMEOUT,
    ) -> None:
        self.node = node
        self.hub = StreamHub(node, attach_timeout=attach_timeout)
        self._on_shutdown = on_shutdown
        u, n = self._unary, self._no_args
        self._routes: list[_Route] = []
        add = self._add
        add("/v1/status", GET=n(node.status))
        add("/v1/id", GET=n(node.identity_info))
        add("/v1/peers", GET=n(lambda: {"peers": node.peers()}))
        add("/v1/connect", POST=u(self._connect))
        add("/v1/disconnect", POST=u(self._disconnect))
        add("/v1/ping", POST=self._ping)
        add("/v1/messages", POST=u(self._send_message))
        add("/v1/inbox", GET=self._inbox, query=True)
        add("/v1/files", GET=n(lambda: {"files": node.received_files()}), POST=self._send_file)
        add("/v1/exposures", GET=n(lambda: {"exposures": node.exposures()}), POST=u(self._expose))
        add("/v1/exposures/(?P<port>[^/]+)", DELETE=self._unexpose)
        add("/v1/forwards", GET=n(lambda: {"forwards": node.forwards()}), POST=u(self._forward))
        add("/v1/forwards/(?P<id>[^/]+)", DELETE=self._unforward)
        add("/v1/bench", POST=u(self._bench))
        add("/v1/trust/request", POST=u(self._trust_request))
        for verb, call in (
            ("approve", node.approve_trust),
            ("reject", node.reject_trust),
            ("revoke", node.revoke_trust),
        ):
            add(f"/v1/trust/{verb}", POST=u(self._trust_call(call)))
        add("/v1/trust/pending", GET=n(lambda: {"pending": node.pending_trust()}))
        add("/v1/trust/list", GET=n(lambda: {"trusted": node.trusted_peers()}))
        add("/v1/key/rotate", POST=n(node.rotate_key))
        add("/v1/lookup/(?P<agent>[^/]*)", GET=self._lookup)
        add("/v1/find", GET=self._find, query=True)
        add(
            "/v1/capabilities",
            GET=n(lambda: {"capabilities": node.dht.capabilities()}),
            POST=u(self._add_capability),
        )
        add("/v1/capabilities/(?P<tag>.*)", DELETE=self._remove_capability)
        add("/v1/dht", GET=n(lambda: node.dht.info()))
        add("/v1/services/(?P<agent>[^/]*)", GET=self._services)
        add(
            "/v1/proxies",
            GET=n(lambda: {"socks5": [p.address for p in node.services.socks_proxies]}),
            POST=u(self._add_proxy),
        )
        add("/v1/shutdown", POST=self._shutdown)
        add("/v1/events", GET=self._events)
        add("/v1/streams", POST=self._open_stream)
        add("/v1/streams/attach", POST=self._attach)
        add("/v1/handlers", POST=self._register)
        add_gossip_routes(self)

    # ---- routing -------------------------------------------------------------------------

    def _add(self, path: str, *, query: bool = False, **methods: RouteHandler) -> None:
        self._routes.append(_Route(re.compile(path + r"\Z"), methods, query))

    async def dispatch(self, http: HttpConnection, req: Request) -> None:
        """Serve one request; raises for errors the caller turns into JSON error replies."""
        for route in self._routes:
            match = route.pattern.match(req.path)
            if match is None:
                continue
            handler = route.methods.get(req.method)
            if handler is None:
                allowed = ", ".join(sorted(route.methods))
                await self._plain_error(
                    http,
                    405,
                    f"{req.method} is not allowed on {req.path} (use {allowed})",
                    headers=(("Allow", allowed),),
                )
                return
            if req.query and not route.query:
                raise InvalidArgument(f"{req.path} takes no query parameters")
            await handler(http, req, match.groupdict())
            return
        await self._plain_error(http, 404, f"no such route: {req.method} {req.path[:200]}")

    @staticmethod
    async def _plain_error(
        http: HttpConnection, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        error = {"type": InvalidArgument.__name__, "message": message, "code": None}
        await http.respond_json(status, {"error": error}, headers=headers)

    @staticmethod
    def _unary(fn: Callable[[Args], Any]) -> RouteHandler:
        """A route answering one JSON value computed from the body arguments.

        ``fn`` reads its arguments, calls ``Args.done()`` (so nothing happens on a bad
        request), then calls the node; it may return an awaitable.
        """

        async def handler(http: HttpConnection, req: Request, params: dict[str, str]) -> None:
            result = fn(Args(parse_json_body(req.body) if req.method != "GET" else {}))
            if inspect.isawaitable(result):
                result = await result
            await http.respond_json(200, _jsonable(result))

        return handler

    @classmethod
    def _no_args(cls, fn: Callable[[], Any]) -> RouteHandler:
        """A route without arguments (a POST body, if any, must be an empty object)."""

        def call(a: Args) -> Any:
            a.done()
            return fn()

        return cls._unary(call)

    # ---- unary routes ----------------------------------------------------------------------

    def _connect(self, a: Args) -> Awaitable[Any]:
        target = a.text("target", max_len=MAX_NAME_LENGTH)
        a.done()
        return self.node.connect(target)

    async def _disconnect(self, a: Args) -> Any:
        agent_id = a.text("agent_id", max_len=MAX_NAME_LENGTH)
        a.done()
        return {"agent_id": agent_id, "sessions": await self.node.disconnect(agent_id)}

    def _send_message(self, a: Args) -> Awaitable[Any]:
        agent_id = a.text("agent_id", max_len=MAX_NAME_LENGTH)
        text = a.text("text")
        a.done()
        return self.node.send_message(agent_id, text)

    async def _inbox(self, http: HttpConnection, req: Request, params: dict[str, str]) -> None:
        q = Args(parse_query(req.query), query=True)
        sender = q.text("sender", "", max_len=MAX_NAME_LENGTH) or None
        after = q.integer("after", 0, lo=0)
        limit = q.integer("limit", 100, lo=1)
        q.done()
        messages = self.node.inbox(sender=sender, after=after, limit=limit)
        await http.respond_json(200, {"messages": _jsonable(messages)})

    def _expose(self, a: Args) -> Any:
        port = a.integer("port")
        name = a.optional_text("name", max_len=MAX_NAME_LENGTH)
        allow = a.text_list("allow")
        a.done()
        return self.node.expose(port, name=name, allow=allow)

    async def _unexpose(self, http: HttpConnection, req: Request, params: dict[str, str]) -> None:
        port = Args(params, query=True).integer("port", lo=0, hi=65535)
        self.node.unexpose(port)
        await http.respond_json(200, {"ok": True})

    def _forward(self, a: Args) -> Awaitable[Any]:
        local_port = a.integer("local_port")
        agent_id = a.text("agent_id", max_len=MAX_NAME_LENGTH)
        remote_name = a.text("remote_name", "", max_len=63)
        remote: int | str = remote_name or a.integer("remote_port")
        bind_host = a.text("bind_host", "127.0.0.1", max_len=MAX_NAME_LENGTH)
        a.done()
        return self.node.forward(local_port, agent_id, remote, bind_host=bind_host)

    async def _unforward(self, http: HttpConnection, req: Request, params: dict[str, str]) -> None:
        forward_id = Args(params, query=True).integer("id", lo=0)
        await self.node.unforward(forward_id)
        await http.respond_json(200, {"ok": True})

    def _bench(self, a: Args) -> Awaitable[Any]:
        agent_id = a.text("agent_id", max_len=MAX_NAME_LENGTH)
        size = a.integer("bytes", 64 * 1024 * 1024, lo=1)
        a.done()
        return self.node.bench(agent_id, size=size)

    def _trust_request(self, a: Args) -> Awaitable[Any]:
        agent_id = a.text("agent_id", max_len=MAX_NAME_LENGTH)
        reason = a.text("reason", "", max_len=MAX_REASON_LENGTH)
        a.done()
        return _trust_state(agent_id, self.node.request_trust(agent_id, reason))

    @staticmethod
    def _trust_call(call: Callable[[str], Coroutine[Any, Any, str]]) -> Callable[[Args], Any]:
        def route(a: Args) -> Awaitable[Any]:
            agent_id = a.text("agent_id", max_len=MAX_NAME_LENGTH)
            a.done()
            return _trust_state(agent_id, call(agent_id))

        return route

    # ---- DHT ---------------------------------------------------------------------------

    async def _lookup(self, http: HttpConnection, req: Request, params: dict[str, str]) -> None:
        agent_id = validate_agent_id(path_param(params["agent"]))
        record = await self.node.dht.resolve(agent_id, fresh=True)
        await http.respond_json(200, _jsonable(record))

    async def _find(self, http: HttpConnection, req: Request, params: dict[str, str]) -> None:
        q = Args(parse_query(req.query), query=True)
        tag = _capability_tag(q.text("capability", max_len=MAX_CAPABILITY_TAG))
        q.done()
        records = await self.node.dht.find(tag)
        await http.respond_json(200, {"agents": _jsonable(list(records))})

    async def _services(self, http: HttpConnection, req: Request, params: dict[str, str]) -> None:
        agent_id = validate_agent_id(path_param(params["agent"]))
        services = await self.node.services.remote_services(agent_id)
        await http.respond_json(200, {"agent_id": agent_id, "services": services})

    async def _add_proxy(self, a: Args) -> Any:
        from ..wire.address import parse_hostport

        host, port = parse_hostport(a.text("socks5", max_len=MAX_NAME_LENGTH))
        a.done()
        return {"socks5": await self.node.services.start_socks5(host, port)}

    def _add_capability(self, a: Args) -> Awaitable[Any]:
        tag = _capability_tag(a.text("tag", max_len=MAX_CAPABILITY_TAG))
        name = a.text("name", "", max_len=MAX_CAPABILITY_TEXT)
        description = a.text("description", "", max_len=MAX_CAPABILITY_TEXT)
        protocol = a.text("protocol", "", max_len=MAX_CAPABILITY_TEXT)
        a.done()
        return self.node.dht.add_capability(
            tag, name=name, description=description, protocol=protocol
        )

    async def _remove_capability(
        self, http: HttpConnection, req: Request, params: dict[str, str]
    ) -> None:
        tag = _capability_tag(path_param(params["tag"]))
        await self.node.dht.remove_capability(tag)
        await http.respond_json(200, {"ok": True})

    async def _shutdown(self, http: HttpConnection, req: Request, params: dict[str, str]) -> None:
        Args(parse_json_body(req.body)).done()
        http.keep_alive = False
        await http.respond_json(200, {"ok": True})
        await http.close()
        log.info("shutdown requested over the control socket")
        if self._on_shutdown is not None:
            self._on_shutdown()

    # ---- NDJSON routes ---------------------------------------------------------------------

    async def _ping(self, http: HttpConnection, req: Request, params: dict[str, str]) -> None:
        a = Args(parse_json_body(req.body))
        agent_id = a.text("agent_id", max_len=MAX_NAME_LENGTH)
        count = a.integer("count", 1, lo=1, hi=MAX_PING_COUNT)
        interval = a.number("interval", 1.0, lo=0.0, hi=MAX_PING_INTERVAL)
        a.done()
        out = _LazyNdjson(http)

        def on_reply(seq: int, rtt_ms: float | None) -> None:
            out.line({"event": "reply", "seq": seq, "rtt_ms": rtt_ms})

        await out.run(self.node.ping(agent_id, count, interval, on_reply), "ping")

    async def _send_file(self, http: HttpConnection, req: Request, params: dict[str, str]) -> None:
        a = Args(parse_json_body(req.body))
        agent_id = a.text("agent_id", max_len=MAX_NAME_LENGTH)
        path = a.text("path", max_len=MAX_PATH_LENGTH)
        a.done()
        if not os.path.isabs(path):
            raise InvalidArgument(f"path must be absolute (the daemon has its own cwd): {path!r}")
        out = _LazyNdjson(http)

        def on_progress(sent: int, total: int) -> None:
            out.line({"event": "progress", "sent": sent, "total": total})

        await out.run(self.node.send_file(agent_id, path, on_progress), "send_file")

    async def _events(self, http: HttpConnection, req: Request, params: dict[str, str]) -> None:
        subscription = self.node.subscribe()  # registered before the head goes out
        try:
            await serve_ndjson(http, subscription, "event")
        finally:
            await _close_subscription(subscription)

    # ---- upgrade routes --------------------------------------------------------------------

    async def _open_stream(
        self, http: HttpConnection, req: Request, params: dict[str, str]
    ) -> None:
        a = Args(parse_json_body(req.body))
        agent_id = a.text("agent_id", max_len=MAX_NAME_LENGTH)
        protocol = a.text("protocol", max_len=MAX_PROTOCOL_NAME)
        a.done()
        _upgrade_required(req)
        await self.hub.open(http, agent_id, protocol)

    async def _register(self, http: HttpConnection, req: Request, params: dict[str, str]) -> None:
        a = Args(parse_json_body(req.body))
        protocol = a.text("protocol", max_len=MAX_PROTOCOL_NAME)
        a.done()
        _upgrade_required(req)
        await self.hub.register(http, protocol)

    async def _attach(self, http: HttpConnection, req: Request, params: dict[str, str]) -> None:
        a = Args(parse_json_body(req.body))
        token = a.text("stream", max_len=MAX_TOKEN_LENGTH)
        a.done()
        _upgrade_required(req)
        await self.hub.attach(http, token)


def _capability_tag(tag: str) -> str:
    """``tag`` if it is a valid capability tag (InvalidArgument says what is allowed)."""
    if len(tag) > MAX_CAPABILITY_TAG:
        raise InvalidArgument(f"a capability tag is 1 to {MAX_CAPABILITY_TAG} characters")
    capability_key(tag)
    return tag


async def _trust_state(agent_id: str, call: Awaitable[str]) -> dict[str, Any]:
    return {"agent_id": agent_id, "state": await call}


def _jsonable(value: Any) -> Any:
    """Model dataclasses (and lists / dicts of them) → JSON values."""
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return to_json()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


async def _close_subscription(subscription: object) -> None:
    """End a ``subscribe()`` iterator: ``close()`` (the node's) or ``aclose()`` (generators)."""
    close = getattr(subscription, "close", None) or getattr(subscription, "aclose", None)
    if callable(close):
        try:
            result = close()
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.debug("closing an event subscription failed", exc_info=True)


class _LazyNdjson:
    """An NDJSON reply whose head is sent with the first line, so an operation that
    fails before producing anything gets an ordinary JSON error response."""

    def __init__(self, http: HttpConnection) -> None:
        self._http = http
        self._started = False

    def line(self, value: Any) -> None:
        if not self._started:
            self._started = True
            self._http.begin_ndjson()
        self._http.write_line(value)

    async def run(self, operation: Awaitable[Any], what: str) -> None:
        """Run ``operation`` (cancelled if the client hangs up), then send its result."""
        self._http.keep_alive = False  # the watcher below consumes whatever comes next
        op = asyncio.ensure_future(operation)
        watcher = asyncio.create_task(self._http.wait_disconnect())
        try:
            await asyncio.wait({op, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            if not op.done():
                op.cancel()
            await asyncio.gather(op, watcher, return_exceptions=True)
        if op.cancelled():
            if watcher.done() and not watcher.cancelled():
                log.info("control client went away; %s cancelled", what)
                return
            # Cancelled from inside (a bug): answer instead of closing without a word.
            inner = StateError(f"{what} was cancelled inside the daemon")
            log.error("%s cancelled inside the daemon", what)
            if not self._started:
                await self._http.respond_json(error_status(inner), error_body(inner, where=what))
            else:
                self.line({"event": "error", "error": error_object(inner, where=what)})
                await self._http.end_ndjson()
            return
        exc = op.exception()
        if exc is not None and not self._started:
            await self._http.respond_json(error_status(exc), error_body(exc, where=what))
            return
        if exc is not None:
            self.line({"event": "error", "error": error_object(exc, where=what)})
        else:
            self.line({"event": "result", "result": _jsonable(op.result())})
        await self._http.end_ndjson()
