"""Parse the search part of a request: parameter names (modifiers, chains, ``_has``), values
(OR by comma, escaping with backslash) and the result-control parameters."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..outcome import FHIRError, error

# Result parameters: they shape the Bundle rather than select resources.
RESULT_PARAMS = {"_count", "_sort", "_total", "_summary", "_elements", "_include", "_revinclude",
                 "_contained", "_containedType", "_getpages", "_offset"}
# Request parameters that belong to the HTTP layer; never reported as ignored.
TRANSPORT_PARAMS = {"_format", "_pretty"}
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


def invalid(name: str, text: str) -> FHIRError:
    """400 for a parameter the client got wrong, naming it."""
    return error(400, "invalid", f"search parameter '{name}': {text}", name)


def split_unescaped(text: str, sep: str) -> list[str]:
    """Split on ``sep`` not preceded by a backslash; escapes are kept (unescape later)."""
    if "\\" not in text:
        return text.split(sep)  # the common case, without a character-by-character walk
    out, cur, i = [], [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        if c == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur))
    return out


def unescape(text: str) -> str:
    return re.sub(r"\\([\\,$|])", r"\1", text)


@dataclass
class Name:
    """A parsed parameter name: ``code[:modifier]`` with an optional chain and ``_has``."""
    raw: str
    code: str
    modifier: str | None = None
    chain: "Name | None" = None  # subject:Patient.name -> code=subject, modifier=Patient, chain=name
    has: tuple[str, str] | None = None  # _has:Observation:patient:<rest> -> ("Observation", "patient")


def parse_name(raw: str) -> Name:
    if raw.startswith("_has:"):
        parts = raw.split(":", 3)
        if len(parts) < 4 or not all(parts[1:]):
            raise invalid(raw, "_has must be _has:Type:parameter:parameter")
        return Name(raw, "_has", has=(parts[1], parts[2]), chain=parse_name(parts[3]))
    head, dot, rest = raw.partition(".")
    code, colon, modifier = head.partition(":")
    if not code:
        raise invalid(raw, "empty parameter name")
    name = Name(raw, code, modifier if colon else None)
    if dot:
        if not rest:
            raise invalid(raw, "empty chained parameter")
        name.chain = parse_name(rest)
    return name


@dataclass
class Criterion:
    """One ``name=value`` pair: the values are OR-ed; several criteria are AND-ed."""
    name: Name
    values: list[str]  # still escaped: the type-specific parser unescapes


@dataclass
class Request:
    criteria: list[Criterion] = field(default_factory=list)
    result: dict[str, list[str]] = field(default_factory=dict)  # result param -> values (in order)
    types: list[str] | None = None  # _type
    used: list[tuple[str, str]] = field(default_factory=list)  # for the self link
    ignored: list[str] = field(default_factory=list)


def parse(params: list[tuple[str, str]]) -> Request:
    req = Request()
    for name, value in params:
        if name in TRANSPORT_PARAMS:
            continue
        if name in RESULT_PARAMS or name.split(":")[0] in ("_include", "_revinclude"):
            req.result.setdefault(name, []).append(value)
            continue
        if name == "_type":
            types = [t.strip() for t in value.split(",") if t.strip()]
            req.types = (req.types or []) + types if req.types is not None else types
            req.used.append((name, value))
            continue
        if value == "":
            continue  # empty values are ignored (search.html 3.1.1.0)
        values = split_unescaped(value, ",")
        req.criteria.append(Criterion(parse_name(name), values))
    return req


def parse_prefix(value: str, allowed: bool = True) -> tuple[str, str]:
    if len(value) > 2 and value[:2] in PREFIXES and not value[2:3].isalpha():
        return value[:2], value[2:]
    if allowed and len(value) > 2 and value[:2].isalpha() and value[:2].islower() and value[2:3].isdigit():
        raise error(400, "invalid", f"unknown search prefix '{value[:2]}'")
    return "eq", value
