"""The ``swarmlink`` command line: every command talks to the daemon's control API."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .. import __version__
from ..runtime.config import DEFAULT_TUN_MTU, DEFAULT_TUN_NAME, resolve_home
from ._common import (
    JSON_OPTION,
    State,
    agent_arg,
    client_call,
    console,
    emit_json,
    fail,
    fmt_time,
    run,
    short,
)

__all__ = ["app"]

app = typer.Typer(
    name="swarmlink",
    help="swarmlink: a decentralized overlay network for AI agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
trust_app = typer.Typer(
    help="Explicit mutual trust: request, approve, reject, revoke.", no_args_is_help=True
)
key_app = typer.Typer(help="Operational key management.", no_args_is_help=True)
capability_app = typer.Typer(
    help="Capabilities this agent advertises in the DHT (found with `swarmlink find`).",
    no_args_is_help=True,
)
sim_app = typer.Typer(help="Deterministic simulations of the protocol cores.", no_args_is_help=True)
app.add_typer(sim_app, name="sim")
app.add_typer(trust_app, name="trust")
app.add_typer(key_app, name="key")
app.add_typer(capability_app, name="capability")


def _listing(items: Sequence[Any], json_out: bool, empty: str) -> bool:
    """Print ``items`` as JSON, or ``empty`` when there are none.

    True when that was all there is to print (the caller prints rows otherwise).
    """
    if json_out:
        emit_json([i.to_json() if hasattr(i, "to_json") else i for i in items])
        return True
    if not items:
        console.print(empty)
        return True
    return False


Agent = Annotated[str, typer.Argument(help="Agent ID (52 characters).", callback=agent_arg)]
Json = Annotated[bool, JSON_OPTION]


@app.callback()
def _root(
    home: Annotated[
        str | None,
        typer.Option(
            "--home",
            envvar="SWARMLINK_HOME",
            help="Node home directory (default ~/.swarmlink).",
            show_default=False,
        ),
    ] = None,
) -> None:
    State.home = resolve_home(home)


# ---- daemon lifecycle ---------------------------------------------------------------------


@app.command()
def up(
    listen: Annotated[
        list[str] | None,
        typer.Option(
            "--listen", "-l", help="HOST:PORT to listen on (repeatable; default 0.0.0.0:7420)."
        ),
    ] = None,
    bootstrap: Annotated[
        list[str] | None,
        typer.Option(
            "--bootstrap",
            "-b",
            help="AGENT@HOST:PORT of a DHT node to join the network through (repeatable).",
        ),
    ] = None,
    advertise: Annotated[
        list[str] | None,
        typer.Option(
            "--advertise",
            help="HOST:PORT to publish in this agent's DHT record instead of the listen "
            "addresses (repeatable; e.g. a public address in front of a NAT).",
        ),
    ] = None,
    mdns: Annotated[
        bool,
        typer.Option("--mdns/--no-mdns", help="Discover and announce nodes on the LAN (mDNS)."),
    ] = True,
    relay: Annotated[
        bool,
        typer.Option(
            "--relay", help="Relay for nodes that cannot be dialed (sees only ciphertext)."
        ),
    ] = False,
    relay_limit: Annotated[
        list[str] | None,
        typer.Option(
            "--relay-limit",
            help="NAME=VALUE relay limit (repeatable): max_reservations, reservation_ttl, "
            "max_circuits, max_circuits_per_peer, max_circuit_bytes, max_circuit_duration, "
            "max_reserve_per_minute, max_circuit_rate (bytes/s per circuit).",
        ),
    ] = None,
    relay_via: Annotated[
        list[str] | None,
        typer.Option(
            "--relay-via",
            help="AGENT@HOST:PORT of a relay to reserve on and publish (repeatable).",
        ),
    ] = None,
    hole_punching: Annotated[
        bool,
        typer.Option(
            "--hole-punching/--no-hole-punching",
            help="Upgrade relayed sessions to direct ones (the relay stays as fallback).",
        ),
    ] = True,
    punch_transport: Annotated[
        list[str] | None,
        typer.Option(
            "--punch-transport",
            help="tcp or quic: what hole punching opens (repeatable; default both).",
        ),
    ] = None,
    socks5: Annotated[
        str | None,
        typer.Option("--socks5", help="HOST:PORT of a SOCKS5 proxy into the overlay to serve."),
    ] = None,
    tun: Annotated[
        bool,
        typer.Option(
            "--tun",
            help="TUN mode (root): programs reach agents at [fd5a:7761:726d:…]:PORT directly.",
        ),
    ] = False,
    tun_name: Annotated[
        str, typer.Option("--tun-name", help="TUN interface name.")
    ] = DEFAULT_TUN_NAME,
    tun_mtu: Annotated[
        int, typer.Option("--tun-mtu", help="TUN MTU (1280-65535).")
    ] = DEFAULT_TUN_MTU,
    region: Annotated[
        str, typer.Option("--region", help="Region label for gossip (e.g. eu-west).")
    ] = "",
    foreground: Annotated[
        bool, typer.Option("--foreground", "-f", help="Run in this terminal.")
    ] = False,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = "info",
    json_out: Json = False,
) -> None:
    """Start the node (in the background unless --foreground) and wait until it is ready."""
    from ..daemon import parse_advertise, parse_bootstrap_peers
    from ..errors import InvalidArgument
    from ._daemonctl import parse_listen, running_status, start_background

    if log_level not in ("debug", "info", "warning", "error"):
        raise typer.BadParameter("use debug, info, warning or error", param_hint="--log-level")
    try:
        addresses = parse_listen(listen)
    except InvalidArgument as exc:
        raise typer.BadParameter(str(exc), param_hint="--listen") from None
    try:
        peers = parse_bootstrap_peers(bootstrap or [])
    except InvalidArgument as exc:
        raise typer.BadParameter(str(exc), param_hint="--bootstrap") from None
    try:
        advertised = parse_advertise(advertise or [])
    except InvalidArgument as exc:
        raise typer.BadParameter(str(exc), param_hint="--advertise") from None
    try:
        relays = parse_bootstrap_peers(relay_via or [])
    except InvalidArgument as exc:
        raise typer.BadParameter(str(exc), param_hint="--relay-via") from None
    transports = tuple(punch_transport or ("tcp", "quic"))
    if not set(transports) <= {"tcp", "quic"}:
        raise typer.BadParameter("use tcp or quic", param_hint="--punch-transport")
    from ..daemon import parse_relay_limits

    try:
        limits = parse_relay_limits(relay_limit or [])
    except InvalidArgument as exc:
        raise typer.BadParameter(str(exc), param_hint="--relay-limit") from None
    socks5_at = None
    if socks5 is not None:
        from ..wire.address import parse_hostport

        try:
            socks5_at = parse_hostport(socks5)
        except InvalidArgument as exc:
            raise typer.BadParameter(str(exc), param_hint="--socks5") from None
    tun_config = None
    if tun:
        from ..runtime.config import TunConfig

        try:
            tun_config = TunConfig(tun_name, tun_mtu)
        except InvalidArgument as exc:
            raise typer.BadParameter(str(exc), param_hint="--tun-name/--tun-mtu") from None
    from ..gossip import validate_region

    try:
        region = validate_region(region)
    except InvalidArgument as exc:
        raise typer.BadParameter(str(exc), param_hint="--region") from None
    if foreground:
        from ..daemon import DaemonConfig, run_daemon

        if run(running_status(State.home)) is not None:
            fail(f"a swarmlink daemon is already running in {State.home}")
        config = DaemonConfig(
            home=State.home,
            listen=addresses,
            log_level=log_level,
            bootstrap=peers,
            advertise=advertised,
            mdns=mdns,
            relay=relay,
            relays=relays,
            hole_punching=hole_punching,
            punch_transports=transports,
            socks5=socks5_at,
            relay_limits=limits,
            tun=tun_config,
            region=region,
        )
        raise typer.Exit(run_daemon(config))
    status = run(
        start_background(
            State.home,
            addresses,
            log_level,
            bootstrap=peers,
            advertise=advertised,
            mdns=mdns,
            relay=relay,
            relays=relays,
            hole_punching=hole_punching,
            punch_transports=punch_transport or (),
            socks5=socks5,
            relay_limits=relay_limit or (),
            tun=tun_config,
            region=region,
        )
    )
    if json_out:
        emit_json(status.to_json())
        return
    console.print(f"[green]swarmlink is up[/green] (pid {status.pid})")
    console.print(f"  agent ID         {status.agent_id}")
    console.print(f"  virtual address  {status.virtual_address}")
    console.print(f"  listening on     {', '.join(status.listen)}")
    console.print(f"  home             {status.home}")
    if peers:
        console.print(f"  DHT bootstrap    {', '.join(short(p) + p[52:] for p in peers)}")
    console.print(f"  mDNS             {'on' if status.mdns else 'off'}")


@app.command()
def down() -> None:
    """Stop the node gracefully (peers get a GOAWAY)."""
    from ._daemonctl import stop

    pid = run(stop(State.home))
    console.print(f"stopped (pid {pid})")


@app.command()
def status(json_out: Json = False) -> None:
    """Show the node's state."""
    st = client_call(lambda c: c.status())
    if json_out:
        emit_json(st.to_json())
        return
    table = Table.grid(padding=(0, 2))
    for name, value in (
        ("agent ID", st.agent_id),
        ("virtual address", st.virtual_address),
        ("listening on", ", ".join(st.listen)),
        ("home", st.home),
        ("pid / version", f"{st.pid} / {st.version}"),
        ("uptime", f"{st.uptime:.0f}s"),
        ("peers connected", str(st.peers_connected)),
        ("trusted peers", str(st.trusted_peers)),
        ("pending trust requests", str(st.pending_trust)),
        ("inbox messages", str(st.inbox_unread)),
        (
            "operational key",
            f"#{st.operational_key_serial}, expires {fmt_time(st.operational_key_expires)}",
        ),
        (
            "DHT",
            f"{'joined' if st.dht_joined else 'not joined'}, {st.dht_contacts} contacts, "
            f"{st.dht_records} records",
        ),
        ("mDNS", "on" if st.mdns else "off"),
        (
            "NAT",
            f"mapping {st.nat_mapping}, filtering {st.nat_filtering}; public address "
            f"{', '.join(st.reflexive_addresses) or 'not confirmed yet'}; "
            f"reachability {st.reachability}",
        ),
        ("relays", ", ".join(short(r) for r in st.relays) or "none"),
        ("TUN", _tun_line(st)),
    ):
        table.add_row(f"[bold]{name}[/bold]", value)
    console.print(table)


