"""Names the gossip runtime uses: region labels and the topics that carry replicated
state."""

from __future__ import annotations

import re

from ..errors import InvalidArgument
from ._swim_messages import MAX_REGION_LENGTH

__all__ = ["STATE_TOPIC_PREFIX", "validate_region"]

#: Replicated-state deltas travel as signed pub/sub messages on ``$state/NAME``; users
#: cannot publish on these topics directly.
STATE_TOPIC_PREFIX = "$state/"

_REGION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def validate_region(region: str) -> str:
    """``region`` if it is a valid region label ("" = none): up to
    :data:`MAX_REGION_LENGTH` characters of A-Z a-z 0-9 . _ -, starting with a letter or
    digit; else :class:`InvalidArgument`."""
    if region == "":
        return region
    if len(region) > MAX_REGION_LENGTH or _REGION.fullmatch(region) is None:
        raise InvalidArgument(
            f"bad region {region!r:.80}: 1..{MAX_REGION_LENGTH} characters of "
            "A-Z a-z 0-9 . _ - starting with a letter or digit (e.g. eu-west)"
        )
    return region
