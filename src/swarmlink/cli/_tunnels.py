"""``swarmlink`` commands for services and tunnels: expose, services, forward, proxy."""

from __future__ import annotations

from typing import Annotated

import typer

from ._app import Json, _listing, app
from ._common import agent_arg, client_call, console, emit_json, short

__all__: list[str] = []


@app.command()
def proxy(
    socks5: Annotated[
        str | None,
        typer.Option(
            "--socks5",
            help="HOST:PORT to serve a SOCKS5 proxy on (AGENT.swarm, NAME.AGENT.swarm, "
            "NAME.swarm, [VIRTUAL_IPV6]); port 0 picks one.",
        ),
    ] = None,
    json_out: Json = False,
) -> None:
    """Start a SOCKS5 proxy into the overlay in the daemon (or list the running ones)."""
    if socks5 is None:
        addresses = client_call(lambda c: c.proxies())
        if json_out:
            emit_json({"socks5": addresses})
            return
        console.print("\n".join(f"socks5 {a}" for a in addresses) or "no proxy running")
        return
    address = client_call(lambda c: c.start_socks5(socks5))
    if json_out:
        emit_json({"socks5": address})
        return
    console.print(
        f"SOCKS5 proxy on {address}: curl --socks5-hostname {address} http://AGENT.swarm:PORT/"
    )


@app.command()
def expose(
    port: Annotated[int, typer.Argument(min=1, max=65535, help="Local TCP port to publish.")],
    name: Annotated[str | None, typer.Option("--name", help="Service name (a-z, 0-9, -).")] = None,
    allow: Annotated[
        list[str] | None,
        typer.Option("--allow", help="Agent allowed (repeatable; default: every trusted agent)."),
    ] = None,
    allow_trusted: Annotated[
        bool,
        typer.Option("--allow-trusted", help="Every trusted agent may use it (the default)."),
    ] = False,
    json_out: Json = False,
) -> None:
    """Publish a local TCP service to peers (trusted agents, or only --allow ones).

    Forwards and the SOCKS5 proxy reach it at 127.0.0.1:PORT; TUN mode at the node's
    virtual address, so a service for TUN peers listens on [::] (or that address)."""
    if allow and allow_trusted:
        raise typer.BadParameter("use --allow AGENT or --allow-trusted, not both")
    allowed = [agent_arg(a) for a in allow or []]
    exp = client_call(lambda c: c.expose(port, name=name, allow=allowed))
    if json_out:
        emit_json(exp.to_json())
        return
    who = ", ".join(short(a) for a in exp.allow) if exp.allow else "every trusted agent"
    console.print(f"exposed 127.0.0.1:{exp.port}{f' as {exp.name}' if exp.name else ''} to {who}")


@app.command()
def unexpose(port: Annotated[int, typer.Argument(min=1, max=65535)]) -> None:
    """Stop publishing a port."""
    client_call(lambda c: c.unexpose(port))
    console.print(f"port {port} is no longer exposed")


@app.command()
def services(
    agent: Annotated[
        str | None, typer.Argument(help="Agent ID; without it, what this node exposes.")
    ] = None,
    json_out: Json = False,
) -> None:
    """What an agent exposes to you (reach it with forward, the SOCKS5 proxy, …)."""
    if agent is None:
        exposures(json_out)
        return
    agent = agent_arg(agent)
    items = client_call(lambda c: c.services(agent))
    if json_out:
        emit_json({"agent_id": agent, "services": items})
        return
    if not items:
        console.print(f"{short(agent)} exposes nothing to you")
    for s in items:
        name = s.get("name")
        console.print(f"{s['port']}{f' ({name})' if name else ''}")


@app.command()
def exposures(json_out: Json = False) -> None:
    """List exposed services."""
    items = client_call(lambda c: c.exposures())
    if _listing(items, json_out, "nothing exposed"):
        return
    for e in items:
        who = ", ".join(short(a) for a in e.allow) if e.allow else "trusted agents"
        console.print(f"{e.port}{f' ({e.name})' if e.name else ''}: {who}")


def _parse_forward(local: str, remote: str) -> tuple[str, int, str, int | str]:
    bind, _, port_text = local.rpartition(":")
    try:
        local_port = int(port_text)
    except ValueError:
        raise typer.BadParameter(f"bad local port {local!r}: expected [BIND:]PORT") from None
    if not 0 <= local_port <= 65535:
        raise typer.BadParameter("local port must be 0-65535")
    agent, sep, rport = remote.rpartition(":")
    if not sep:
        raise typer.BadParameter(f"bad target {remote!r}: expected AGENT:PORT or AGENT:NAME")
    if not rport.isdigit():
        return bind or "127.0.0.1", local_port, agent_arg(agent), rport  # a service name
    remote_port = int(rport)
    if not 1 <= remote_port <= 65535:
        raise typer.BadParameter("remote port must be 1-65535")
    return bind or "127.0.0.1", local_port, agent_arg(agent), remote_port


@app.command()
def forward(
    local: Annotated[str, typer.Argument(help="[BIND:]LOCAL_PORT to listen on (0 picks one).")],
    target: Annotated[
        str, typer.Argument(help="AGENT:PORT or AGENT:NAME (a service the peer exposes).")
    ],
    json_out: Json = False,
) -> None:
    """Tunnel a local port to a peer's exposed port (HTTP, gRPC, SSH work unchanged)."""
    bind, lport, agent, rport = _parse_forward(local, target)
    fwd = client_call(lambda c: c.forward(lport, agent, rport, bind_host=bind))
    if json_out:
        emit_json(fwd.to_json())
        return
    console.print(
        f"forward #{fwd.id}: {fwd.bind_host}:{fwd.local_port} → "
        f"{short(fwd.agent_id)}:{fwd.remote_name or fwd.remote_port}"
    )


@app.command()
def unforward(
    forward_id: Annotated[int, typer.Argument(help="Forward ID (see `forwards`).")],
) -> None:
    """Remove a port forward."""
    client_call(lambda c: c.unforward(forward_id))
    console.print(f"forward #{forward_id} removed")


@app.command()
def forwards(json_out: Json = False) -> None:
    """List port forwards."""
    items = client_call(lambda c: c.forwards())
    if _listing(items, json_out, "no forwards"):
        return
    for f in items:
        remote = f.remote_name or f.remote_port
        console.print(f"#{f.id} {f.bind_host}:{f.local_port} → {short(f.agent_id)}:{remote}")