def _tun_line(st: Any) -> str:
    if st.tun is None:
        return "off (up --tun)"
    c = st.tun_counters or {}
    return (
        f"{st.tun} mtu {st.tun_mtu}: {c.get('packets_out', 0)} packets out, "
        f"{c.get('packets_in', 0)} in, {c.get('refused', 0)} refused, "
        f"{c.get('unreachable', 0)} unreachable, {c.get('dropped', 0)} dropped"
    )


@app.command("id")
def id_(json_out: Json = False) -> None:
    """Show this agent's identity (agent ID, virtual address, keys)."""
    info = client_call(lambda c: c.identity())
    if json_out:
        emit_json(info)
        return
    console.print(info["agent_id"])
    console.print(f"virtual address   {info['virtual_address']}")
    console.print(f"identity key      {info['identity_key']}")
    console.print(
        f"operational key   #{info['operational_key_serial']}, expires "
        f"{fmt_time(info['operational_key_expires'])}"
    )


@app.command()
def version() -> None:
    """Print the swarmlink version."""
    console.print(f"swarmlink {__version__}")


# ---- peers --------------------------------------------------------------------------------


@app.command()
def peers(json_out: Json = False) -> None:
    """List connected, trusted and remembered peers."""
    items = client_call(lambda c: c.peers())
    if _listing(items, json_out, "no peers yet: connect with `swarmlink connect AGENT@HOST:PORT`"):
        return
    table = Table()
    for col in ("agent", "address", "state", "trusted", "path", "rtt", "streams"):
        table.add_column(col)
    for p in items:
        table.add_row(
            short(p.agent_id),
            p.address or "-",
            f"{'connected ' + (p.direction or '') if p.connected else 'offline'}",
            "yes" if p.trusted else "no",
            p.path,
            f"{p.rtt_ms:.2f} ms" if p.rtt_ms is not None else "-",
            str(p.streams),
        )
    console.print(table)


