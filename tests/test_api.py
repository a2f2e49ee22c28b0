"""The public API: export lists resolve, every module imports on its own (no circular
imports), the examples run, and light imports stay light."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import swarmlink

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(swarmlink.__path__, "swarmlink.")
    if ".__main__" not in m.name
)
PACKAGES = [
    "swarmlink",
    "swarmlink.errors",
    "swarmlink.identity",
    "swarmlink.wire",
    "swarmlink.session",
    "swarmlink.trust",
    "swarmlink.storage",
    "swarmlink.runtime",
    "swarmlink.daemon",
    "swarmlink.client",
    "swarmlink.dht",
    "swarmlink.sim",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_names_resolve(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(exported) == len(set(exported)), f"duplicates in {name}.__all__"
    for attr in exported:
        assert getattr(module, attr) is not None, f"{name}.{attr}"


@pytest.mark.parametrize("name", MODULES)
def test_module_imports_alone(name: str) -> None:
    """A fresh interpreter imports each module first: catches circular imports."""
    subprocess.run([sys.executable, "-c", f"import {name}"], check=True, timeout=60)


def test_cli_import_does_not_load_the_node_stack() -> None:
    code = (
        "import sys, swarmlink.client, swarmlink.runtime.model;"
        "heavy = ('swarmlink.runtime.node', 'swarmlink.session', 'rich');"
        "bad = [m for m in heavy if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_inprocess_sdk_example_runs() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "sdk_inprocess.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "echo: b'hello'" in out
    assert "bob's inbox: ['hi bob']" in out
