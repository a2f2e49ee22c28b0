"""Reflexive addresses and NAT mapping behaviour from peers' observations."""

from __future__ import annotations

import pytest

from swarmlink.errors import InvalidArgument
from swarmlink.nat import OBSERVATION_TTL, Mapping, ObservedAddresses

A, B, C, D = "a" * 52, "b" * 52, "c" * 52, "d" * 52
PEER_A, PEER_B, PEER_C = "198.51.100.1:7420", "203.0.113.7:7420", "192.0.2.9:7420"


def test_nothing_is_believed_on_one_word() -> None:
    obs = ObservedAddresses()
    obs.record(A, PEER_A, "10.0.0.2:40000", "198.51.100.200:40000", 0.0)
    report = obs.report(1.0)
    assert report.reflexive == () and report.mapping == Mapping.UNKNOWN


def test_two_networks_confirm_an_endpoint_independent_mapping() -> None:
    obs = ObservedAddresses()
    obs.record(A, PEER_A, "10.0.0.2:7420", "198.51.100.200:7420", 0.0)
    obs.record(B, PEER_B, "10.0.0.2:7420", "198.51.100.200:7420", 0.0)
    report = obs.report(1.0)
    assert report.reflexive == ("198.51.100.200:7420",)
    assert report.mapping == Mapping.ENDPOINT_INDEPENDENT and not report.public


def test_one_socket_seen_at_two_ports_is_symmetric() -> None:
    obs = ObservedAddresses()
    obs.record(A, PEER_A, "10.0.0.2:7420", "198.51.100.200:51000", 0.0)
    obs.record(B, PEER_B, "10.0.0.2:7420", "198.51.100.200:62000", 0.0)
    report = obs.report(1.0)
    assert report.mapping == Mapping.ENDPOINT_DEPENDENT
    assert report.reflexive == ()  # no single public port to publish


def test_fresh_ports_per_connection_give_a_likely_verdict() -> None:
    kept = ObservedAddresses()
    kept.record(A, PEER_A, "10.0.0.2:40001", "198.51.100.200:40001", 0.0)
    kept.record(B, PEER_B, "10.0.0.2:40002", "198.51.100.200:40002", 0.0)
    assert kept.report(1.0).mapping == Mapping.PORT_PRESERVING
    changed = ObservedAddresses()
    changed.record(A, PEER_A, "10.0.0.2:40001", "198.51.100.200:1234", 0.0)
    changed.record(B, PEER_B, "10.0.0.2:40002", "198.51.100.200:2345", 0.0)
    assert changed.report(1.0).mapping == Mapping.PORT_RANDOMIZING


def test_public_host() -> None:
    obs = ObservedAddresses()
    obs.record(A, PEER_A, "203.0.113.50:7420", "203.0.113.50:7420", 0.0)
    obs.record(B, PEER_C, "203.0.113.50:7420", "203.0.113.50:7420", 0.0)
    report = obs.report(1.0)
    assert report.public and report.reflexive == ("203.0.113.50:7420",)


def test_a_liar_cannot_redirect_even_with_many_identities_in_one_network() -> None:
    obs = ObservedAddresses()
    obs.record(A, PEER_A, "10.0.0.2:7420", "198.51.100.200:7420", 0.0)
    obs.record(B, PEER_B, "10.0.0.2:7420", "198.51.100.200:7420", 0.0)
    # Mallory runs three identities from one /24 and claims we live elsewhere.
    for i, agent in enumerate((C, D, "e" * 52)):
        obs.record(agent, f"192.0.2.{i + 1}:7420", "10.0.0.2:7420", "192.0.2.66:7420", 0.0)
    report = obs.report(1.0)
    assert report.reflexive == ("198.51.100.200:7420",)
    assert report.mapping == Mapping.ENDPOINT_INDEPENDENT


def test_observations_expire_and_can_be_forgotten() -> None:
    obs = ObservedAddresses()
    obs.record(A, PEER_A, "10.0.0.2:7420", "198.51.100.200:7420", 0.0)
    obs.record(B, PEER_B, "10.0.0.2:7420", "198.51.100.200:7420", 0.0)
    assert obs.report(OBSERVATION_TTL + 1).reflexive == ()
    obs.forget(A)
    assert len(obs) == 1


@pytest.mark.parametrize("bad", ["nothing", "host.example:80", "10.0.0.1:0", "[::1]"])
def test_malformed_observations_are_refused(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        ObservedAddresses().record(A, PEER_A, "10.0.0.2:7420", bad, 0.0)