@app.command()
def connect(
    target: Annotated[
        str, typer.Argument(help="AGENT@HOST:PORT: the peer must prove it is AGENT.")
    ],
    json_out: Json = False,
) -> None:
    """Dial a peer and verify it holds the expected agent's key."""
    from ..runtime.config import parse_target

    try:
        parse_target(target)
    except Exception as exc:
        raise typer.BadParameter(str(exc), param_hint="TARGET") from None
    peer = client_call(lambda c: c.connect(target))
    if json_out:
        emit_json(peer.to_json())
        return
    console.print(f"connected to {peer.agent_id} at {peer.address} (TLS 1.3, identity verified)")


@app.command()
def disconnect(agent: Agent, json_out: Json = False) -> None:
    """Close every session with a peer (direct and relayed); the next use dials afresh."""
    sessions = client_call(lambda c: c.disconnect(agent))
    if json_out:
        emit_json({"agent_id": agent, "sessions": sessions})
        return
    console.print(f"closed {sessions} session(s) with {agent}")


@app.command()
def ping(
    agent: Agent,
    count: Annotated[
        int, typer.Option("--count", "-c", min=1, max=10000, help="Pings to send.")
    ] = 4,
    interval: Annotated[
        float, typer.Option("--interval", "-i", min=0.0, max=60.0, help="Seconds between pings.")
    ] = 1.0,
    json_out: Json = False,
) -> None:
    """Measure round-trip time to a peer (NDJSON replies with --json)."""

    async def go(c: Any) -> dict[str, Any]:
        result: dict[str, Any] = {}
        async for line in c.ping(agent, count=count, interval=interval):
            if line.get("event") == "reply":
                if json_out:
                    emit_json(line)
                elif line.get("rtt_ms") is None:
                    console.print(f"no reply from {short(agent)}: seq={line['seq']} (timeout)")
                else:
                    console.print(
                        f"reply from {short(agent)}: seq={line['seq']} time={line['rtt_ms']:.3f} ms"
                    )
            elif line.get("event") == "result":
                result = line["result"]
        return result

    result = client_call(go)
    if json_out:
        emit_json(result)
    else:
        sent, received = result.get("sent", count), result.get("received", 0)
        loss = 100.0 * (sent - received) / sent if sent else 0.0
        console.print(f"--- {agent[:12]}… ping statistics ---")
        line = f"{sent} sent, {received} received, {loss:.0f}% loss"
        if received:
            line += (
                f"; rtt min/avg/max = {result['min_ms']:.3f}/{result['avg_ms']:.3f}/"
                f"{result['max_ms']:.3f} ms"
            )
        console.print(line)
    if not result.get("received"):
        raise typer.Exit(1)


