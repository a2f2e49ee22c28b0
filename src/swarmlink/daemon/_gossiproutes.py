"""Control-API routes of the gossip layer: members, publish/subscribe, topic policies and
replicated state (see docs/control-api.md)."""

from __future__ import annotations

import base64
import binascii
import logging
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgument
from ._args import Args, parse_json_body, parse_query, path_param
from ._http import HttpConnection, Request, serve_ndjson

if TYPE_CHECKING:
    from ._routes import Router

__all__ = ["MAX_PUBLISH_SIZE", "add_gossip_routes"]

log = logging.getLogger("swarmlink.daemon")

#: Largest payload ``POST /v1/publish`` takes (bytes after base64 decoding).
MAX_PUBLISH_SIZE = 64 * 1024
#: Longest topic / state name / key accepted in a request (the cores check the exact rules).
MAX_GOSSIP_NAME = 512
_STATE_OPS = ("set", "delete", "add", "remove", "increment")
_ABSENT = object()


def add_gossip_routes(router: Router) -> None:
    """Register the gossip routes on ``router``."""
    node = router.node
    add, u, n = router._add, router._unary, router._no_args

    def members() -> dict[str, Any]:
        return {"members": node.gossip.members(), "gossip": node.gossip.info()}

    def publish(a: Args) -> Any:
        topic = a.text("topic", max_len=MAX_GOSSIP_NAME)
        text = a.optional_text("text")
        data_b64 = a.optional_text("data_b64")
        a.done()
        if (text is None) == (data_b64 is None):
            raise InvalidArgument("give exactly one of 'text' and 'data_b64'")
        if text is not None:
            data = text.encode("utf-8")
        else:
            assert data_b64 is not None
            try:
                data = base64.b64decode(data_b64, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidArgument("'data_b64' is not valid base64") from None
        if len(data) > MAX_PUBLISH_SIZE:
            raise InvalidArgument(f"a message is at most {MAX_PUBLISH_SIZE} bytes")
        return node.gossip.publish(topic, data)

    def policy(a: Args) -> Any:
        topic = a.text("topic", max_len=MAX_GOSSIP_NAME)
        value = a.value("policy")
        a.done()
        if not isinstance(value, str | list) or (
            isinstance(value, list) and not all(isinstance(v, str) for v in value)
        ):
            raise InvalidArgument('\'policy\' is "trusted", "any" or a list of agent IDs')
        return node.gossip.set_policy(topic, value)

    async def state_get(http: HttpConnection, req: Request, params: dict[str, str]) -> None:
        name = path_param(params["name"])
        q = Args(parse_query(req.query), query=True)
        key = q.optional_text("key", max_len=MAX_GOSSIP_NAME)
        q.done()
        if key is None:
            body = {"name": name, "values": node.gossip.state_get(name)}
        else:
            body = {"name": name, "key": key, "value": node.gossip.state_get(name, key)}
        await http.respond_json(200, body)

    async def state_op(http: HttpConnection, req: Request, params: dict[str, str]) -> None:
        name = path_param(params["name"])
        a = Args(parse_json_body(req.body))
        op = a.text("op", max_len=16)
        key = a.text("key", max_len=MAX_GOSSIP_NAME)
        value = a.value("value", _ABSENT)
        a.done()
        if op not in _STATE_OPS:
            raise InvalidArgument(f"unknown state operation {op!r}: one of {', '.join(_STATE_OPS)}")
        if op == "increment":
            value = 1 if value is _ABSENT else value
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidArgument("'value' of increment must be an integer")
        elif op == "delete":
            value = None
        elif value is _ABSENT:
            raise InvalidArgument(f"missing required field 'value' for {op}")
        node.gossip.state_op(name, op, key, value)
        await http.respond_json(
            200, {"name": name, "key": key, "value": node.gossip.state_get(name, key)}
        )

    async def subscribe(http: HttpConnection, req: Request, params: dict[str, str]) -> None:
        q = Args(parse_query(req.query), query=True)
        topic = q.text("topic", max_len=MAX_GOSSIP_NAME)
        q.done()
        sub = node.gossip.subscribe(topic)  # registered before the head goes out
        try:
            await serve_ndjson(http, aiter(sub), "topic")
        finally:
            sub.close()

    add("/v1/members", GET=n(members))
    add("/v1/publish", POST=u(publish))
    add("/v1/subscribe", GET=subscribe, query=True)
    add("/v1/topics/policy", GET=n(lambda: {"policies": node.gossip.policies()}), POST=u(policy))
    add("/v1/state", GET=n(lambda: {"states": node.gossip.state_names()}))
    add("/v1/state/(?P<name>[^/]+)", GET=state_get, POST=state_op, query=True)
