"""SOCKS5 server core (RFC 1928, no auth, CONNECT only) and overlay names: every reply on
the wire byte for byte, every limit, any chunking, random garbage, and a real TCP client."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import string
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmlink.errors import InvalidArgument, NotFound, StateError
from swarmlink.identity import IdentityKey, virtual_address
from swarmlink.tunnel import (
    ADDRESS_TYPE_NOT_SUPPORTED,
    COMMAND_NOT_SUPPORTED,
    CONNECTION_REFUSED,
    GENERAL_FAILURE,
    HOST_UNREACHABLE,
    MAX_EARLY_DATA,
    MAX_HANDSHAKE_BYTES,
    NETWORK_UNREACHABLE,
    NOT_ALLOWED,
    TTL_EXPIRED,
    AddressType,
    ConnectRequested,
    OverlayTarget,
    ProtocolError,
    Socks5Event,
    Socks5Server,
    Socks5State,
    resolve_overlay_name,
)

AGENT = IdentityKey.from_private_bytes(bytes(32)).agent_id
OTHER = IdentityKey.from_private_bytes(bytes([1]) * 32).agent_id
VADDR = virtual_address(AGENT)

NO_AUTH_OK = b"\x05\x00"
NO_ACCEPTABLE = b"\x05\xff"
VISIBLE = "".join(chr(c) for c in range(0x21, 0x7F))


def greeting(methods: bytes = b"\x00") -> bytes:
    return bytes([5, len(methods)]) + methods


def request(host: str, port: int, *, cmd: int = 1, atyp: int | None = None) -> bytes:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raw = host.encode("ascii")
        address = bytes([3 if atyp is None else atyp, len(raw)]) + raw
    else:
        address = bytes([(1 if ip.version == 4 else 4) if atyp is None else atyp]) + ip.packed
    return bytes([5, cmd, 0]) + address + port.to_bytes(2, "big")


def failure(code: int) -> bytes:
    """VER REP RSV ATYP(IPv4) BND.ADDR(0.0.0.0) BND.PORT(0)."""
    return bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0])


def events(server: Socks5Server) -> list[Socks5Event]:
    out = []
    while (event := server.next_event()) is not None:
        out.append(event)
    return out


def handshake(host: str, port: int) -> tuple[Socks5Server, ConnectRequested]:
    server = Socks5Server()
    server.receive_data(greeting())
    assert server.data_to_send() == NO_AUTH_OK and events(server) == []
    server.receive_data(request(host, port))
    (event,) = events(server)
    assert isinstance(event, ConnectRequested)
    assert server.state == Socks5State.CONNECTING and server.data_to_send() == b""
    return server, event


def fails_with(data: bytes, code: int, wire: bytes) -> ProtocolError:
    server = Socks5Server()
    server.receive_data(data)
    (*_, error) = events(server)
    assert isinstance(error, ProtocolError) and error.reply == code, error
    assert server.closed and server.data_to_send() == wire
    server.receive_data(b"\x05\x01\x00anything")  # ignored once closed, never raises
    assert events(server) == [] and server.data_to_send() == b""
    return error


# ---- happy paths --------------------------------------------------------------------------


def test_ipv4_connect_and_accept() -> None:
    server, event = handshake("192.0.2.7", 8080)
    assert event == ConnectRequested("192.0.2.7", 8080, "ipv4")
    server.accept("127.0.0.1", 1080)
    assert server.data_to_send() == bytes([5, 0, 0, 1, 127, 0, 0, 1, 0x04, 0x38])
    assert server.state == Socks5State.OPEN
    server.receive_data(b"payload")
    assert server.take_payload() == b"payload" and server.take_payload() == b""
    assert events(server) == []


def test_ipv6_connect_and_accept_with_an_ipv6_bound_address() -> None:
    server, event = handshake(str(VADDR), 22)
    assert event == ConnectRequested(str(VADDR), 22, "ipv6")
    server.accept("::1", 65535)
    assert server.data_to_send() == b"\x05\x00\x00\x04" + bytes(15) + b"\x01\xff\xff"


def test_domain_connect_keeps_the_name_as_sent() -> None:
    host = f"Web.{AGENT.upper()}.swarm."
    server, event = handshake(host, 443)
    assert event == ConnectRequested(host, 443, "domain")
    server.accept()
    assert server.data_to_send() == bytes([5, 0, 0, 1, 0, 0, 0, 0, 0, 0])


def test_greeting_and_request_pipelined_with_early_data() -> None:
    server = Socks5Server()
    early = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    server.receive_data(greeting(b"\x02\x00\x01") + request("a.swarm", 80) + early[:5])
    assert server.data_to_send() == NO_AUTH_OK
    assert events(server) == [ConnectRequested("a.swarm", 80, "domain")]
    server.receive_data(early[5:])  # more early data before accept(): kept
    assert server.buffered_payload == len(early)
    server.accept()
    assert server.data_to_send()[:2] == b"\x05\x00"
    assert server.take_payload() == early
    server.receive_data(b"more")
    assert server.take_payload() == b"more"


def test_largest_valid_handshake_fits_the_default_limit() -> None:
    methods = bytes(range(1, 255)) + b"\x00"  # 255 methods, the most NMETHODS allows
    host = "h" * 255
    server = Socks5Server()
    server.receive_data(greeting(methods) + request(host, 1))
    assert len(greeting(methods) + request(host, 1)) == 519 <= MAX_HANDSHAKE_BYTES
    assert events(server) == [ConnectRequested(host, 1, "domain")]


# ---- refusals: exact bytes ------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        GENERAL_FAILURE,
        NOT_ALLOWED,
        NETWORK_UNREACHABLE,
        HOST_UNREACHABLE,
        CONNECTION_REFUSED,
        TTL_EXPIRED,
        COMMAND_NOT_SUPPORTED,
        ADDRESS_TYPE_NOT_SUPPORTED,
    ],
)
def test_refuse_sends_the_failure_reply_and_closes(code: int) -> None:
    server, _ = handshake("example.com", 80)
    server.receive_data(b"early")
    server.refuse(code, "no such agent")
    assert server.data_to_send() == failure(code)
    assert server.closed and server.close_reason == "no such agent"
    assert server.take_payload() == b""  # early data discarded
    server.receive_data(b"late")
    assert events(server) == [] and server.take_payload() == b""


def test_commands_in_the_wrong_state_are_local_errors() -> None:
    server = Socks5Server()
    with pytest.raises(StateError):
        server.accept()
    with pytest.raises(StateError):
        server.refuse(GENERAL_FAILURE, "x")
    server, _ = handshake("192.0.2.1", 80)
    with pytest.raises(InvalidArgument):
        server.refuse(0, "success is not a refusal")
    with pytest.raises(InvalidArgument):
        server.refuse(9, "unassigned")
    with pytest.raises(InvalidArgument):
        server.accept("localhost")
    with pytest.raises(InvalidArgument):
        server.accept("127.0.0.1", 70000)
    assert server.state == Socks5State.CONNECTING and server.data_to_send() == b""
    server.accept()
    with pytest.raises(StateError):
        server.accept()
    with pytest.raises(StateError):
        server.refuse(GENERAL_FAILURE, "too late")
    with pytest.raises(InvalidArgument):
        Socks5Server(max_handshake_bytes=0)


@pytest.mark.parametrize(
    "methods", [b"\x02", b"\x01\x02\x03", b"\x80\xff", b""], ids=["userpass", "gss", "x", "none"]
)
def test_no_auth_not_offered_gets_05_ff(methods: bytes) -> None:
    error = fails_with(greeting(methods), NOT_ALLOWED, NO_ACCEPTABLE)
    assert "authentication" in error.reason


@pytest.mark.parametrize(
    "data", [b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00", b"GET / HTTP/1.1\r\n", b"\x16\x03\x01"]
)
def test_a_bad_greeting_version_closes_without_reply(data: bytes) -> None:
    error = fails_with(data, GENERAL_FAILURE, b"")
    assert "not a SOCKS5 client" in error.reason


def test_a_bad_request_version_gets_general_failure() -> None:
    fails_with(greeting() + b"\x04\x01\x00\x01", GENERAL_FAILURE, NO_AUTH_OK + failure(1))


@pytest.mark.parametrize("cmd", [2, 3, 0, 0x7F])
def test_bind_udp_associate_and_unknown_commands_are_not_supported(cmd: int) -> None:
    # Detected as soon as the command byte arrives, before the rest of the request.
    wire = NO_AUTH_OK + failure(COMMAND_NOT_SUPPORTED)
    fails_with(greeting() + bytes([5, cmd]), COMMAND_NOT_SUPPORTED, wire)
    fails_with(greeting() + request("192.0.2.1", 80, cmd=cmd), COMMAND_NOT_SUPPORTED, wire)


def test_nonzero_reserved_byte_is_refused() -> None:
    fails_with(greeting() + b"\x05\x01\x01\x01", GENERAL_FAILURE, NO_AUTH_OK + failure(1))


@pytest.mark.parametrize("atyp", [0, 2, 5, 0xFF])
def test_unknown_address_type_is_refused(atyp: int) -> None:
    wire = NO_AUTH_OK + failure(ADDRESS_TYPE_NOT_SUPPORTED)
    fails_with(greeting() + bytes([5, 1, 0, atyp]), ADDRESS_TYPE_NOT_SUPPORTED, wire)


@pytest.mark.parametrize(
    "raw", [b"", b"a b", b"a\x00b", b"caf\xc3\xa9", b"tab\t", b"\x7f"], ids=repr
)
def test_bad_domain_names_are_refused(raw: bytes) -> None:
    data = greeting() + bytes([5, 1, 0, 3, len(raw)]) + raw + b"\x00\x50"
    fails_with(data, GENERAL_FAILURE, NO_AUTH_OK + failure(GENERAL_FAILURE))


def test_port_zero_is_not_allowed() -> None:
    wire = NO_AUTH_OK + failure(NOT_ALLOWED)
    for host in ("192.0.2.1", "::1", "a.swarm"):
        error = fails_with(greeting() + request(host, 0), NOT_ALLOWED, wire)
        assert "port 0" in error.reason


def test_handshake_limit_in_the_request_stage_sends_a_reply() -> None:
    server = Socks5Server(max_handshake_bytes=64)
    server.receive_data(greeting() + bytes([5, 1, 0, 3, 100]))  # 3 + 107 bytes > 64
    (error,) = events(server)
    assert isinstance(error, ProtocolError) and "longer than 64" in error.reason
    assert server.closed and server.data_to_send() == NO_AUTH_OK + failure(GENERAL_FAILURE)


def test_handshake_limit_in_the_greeting_closes_silently() -> None:
    server = Socks5Server(max_handshake_bytes=8)
    server.receive_data(b"\x05\x09")
    (error,) = events(server)
    assert isinstance(error, ProtocolError) and error.reply == GENERAL_FAILURE
    assert server.closed and server.data_to_send() == b""


def test_too_much_early_data_fails_the_pending_connect() -> None:
    server, _ = handshake("192.0.2.1", 80)
    server.receive_data(bytes(MAX_EARLY_DATA))
    assert events(server) == [] and server.buffered_payload == MAX_EARLY_DATA
    server.receive_data(b"!")
    (error,) = events(server)
    assert isinstance(error, ProtocolError) and error.reply == GENERAL_FAILURE
    assert server.closed and server.buffered_payload == 0
    assert server.data_to_send() == failure(GENERAL_FAILURE)
    with pytest.raises(StateError):
        server.accept()


def test_after_accept_payload_is_not_limited_by_the_core() -> None:
    server, _ = handshake("192.0.2.1", 80)
    server.accept()
    server.receive_data(bytes(MAX_EARLY_DATA + 1))
    assert events(server) == [] and len(server.take_payload()) == MAX_EARLY_DATA + 1


# ---- properties ---------------------------------------------------------------------------

ports = st.integers(1, 0xFFFF)
targets = st.one_of(
    st.tuples(st.ip_addresses(v=4).map(str), ports, st.just("ipv4")),
    st.tuples(st.ip_addresses(v=6).map(str), ports, st.just("ipv6")),
    st.tuples(st.text(VISIBLE, min_size=1, max_size=255), ports, st.just("domain")),
)
method_lists = st.lists(st.integers(1, 255), max_size=254).flatmap(
    lambda others: st.permutations([0, *others])
)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@given(
    methods=method_lists,
    target=targets,
    early=st.binary(max_size=64),
    cuts=st.lists(st.integers(0, 2000), max_size=30),
    byte_by_byte=st.booleans(),
)
def test_any_chunking_gives_the_same_single_connect(
    methods: list[int],
    target: tuple[str, int, str],
    early: bytes,
    cuts: list[int],
    byte_by_byte: bool,
) -> None:
    host, port, kind = target
    data = greeting(bytes(methods)) + request(host, port) + early
    pieces = [data[i : i + 1] for i in range(len(data))] if byte_by_byte else chunked(data, cuts)
    server = Socks5Server()
    for piece in pieces:
        server.receive_data(piece)
        assert server.buffered_handshake <= MAX_HANDSHAKE_BYTES
    assert events(server) == [ConnectRequested(host, port, cast(AddressType, kind))]
    assert server.data_to_send() == NO_AUTH_OK
    server.accept()
    assert server.data_to_send() == failure(0)  # success: 05 00 00 01 0.0.0.0 0
    assert server.take_payload() == early


prefixes = st.sampled_from(
    [b"", b"\x05", greeting(), greeting() + b"\x05", greeting() + b"\x05\x01\x00"]
)


@given(prefix=prefixes, junk=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 3000)))
def test_random_bytes_never_raise_and_stay_bounded(
    prefix: bytes, junk: bytes, cuts: list[int]
) -> None:
    data = prefix + junk
    chunked_server, whole = Socks5Server(), Socks5Server()
    for piece in chunked(data, cuts):
        chunked_server.receive_data(piece)
        assert chunked_server.buffered_handshake <= MAX_HANDSHAKE_BYTES
        assert chunked_server.buffered_payload <= MAX_EARLY_DATA
    whole.receive_data(data)
    got = events(chunked_server)
    assert got == events(whole)  # chunking never changes the outcome
    assert chunked_server.data_to_send() == whole.data_to_send()
    assert chunked_server.state == whole.state
    if chunked_server.state in (Socks5State.GREETING, Socks5State.REQUEST):
        assert got == []  # incomplete
    elif chunked_server.state == Socks5State.CLOSED:
        assert len(got) == 1 and isinstance(got[0], ProtocolError)
    else:  # the junk happened to complete a valid request
        assert len(got) == 1 and isinstance(got[0], ConnectRequested)


# ---- overlay names ------------------------------------------------------------------------


def test_agent_names() -> None:
    assert resolve_overlay_name(f"{AGENT}.swarm", 80) == OverlayTarget(
        "agent", AGENT, None, None, 80
    )
    assert resolve_overlay_name(f"{AGENT.upper()}.SWARM.", 22) == OverlayTarget(
        "agent", AGENT, None, None, 22
    )
    assert resolve_overlay_name(f"Web-1.{AGENT}.swarm", 443) == OverlayTarget(
        "agent", AGENT, "web-1", None, 443
    )
    assert resolve_overlay_name("inference.swarm.", 8000) == OverlayTarget(
        "name", None, "inference", None, 8000
    )
    assert resolve_overlay_name("x" * 63 + ".swarm", 1).name == "x" * 63


def test_virtual_addresses() -> None:
    table = {VADDR: AGENT}
    for host in (str(VADDR), f"[{VADDR}]", str(VADDR.exploded).upper()):
        target = resolve_overlay_name(host, 80, by_address=table.get)
        assert target == OverlayTarget("address", AGENT, None, VADDR, 80)
    unknown = virtual_address(OTHER)
    assert resolve_overlay_name(str(unknown), 80, by_address=table.get).agent_id is None
    assert resolve_overlay_name(str(VADDR), 80).agent_id is None  # no table
    with pytest.raises(InvalidArgument, match="does not have virtual address"):
        resolve_overlay_name(str(unknown), 80, by_address=lambda _: AGENT)


@pytest.mark.parametrize(
    "host", ["example.com", "localhost", "8.8.8.8", "2001:db8::1", "[::1]", "swarm.com", ""]
)
def test_names_outside_the_overlay_are_not_found(host: str) -> None:
    with pytest.raises(NotFound) as info:
        resolve_overlay_name(host, 80)
    assert f"{host} is not an overlay name (use AGENT_ID.swarm" in str(info.value)
    assert "fd5a:7761:726d::/48" in str(info.value)


@pytest.mark.parametrize(
    "host",
    [
        "swarm",
        ".swarm",
        "bad_name.swarm",
        "-web.swarm",
        "web-.swarm",
        "x" * 64 + ".swarm",
        f"a.b.{AGENT}.swarm",
        "web.notanagent.swarm",
        f"bad_name.{AGENT}.swarm",
        f"web.{AGENT[:-1]}b.swarm",
        "[example.com]",
        "fd5a:7761:726d::1%eth0",
        "é.swarm",
        "a" * 256 + ".swarm",
    ],
)
def test_malformed_overlay_names_are_invalid(host: str) -> None:
    with pytest.raises(InvalidArgument):
        resolve_overlay_name(host, 80)


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_bad_ports_are_invalid(port: int) -> None:
    with pytest.raises(InvalidArgument):
        resolve_overlay_name(f"{AGENT}.swarm", port)


@given(st.text(string.printable, max_size=300), ports)
def test_resolve_raises_only_swarmlink_errors(host: str, port: int) -> None:
    try:
        target = resolve_overlay_name(host, port)
    except (NotFound, InvalidArgument):
        return
    assert target.port == port and target.kind in ("agent", "name", "address")


# ---- a real TCP client --------------------------------------------------------------------


async def serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Minimal glue: handshake through Socks5Server, then echo upper-cased payload."""
    server = Socks5Server()
    while not server.closed and server.state != Socks5State.OPEN:
        data = await reader.read(4096)
        if not data:
            break
        server.receive_data(data)
        while (event := server.next_event()) is not None:
            if isinstance(event, ConnectRequested):
                try:
                    target = resolve_overlay_name(event.host, event.port)
                except NotFound as exc:
                    server.refuse(HOST_UNREACHABLE, str(exc))
                else:
                    server.accept("127.0.0.1", 4242)
                    label = f"{target.name}@{target.agent_id}:{target.port}|".encode()
                    writer.write(server.data_to_send() + label)
        writer.write(server.data_to_send())
    if server.state == Socks5State.OPEN:
        payload = server.take_payload()  # early data first, then straight from the socket
        while True:
            writer.write(payload.upper())
            payload = await reader.read(4096)
            if not payload:
                break
    writer.close()
    await writer.wait_closed()


