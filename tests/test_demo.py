"""`make run` runs the demo: it must pass every step on a clean machine."""

from __future__ import annotations

import subprocess
import sys


def test_demo_passes_every_step() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "swarmlink", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"NO_COLOR": "1", "COLUMNS": "120", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "8 steps passed" in proc.stdout
    assert "finds an agent offering 'weather' in the DHT" in proc.stdout
