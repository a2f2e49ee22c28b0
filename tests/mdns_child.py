"""Child process for tests/test_mdns.py: run one MdnsDiscovery inside a network namespace.

Usage: ``python mdns_child.py AGENT_ID PORT ADDRESS``. Prints JSON lines on stdout:
``{"ready": AGENT_ID}`` once announced, ``{"found": ID, "addresses": [...]}`` per report,
``{"closed": true}`` after close(); it closes when stdin reaches end of file.
"""

from __future__ import annotations

import asyncio
import json
import sys

from swarmlink.runtime._mdns import MdnsDiscovery


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def main(agent_id: str, port: int, address: str) -> None:
    loop = asyncio.get_running_loop()
    mdns = MdnsDiscovery(
        agent_id, port, lambda a, addrs: emit(found=a, addresses=list(addrs)), addresses=[address]
    )
    await mdns.start()
    emit(ready=agent_id, running=mdns.running)
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin
    await mdns.close()
    await mdns.close()
    emit(closed=True, running=mdns.running)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
