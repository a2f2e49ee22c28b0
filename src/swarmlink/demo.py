"""``swarmlink demo``: three agents on loopback, start to finish, in a few seconds.

Walks through identity, trust (request, approve, a refused stranger), messages, a file
and an HTTP request through a tunnel, then shuts everything down and deletes the
temporary homes. Exits 0 when every step checked out.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from .errors import StreamRefused, SwarmlinkError
from .runtime import Node, NodeConfig

__all__ = ["run_demo"]


async def _http_server() -> tuple[asyncio.Server, int]:
    """A tiny HTTP/1.1 service standing in for an agent's API."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            path = request.split(b" ", 2)[1].decode()
            body = f'{{"agent": "weather-bot", "path": "{path}", "forecast": "sunny"}}\n'.encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


async def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def _demo(console: Console, workdir: Path) -> None:
    names = ("alice", "bob", "carol")
    nodes: dict[str, Node] = {}
    steps: list[tuple[str, str]] = []

    async def step(title: str, action: Callable[[], Awaitable[str]]) -> None:
        started = time.perf_counter()
        detail = await action()
        ms = (time.perf_counter() - started) * 1000
        steps.append((title, f"{detail}  [dim]({ms:.1f} ms)[/dim]"))
        console.print(f"[green]✔[/green] {title}: {detail} [dim]({ms:.1f} ms)[/dim]")

    try:
        bootstrap: tuple[str, ...] = ()
        for name in names:
            node = await Node.start(
                NodeConfig(home=workdir / name, listen=(("127.0.0.1", 0),), bootstrap=bootstrap)
            )
            nodes[name] = node
            # alice starts the network; the others join the DHT through her.
            bootstrap = bootstrap or (f"{node.agent_id}@127.0.0.1:{node.listen_port}",)
        alice, bob, carol = nodes["alice"], nodes["bob"], nodes["carol"]
        table = Table(title="Three agents, each with a self-certifying identity")
        table.add_column("agent")
        table.add_column("agent ID (hash of its Ed25519 key)", overflow="fold")
        table.add_column("virtual IPv6 address", overflow="fold")
        table.add_column("listening on")
        for name, node in nodes.items():
            table.add_row(
                name, node.agent_id, str(node.identity.virtual_address), node.listen_addresses[0]
            )
        console.print(table)

        bob_target = f"{bob.agent_id}@127.0.0.1:{bob.listen_port}"

        async def discover() -> str:
            await _wait_for(lambda: bob.dht.joined and carol.dht.joined, "DHT joins")
            await bob.dht.add_capability("weather", description="forecasts for any city")
            deadline = time.monotonic() + 10
            while not (found := await carol.dht.find("weather")):
                if time.monotonic() > deadline:
                    raise SwarmlinkError("bob's capability never showed up in the DHT")
                await asyncio.sleep(0.05)
            if found[0].agent_id != bob.agent_id:
                raise SwarmlinkError("the DHT returned another agent for 'weather'")
            ping = await carol.ping(found[0].agent_id, interval=0)
            return (
                f"signed record of {found[0].agent_id[:12]}… verified, "
                f"dialed by ID alone (ping {ping.avg_ms or 0:.1f} ms)"
            )

        await step("carol finds an agent offering 'weather' in the DHT", discover)

        async def connect() -> str:
            peer = await alice.connect(bob_target)
            return f"TLS 1.3, both sides verified, peer {peer.agent_id[:12]}…"

        await step("alice dials bob by agent ID", connect)

        async def refused() -> str:
            await carol.connect(bob_target)
            stream = await carol.open_stream(bob.agent_id, "/swarmlink/msg/1")
            try:
                await stream.read()
            except StreamRefused as exc:
                return f"refused as expected ({exc.code.name.lower()})"
            raise SwarmlinkError("bob accepted a stream from an untrusted agent")

        await step("carol (untrusted) tries to open a stream to bob", refused)

        async def trust() -> str:
            await alice.request_trust(bob.agent_id, "alice wants to share weather data")
            await _wait_for(lambda: bool(bob.pending_trust()), "the trust request")
            pending = bob.pending_trust()[0]
            await bob.approve_trust(alice.agent_id)
            await _wait_for(lambda: alice.trust.is_trusted(bob.agent_id), "approval")
            return f'bob saw "{pending.reason}", approved; trust holds both ways'

        await step("alice asks bob for trust, bob approves", trust)

        async def messages() -> str:
            for text in ("hello bob", "the forecast API is ready", "see you on the overlay"):
                await alice.send_message(bob.agent_id, text)
            await _wait_for(lambda: len(bob.inbox()) == 3, "messages")
            return " · ".join(m.text for m in bob.inbox())

        await step("alice sends bob three messages (durable, ordered)", messages)

        async def send_file() -> str:
            path = workdir / "report.bin"
            data = os.urandom(4 * 1024 * 1024)
            path.write_bytes(data)
            receipt = await alice.send_file(bob.agent_id, str(path))
            received = Path(bob.received_files()[-1]["path"])
            if hashlib.sha256(received.read_bytes()).hexdigest() != receipt.sha256:
                raise SwarmlinkError("file checksum mismatch")
            return f"{receipt.size / 2**20:.0f} MiB, sha256 {receipt.sha256[:16]}… verified"

        await step("alice sends bob a file", send_file)

        server, http_port = await _http_server()
        try:

            async def tunnel() -> str:
                bob.expose(http_port, name="weather", allow=[alice.agent_id])
                fwd = await alice.forward(0, bob.agent_id, http_port)
                url = f"http://127.0.0.1:{fwd.local_port}/forecast"

                def get() -> Any:
                    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                    with opener.open(url, timeout=10) as resp:
                        return resp.read().decode().strip()

                body = await asyncio.to_thread(get)
                return f"GET {url} → {body}"

            await step("HTTP through a tunnel (alice → bob's local service)", tunnel)
        finally:
            server.close()

        async def revoke() -> str:
            await bob.revoke_trust(alice.agent_id)
            await _wait_for(lambda: not alice.trust.is_trusted(bob.agent_id), "revocation")
            return "both sides dropped trust; new streams are refused"

        await step("bob revokes trust", revoke)
    finally:
        for node in nodes.values():
            await node.close()

    console.print(
        Panel.fit(
            "\n".join(f"[green]✔[/green] {title}" for title, _ in steps)
            + "\n\nNo central server was involved: identities are keys, trust is explicit,"
            "\nevery byte went over mutually authenticated TLS 1.3.",
            title=f"swarmlink demo: {len(steps)} steps passed",
            border_style="green",
        )
    )


def run_demo() -> int:
    """Run the demo; 0 on success. Uses temporary homes and leaves nothing running."""
    console = Console()
    console.rule("[bold]swarmlink demo")
    with tempfile.TemporaryDirectory(prefix="swarmlink-demo-") as tmp:
        try:
            asyncio.run(_demo(console, Path(tmp)))
        except (SwarmlinkError, TimeoutError) as exc:
            console.print(f"[red]demo failed:[/red] {exc}")
            return 1
    return 0
