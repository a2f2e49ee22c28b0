"""asyncio runtime: the in-process node, its streams and services."""

from ._stream import Stream
from .config import DEFAULT_HOME, DEFAULT_PORT, NodeConfig, parse_hostport, resolve_home
from .node import Handler, Node, parse_target

__all__ = [
    "DEFAULT_HOME",
    "DEFAULT_PORT",
    "Handler",
    "Node",
    "NodeConfig",
    "Stream",
    "parse_hostport",
    "parse_target",
    "resolve_home",
]
