"""The swarmlink daemon: a node plus its control API on ``<home>/control.sock``.

The control API is HTTP/1.1 + JSON over a Unix socket (mode 0600), served with h11;
``docs/control-api.md`` documents every route. :class:`ControlServer` serves any
:class:`NodeAPI` (the real :class:`swarmlink.runtime.Node`, or a test fake);
:func:`run_daemon` is the process entry (``python -m swarmlink.daemon``).
"""

from __future__ import annotations

from ._args import MAX_QUERY_PARAMS, MAX_STRING_LIST
from ._http import (
    CLOSE_TIMEOUT,
    MAX_HEADER_SIZE,
    MAX_REQUEST_BODY,
    REQUEST_READ_TIMEOUT,
)
from ._main import main
from ._nodeapi import DhtAPI, JsonModelAPI, NodeAPI, StreamAPI, StreamHandler
from ._routes import MAX_PING_COUNT, MAX_PING_INTERVAL
from ._run import (
    LOG_FILE_NAME,
    LOG_LEVELS,
    DaemonConfig,
    JsonLogFormatter,
    parse_advertise,
    parse_bootstrap_peers,
    parse_relay_limits,
    run_daemon,
)
from ._server import (
    MAX_CONTROL_CONNECTIONS,
    PID_FILE_NAME,
    SOCKET_NAME,
    ControlServer,
    check_no_daemon,
    serve,
)
from ._streams import (
    INCOMING_ATTACH_TIMEOUT,
    MAX_PENDING_INCOMING,
    RESERVED_PROTOCOL_PREFIX,
    UPGRADE_PROTOCOL,
)

__all__ = [
    "CLOSE_TIMEOUT",
    "INCOMING_ATTACH_TIMEOUT",
    "LOG_FILE_NAME",
    "LOG_LEVELS",
    "MAX_CONTROL_CONNECTIONS",
    "MAX_HEADER_SIZE",
    "MAX_PENDING_INCOMING",
    "MAX_PING_COUNT",
    "MAX_PING_INTERVAL",
    "MAX_QUERY_PARAMS",
    "MAX_REQUEST_BODY",
    "MAX_STRING_LIST",
    "PID_FILE_NAME",
    "REQUEST_READ_TIMEOUT",
    "RESERVED_PROTOCOL_PREFIX",
    "SOCKET_NAME",
    "UPGRADE_PROTOCOL",
    "ControlServer",
    "DaemonConfig",
    "DhtAPI",
    "JsonLogFormatter",
    "JsonModelAPI",
    "NodeAPI",
    "StreamAPI",
    "StreamHandler",
    "check_no_daemon",
    "main",
    "parse_advertise",
    "parse_bootstrap_peers",
    "parse_relay_limits",
    "run_daemon",
    "serve",
]
