"""Test helpers: wait on conditions with deadlines (never a fixed sleep), node factories."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from swarmlink.runtime import Node, NodeConfig


async def wait_until(
    predicate: Callable[[], Any],
    what: str = "condition",
    timeout: float = 10.0,
    *,
    interval: float = 0.005,
    tolerate: tuple[type[Exception], ...] = (),
) -> Any:
    """Poll ``predicate`` (sync or async) until truthy; fail with ``what`` at the deadline.

    Exceptions of the ``tolerate`` types count as "not yet" (a daemon still starting);
    the last one is named in the failure."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
            if isinstance(value, Awaitable):
                value = await value
        except tolerate as exc:
            last = exc
        else:
            if value:
                return value
        if time.monotonic() > deadline:
            detail = f" (last: {last!r})" if last is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")
        await asyncio.sleep(interval)


@asynccontextmanager
async def running_nodes(tmp: Path, *names: str) -> AsyncIterator[list[Node]]:
    nodes: list[Node] = []
    try:
        for name in names:
            nodes.append(await Node.start(NodeConfig(home=tmp / name, listen=(("127.0.0.1", 0),))))
        yield nodes
    finally:
        for node in nodes:
            await node.close()


async def drop_session(a: Node, b: Node, what: str = "session closed") -> None:
    """Close ``a``'s session with ``b``, if any, and wait until it is gone."""
    conn = a.connected(b.agent_id)
    if conn is not None:
        conn.close()
        await wait_until(lambda: a.connected(b.agent_id) is None, what)


def target(node: Node) -> str:
    return f"{node.agent_id}@127.0.0.1:{node.listen_port}"


async def make_trusted(a: Node, b: Node) -> None:
    """Connect a → b and establish mutual trust through the real protocol."""
    await a.connect(target(b))
    await a.request_trust(b.agent_id, "test")
    await wait_until(lambda: any(p.agent_id == a.agent_id for p in b.pending_trust()), "request")
    await b.approve_trust(a.agent_id)
    await wait_until(lambda: a.trust.is_trusted(b.agent_id), "approval to reach a")


# ---- the real CLI, for end-to-end tests -----------------------------------------------

CLI = [sys.executable, "-m", "swarmlink"]


def daemon_env() -> dict[str, str]:
    """This environment without asyncio debug mode, for the daemons and CLI runs tests
    start (``make test`` sets it for the test process, where warnings fail tests; in a
    subprocess it would only slow the run and write to a log)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONASYNCIODEBUG"}


def cli_env() -> dict[str, str]:
    """The environment for CLI runs and the daemons they start: :func:`daemon_env` with
    plain output."""
    return {**daemon_env(), "NO_COLOR": "1", "COLUMNS": "200"}


def run(
    home: Path, *args: str, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``swarmlink --home HOME ARGS...`` as a subprocess (fails the test on error)."""
    proc = subprocess.run(
        [*CLI, "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(),
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"swarmlink {' '.join(args)} exited {proc.returncode}\n"
            f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
        )
    return proc


def run_json(home: Path, *args: str) -> Any:
    return json.loads(run(home, *args, "--json").stdout)


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Blocking poll of ``predicate`` until truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """Stop daemon processes: SIGTERM (graceful), then SIGKILL after 10 s."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
