"""Two in-process agents: connect, trust, a custom protocol, a message.

Run: .venv/bin/python examples/sdk_inprocess.py
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from swarmlink import Node, NodeConfig, Stream


async def echo(stream: Stream) -> None:
    while data := await stream.read():
        stream.write(data)
        await stream.drain()
    stream.write_eof()


async def main(workdir: Path) -> None:
    alice = await Node.start(NodeConfig(home=workdir / "alice", listen=(("127.0.0.1", 0),)))
    bob = await Node.start(NodeConfig(home=workdir / "bob", listen=(("127.0.0.1", 0),)))
    try:
        bob.set_handler("/example/echo/1", echo)  # a custom protocol
        await alice.connect(f"{bob.agent_id}@127.0.0.1:{bob.listen_port}")
        bob_events, alice_events = bob.subscribe(), alice.subscribe()
        await alice.request_trust(bob.agent_id, "demo")
        async for event in bob_events:  # typed events, pushed the moment they happen
            if event.type == "trust_requested":
                await bob.approve_trust(alice.agent_id)
                break
        async for event in alice_events:
            if event.type == "trust_established":
                break
        stream = await alice.open_stream(bob.agent_id, "/example/echo/1")
        stream.write(b"hello")
        stream.write_eof()
        print("echo:", await stream.readexactly(5))
        await alice.send_message(bob.agent_id, "hi bob")
        print("bob's inbox:", [m.text for m in bob.inbox()])
    finally:
        await alice.close()
        await bob.close()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(Path(tmp)))
