"""swarmlink: a decentralized overlay network for autonomous AI agents.

The SDK entry points, imported lazily so ``import swarmlink`` stays cheap:

- :class:`Node` / :class:`NodeConfig`: run a node inside your asyncio program.
- :class:`Client`: attach to a running daemon (``swarmlink up``) over its control socket.
- :class:`Stream`: a multiplexed byte stream to a peer.
- :mod:`swarmlink.errors`: the exception hierarchy; :mod:`swarmlink.runtime.events`: node events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Client", "Node", "NodeConfig", "Stream", "__version__"]

if TYPE_CHECKING:
    from .client import Client
    from .runtime import Node, NodeConfig, Stream

_LAZY = {
    "Client": ("swarmlink.client", "Client"),
    "Node": ("swarmlink.runtime", "Node"),
    "NodeConfig": ("swarmlink.runtime", "NodeConfig"),
    "Stream": ("swarmlink.runtime", "Stream"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'swarmlink' has no attribute {name!r}")