@app.command()
def send(
    agent: Agent, text: Annotated[str, typer.Argument(help="Message text.")], json_out: Json = False
) -> None:
    """Send a durable message (queued until the peer is reachable)."""
    receipt = client_call(lambda c: c.send_message(agent, text))
    if json_out:
        emit_json(receipt.to_json())
        return
    state = "delivered" if receipt.delivered else "queued (delivered when the peer is reachable)"
    console.print(f"message #{receipt.seq} to {short(agent)}: {state}")


@app.command()
def inbox(
    sender: Annotated[
        str | None, typer.Option("--from", help="Only messages from this agent.")
    ] = None,
    after: Annotated[
        int, typer.Option("--after", min=0, help="Only messages with a larger ID.")
    ] = 0,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000)] = 100,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new messages.")
    ] = False,
    json_out: Json = False,
) -> None:
    """Show received messages, ordered per sender."""
    if sender is not None:
        sender = agent_arg(sender)

    def show(msg: Any) -> None:
        if json_out:
            emit_json(msg.to_json() if hasattr(msg, "to_json") else msg)
        else:
            console.print(
                f"[dim]#{msg.id} {fmt_time(msg.received_at)}[/dim] {short(msg.sender)}: {msg.text}"
            )

    async def go(c: Any) -> None:
        messages = await c.inbox(sender=sender, after=after, limit=limit)
        if json_out and not follow:
            emit_json([m.to_json() for m in messages])
            return
        for m in messages:
            show(m)
        if not follow:
            if not messages:
                console.print("inbox is empty")
            return
        async for event in c.events():
            if event.type == "message_received" and (sender is None or event.sender == sender):
                if json_out:
                    emit_json(event.to_json())
                else:
                    console.print(f"[dim]#{event.id}[/dim] {short(event.sender)}: {event.text}")

    client_call(go)


