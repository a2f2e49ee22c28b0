"""The SDK's attach mode: :class:`Client` talks to a running daemon (``swarmlink up``).

Every call is one HTTP/1.1 request on ``<home>/control.sock`` (see
``docs/control-api.md``); streams to peers ride on upgraded connections
(:class:`ClientStream`). The CLI uses this client too.
"""

from __future__ import annotations

from ._client import SOCKET_NAME, Client, ClientHandler
from ._gossip import RemoteState
from ._http import (
    MAX_NDJSON_LINE,
    MAX_RESPONSE_BODY,
    MAX_RESPONSE_HEAD,
    UPGRADE_PROTOCOL,
    error_from_json,
)
from ._stream import STREAM_CLOSE_TIMEOUT, STREAM_READ_CHUNK, ClientStream

__all__ = [
    "MAX_NDJSON_LINE",
    "MAX_RESPONSE_BODY",
    "MAX_RESPONSE_HEAD",
    "SOCKET_NAME",
    "STREAM_CLOSE_TIMEOUT",
    "STREAM_READ_CHUNK",
    "UPGRADE_PROTOCOL",
    "Client",
    "ClientHandler",
    "ClientStream",
    "RemoteState",
    "error_from_json",
]
