"""Drive running daemons from Python: ``swarmlink.Client`` talks to a daemon's control socket.

Usage: python examples/sdk_attach.py HOME_A HOME_B
(two daemons started with ``swarmlink --home HOME up``, already connected and trusted)
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

from swarmlink import Client
from swarmlink.client import ClientStream


async def main(home_a: str, home_b: str) -> None:
    async with Client(home_a) as a, Client(home_b) as b:
        me, peer = await a.status(), await b.status()
        print(f"A is {me.agent_id[:12]}…, B is {peer.agent_id[:12]}…")

        async def upper(stream: ClientStream) -> None:
            while data := await stream.read():
                stream.write(data.upper())
                await stream.drain()
            stream.write_eof()

        ready = asyncio.Event()
        serving = asyncio.create_task(b.handle("/example/upper/1", upper, ready=ready))
        await ready.wait()  # the daemon has registered the handler
        stream = await a.open_stream(peer.agent_id, "/example/upper/1")
        stream.write(b"hello through two daemons")
        stream.write_eof()
        reply = b""
        while chunk := await stream.read():
            reply += chunk
        print("reply:", reply.decode())
        receipt = await a.send_message(peer.agent_id, "hello from the SDK")
        print("message delivered:", receipt.delivered)
        print("B inbox:", [m.text for m in await b.inbox()])
        # B advertises what it offers in its signed DHT record; others find it with
        # ``await client.find("example.upper")`` (or ``swarmlink find -c example.upper``).
        cap = await b.add_capability("example.upper", description="upper-cases a stream")
        print("B advertises:", [c["tag"] for c in await b.capabilities()])
        await b.remove_capability(cap["tag"])
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
