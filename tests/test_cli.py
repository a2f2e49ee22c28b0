"""CLI argument handling and output, without a daemon (bad input → exit 2 with a message)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from swarmlink.cli import app

runner = CliRunner()
AGENT = "a" * 52


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
        (("up", "--listen", "nonsense:port"), "port"),
        (("up", "--log-level", "loud"), "log-level"),
        (("ping", AGENT, "-c", "0"), "count"),
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
    [("status",), ("peers",), ("trust", "list"), ("inbox",), ("send", AGENT, "hi")],
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
    ):
        assert command in output
    code, output = invoke(tmp_path, "trust", "--help")
    for sub in ("request", "pending", "approve", "reject", "revoke", "list"):
        assert sub in output


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
