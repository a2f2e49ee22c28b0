"""Shared CLI plumbing: the home option, running coroutines, output and errors."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

from ..errors import InvalidArgument, NodeNotRunning, SwarmlinkError
from ..runtime.config import resolve_home

__all__ = [
    "JSON_OPTION",
    "State",
    "agent_arg",
    "client_call",
    "console",
    "emit_json",
    "err_console",
    "fail",
    "fmt_time",
    "short",
]

T = TypeVar("T")

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

JSON_OPTION = typer.Option("--json", help="Print machine-readable JSON.")


class State:
    """Per-invocation settings from the root callback."""

    home: Path = resolve_home(None)


def fail(message: str, *, hint: str | None = None, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/bold red] {message}", markup=True, highlight=False)
    if hint:
        err_console.print(f"[dim]hint: {hint}[/dim]")
    raise typer.Exit(code)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``; turn swarmlink errors into one red line and exit code 1."""
    try:
        return asyncio.run(coro)
    except NodeNotRunning as exc:
        fail(str(exc))
    except SwarmlinkError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def client_call(fn: Callable[[Any], Awaitable[T]]) -> T:
    """Open a :class:`~swarmlink.client.Client` on the selected home and call ``fn(client)``."""
    from ..client import Client

    async def go() -> T:
        async with Client(State.home) as client:
            return await fn(client)

    return run(go())


def agent_arg(value: str) -> str:
    """Validate an agent ID argument early, with the same message the daemon would give."""
    from ..identity import validate_agent_id

    try:
        return validate_agent_id(value)
    except InvalidArgument as exc:
        raise typer.BadParameter(str(exc)) from None


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False) + "\n")


def short(agent_id: str | None) -> str:
    if not agent_id:
        return "-"
    return agent_id[:12] + "…"


def fmt_time(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
