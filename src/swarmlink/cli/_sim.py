"""``swarmlink sim``: deterministic simulations of the protocol cores (DHT, gossip)."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer
from rich.table import Table

from ._app import Json, sim_app
from ._common import console, emit_json

__all__: list[str] = []


@sim_app.command("dht")
def sim_dht(
    nodes: Annotated[int, typer.Option("--nodes", "-n", min=2, max=100_000)] = 1000,
    lookups: Annotated[int, typer.Option("--lookups", "-l", min=0, max=1_000_000)] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same run.")] = 1,
    churn: Annotated[
        float, typer.Option("--churn", min=0.0, max=0.89, help="Fraction that leaves.")
    ] = 0.0,
    joining: Annotated[
        float,
        typer.Option("--joining", min=0.0, max=0.89, help="Fraction joining during lookups."),
    ] = 0.0,
    partition: Annotated[
        float,
        typer.Option("--partition", min=0.0, max=0.99, help="Fraction cut off from the rest."),
    ] = 0.0,
    adversarial: Annotated[
        float,
        typer.Option(
            "--adversarial",
            min=0.0,
            max=0.89,
            help="Fraction that drops, eclipses, answers stale data or forges records.",
        ),
    ] = 0.0,
    loss: Annotated[
        float, typer.Option("--loss", min=0.0, max=0.99, help="Message loss probability.")
    ] = 0.0,
    json_out: Json = False,
) -> None:
    """Simulate the DHT in virtual time: success rate, hops, latency, messages."""
    from ..errors import InvalidArgument
    from ..sim import SimConfig, run_simulation

    try:
        cfg = SimConfig(
            nodes=nodes,
            lookups=lookups,
            seed=seed,
            churn=churn,
            joining=joining,
            partition=partition,
            adversarial=adversarial,
            loss=loss,
        )
    except InvalidArgument as exc:
        raise typer.BadParameter(str(exc)) from None
    err = console.__class__(stderr=True)
    err.print(f"[dim]seed {seed}: {nodes} nodes joining, then {lookups} lookups…[/dim]")

    def progress(done: int, total: int) -> None:
        if not json_out and (done == total or done % max(1, total // 4) == 0):
            err.print(f"[dim]  {done}/{total} lookups[/dim]")

    summary = run_simulation(cfg, progress=progress).summary()
    if json_out:
        emit_json(summary)
        return
    table = Table(title=f"DHT simulation (seed {seed})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if isinstance(value, dict):
            value = "  ".join(f"{k}:{v}" for k, v in value.items())
        table.add_row(key, str(value))
    console.print(table)


def _summary_table(title: str, summary: dict[str, object]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if isinstance(value, dict):
            value = "  ".join(f"{k}:{v}" for k, v in value.items())
        table.add_row(key, "-" if value is None else str(value))
    return table


@sim_app.command("gossip")
def sim_gossip(
    nodes: Annotated[int, typer.Option("--nodes", "-n", min=2, max=100_000)] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same run.")] = 1,
    scenario: Annotated[
        str, typer.Option("--scenario", help="pubsub, membership or both.")
    ] = "both",
    publications: Annotated[int, typer.Option("--publications", min=1, max=10_000)] = 20,
    byzantine: Annotated[
        float,
        typer.Option(
            "--byzantine",
            min=0.0,
            max=0.5,
            help="Fraction of pub/sub nodes that drop, forge or flood (equal shares).",
        ),
    ] = 0.0,
    regions: Annotated[
        int, typer.Option("--regions", min=0, max=64, help="Region labels (0: none).")
    ] = 0,
    no_region_preference: Annotated[
        bool,
        typer.Option("--no-region-preference", help="Regions, but meshes ignore them."),
    ] = False,
    churn: Annotated[
        float, typer.Option("--churn", min=0.0, max=0.5, help="Fraction leaving/joining.")
    ] = 0.0,
    loss: Annotated[
        float, typer.Option("--loss", min=0.0, max=0.5, help="Message loss probability.")
    ] = 0.01,
    latency: Annotated[
        float, typer.Option("--latency", min=0.0, max=1.0, help="One-way link latency (s).")
    ] = 0.020,
    crashes: Annotated[
        int, typer.Option("--crashes", min=0, help="Membership: nodes that crash.")
    ] = 10,
    duration: Annotated[
        float, typer.Option("--duration", min=5.0, max=600.0, help="Membership: virtual s.")
    ] = 20.0,
    partition: Annotated[
        float,
        typer.Option(
            "--partition",
            min=0.0,
            max=0.9,
            help="Fraction of nodes cut off from the rest for a while (0: none).",
        ),
    ] = 0.0,
    partition_duration: Annotated[
        float,
        typer.Option(
            "--partition-duration",
            min=1.0,
            max=600.0,
            help="Seconds the partition lasts (membership: the run is extended to 20 s "
            "after the heal if needed).",
        ),
    ] = 10.0,
    json_out: Json = False,
) -> None:
    """Simulate gossip in virtual time: pub/sub delivery and membership failure detection."""
    from ..errors import InvalidArgument
    from ..sim.gossip import PubSubSimConfig, SwimSimConfig, run_pubsub_sim, run_swim_sim

    if scenario not in ("pubsub", "membership", "both"):
        raise typer.BadParameter("use pubsub, membership or both", param_hint="--scenario")
    err = console.__class__(stderr=True)
    results: dict[str, object] = {}
    try:
        if scenario in ("pubsub", "both"):
            pcfg = PubSubSimConfig(
                nodes=nodes,
                seed=seed,
                latency=latency,
                loss=loss,
                publications=publications,
                byzantine=byzantine,
                regions=regions,
                region_preference=not no_region_preference,
                churn=churn,
                partition=partition,
                partition_duration=partition_duration,
            )
            err.print(f"[dim]seed {seed}: pub/sub, {nodes} nodes, {publications} publications…[/]")

            def pub_progress(done: int, total: int) -> None:
                if not json_out and (done == total or done % max(1, total // 4) == 0):
                    err.print(f"[dim]  {done}/{total} publications[/dim]")

            results["pubsub"] = run_pubsub_sim(pcfg, pub_progress).summary()
        if scenario in ("membership", "both"):
            scfg = SwimSimConfig(
                nodes=nodes,
                seed=seed,
                latency=latency,
                loss=loss,
                crashes=min(crashes, nodes // 4),
                duration=duration,
                partition=partition,
                partition_duration=partition_duration,
            )
            if partition and scfg.duration < scfg.heal_at + 20.0:  # time to heal
                scfg = dataclasses.replace(scfg, duration=scfg.heal_at + 20.0)
            err.print(f"[dim]seed {seed}: membership, {nodes} nodes, {scfg.crashes} crashes…[/]")
            marks: set[int] = set()

            def swim_progress(now: float, total: float) -> None:
                quarter = int(4 * now / total)
                if not json_out and quarter not in marks:
                    marks.add(quarter)
                    err.print(f"[dim]  {now:.1f}/{total:.0f} virtual s[/dim]")

            results["membership"] = run_swim_sim(scfg, swim_progress).summary()
    except InvalidArgument as exc:
        raise typer.BadParameter(str(exc)) from None
    if json_out:
        emit_json(results)
        return
    for name, summary in results.items():
        assert isinstance(summary, dict)
        console.print(_summary_table(f"gossip simulation: {name} (seed {seed})", summary))
