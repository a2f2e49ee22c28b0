"""CLI argument handling and output, without a daemon (bad input → exit 2 with a message)."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeDht
from fake_node import FakeNode
from typer.testing import CliRunner

from swarmlink.cli import app
from swarmlink.cli._common import console, err_console
from swarmlink.daemon import ControlServer
from swarmlink.dht._records import Capability

runner = CliRunner()
# The CLI's consoles are made at import, sized by the terminal they find then (none under
# a pytest-xdist worker: 80 columns); the tables here are checked at 160 columns.
console.width = err_console.width = 160
AGENT = "a" * 52
AGENT_P = "b" * 51 + "q"
AGENT_C = "c" * 51 + "a"


def invoke(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--home", str(tmp_path / "home"), *args])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    "args,needle",
    [
        (("ping", "not-an-agent"), "not an agent ID"),
        (("send", "xyz", "hi"), "not an agent ID"),
        (("connect", "nobody@127.0.0.1:1"), "not an agent ID"),
        (("connect", f"{AGENT}"), "AGENT@HOST:PORT"),
        (("connect", f"{AGENT}@127.0.0.1:99999"), "port"),
        (("forward", "9000", f"{AGENT}"), "AGENT:PORT"),
        (("forward", "abc", f"{AGENT}:80"), "local port"),
        (("forward", "9000", f"{AGENT}:0"), "remote port"),
        (("expose", "70000"), "65535"),
        (("expose", "80", "--allow", AGENT, "--allow-trusted"), "not both"),
        (("up", "--tun", "--tun-name", "much-too-long-name"), "interface name"),
        (("up", "--tun", "--tun-mtu", "1000"), "MTU"),
        (("up", "--listen", "nonsense:port"), "port"),
        (("up", "--log-level", "loud"), "log-level"),
        (("ping", AGENT, "-c", "0"), "count"),
        (("up", "--bootstrap", "nonsense"), "AGENT_ID@HOST:PORT"),
        (("up", "-b", f"{AGENT}@127.0.0.1:0"), "--bootstrap"),
        (("up", "--advertise", "0.0.0.0:7420"), "wildcard"),
        (("up", "--advertise", "example.org:0"), "port 0"),
        (("up", "--relay-via", "nonsense"), "--relay-via"),
        (("lookup", "not-an-agent"), "not an agent ID"),
        (("find",), "--capability"),
        (("find", "--capability", "Bad Tag"), "lowercase"),
        (("find", "-c", "x" * 65), "1 to 64"),
        (("capability", "add", "UPPER"), "lowercase"),
        (("capability", "remove", "a b"), "lowercase"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(
    tmp_path: Path, args: tuple[str, ...], needle: str
) -> None:
    code, output = invoke(tmp_path, *args)
    assert code == 2, output
    assert needle.lower() in output.lower()


@pytest.mark.parametrize(
    "args",
    [
        ("status",),
        ("peers",),
        ("trust", "list"),
        ("inbox",),
        ("send", AGENT, "hi"),
        ("lookup", AGENT),
        ("find", "-c", "translate"),
        ("capability", "list"),
    ],
)
def test_no_daemon_is_one_clear_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    code, output = invoke(tmp_path, *args)
    assert code == 1
    assert "no swarmlink daemon is running" in output
    assert "swarmlink up" in output and "Traceback" not in output


def test_help_lists_every_command(tmp_path: Path) -> None:
    code, output = invoke(tmp_path, "--help")
    assert code == 0
    for command in (
        "up",
        "down",
        "status",
        "id",
        "peers",
        "connect",
        "ping",
        "send",
        "inbox",
        "send-file",
        "expose",
        "forward",
        "bench",
        "trust",
        "key",
        "demo",
        "lookup",
        "find",
        "capability",
    ):
        assert command in output
    code, output = invoke(tmp_path, "trust", "--help")
    for sub in ("request", "pending", "approve", "reject", "revoke", "list"):
        assert sub in output
    code, output = invoke(tmp_path, "capability", "--help")
    for sub in ("add", "list", "remove"):
        assert sub in output
    code, output = invoke(tmp_path, "up", "--help")
    for option in ("--bootstrap", "--advertise", "--no-mdns", "--tun", "--tun-mtu"):
        assert option in output


def test_version(tmp_path: Path) -> None:
    code, output = invoke(tmp_path, "version")
    assert code == 0 and "swarmlink 0.1.0" in output


def test_sim_dht_json(tmp_path: Path) -> None:
    import json

    result = runner.invoke(app, ["sim", "dht", "-n", "60", "-l", "20", "--seed", "5", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["nodes"] == 60 and summary["seed"] == 5
    assert summary["success_rate"] == 1.0


def test_sim_gossip_json_is_deterministic(tmp_path: Path) -> None:
    import json

    args = ["sim", "gossip", "-n", "200", "--seed", "7", "--publications", "4"]
    args += ["--crashes", "3", "--duration", "10", "--json"]
    runs = []
    for _ in range(2):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        runs.append(json.loads(result.stdout))
    pubsub, membership = runs[0]["pubsub"], runs[0]["membership"]
    assert pubsub["nodes"] == 200 and pubsub["delivery_ratio"] == 1.0
    assert pubsub["forged_delivered"] == 0
    assert membership["crashes_detected_by_all"] == 3
    assert membership["false_positives"] == 0
    for run in runs:  # same seed, same run (wall time and memory aside)
        for part in run.values():
            for key in ("wall_seconds", "peak_rss_mib"):
                part.pop(key, None)
    assert runs[0] == runs[1]
    bad = runner.invoke(app, ["sim", "gossip", "--scenario", "nope"])
    assert bad.exit_code != 0 and "pubsub, membership or both" in bad.output


# ---- DHT commands against a control server with a fake node (in a thread) -----------------


@pytest.fixture
def fake_daemon() -> Iterator[tuple[Path, FakeNode, FakeDht]]:
    home = Path(tempfile.mkdtemp(prefix="slc", dir="/tmp"))  # short: a Unix socket path
    node = FakeNode(home)
    dht = FakeDht(node.agent_id)
    node.dht = dht  # type: ignore[attr-defined]
    loop = asyncio.new_event_loop()
    server = ControlServer(node, home / "control.sock")
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        assert started.wait(10), "control server did not start"
        yield home, node, dht
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        shutil.rmtree(home, ignore_errors=True)


def cli(home: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--home", str(home), *args], env={"COLUMNS": "160"})
    return result.exit_code, result.output


def test_lookup_prints_the_record(fake_daemon: tuple[Path, FakeNode, FakeDht]) -> None:
    home, _, dht = fake_daemon
    dht.add_agent(
        AGENT_P,
        "192.0.2.7:7420",
        "[2001:db8::7]:7420",
        capabilities=[Capability("translate", "Translator", "EN to FR", "/translate/1")],
    )
    code, output = cli(home, "lookup", AGENT_P)
    assert code == 0, output
    assert AGENT_P in output and "verified" in output
    assert "192.0.2.7:7420, [2001:db8::7]:7420" in output
    for text in ("translate", "Translator", "EN to FR", "/translate/1", "sequence", "expires"):
        assert text in output
    code, output = cli(home, "lookup", AGENT_P, "--json")
    assert code == 0 and json.loads(output)["addresses"] == ["192.0.2.7:7420", "[2001:db8::7]:7420"]
    assert dht.resolved == [(AGENT_P, True), (AGENT_P, True)]

    code, output = cli(home, "lookup", AGENT_C)
    assert code == 1
    assert f"agent {AGENT_C} was not found in the DHT" in output and "Traceback" not in output


def test_find_lists_agents_with_the_capability(
    fake_daemon: tuple[Path, FakeNode, FakeDht],
) -> None:
    home, _, dht = fake_daemon
    dht.add_agent(AGENT_P, "192.0.2.7:7420", capabilities=[Capability("translate", "", "EN→FR")])
    dht.add_agent(AGENT_C, "192.0.2.8:7420", capabilities=[Capability("summarize")])
    code, output = cli(home, "find", "--capability", "translate")
    assert code == 0, output
    assert AGENT_P in output and "EN→FR" in output and "192.0.2.7:7420" in output
    assert AGENT_C not in output
    code, output = cli(home, "find", "-c", "translate", "--json")
    agents = json.loads(output)
    assert [a["agent_id"] for a in agents] == [AGENT_P]
    code, output = cli(home, "find", "-c", "nothing")
    assert code == 0 and "no agent advertises capability 'nothing'" in output
    assert json.loads(cli(home, "find", "-c", "nothing", "--json")[1]) == []


def test_capability_add_list_remove(fake_daemon: tuple[Path, FakeNode, FakeDht]) -> None:
    home, node, dht = fake_daemon
    code, output = cli(home, "capability", "list")
    assert code == 0 and "advertises no capabilities" in output
    code, output = cli(
        home, "capability", "add", "translate", "--name", "T", "--description", "EN to FR"
    )
    assert code == 0 and "advertising capability 'translate'" in output
    assert dht.caps["translate"] == Capability("translate", "T", "EN to FR")
    code, output = cli(home, "capability", "add", "llm/chat", "--protocol", "/chat/1", "--json")
    assert json.loads(output) == {
        "tag": "llm/chat",
        "name": "",
        "description": "",
        "protocol": "/chat/1",
    }
    code, output = cli(home, "capability", "list")
    assert code == 0 and "EN to FR" in output and "/chat/1" in output
    code, output = cli(home, "capability", "list", "--json")
    assert [c["tag"] for c in json.loads(output)] == ["llm/chat", "translate"]
    code, output = cli(home, "capability", "remove", "llm/chat")
    assert code == 0 and "removed" in output
    code, output = cli(home, "capability", "remove", "llm/chat")
    assert code == 1 and "does not advertise capability 'llm/chat'" in output
    code, output = cli(home, "capability", "add", "x", "--description", "y" * 300)
    assert code == 1 and "longer than 256" in output
    assert sorted(dht.caps) == ["translate"]
    assert node.agent_id  # the fake node served every call


def test_status_shows_dht_and_mdns(fake_daemon: tuple[Path, FakeNode, FakeDht]) -> None:
    home, _, _ = fake_daemon
    code, output = cli(home, "status")
    assert code == 0, output
    assert "not joined, 0 contacts, 0 records" in output
    assert "mDNS" in output and "off" in output


def test_up_passes_the_dht_options_to_the_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from swarmlink.cli import _daemonctl

    spawned: list[list[str]] = []

    class Exited:
        def poll(self) -> int:
            return 3

    def spawn(args: list[str], stderr_path: Path) -> Any:
        spawned.append(args)
        stderr_path.write_text("swarmlink daemon: pretend failure")
        return Exited()

    monkeypatch.setattr(_daemonctl, "_spawn", spawn)
    code, output = invoke(
        tmp_path,
        "up",
        "--listen",
        "127.0.0.1:0",
        "-b",
        f"{AGENT}@127.0.0.1:7420",
        "--bootstrap",
        f"{AGENT_P}@[::1]:7421",
        "--advertise",
        "203.0.113.5:7420",
        "--no-mdns",
        "--relay",
        "--relay-via",
        f"{AGENT}@198.51.100.1:7420",
    )
    assert code == 1 and "pretend failure" in output
    args = spawned[0]
    assert args[1:3] == ["-m", "swarmlink.daemon"]
    pairs = list(itertools.pairwise(args))
    assert ("--bootstrap", f"{AGENT}@127.0.0.1:7420") in pairs
    assert ("--bootstrap", f"{AGENT_P}@[::1]:7421") in pairs
    assert ("--advertise", "203.0.113.5:7420") in pairs
    assert "--no-mdns" in args and "--relay" in args
    assert ("--relay-via", f"{AGENT}@198.51.100.1:7420") in pairs
    invoke(tmp_path, "up", "--listen", "127.0.0.1:0")
    assert "--no-mdns" not in spawned[1] and "--bootstrap" not in spawned[1]  # mDNS: default on
