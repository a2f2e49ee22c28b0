"""Decoding and validating request bodies and query strings (all untrusted input)."""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote

from ..errors import InvalidArgument

__all__ = [
    "MAX_QUERY_PARAMS",
    "MAX_STRING_LIST",
    "Args",
    "parse_json_body",
    "parse_query",
    "path_param",
]

#: Most query parameters accepted in one request target.
MAX_QUERY_PARAMS = 16
#: Most items accepted in a list argument (e.g. an exposure's ``allow`` list).
MAX_STRING_LIST = 1024


def _reject_constant(name: str) -> Any:
    raise InvalidArgument(f"request body is not valid JSON: {name} is not allowed")


def path_param(text: str) -> str:
    """A percent-decoded path segment (capability tags may contain ``/``)."""
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise InvalidArgument(f"bad percent-encoding in the path: {text[:100]!r}") from None


def parse_json_body(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object; an empty body is ``{}``."""
    if not body.strip():
        return {}
    try:
        text = body.decode("utf-8")
        value = json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise InvalidArgument("request body is not valid UTF-8") from None
    except RecursionError:
        raise InvalidArgument("request body is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and oversized integers
        raise InvalidArgument(f"request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"request body must be a JSON object, not {_kind(value)}")
    return value


def parse_query(query: str) -> dict[str, str]:
    """The query string as a dict (each parameter at most once)."""
    try:
        pairs = parse_qsl(
            query, keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_QUERY_PARAMS
        )
    except ValueError as exc:
        raise InvalidArgument(f"bad query string: {exc}") from None
    out: dict[str, str] = {}
    for key, value in pairs:
        if key in out:
            raise InvalidArgument(f"query parameter {key!r} given more than once")
        out[key] = value
    return out


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


class _Missing(enum.Enum):
    MISSING = 0


MISSING = _Missing.MISSING


class Args:
    """Typed access to request arguments; unknown names are rejected by :meth:`done`.

    ``query`` is True for query strings: numbers arrive as text and are parsed.
    """

    def __init__(self, values: Mapping[str, Any], *, query: bool = False) -> None:
        self._values = dict(values)
        self._query = query
        self._used: set[str] = set()

    def _what(self, name: str) -> str:
        return f"{'parameter' if self._query else 'field'} {name!r}"

    def _get(self, name: str) -> Any:
        self._used.add(name)
        return self._values.get(name, MISSING)

    def _missing(self, name: str) -> InvalidArgument:
        return InvalidArgument(f"missing required {self._what(name)}")

    def text(self, name: str, default: str | _Missing = MISSING, *, max_len: int = 0) -> str:
        """A string (``max_len`` > 0 bounds its length)."""
        value = self._get(name)
        if value is MISSING:
            if isinstance(default, _Missing):
                raise self._missing(name)
            return default
        if not isinstance(value, str):
            raise InvalidArgument(f"{self._what(name)} must be a string, not {_kind(value)}")
        if max_len and len(value) > max_len:
            raise InvalidArgument(f"{self._what(name)} is longer than {max_len} characters")
        return value

    def value(self, name: str, default: Any = MISSING) -> Any:
        """Any JSON value (validated by the caller)."""
        value = self._get(name)
        if value is MISSING:
            if isinstance(default, _Missing):
                raise self._missing(name)
            return default
        return value

    def optional_text(self, name: str, *, max_len: int = 0) -> str | None:
        """A string or null (absent is null)."""
        value = self._get(name)
        if value is MISSING or value is None:
            return None
        if not isinstance(value, str):
            raise InvalidArgument(
                f"{self._what(name)} must be a string or null, not {_kind(value)}"
            )
        return self.text(name, max_len=max_len)

    def integer(
        self,
        name: str,
        default: int | _Missing = MISSING,
        *,
        lo: int | None = None,
        hi: int | None = None,
    ) -> int:
        """An integer (not a boolean) within ``[lo, hi]``."""
        value = self._get(name)
        if value is MISSING:
            if isinstance(default, _Missing):
                raise self._missing(name)
            return default
        if self._query and isinstance(value, str):
            digits = value.strip()
            if not digits.removeprefix("-").isdigit() or len(digits) > 20:
                raise InvalidArgument(f"{self._what(name)} must be an integer, not {value!r}")
            value = int(digits)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidArgument(f"{self._what(name)} must be an integer, not {_kind(value)}")
        if lo is not None and value < lo:
            raise InvalidArgument(f"{self._what(name)} must be at least {lo}")
        if hi is not None and value > hi:
            raise InvalidArgument(f"{self._what(name)} must be at most {hi}")
        return value

    def number(
        self,
        name: str,
        default: float | _Missing = MISSING,
        *,
        lo: float | None = None,
        hi: float | None = None,
    ) -> float:
        """A finite number (integer or float, not a boolean) within ``[lo, hi]``."""
        value = self._get(name)
        if value is MISSING:
            if isinstance(default, _Missing):
                raise self._missing(name)
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidArgument(f"{self._what(name)} must be a number, not {_kind(value)}")
        number = float(value)
        if not math.isfinite(number):
            raise InvalidArgument(f"{self._what(name)} must be a finite number")
        if lo is not None and number < lo:
            raise InvalidArgument(f"{self._what(name)} must be at least {lo}")
        if hi is not None and number > hi:
            raise InvalidArgument(f"{self._what(name)} must be at most {hi}")
        return number

    def text_list(self, name: str, *, max_items: int = MAX_STRING_LIST) -> list[str]:
        """An array of strings (absent is empty)."""
        value = self._get(name)
        if value is MISSING:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidArgument(f"{self._what(name)} must be an array of strings")
        if len(value) > max_items:
            raise InvalidArgument(f"{self._what(name)} has more than {max_items} items")
        return list(value)

    def done(self) -> None:
        """Reject names the route does not know (typos must not pass silently)."""
        unknown = sorted(set(self._values) - self._used)
        if unknown:
            raise InvalidArgument(f"unknown {self._what(unknown[0])}")
