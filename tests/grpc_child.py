"""A real gRPC server or client (grpcio, generic handlers: no code generation), run as a
child process, e.g. inside a network namespace by the TUN tests.

    python grpc_child.py server            listen on [::]:0, print {"port": N}, serve until
                                           stdin closes
    python grpc_child.py client TARGET     unary, server-streaming and bidirectional calls
                                           to TARGET; print what came back as JSON

Service ``test.Echo``: ``Ping`` (unary: ``pong:`` + request), ``Many`` (unary-stream:
50 times request * 1000) and ``Chat`` (bidirectional: each request upper-cased, in order).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from concurrent import futures
from typing import Any


def serve() -> None:
    import grpc

    def chat(requests: Iterator[bytes], ctx: Any) -> Iterator[bytes]:
        for request in requests:
            yield request.upper()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Echo",
                {
                    "Ping": grpc.unary_unary_rpc_method_handler(lambda r, c: b"pong:" + r),
                    "Many": grpc.unary_stream_rpc_method_handler(
                        lambda r, c: (r * 1000 for _ in range(50))
                    ),
                    "Chat": grpc.stream_stream_rpc_method_handler(chat),
                },
            ),
        )
    )
    port = server.add_insecure_port("[::]:0")
    server.start()
    print(json.dumps({"port": port}), flush=True)
    sys.stdin.read()  # until the parent closes stdin
    server.stop(None)


def call(target: str) -> None:
    import grpc

    with grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0)]) as channel:
        ping = channel.unary_unary("/test.Echo/Ping")(b"hi", timeout=20)
        many = list(channel.unary_stream("/test.Echo/Many")(b"z", timeout=20))
        words = [f"word{i}".encode() for i in range(200)]
        chat = list(channel.stream_stream("/test.Echo/Chat")(iter(words), timeout=20))
    print(
        json.dumps(
            {
                "ping": ping.decode(),
                "many": len(many),
                "many_ok": all(m == b"z" * 1000 for m in many),
                "chat_ok": chat == [w.upper() for w in words],
                "chat": len(chat),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve()
    else:
        call(sys.argv[2])
