"""HELLO message and protocol-version negotiation.

Both sides send one HELLO as the first frame of a session: a deterministic CBOR map

.. code-block:: text

    {"v": [versions...], "f": [features...], "ua": "user agent"}

Keys that a receiver does not know are ignored, so later versions may add fields. The
session runs the **highest version both sides speak** with the **intersection of their
features**; with no version in common the session ends with ``VERSION_MISMATCH``.

:func:`negotiate` is symmetric: both ends compute the same :class:`Negotiated` from the
two HELLOs, whichever side they are on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import ErrorCode, InvalidArgument, ProtocolViolation, VersionMismatch
from . import cbor

__all__ = [
    "DEFAULT_USER_AGENT",
    "FEATURES",
    "MAX_FEATURES",
    "MAX_FEATURE_LENGTH",
    "MAX_USER_AGENT_LENGTH",
    "MAX_VERSION",
    "MAX_VERSIONS",
    "PROTOCOL_VERSIONS",
    "Hello",
    "Negotiated",
    "negotiate",
]

#: Protocol versions this implementation speaks.
PROTOCOL_VERSIONS: tuple[int, ...] = (1,)

#: Optional features this implementation supports (advertised in its HELLO).
FEATURES: frozenset[str] = frozenset({"mux", "trust"})

#: Most versions a HELLO may list (untrusted input).
MAX_VERSIONS = 16

#: Largest version number (versions are 1 ... MAX_VERSION).
MAX_VERSION = 0xFFFF

#: Most features a HELLO may list (untrusted input).
MAX_FEATURES = 32

#: Longest feature name, in characters (printable ASCII without space).
MAX_FEATURE_LENGTH = 64

#: Longest user agent, in characters (printable ASCII, space allowed).
MAX_USER_AGENT_LENGTH = 128

#: Default user agent of :meth:`Hello.local`.
DEFAULT_USER_AGENT = "swarmlink/0.1.0"

# The HELLO map is tiny; unknown (future) keys may nest a little, never much.
_HELLO_MAX_DEPTH = 4


def _is_feature_name(name: str) -> bool:
    return (
        0 < len(name) <= MAX_FEATURE_LENGTH
        and name.isascii()
        and name.isprintable()
        and (" " not in name)
    )


def _problem(versions: Any, features: Any, user_agent: Any) -> str | None:
    """Why these HELLO fields are invalid, or ``None`` if they are fine."""
    if not isinstance(versions, tuple):
        return "versions must be a list"
    if not versions:
        return "versions must not be empty"
    if len(versions) > MAX_VERSIONS:
        return f"{len(versions)} versions listed, at most {MAX_VERSIONS} allowed"
    for version in versions:
        if type(version) is not int or not 1 <= version <= MAX_VERSION:
            return f"version {version!r:.20} is not an integer in 1..{MAX_VERSION}"
    if len(set(versions)) != len(versions):
        return "versions contain duplicates"
    if not isinstance(features, tuple):
        return "features must be a list"
    if len(features) > MAX_FEATURES:
        return f"{len(features)} features listed, at most {MAX_FEATURES} allowed"
    for feature in features:
        if not isinstance(feature, str) or not _is_feature_name(feature):
            return (
                f"feature {feature!r:.80} is not 1..{MAX_FEATURE_LENGTH} printable ASCII "
                "characters without spaces"
            )
    if len(set(features)) != len(features):
        return "features contain duplicates"
    if not isinstance(user_agent, str):
        return "user agent must be a text string"
    if len(user_agent) > MAX_USER_AGENT_LENGTH:
        return f"user agent of {len(user_agent)} characters exceeds {MAX_USER_AGENT_LENGTH}"
    if not (user_agent.isascii() and user_agent.isprintable()):
        return f"user agent {user_agent!r:.80} is not printable ASCII"
    return None


def _tuple_of(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class Hello:
    """The first message of a session: versions, features and user agent of one side.

    Constructing an invalid HELLO raises :class:`~swarmlink.errors.InvalidArgument`;
    decoding one raises :class:`~swarmlink.errors.ProtocolViolation` (``MALFORMED``).
    """

    versions: tuple[int, ...]
    features: tuple[str, ...]
    user_agent: str

    def __post_init__(self) -> None:
        # Accept lists for convenience; store tuples so the HELLO stays immutable.
        object.__setattr__(self, "versions", _tuple_of(self.versions))
        object.__setattr__(self, "features", _tuple_of(self.features))
        problem = _problem(self.versions, self.features, self.user_agent)
        if problem is not None:
            raise InvalidArgument(f"invalid HELLO: {problem}")

    @classmethod
    def local(
        cls,
        user_agent: str = DEFAULT_USER_AGENT,
        versions: Iterable[int] = PROTOCOL_VERSIONS,
        features: Iterable[str] = FEATURES,
    ) -> Hello:
        """The HELLO this node sends (features in sorted order, so it is deterministic)."""
        return cls(tuple(versions), tuple(sorted(features)), user_agent)

    def encode(self) -> bytes:
        """Deterministic CBOR encoding: ``{"v": [...], "f": [...], "ua": "..."}``."""
        return cbor.encode({"v": self.versions, "f": self.features, "ua": self.user_agent})

    @classmethod
    def decode(cls, data: bytes) -> Hello:
        """Parse and validate a received HELLO; unknown map keys are ignored."""
        message = cbor.decode(data, max_depth=_HELLO_MAX_DEPTH)
        if not isinstance(message, dict):
            raise ProtocolViolation("HELLO must be a CBOR map", ErrorCode.MALFORMED)
        for key in ("v", "f", "ua"):
            if key not in message:
                raise ProtocolViolation(f"HELLO lacks the {key!r} field", ErrorCode.MALFORMED)
        versions = _tuple_of(message["v"])
        features = _tuple_of(message["f"])
        user_agent = message["ua"]
        problem = _problem(versions, features, user_agent)
        if problem is not None:
            raise ProtocolViolation(f"invalid HELLO: {problem}", ErrorCode.MALFORMED)
        return cls(versions, features, user_agent)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Negotiated:
    """What a session runs: the chosen protocol version and the shared features."""

    version: int
    features: frozenset[str]


def _list(versions: Iterable[int]) -> str:
    return ", ".join(str(v) for v in sorted(versions))


def negotiate(local: Hello, remote: Hello) -> Negotiated:
    """Pick the highest common version and the common features of two HELLOs.

    Symmetric: ``negotiate(a, b) == negotiate(b, a)``. Raises
    :class:`~swarmlink.errors.VersionMismatch` (code ``VERSION_MISMATCH``) naming both
    version lists when the two sides have no version in common.
    """
    common = set(local.versions).intersection(remote.versions)
    if not common:
        raise VersionMismatch(
            f"no common protocol version: we speak {_list(local.versions)}; "
            f"peer ({remote.user_agent}) speaks {_list(remote.versions)}"
        )
    return Negotiated(max(common), frozenset(local.features).intersection(remote.features))