async def socks_client(port: int, host: str, early: bytes) -> tuple[bytes, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(greeting(b"\x00\x02"))
    assert await reader.readexactly(2) == NO_AUTH_OK
    writer.write(request(host, 8080) + early)  # early data right behind the request
    reply = await reader.readexactly(10)
    if reply[1] == 0:
        writer.write(b" and more")
        writer.write_eof()
    rest = await reader.read()
    writer.close()
    await writer.wait_closed()
    return reply, rest


async def test_a_real_client_through_asyncio_streams() -> None:
    tcp = await asyncio.start_server(serve_one, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    try:
        async with asyncio.timeout(10):
            reply, rest = await socks_client(port, f"chat.{AGENT}.swarm", b"hello")
            assert reply == bytes([5, 0, 0, 1, 127, 0, 0, 1, 0x10, 0x92])
            assert rest == f"chat@{AGENT}:8080|".encode() + b"HELLO AND MORE"
            reply, rest = await socks_client(port, "example.com", b"x")
            assert reply == failure(HOST_UNREACHABLE) and rest == b""
    finally:
        tcp.close()
        await tcp.wait_closed()


# ---- HTTP CONNECT (the same proxy port, for HTTP-proxy clients such as gRPC) -----------


def test_http_connect_requests_are_parsed_strictly() -> None:
    from swarmlink.errors import ProtocolViolation
    from swarmlink.tunnel import MAX_CONNECT_HEAD, connect_reply, parse_connect

    head = b"CONNECT abc.swarm:443 HTTP/1.1\r\nHost: abc.swarm:443\r\n\r\n"
    assert parse_connect(head) == ("abc.swarm", 443)
    assert parse_connect(b"CONNECT [fd5a::1]:80 HTTP/1.0\r\n\r\n") == ("fd5a::1", 80)
    for bad in (
        b"GET / HTTP/1.1\r\n\r\n",
        b"CONNECT abc.swarm HTTP/1.1\r\n\r\n",
        b"CONNECT abc.swarm:0 HTTP/1.1\r\n\r\n",
        b"CONNECT abc.swarm:80 SPDY/3\r\n\r\n",
        b"CONNECT abc.swarm:80 HTTP/1.1\r\n",
        b"CONNECT \xff:80 HTTP/1.1\r\n\r\n",
        b"CONNECT a:80 HTTP/1.1\r\n" + b"X: " + b"y" * MAX_CONNECT_HEAD + b"\r\n\r\n",
    ):
        with pytest.raises(ProtocolViolation):
            parse_connect(bad)
    assert connect_reply(200) == b"HTTP/1.1 200 Connection established\r\n\r\n"
    refused = connect_reply(403, "agent does not trust you")
    assert refused.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert refused.endswith(b"\r\n\r\nagent does not trust you\n")
