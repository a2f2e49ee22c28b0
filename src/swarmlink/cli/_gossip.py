"""``swarmlink`` commands for the gossip layer: members, publish, subscribe, topic
policies and replicated state."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from ._app import Json, _listing, app
from ._common import agent_arg, client_call, console, emit_json, fmt_time, short

__all__ = ["state_app", "topic_app"]

state_app = typer.Typer(
    help="Replicated state (CRDTs) shared by gossip: get, set, add, remove, incr.",
    no_args_is_help=True,
)
topic_app = typer.Typer(help="Pub/sub topic policies: who may publish.", no_args_is_help=True)
app.add_typer(state_app, name="state")
app.add_typer(topic_app, name="topic")

Topic = Annotated[str, typer.Argument(help="Topic name.")]
StateName = Annotated[str, typer.Argument(help="Replicated state name.")]
Key = Annotated[str, typer.Argument(help="Key inside the state.")]


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


@app.command()
def members(json_out: Json = False) -> None:
    """Gossip members this node knows: alive, suspect, dead or left, with ages."""

    async def go(c: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        return await c.members(), await c.gossip_info()

    rows, info = client_call(go)
    if json_out:
        emit_json({"members": rows, "gossip": info})
        return
    if _listing(rows, False, "no members yet (trust some agents first)"):
        return
    table = Table(title=f"members ({_summary(info['members'])})", title_justify="left")
    for col in ("agent", "state", "region", "incarnation", "since"):
        table.add_column(col)
    colors = {"alive": "green", "suspect": "yellow", "dead": "red", "left": "dim"}
    for m in rows:
        name = m["agent_id"] + (" (this node)" if m["local"] else "")
        state = f"[{colors.get(m['state'], 'white')}]{m['state']}[/]"
        table.add_row(name, state, m["region"] or "-", str(m["incarnation"]), _age(m["age"]))
    console.print(table)


def _summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "none"


@app.command()
def publish(
    topic: Topic,
    text: Annotated[str, typer.Argument(help="Message text.")],
    json_out: Json = False,
) -> None:
    """Sign and publish a message on a topic (delivered to the topic's subscribers)."""
    result = client_call(lambda c: c.publish(topic, text))
    if json_out:
        emit_json(result)
        return
    if not result["peers"]:
        console.print(
            f"[yellow]published on {topic}, but no peer subscribes to it yet[/yellow] "
            "(gossip peers: trusted agents that are members)"
        )
        return
    console.print(
        f"published {result['size']} bytes on [bold]{topic}[/bold] "
        f"(id {result['id'][:16]}…, sent to {result['peers']} peers)"
    )


@app.command()
def subscribe(
    topic: Topic,
    count: Annotated[
        int, typer.Option("--count", "-c", min=0, help="Exit after this many (0: never).")
    ] = 0,
    json_out: Json = False,
) -> None:
    """Print the messages published on a topic as they arrive, until interrupted."""
    err = console.__class__(stderr=True)
    if not json_out:
        err.print(f"[dim]subscribed to {topic}; Ctrl-C to stop[/dim]")

    async def go(c: Any) -> None:
        seen = 0
        async for msg in c.subscribe(topic):
            if json_out:
                sys.stdout.write(json.dumps(msg.to_json()) + "\n")
                sys.stdout.flush()
            else:
                console.print(
                    f"[dim]{fmt_time(msg.received_at)}[/dim] {short(msg.author)}: {msg.text}",
                    highlight=False,
                )
            seen += 1
            if count and seen >= count:
                return

    client_call(go)


# ---- topic policies --------------------------------------------------------------------


@topic_app.command("policy")
def topic_policy(
    topic: Topic,
    policy: Annotated[
        list[str] | None,
        typer.Argument(help='"trusted" (default), "any", or agent IDs allowed to publish.'),
    ] = None,
    json_out: Json = False,
) -> None:
    """Show or set who may publish on a topic."""
    if not policy:
        rows = client_call(lambda c: c.topic_policies())
        current = next((r["policy"] for r in rows if r["topic"] == topic), "trusted")
        if json_out:
            emit_json({"topic": topic, "policy": current})
        else:
            console.print(f"{topic}: {current if isinstance(current, str) else ', '.join(current)}")
        return
    value: str | list[str]
    value = policy[0] if len(policy) == 1 and policy[0] in ("trusted", "any") else policy
    if isinstance(value, list):
        value = [agent_arg(a) for a in value]
    result = client_call(lambda c: c.set_topic_policy(topic, value))
    if json_out:
        emit_json(result)
    else:
        console.print(f"{topic}: policy set")


# ---- replicated state --------------------------------------------------------------------


def _parse_value(text: str) -> Any:
    """JSON if it parses (numbers, true, null, lists, objects, "quoted"), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


@state_app.command("list")
def state_list(json_out: Json = False) -> None:
    """The replicated states this node holds."""
    names = client_call(lambda c: c.states())
    if json_out:
        emit_json(names)
    elif not names:
        console.print("no replicated state yet")
    else:
        for name in names:
            console.print(name)


@state_app.command("get")
def state_get(
    name: StateName,
    key: Annotated[str | None, typer.Argument(help="Key (all keys if omitted).")] = None,
    json_out: Json = False,
) -> None:
    """Show one key, or every key, of a replicated state."""
    if key is None:
        values = client_call(lambda c: c.state(name).to_dict())
        if json_out:
            emit_json(values)
        elif not values:
            console.print(f"{name} is empty")
        else:
            for k, v in sorted(values.items()):
                console.print(f"{k} = {json.dumps(v)}", highlight=False)
        return
    value = client_call(lambda c: c.state(name).get(key))
    if json_out:
        emit_json(value)
    else:
        console.print(json.dumps(value), highlight=False)


def _op(name: str, op: str, key: str, value: Any) -> None:
    async def go(c: Any) -> Any:
        st = c.state(name)
        await st._op(op, key, value)
        return await st.get(key)

    result = client_call(go)
    console.print(f"{key} = {json.dumps(result)}", highlight=False)


@state_app.command("set")
def state_set(
    name: StateName, key: Key, value: Annotated[str, typer.Argument(help="JSON or text.")]
) -> None:
    """Set a key (last writer wins)."""
    _op(name, "set", key, _parse_value(value))


@state_app.command("delete")
def state_delete(name: StateName, key: Key) -> None:
    """Delete a key."""
    _op(name, "delete", key, None)


@state_app.command("add")
def state_add(
    name: StateName, key: Key, element: Annotated[str, typer.Argument(help="JSON or text.")]
) -> None:
    """Add an element to the set at a key (a concurrent add wins over a remove)."""
    _op(name, "add", key, _parse_value(element))


@state_app.command("remove")
def state_remove(
    name: StateName, key: Key, element: Annotated[str, typer.Argument(help="JSON or text.")]
) -> None:
    """Remove an element from the set at a key."""
    _op(name, "remove", key, _parse_value(element))


@state_app.command("incr")
def state_incr(
    name: StateName,
    key: Key,
    amount: Annotated[int, typer.Argument(help="Amount (negative decrements).")] = 1,
) -> None:
    """Add to the counter at a key."""
    _op(name, "increment", key, amount)
