"""``swarmlink`` commands for finding agents in the DHT: lookup, find, capability."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.table import Table

from ._app import Agent, Json, _listing, app, capability_app
from ._common import client_call, console, emit_json, fmt_time

__all__: list[str] = []


# ---- DHT: finding agents --------------------------------------------------------------------


def _tag_arg(value: str) -> str:
    """Validate a capability tag early, with the same message the daemon would give."""
    from ..dht import capability_key
    from ..errors import InvalidArgument

    try:
        capability_key(value)
    except InvalidArgument as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


Tag = Annotated[
    str, typer.Argument(help="Capability tag (lowercase a-z 0-9 . _ - /).", callback=_tag_arg)
]


def _capability_table(caps: Sequence[dict[str, Any]], title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("tag", "name", "description", "protocol"):
        table.add_column(col)
    for c in caps:
        table.add_row(c["tag"], c["name"] or "-", c["description"] or "-", c["protocol"] or "-")
    return table


@app.command()
def lookup(agent: Agent, json_out: Json = False) -> None:
    """Find an agent by ID in the DHT and show its signed record (addresses, capabilities)."""
    record = client_call(lambda c: c.lookup(agent))
    if json_out:
        emit_json(record)
        return
    console.print(f"[bold]{record['agent_id']}[/bold] [green](record signature verified)[/green]")
    grid = Table.grid(padding=(0, 2))
    rows = [
        ("addresses", ", ".join(record["addresses"]) or "-"),
        ("relays", ", ".join(record["relays"]) or "-"),
        ("protocol versions", ", ".join(str(v) for v in record["versions"]) or "-"),
        ("sequence", str(record["sequence"])),
        ("issued", fmt_time(record["issued"])),
        ("expires", fmt_time(record["expires"])),
        ("operational key", f"#{record['key_serial']}, expires {fmt_time(record['key_expires'])}"),
    ]
    for name, value in rows:
        grid.add_row(f"[bold]{name}[/bold]", value)
    console.print(grid)
    caps = record["capabilities"]
    if caps:
        console.print(_capability_table(caps, "capabilities"))
    else:
        console.print("no capabilities advertised")


@app.command()
def find(
    capability: Annotated[
        str,
        typer.Option(
            "--capability",
            "-c",
            help="Capability tag to search for (lowercase a-z 0-9 . _ - /).",
            callback=_tag_arg,
        ),
    ],
    json_out: Json = False,
) -> None:
    """Find agents that advertise a capability (search the DHT; records are verified)."""
    agents = client_call(lambda c: c.find(capability))
    if json_out:
        emit_json(agents)
        return
    if not agents:
        console.print(f"no agent advertises capability {capability!r} (searched the DHT)")
        return
    table = Table(title=f"agents advertising {capability!r}", title_justify="left")
    table.add_column("agent", no_wrap=True, min_width=52)  # in full: ready to copy
    for col in ("name", "description", "addresses"):
        table.add_column(col, overflow="fold")
    for record in agents:
        cap = next((c for c in record["capabilities"] if c["tag"] == capability), None)
        table.add_row(
            record["agent_id"],
            (cap or {}).get("name") or "-",
            (cap or {}).get("description") or "-",
            ", ".join(record["addresses"]) or "-",
        )
    console.print(table)


@capability_app.command("add")
def capability_add(
    tag: Tag,
    name: Annotated[str, typer.Option("--name", help="Human-readable name.")] = "",
    description: Annotated[
        str, typer.Option("--description", "-d", help="What the agent does for others.")
    ] = "",
    protocol: Annotated[
        str, typer.Option("--protocol", help="Stream protocol or API that serves it.")
    ] = "",
    json_out: Json = False,
) -> None:
    """Advertise a capability (replaces one with the same tag); the record is republished."""
    cap = client_call(
        lambda c: c.add_capability(tag, name=name, description=description, protocol=protocol)
    )
    if json_out:
        emit_json(cap)
        return
    console.print(
        f"advertising capability {cap['tag']!r}; the agent record is being republished "
        "(others find it with `swarmlink find --capability " + cap["tag"] + "`)"
    )


@capability_app.command("list")
def capability_list(json_out: Json = False) -> None:
    """List the capabilities this agent advertises."""
    caps = client_call(lambda c: c.capabilities())
    if _listing(
        caps,
        json_out,
        "this agent advertises no capabilities: add one with `swarmlink capability add TAG`",
    ):
        return
    console.print(_capability_table(caps))


@capability_app.command("remove")
def capability_remove(tag: Tag) -> None:
    """Stop advertising a capability; the record is republished."""
    client_call(lambda c: c.remove_capability(tag))
    console.print(f"capability {tag!r} removed; the agent record is being republished")


# ---- messages and files -------------------------------------------------------------------