@app.command("send-file")
def send_file(
    agent: Agent,
    path: Annotated[
        Path, typer.Argument(help="File to send.", exists=True, dir_okay=False, readable=True)
    ],
    json_out: Json = False,
) -> None:
    """Stream a file to a peer (progress bar; SHA-256 verified by the receiver)."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    full = str(path.resolve())
    size = os.path.getsize(full)

    async def go(c: Any) -> dict[str, Any]:
        result: dict[str, Any] = {}
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console.__class__(stderr=True),
            disable=json_out,
            transient=True,
        ) as progress:
            task = progress.add_task(f"→ {short(agent)} {path.name}", total=size)
            async for line in c.send_file(agent, full):
                if line.get("event") == "progress":
                    progress.update(task, completed=line["sent"], total=line.get("total", size))
                elif line.get("event") == "result":
                    result = line["result"]
        return result

    result = client_call(go)
    if json_out:
        emit_json(result)
        return
    seconds = max(result["seconds"], 1e-9)
    console.print(
        f"sent {result['name']} ({result['size']:,} bytes) in {seconds:.2f}s "
        f"({result['size'] / seconds / 2**20:.1f} MiB/s), sha256 {result['sha256']}"
    )


@app.command()
def files(json_out: Json = False) -> None:
    """List files received from peers."""
    items = client_call(lambda c: c.files())
    if _listing(items, json_out, "no files received"):
        return
    table = Table()
    for col in ("id", "from", "name", "size", "received", "path"):
        table.add_column(col)
    for f in items:
        table.add_row(
            str(f["id"]),
            short(f["sender"]),
            f["name"],
            f"{f['size']:,}",
            fmt_time(f["received_at"]),
            f["path"],
        )
    console.print(table)


# ---- tunnels ------------------------------------------------------------------------------


@app.command()
def bench(
    agent: Agent,
    size: Annotated[int, typer.Option("--size", min=1, max=8192, help="MiB to send.")] = 64,
    json_out: Json = False,
) -> None:
    """Measure throughput and latency to a trusted peer."""
    result = client_call(lambda c: c.bench(agent, size=size * 2**20))
    if json_out:
        emit_json(result.to_json())
        return
    console.print(
        f"{result.bytes / 2**20:.0f} MiB in {result.seconds:.2f}s: "
        f"{result.throughput_mib_s:.1f} MiB/s; "
        f"rtt p50 {result.rtt_p50_ms:.3f} ms, p99 {result.rtt_p99_ms:.3f} ms"
    )


@app.command()
def events(json_out: Json = False) -> None:
    """Stream node events until interrupted (NDJSON with --json)."""

    async def go(c: Any) -> None:
        async for event in c.events():
            if json_out:
                print(__import__("json").dumps(event.to_json()), flush=True)
            else:
                data = event.to_json()
                kind = data.pop("type")
                console.print(
                    f"[bold]{kind}[/bold] " + " ".join(f"{k}={v}" for k, v in data.items())
                )

    client_call(go)


@app.command()
def demo() -> None:
    """Run the guided demo: three local agents, trust, messages, a file, HTTP through a tunnel."""
    from ..demo import run_demo

    raise typer.Exit(run_demo())


# ---- trust --------------------------------------------------------------------------------


def _trust_done(verb: str, agent: str, state: str, json_out: bool) -> None:
    if json_out:
        emit_json({"agent_id": agent, "state": state})
        return
    messages = {
        "requested": f"trust request sent to {short(agent)}; "
        "they can approve it with `swarmlink trust approve`",
        "queued": f"trust request to {short(agent)} queued; "
        "it is delivered when the peer is reachable",
        "trusted": f"{short(agent)} is trusted (both ways)",
        "rejected": f"request from {short(agent)} rejected",
        "revoked": f"trust with {short(agent)} revoked; open streams were closed",
    }
    console.print(messages.get(state, f"{verb} {short(agent)}: {state}"))


@trust_app.command("request")
def trust_request(
    agent: Agent,
    reason: Annotated[
        str, typer.Option("--reason", "-r", help="Why you want trust (shown to the peer).")
    ] = "",
    json_out: Json = False,
) -> None:
    """Ask a peer to trust you (mutual once approved)."""
    _trust_done("request", agent, client_call(lambda c: c.trust_request(agent, reason)), json_out)


@trust_app.command("approve")
def trust_approve(agent: Agent, json_out: Json = False) -> None:
    """Approve a pending request: trust holds both ways."""
    _trust_done("approve", agent, client_call(lambda c: c.trust_approve(agent)), json_out)


@trust_app.command("reject")
def trust_reject(agent: Agent, json_out: Json = False) -> None:
    """Reject a pending request."""
    _trust_done("reject", agent, client_call(lambda c: c.trust_reject(agent)), json_out)


@trust_app.command("revoke")
def trust_revoke(agent: Agent, json_out: Json = False) -> None:
    """Withdraw trust (either side may); open streams close at once."""
    _trust_done("revoke", agent, client_call(lambda c: c.trust_revoke(agent)), json_out)


@trust_app.command("pending")
def trust_pending(json_out: Json = False) -> None:
    """List trust requests waiting for an answer (theirs and ours)."""
    items = client_call(lambda c: c.trust_pending())
    if _listing(items, json_out, "no pending trust requests"):
        return
    for p in items:
        arrow = "from" if p.direction == "in" else "to"
        reason = f' — "{p.reason}"' if p.reason else ""
        console.print(f"{arrow} {p.agent_id} ({fmt_time(p.created)}){reason}")


@trust_app.command("list")
def trust_list(json_out: Json = False) -> None:
    """List trusted agents."""
    items = client_call(lambda c: c.trust_list())
    if _listing(items, json_out, "no trusted agents"):
        return
    for t in items:
        console.print(f"{t.agent_id}  since {fmt_time(t.since)}")


@key_app.command("rotate")
def key_rotate(json_out: Json = False) -> None:
    """Replace the operational key; agent ID, address and trust stay the same."""
    info = client_call(lambda c: c.rotate_key())
    if json_out:
        emit_json(info)
        return
    console.print(
        f"operational key rotated: now #{info['operational_key_serial']}, expires "
        f"{fmt_time(info['operational_key_expires'])}; "
        f"agent ID unchanged ({short(info['agent_id'])})"
    )
