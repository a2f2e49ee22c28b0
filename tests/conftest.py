"""Shared test configuration.

Hypothesis runs derandomized (a fixed seed derived from each test), so every run of the
suite is reproducible; the seed is printed in the header. Set ``SWARMLINK_TEST_SEED`` to
explore other seeds.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

SEED = int(os.environ.get("SWARMLINK_TEST_SEED", "20261122"))

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile("ci")


def pytest_report_header(config: pytest.Config) -> str:
    return f"swarmlink test seed: {SEED} (hypothesis derandomized; set SWARMLINK_TEST_SEED)"
