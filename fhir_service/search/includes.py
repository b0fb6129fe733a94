"""_include and _revinclude (with :iterate), for the matches of one page.

Included resources are read as they are now (only the matches are held in the snapshot),
each appears once, and none that is already a match is repeated. The total number included
is capped; the Bundle then carries a warning.
"""
from __future__ import annotations

from .plan import Include

BATCH = 400
MAX_ITERATIONS = 4


def _chunks(items: list, n: int = BATCH):
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _reference_params(defs, rtype: str) -> list[str]:
    return [c for c, sp in defs.search_params(rtype).items() if sp.get("type") == "reference"]


def _forward(session, defs, inc: Include, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    by_type: dict[str, list[str]] = {}
    for t, i in keys:
        if inc.source in ("*", t):
            by_type.setdefault(t, []).append(i)
    for rtype, ids in by_type.items():
        params = _reference_params(defs, rtype) if inc.param == "*" else [inc.param]
        if not params:
            continue
        for chunk in _chunks(ids):
            sql = (f"SELECT target_type, target_id FROM idx_reference WHERE res_type = ? "
                   f"AND res_id IN ({', '.join('?' for _ in chunk)}) AND param IN ({', '.join('?' for _ in params)}) "
                   f"AND target_id IS NOT NULL AND target_type IS NOT NULL")
            args = [rtype, *chunk, *params]
            if inc.target:
                sql += " AND target_type = ?"
                args.append(inc.target)
            out.update((r[0], r[1]) for r in session.query(sql, args))
    return out


def _reverse(session, defs, inc: Include, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    by_type: dict[str, list[str]] = {}
    for t, i in keys:
        if inc.target in (None, t):
            by_type.setdefault(t, []).append(i)
    sources = [inc.source] if inc.source != "*" else []
    for target_type, ids in by_type.items():
        for chunk in _chunks(ids):
            sql = (f"SELECT res_type, res_id FROM idx_reference WHERE target_type = ? "
                   f"AND target_id IN ({', '.join('?' for _ in chunk)})")
            args = [target_type, *chunk]
            if sources:
                sql += " AND res_type = ?"
                args.append(inc.source)
            if inc.param != "*":
                sql += " AND param = ?"
                args.append(inc.param)
            else:
                sql += " AND param NOT LIKE ?"  # composites' components are not references to follow
                args.append("%#%")
            out.update((r[0], r[1]) for r in session.query(sql, args))
    return out


def fetch(session, keys: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Current, non-deleted content for (type, id) pairs."""
    out: dict[tuple[str, str], str] = {}
    by_type: dict[str, list[str]] = {}
    for t, i in keys:
        by_type.setdefault(t, []).append(i)
    for rtype, ids in by_type.items():
        for chunk in _chunks(ids):
            rows = session.query(
                f"SELECT res_type, res_id, content FROM resource WHERE res_type = ? "
                f"AND res_id IN ({', '.join('?' for _ in chunk)}) AND deleted = ?", [rtype, *chunk, False])
            out.update(((r[0], r[1]), r[2]) for r in rows)
    return out


def resolve(session, defs, includes: list[Include], matches: list[tuple[str, str]],
            limit: int) -> tuple[list[tuple[str, str, str]], bool]:
    """[(type, id, content)] of the included resources, and whether the cap cut some off."""
    if not includes or not matches:
        return [], False
    seen = set(matches)
    result: list[tuple[str, str, str]] = []
    frontier = list(matches)
    truncated = False
    for depth in range(MAX_ITERATIONS + 1):
        active = [i for i in includes if depth == 0 or i.iterate]
        if not active or not frontier:
            break
        found: set[tuple[str, str]] = set()
        for inc in active:
            found |= (_reverse if inc.reverse else _forward)(session, defs, inc, frontier)
        new = sorted(found - seen)
        if len(result) + len(new) > limit:
            new, truncated = new[:limit - len(result)], True
        contents = fetch(session, new)
        frontier = []
        for key in new:
            if key in contents:
                seen.add(key)
                result.append((key[0], key[1], contents[key]))
                frontier.append(key)
        if truncated:
            break
    return result, truncated
