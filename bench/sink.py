"""Byte sink for the throughput benchmark: reads an 8-byte length, then that many bytes,
then answers the count as a line. Prints its port on stdout. ``--tls DIR`` serves TLS 1.3."""

from __future__ import annotations

import asyncio
import ssl
import sys
import time
from pathlib import Path


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    total = int.from_bytes(await reader.readexactly(8), "big")
    count = 0
    while count < total:
        data = await reader.read(1 << 20)
        if not data:
            break
        count += len(data)
    writer.write(f"{count}\n".encode())
    await writer.drain()
    writer.close()


async def main() -> None:
    ctx = None
    if len(sys.argv) > 2 and sys.argv[1] == "--tls":
        from swarmlink.identity import KeyStore

        ks = KeyStore(Path(sys.argv[2]) / "sink")
        ks.load_or_create(now=time.time())
        cert, key = ks.tls_files
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_cert_chain(cert, key)
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
