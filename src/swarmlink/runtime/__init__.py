"""asyncio runtime: the in-process node, its streams and services.

``Node`` and ``Stream`` are imported lazily so that light users of this package (the CLI,
the control client: they need only ``model``, ``events`` and ``config``) do not load the
TLS and session stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import (
    DEFAULT_HOME,
    DEFAULT_PORT,
    NodeConfig,
    TunConfig,
    parse_hostport,
    parse_target,
    resolve_home,
)

if TYPE_CHECKING:
    from ._stream import Stream
    from .node import Handler, Node

__all__ = [
    "DEFAULT_HOME",
    "DEFAULT_PORT",
    "Handler",
    "Node",
    "NodeConfig",
    "Stream",
    "TunConfig",
    "parse_hostport",
    "parse_target",
    "resolve_home",
]

_LAZY = {
    "Handler": ".node",
    "Node": ".node",
    "Stream": "._stream",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
