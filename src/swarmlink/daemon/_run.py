"""Running the daemon: structured logging, the pid file, signals, node + control server."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import InvalidArgument, LocalError, SwarmlinkError
from ..nat import RelayLimits
from ..runtime.config import TunConfig
from ._server import PID_FILE_NAME, SOCKET_NAME, check_no_daemon, serve

__all__ = [
    "LOG_FILE_NAME",
    "LOG_LEVELS",
    "DaemonConfig",
    "JsonLogFormatter",
    "parse_advertise",
    "parse_bootstrap_peers",
    "parse_relay_limits",
    "run_daemon",
]

log = logging.getLogger("swarmlink.daemon")

#: File name of the daemon log (JSON lines) inside the node home.
LOG_FILE_NAME = "swarmlink.log"
#: Accepted ``log_level`` values.
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class DaemonConfig:
    """What ``python -m swarmlink.daemon`` runs: a node home, listen addresses, log level,
    DHT bootstrap peers (``AGENT@HOST:PORT``), advertised addresses (``HOST:PORT``) and
    whether to discover peers on the LAN with mDNS (on unless ``--no-mdns``).

    Validate ``bootstrap`` and ``advertise`` with :func:`parse_bootstrap_peers` and
    :func:`parse_advertise` first (the command line does).
    """

    home: Path
    listen: tuple[tuple[str, int], ...]
    log_level: str = "info"
    bootstrap: tuple[str, ...] = ()
    advertise: tuple[str, ...] = ()
    mdns: bool = True
    #: Serve as a relay; and relays to reserve on (``AGENT@HOST:PORT``).
    relay: bool = False
    relays: tuple[str, ...] = ()
    #: Upgrade relayed sessions to direct ones by hole punching.
    hole_punching: bool = True
    #: What hole punching opens ("tcp", "quic").
    punch_transports: tuple[str, ...] = ("tcp", "quic")
    #: What this node grants as a relay.
    relay_limits: RelayLimits = field(default_factory=RelayLimits)
    #: Serve a SOCKS5 proxy into the overlay on (host, port).
    socks5: tuple[str, int] | None = None
    #: TUN mode (root): interface name and MTU (None: off).
    tun: TunConfig | None = None
    #: Region label gossiped with membership (pub/sub prefers same-region peers).
    region: str = ""


def parse_bootstrap_peers(values: Iterable[str]) -> tuple[str, ...]:
    """Validate ``AGENT@HOST:PORT`` bootstrap peers; InvalidArgument names the bad one."""
    from ..runtime._dhtsvc import parse_bootstrap

    out: list[str] = []
    for text in values:
        agent, address = parse_bootstrap(text)
        out.append(f"{agent}@{address}")
    return tuple(dict.fromkeys(out))


def parse_relay_limits(values: Iterable[str]) -> RelayLimits:
    """``NAME=VALUE`` settings of :class:`~swarmlink.nat.RelayLimits` (e.g.
    ``max_circuit_rate=1000000``), with clear errors; the rest keep their defaults."""
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(RelayLimits)}
    settings: dict[str, float | int] = {}
    for text in values:
        name, sep, raw = text.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in fields:
            raise InvalidArgument(
                f"bad relay limit {text!r}: expected NAME=VALUE with NAME one of "
                + ", ".join(fields)
            )
        try:
            settings[name] = float(raw) if fields[name].type in ("float", float) else int(raw)
        except ValueError:
            raise InvalidArgument(f"bad relay limit {text!r}: {raw!r} is not a number") from None
    return RelayLimits(**settings)  # type: ignore[arg-type]


def parse_advertise(values: Iterable[str]) -> tuple[str, ...]:
    """Validate ``HOST:PORT`` addresses to publish in the agent record (instead of the
    bound ones): a concrete host and a non-zero port, at most the record's limit."""
    from ..dht._records import MAX_RECORD_ADDRESSES, check_address
    from ..wire.address import format_hostport, parse_hostport

    out: list[str] = []
    for text in values:
        stripped = text.strip()
        host, port = parse_hostport(stripped)
        if stripped.startswith(":") or host in ("0.0.0.0", "::") or port == 0:
            raise InvalidArgument(
                f"bad advertised address {text!r}: expected HOST:PORT with the host and "
                "port peers can reach (not a wildcard, not port 0)"
            )
        out.append(check_address(format_hostport(host, port)))
    addresses = tuple(dict.fromkeys(out))
    if len(addresses) > MAX_RECORD_ADDRESSES:
        raise InvalidArgument(
            f"at most {MAX_RECORD_ADDRESSES} advertised addresses (got {len(addresses)})"
        )
    return addresses


# Attributes every LogRecord has; anything else came in through ``extra=``.
_RECORD_ATTRS = frozenset(
    logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None).__dict__
) | {"message", "asctime", "taskName"}


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg`` + extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                out[key if key not in out else f"extra_{key}"] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def _setup_logging(home: Path, level: str) -> logging.Handler:
    if level not in LOG_LEVELS:
        raise InvalidArgument(f"bad log level {level!r}: choose one of {', '.join(LOG_LEVELS)}")
    path = home / LOG_FILE_NAME
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler


class _PidFile:
    """``<home>/swarmlink.pid``, held under an exclusive ``flock`` while the daemon runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        for _ in range(5):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                text = os.read(fd, 32).decode("ascii", "replace").strip()
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise LocalError(f"cannot lock {self.path}: {exc.strerror}") from None
                raise LocalError(
                    f"a swarmlink daemon is already running in {self.path.parent} "
                    f"(pid {text if text.isdigit() else 'unknown'})"
                ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous daemon removed it while we were opening it
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self._fd = fd
            return
        raise LocalError(f"cannot take the pid file {self.path}: it keeps changing")

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                self.path.unlink()
        os.close(fd)


async def _run(config: DaemonConfig) -> int:
    home = config.home
    socket_path = home / SOCKET_NAME
    pid_file = _PidFile(home / PID_FILE_NAME)
    pid_file.acquire()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals: list[signal.Signals] = []
    try:
        await check_no_daemon(socket_path)
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, _on_signal, sig, stop)
                signals.append(sig)
        from ..runtime.node import Node, NodeConfig

        _tune_allocator()

        log.info(
            "daemon starting",
            extra={
                "home": str(home),
                "listen": [f"{h}:{p}" for h, p in config.listen],
                "bootstrap": list(config.bootstrap),
                "advertise": list(config.advertise),
                "mdns": config.mdns,
                "relay": config.relay,
                "relays": list(config.relays),
                "hole_punching": config.hole_punching,
                "punch_transports": list(config.punch_transports),
                "tun": config.tun.name if config.tun is not None else None,
            },
        )
        node = await Node.start(
            NodeConfig(
                home=home,
                listen=config.listen,
                bootstrap=config.bootstrap,
                advertise=config.advertise,
                mdns=config.mdns,
                relay=config.relay,
                relays=config.relays,
                hole_punching=config.hole_punching,
                punch_transports=config.punch_transports,
                socks5=config.socks5,
                relay_limits=config.relay_limits,
                tun=config.tun,
                region=config.region,
            )
        )
        _release_startup_memory()
        try:
            await serve(node, socket_path, stop)
        finally:
            await node.close()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        pid_file.release()
    log.info("daemon stopped", extra={"home": str(home)})
    return 0


#: glibc ``mallopt`` parameters and the values the daemon sets (see :func:`_tune_allocator`).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MALLOC_MMAP_THRESHOLD = 4 * 1024 * 1024
MALLOC_TRIM_THRESHOLD = 16 * 1024 * 1024


def _glibc() -> Any:
    """glibc through ctypes, or None (another C library: the tuning below is skipped)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def _tune_allocator() -> None:
    """Keep the data path's 256 KiB buffers on the heap.

    By default glibc serves blocks of that size with mmap once its dynamic threshold
    says so and returns freed heap tops at once: every TLS read / frame buffer then costs
    page faults (measured: 120-160k faults and ~1 s of kernel time per GiB tunnelled).
    Larger thresholds make the daemon reuse that memory; ``_release_startup_memory`` still
    trims what start-up left behind.
    """
    if (libc := _glibc()) is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD)


def _release_startup_memory() -> None:
    """Hand memory freed during start-up (imports, key generation) back to the OS.

    glibc keeps freed heap pages; an idle daemon should not look bigger than it is.
    """
    if (libc := _glibc()) is not None:
        libc.malloc_trim(0)


def _on_signal(sig: signal.Signals, stop: asyncio.Event) -> None:
    log.info("signal received, stopping", extra={"signal": sig.name})
    stop.set()


#: Environment variable choosing the daemon's event loop: ``uvloop`` (the default when
#: it is installed: libuv and a compiled TLS layer, about a quarter less CPU per gossip
#: record than the standard loop on this project's benchmarks) or ``asyncio``.
EVENT_LOOP_ENV = "SWARMLINK_EVENT_LOOP"


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The daemon's event loop factory (``None``: asyncio's own), per :data:`EVENT_LOOP_ENV`."""
    choice = os.environ.get(EVENT_LOOP_ENV, "uvloop").strip().lower()
    if choice == "asyncio":
        return None
    if choice != "uvloop":
        raise InvalidArgument(f"{EVENT_LOOP_ENV} must be 'uvloop' or 'asyncio', not {choice!r}")
    try:
        import uvloop
    except ImportError:  # not installed on this platform: the standard loop
        return None
    return uvloop.new_event_loop


def run_daemon(config: DaemonConfig) -> int:
    """Run a node and its control socket until SIGTERM / SIGINT / ``POST /v1/shutdown``.

    Returns the process exit code: 0 after a clean stop, 1 if the daemon could not
    start (another daemon runs in this home, a port is taken, ...).
    """
    home = config.home
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        handler = _setup_logging(home, config.log_level)
    except (OSError, SwarmlinkError) as exc:
        print(f"swarmlink daemon: cannot use {home}: {exc}", file=sys.stderr)
        return 1
    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            return runner.run(_run(config))
    except SwarmlinkError as exc:
        log.error("daemon failed: %s", exc)
        print(f"swarmlink daemon: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        log.error("daemon failed: %s", exc, exc_info=True)
        print(f"swarmlink daemon: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
