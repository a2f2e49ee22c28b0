"""Signed trust messages: golden vectors, sealing rules, strict envelope validation."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmlink.errors import (
    ErrorCode,
    InvalidArgument,
    ProtocolViolation,
    RemoteError,
    VerificationFailed,
)
from swarmlink.identity import IdentityKey
from swarmlink.trust import (
    MAX_ENVELOPE_SIZE,
    MAX_REASON_BYTES,
    MAX_REASON_LENGTH,
    MAX_TIMESTAMP_MS,
    NONCE_SIZE,
    TRUST_DOMAIN,
    TrustKind,
    TrustMessage,
    check_reason,
    open_envelope,
    seal,
)
from swarmlink.wire import cbor

VECTORS = json.loads((Path(__file__).parent / "vectors" / "trust.json").read_text("utf-8"))

ALICE = IdentityKey.from_private_bytes(bytes([1]) * 32)
BOB = IdentityKey.from_private_bytes(bytes([2]) * 32)
MALLORY = IdentityKey.from_private_bytes(bytes([3]) * 32)
TS = 1_767_225_600_000
NONCE = bytes(range(16))


def message(**changes: Any) -> TrustMessage:
    fields: dict[str, Any] = {
        "kind": TrustKind.REQUEST,
        "sender": ALICE.agent_id,
        "recipient": BOB.agent_id,
        "reason": "hello",
        "timestamp_ms": TS,
        "nonce": NONCE,
        "ref": None,
    }
    fields.update(changes)
    return TrustMessage(**fields)


def body_fields(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "kind": "request",
        "from": ALICE.agent_id,
        "to": BOB.agent_id,
        "reason": "hello",
        "ts": TS,
        "nonce": NONCE,
        "ref": None,
    }
    fields.update(changes)
    return fields


def raw_envelope(
    fields: dict[str, Any], signer: IdentityKey = ALICE, *, key: bytes | None = None
) -> bytes:
    """Hand-build a correctly signed envelope around an arbitrary body (bypassing seal)."""
    body = cbor.encode(fields)
    return cbor.encode(
        {
            "b": body,
            "k": signer.public_key if key is None else key,
            "s": signer.sign(TRUST_DOMAIN, body),
        }
    )


# ---- golden vectors ---------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS["envelopes"], ids=lambda v: str(v["note"]))
def test_golden_vector(vector: dict[str, Any]) -> None:
    sender = IdentityKey.from_private_bytes(bytes.fromhex(vector["sender_seed"]))
    recipient = IdentityKey.from_private_bytes(bytes.fromhex(vector["recipient_seed"]))
    assert sender.agent_id == vector["sender"]
    assert recipient.agent_id == vector["recipient"]
    msg = TrustMessage(
        kind=TrustKind(vector["kind"]),
        sender=sender.agent_id,
        recipient=recipient.agent_id,
        reason=vector["reason"],
        timestamp_ms=vector["timestamp_ms"],
        nonce=bytes.fromhex(vector["nonce"]),
        ref=None if vector["ref"] is None else bytes.fromhex(vector["ref"]),
    )
    assert msg.body().hex() == vector["body_hex"]
    envelope = seal(sender, msg)
    assert envelope.hex() == vector["envelope_hex"]
    assert open_envelope(bytes.fromhex(vector["envelope_hex"])) == msg
    decoded = cbor.decode(envelope)
    assert decoded["k"] == sender.public_key
    assert decoded["b"].hex() == vector["body_hex"]


def test_vector_domain_matches() -> None:
    assert VECTORS["domain"].encode() == TRUST_DOMAIN


# ---- round trips and size budget ----------------------------------------------------------

reasons = st.text(
    st.characters(blacklist_categories=("Cc", "Zl", "Zp", "Cs")), max_size=MAX_REASON_LENGTH
).filter(lambda r: len(r.encode()) <= MAX_REASON_BYTES)


@given(
    kind=st.sampled_from(list(TrustKind)),
    reason=reasons,
    ts=st.integers(0, MAX_TIMESTAMP_MS),
    nonce=st.binary(min_size=NONCE_SIZE, max_size=NONCE_SIZE),
    ref=st.binary(min_size=NONCE_SIZE, max_size=NONCE_SIZE),
)
def test_seal_open_round_trip(
    kind: TrustKind, reason: str, ts: int, nonce: bytes, ref: bytes
) -> None:
    msg = message(
        kind=kind,
        reason=reason,
        timestamp_ms=ts,
        nonce=nonce,
        ref=ref if kind in (TrustKind.APPROVE, TrustKind.REJECT) else None,
    )
    envelope = seal(ALICE, msg)
    assert len(envelope) <= MAX_ENVELOPE_SIZE
    assert open_envelope(envelope) == msg


@pytest.mark.parametrize("char", ["a", "\u00e9", "\u20ac", "\U0001f600"])
def test_largest_reason_fits_the_envelope(char: str) -> None:
    count = min(MAX_REASON_LENGTH, MAX_REASON_BYTES // len(char.encode()))
    msg = message(
        kind=TrustKind.REJECT,
        reason=char * count,
        timestamp_ms=MAX_TIMESTAMP_MS,
        ref=bytes(NONCE_SIZE),
    )
    envelope = seal(ALICE, msg)
    assert len(envelope) <= MAX_ENVELOPE_SIZE
    assert open_envelope(envelope) == msg


# ---- seal refuses what open_envelope would refuse ------------------------------------------


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"sender": BOB.agent_id, "recipient": ALICE.agent_id}, "cannot be signed"),
        ({"recipient": ALICE.agent_id}, "same agent"),
        ({"recipient": BOB.agent_id.upper()}, "canonical agent ID"),
        ({"recipient": "not-an-agent"}, "canonical agent ID"),
        ({"reason": "x" * (MAX_REASON_LENGTH + 1)}, "characters"),
        ({"reason": "\u20ac" * (MAX_REASON_BYTES // 3 + 1)}, "bytes of UTF-8"),
        ({"reason": "line one\nline two"}, "U+000A"),
        ({"reason": "\x1b[31mred"}, "U+001B"),
        ({"reason": "a\u2028b"}, "U+2028"),
        ({"reason": "\ud800"}, "surrogate"),
        ({"nonce": bytes(15)}, "nonce"),
        ({"timestamp_ms": -1}, "timestamp"),
        ({"timestamp_ms": MAX_TIMESTAMP_MS + 1}, "timestamp"),
        ({"timestamp_ms": True}, "timestamp"),
        ({"ref": bytes(16)}, "must not carry 'ref'"),
        ({"kind": TrustKind.APPROVE}, "must name the request"),
        ({"kind": TrustKind.REJECT, "ref": bytes(8)}, "must name the request"),
        ({"kind": "request"}, "unknown kind"),
    ],
)
def test_seal_rejects_invalid_messages(changes: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(needle)):
        seal(ALICE, message(**changes))


def test_check_reason() -> None:
    assert check_reason("") is None
    assert check_reason("tab\tseparated") is not None
    assert check_reason("emoji \U0001f44d and zero-width joiner \u200d ok") is None
    assert check_reason(42) == "reason must be text"


# ---- open_envelope: strict, precise rejections ------------------------------------------


def assert_malformed(data: bytes, needle: str = "") -> None:
    with pytest.raises(ProtocolViolation) as info:
        open_envelope(data)
    assert info.value.code == ErrorCode.MALFORMED
    assert needle in str(info.value)


def test_oversized_envelope_is_refused_before_decoding() -> None:
    assert_malformed(b"\xff" * (MAX_ENVELOPE_SIZE + 1), f"exceeds the limit of {MAX_ENVELOPE_SIZE}")


def test_oversized_reason_in_a_validly_signed_body() -> None:
    assert_malformed(raw_envelope(body_fields(reason="x" * (MAX_REASON_LENGTH + 1))), "characters")


def test_reason_over_the_byte_budget() -> None:
    assert_malformed(raw_envelope(body_fields(reason="\u00e9" * 513)), "characters")
    assert_malformed(raw_envelope(body_fields(reason="\u20ac" * 342)), "bytes of UTF-8")


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"kind": "befriend"}, "unknown kind"),
        ({"kind": 1}, "unknown kind"),
        ({"from": ALICE.agent_id.upper()}, "'from' is not a canonical agent ID"),
        ({"from": " " + ALICE.agent_id}, "'from' is not a canonical agent ID"),
        ({"to": b"bob"}, "'to' is not a canonical agent ID"),
        ({"to": ALICE.agent_id}, "same agent"),
        ({"reason": None}, "reason must be text"),
        ({"reason": "bell\x07"}, "U+0007"),
        ({"ts": -5}, "timestamp"),
        ({"ts": MAX_TIMESTAMP_MS + 1}, "timestamp"),
        ({"ts": False}, "timestamp"),
        ({"ts": "1767225600000"}, "timestamp"),
        ({"nonce": bytes(17)}, "nonce"),
        ({"nonce": "0" * 16}, "nonce"),
        ({"ref": bytes(16)}, "must not carry 'ref'"),
        ({"kind": "approve"}, "must name the request"),
        ({"kind": "reject", "ref": "x" * 16}, "must name the request"),
    ],
)
def test_bad_body_fields(changes: dict[str, Any], needle: str) -> None:
    assert_malformed(raw_envelope(body_fields(**changes)), needle)


def test_body_with_missing_or_extra_keys() -> None:
    fields = body_fields()
    del fields["ref"]
    assert_malformed(raw_envelope(fields), "exactly the keys")
    assert_malformed(raw_envelope(body_fields(extra=1)), "more than the allowed total")
    assert_malformed(raw_envelope({**body_fields(), "ref": None, "zzz": 1}), "")


def test_body_must_be_a_flat_map() -> None:
    assert_malformed(raw_envelope(body_fields(reason=["nested"])), "nesting deeper")
    body = cbor.encode(["request"])
    env = cbor.encode({"b": body, "k": ALICE.public_key, "s": ALICE.sign(TRUST_DOMAIN, body)})
    assert_malformed(env, "the body must be a map")


def test_bad_envelope_structure() -> None:
    good = cbor.decode(seal(ALICE, message()))
    assert_malformed(cbor.encode([good["b"], good["k"], good["s"]]), "an envelope must be a map")
    assert_malformed(cbor.encode({"b": good["b"], "k": good["k"]}), "exactly the keys")
    assert_malformed(cbor.encode({**good, "x": 0}), "more than the allowed total")
    assert_malformed(cbor.encode({**good, "b": "text"}), "'b' must be")
    assert_malformed(cbor.encode({**good, "k": good["k"][:31]}), "'k' must be")
    assert_malformed(cbor.encode({**good, "s": good["s"] + b"\0"}), "'s' must be")
    assert_malformed(seal(ALICE, message())[:-1], "")
    assert_malformed(seal(ALICE, message()) + b"\0", "trailing")
    assert_malformed(b"", "")


def test_forged_signature() -> None:
    good = cbor.decode(seal(ALICE, message()))
    forged = bytearray(good["s"])
    forged[10] ^= 1
    with pytest.raises(VerificationFailed) as info:
        open_envelope(cbor.encode({**good, "s": bytes(forged)}))
    assert info.value.code == ErrorCode.AUTH_FAILED


def test_body_altered_after_signing() -> None:
    good = cbor.decode(seal(ALICE, message()))
    altered = cbor.encode({**cbor.decode(good["b"]), "reason": "hellO"})
    with pytest.raises(VerificationFailed):
        open_envelope(cbor.encode({**good, "b": altered}))


def test_signature_from_another_domain() -> None:
    body = cbor.encode(body_fields())
    env = cbor.encode(
        {"b": body, "k": ALICE.public_key, "s": ALICE.sign(b"swarmlink/other/v1", body)}
    )
    with pytest.raises(VerificationFailed):
        open_envelope(env)


def test_valid_signature_by_a_key_that_is_not_the_sender() -> None:
    # Mallory signs a body claiming to be from Alice with her own key: valid signature,
    # wrong identity.
    env = raw_envelope(body_fields(), signer=MALLORY)
    with pytest.raises(VerificationFailed) as info:
        open_envelope(env)
    assert info.value.code == ErrorCode.AGENT_MISMATCH
    assert MALLORY.agent_id in str(info.value)


def test_sender_key_swapped_for_the_real_one() -> None:
    # Alice's real key in "k", but signed by Mallory: the signature fails.
    with pytest.raises(VerificationFailed) as info:
        open_envelope(raw_envelope(body_fields(), signer=MALLORY, key=ALICE.public_key))
    assert info.value.code == ErrorCode.AUTH_FAILED


def test_non_bytes_input() -> None:
    assert_malformed("text", "envelope is bytes")  # type: ignore[arg-type]
    assert open_envelope(bytearray(seal(ALICE, message()))) == message()


@given(st.binary(max_size=MAX_ENVELOPE_SIZE + 64))
def test_random_bytes_only_raise_remote_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolViolation, VerificationFailed):
        open_envelope(data)


@given(st.data())
def test_mutated_envelopes_never_open_as_something_else(data: st.DataObject) -> None:
    envelope = bytearray(seal(ALICE, message()))
    index = data.draw(st.integers(0, len(envelope) - 1))
    envelope[index] ^= data.draw(st.integers(1, 255))
    try:
        msg = open_envelope(bytes(envelope))
    except RemoteError as exc:
        assert isinstance(exc, (ProtocolViolation, VerificationFailed))
    else:  # pragma: no cover - a forgery would be a real bug
        pytest.fail(f"mutated envelope opened as {msg}")
