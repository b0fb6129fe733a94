"""JSON in and out without losing what the client wrote.

FHIR decimals keep their written precision (``1.50`` stays ``1.50``), so numbers with a
fraction or exponent are parsed as ``Decimal`` and written back verbatim. Integers stay ints.
"""
from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Callable

import orjson
import simplejson

__all__ = ["loads", "dumps", "dumps_bytes", "json_depth", "JSONError", "Decimal"]


class JSONError(ValueError):
    """The body is not JSON we accept (malformed, or nested too deeply)."""


# A JSON string (escapes included; an unterminated one runs to the end of the text).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(text: str | bytes, limit: int) -> int:
    """Nesting depth of a JSON text: more than ``limit`` exactly when the text nests deeper.

    Stops early once past ``limit``; at or under it, the result may be an upper bound.

    Checked before parsing so that a hostile, deeply nested body never reaches the parser.
    The scans that can be done in C come first: most bodies have fewer brackets than the limit.
    """
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogatepass")
    openings = text.count(b"{") + text.count(b"[")  # the depth can be no more than this
    if openings <= limit:
        return openings
    brackets = _STRING.sub(b"", text).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for b in brackets:
        if b in (0x7B, 0x5B):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        else:
            depth -= 1
    return deepest


# orjson (C, several times faster) is used where it gives exactly what simplejson would:
# - reading: when no number in the text can have a fraction or exponent (orjson would make it a
#   float, losing "1.50") or have 19 digits or more (past 64 bits, orjson makes a float too).
#   The check is coarse (a digit then "." inside a string also sends a body the general way);
#   that is safe.
# - writing: always, with Decimals written verbatim; anything orjson refuses (an integer past 64
#   bits, a non-string key) goes the general way.
_NEEDS_GENERAL_PARSER = re.compile(rb"[0-9][.eE]|[0-9]{19}")
# A \uD800-\uDFFF escape: one not paired up is text no UTF-8 store can hold (orjson refuses it).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _decimal_verbatim(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value))
    raise TypeError


def _reject_constant(name: str) -> Any:
    raise JSONError(f"{name} is not valid JSON")


def loads(text: str | bytes, *, max_depth: int | None = None, refuse_nul: bool = False) -> Any:
    """``refuse_nul``: a string holding U+0000 is an error (for what clients send: PostgreSQL
    cannot store the character, and FHIR strings should hold no control characters)."""
    if max_depth is not None and json_depth(text, max_depth) > max_depth:
        raise JSONError(f"JSON is nested more than {max_depth} levels deep")
    value = _parse(text)
    if refuse_nul and (b"\\u0000" if isinstance(text, bytes) else "\\u0000") in text:
        _refuse_strings(value, lambda v: "\x00" in v, "a string holds U+0000 (a \\u0000 escape), which this "
                        "server cannot store (FHIR strings should hold no control characters)")
    return value


def _parse(text: str | bytes) -> Any:
    if isinstance(text, bytes) and not _NEEDS_GENERAL_PARSER.search(text):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # (malformed, or e.g. a lone surrogate escape): the general parser decides and explains
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        value = simplejson.loads(text, use_decimal=True, parse_constant=_reject_constant)
        if _SURROGATE_ESCAPE.search(text):
            _refuse_strings(value, _not_utf8, "a string holds half of a UTF-16 surrogate pair (a \\uD800-\\uDFFF "
                            "escape without its other half)")
        return value
    except UnicodeDecodeError as exc:
        raise JSONError(f"body is not UTF-8: {exc}") from None
    except simplejson.JSONDecodeError as exc:
        raise JSONError(f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise JSONError("JSON is nested too deeply") from None


def _not_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _refuse_strings(value: Any, bad: Callable[[str], bool], message: str) -> None:
    if any(bad(v) for v in _strings(value)):
        raise JSONError(message)


def _strings(value: Any):
    """Every string in a parsed JSON value, keys included."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            yield v
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def dumps(obj: Any, *, pretty: bool = False) -> str:
    return _general(obj, pretty) if pretty else dumps_bytes(obj).decode("utf-8")


def dumps_bytes(obj: Any, *, pretty: bool = False) -> bytes:
    if not pretty:
        try:
            return orjson.dumps(obj, default=_decimal_verbatim)
        except TypeError:  # (orjson.JSONEncodeError is one)
            pass
    return _general(obj, pretty).encode("utf-8")


def _general(obj: Any, pretty: bool) -> str:
    """What orjson cannot write (e.g. integers past 64 bits), and the indented form."""
    if pretty:
        return simplejson.dumps(obj, use_decimal=True, indent=2, ensure_ascii=False)
    return simplejson.dumps(obj, use_decimal=True, separators=(",", ":"), ensure_ascii=False)
