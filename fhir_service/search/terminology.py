"""The few terminology operations token modifiers need: ValueSet membership (``:in`` and
``:not-in``) and CodeSystem hierarchy (``:above``, ``:below``), over the definitions the server
knows (core package, profiles/, stored conformance resources)."""
from __future__ import annotations

from .parameters import invalid

MAX_CODES = 5000  # a larger expansion is refused rather than turned into a huge SQL IN list


def _concepts(cs: dict) -> list[dict]:
    return cs.get("concept", []) or []


def _walk(concepts: list[dict], parents: tuple = ()):
    for c in concepts:
        yield c, parents
        yield from _walk(c.get("concept", []) or [], parents + (c.get("code"),))


def _descendants(cs: dict, code: str, include_self: bool = True) -> list[str]:
    out = []
    for c, parents in _walk(_concepts(cs)):
        if c.get("code") == code and include_self or code in parents:
            out.append(c["code"])
    return out


def _ancestors(cs: dict, code: str) -> list[str]:
    for c, parents in _walk(_concepts(cs)):
        if c.get("code") == code:
            return [code, *parents]
    return [code]


def expand(definitions, url: str, seen: frozenset = frozenset()) -> list[tuple[str | None, str]]:
    vs = definitions.value_set(url)
    if vs is None or url in seen:
        raise LookupError(url)
    seen = seen | {url}
    if vs.get("expansion", {}).get("contains"):
        return [(c.get("system"), c["code"]) for c, _ in _walk(vs["expansion"]["contains"]) if c.get("code")]
    codes: list[tuple[str | None, str]] = []
    compose = vs.get("compose", {})
    for inc in compose.get("include", []):
        codes += _include(definitions, inc, seen)
    excluded = set()
    for exc in compose.get("exclude", []):
        excluded |= set(_include(definitions, exc, seen))
    out = [c for c in dict.fromkeys(codes) if c not in excluded]
    if len(out) > MAX_CODES:
        raise OverflowError(url)
    return out


def _include(definitions, inc: dict, seen) -> list[tuple[str | None, str]]:
    system = inc.get("system")
    if inc.get("concept"):
        codes = [(system, c["code"]) for c in inc["concept"]]
    elif system:
        cs = definitions.code_system(system)
        if cs is None:
            raise LookupError(system)
        all_codes = [c["code"] for c, _ in _walk(_concepts(cs))]
        for f in inc.get("filter", []):
            if f.get("op") in ("is-a", "descendent-of") and f.get("property") == "concept":
                keep = set(_descendants(cs, f.get("value"), f["op"] == "is-a"))
                all_codes = [c for c in all_codes if c in keep]
            else:
                raise LookupError(system)
        codes = [(system, c) for c in all_codes]
    else:
        codes = None
    for vs_url in inc.get("valueSet", []):
        inner = expand(definitions, vs_url, seen)
        codes = inner if codes is None else [c for c in codes if c in set(inner)]
    return codes or []


def codes_for_modifier(definitions, modifier: str, parts: list[str], pname: str) -> list[tuple[str | None, str]]:
    """(system, code) pairs a token with ``:in``/``:not-in``/``:above``/``:below`` matches."""
    if modifier in ("in", "not-in"):
        url = "|".join(parts)
        try:
            return expand(definitions, url)
        except LookupError:
            raise invalid(pname, f"ValueSet '{url}' is not known to this server or cannot be expanded") from None
        except OverflowError:
            raise invalid(pname, f"ValueSet '{url}' expands to more than {MAX_CODES} codes") from None
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise invalid(pname, f":{modifier} needs system|code")
    system, code = parts
    cs = definitions.code_system(system)
    if cs is None or not _concepts(cs):
        return [(system, code)]  # hierarchy unknown: the code itself
    codes = _descendants(cs, code) if modifier == "below" else _ancestors(cs, code)
    return [(system, c) for c in (codes or [code])]
