"""FHIR search: extract index values on write, parse search URLs, compile them to SQL, page.

Interface used by core and api:

- ``index_resource(definitions, resource) -> IndexRows``: the index rows for every
  SearchParameter that applies to the resource's type (storage/schema.py INDEX_TABLES).
- ``match(session, definitions, resource_type, query) -> list[(type, id)]``: current,
  non-deleted resources matching a query string (conditional create/update/delete and
  conditional references). Strict: FHIRError(400) for an invalid or unknown parameter.
- ``search(session, definitions, *, resource_type, params, base_url, strict, compartment,
  may_snapshot)``: a searchset Bundle (type, system and compartment searches).
- ``page(session, definitions, params, base_url)``: a later page, for ``GET [base]?_getpages=``.
- ``capability_search_params(definitions, resource_type)`` and ``SPECIAL_SUPPORT``: for the
  CapabilityStatement.
- ``reindex(repo, definitions, progress=None)``: re-extract the index rows of all resources.

Paging (see paging.py): results larger than one page are snapshotted in the database, so
``next`` links are stable under concurrent writes and survive restarts; they expire after
FHIR_SEARCH_SNAPSHOT_TTL seconds (default 1 h) with 410 Gone. A search that makes a snapshot
writes: run ``search`` in a read transaction with ``may_snapshot=False`` first, and again in
a write transaction if it raises NeedsSnapshot. ``page`` only reads.
"""
from __future__ import annotations

from urllib.parse import parse_qsl

from ..config import page_limits
from ..outcome import Issue, error
from . import bundle as B
from . import compiler as C
from . import includes, paging
from .indexer import NOT_INDEXED, index_resource
from .plan import Plan, make_plan

__all__ = ["index_resource", "match", "search", "page", "capability_search_params", "SPECIAL_SUPPORT",
           "reindex"]

# Which of the special search parameters this server supports (for the CapabilityStatement).
SPECIAL_SUPPORT = {"_text": False, "_content": True, "_filter": False, "_query": False}
MATCH_LIMIT = 1000


def match(session, definitions, resource_type: str, query: str) -> list[tuple[str, str]]:
    params = parse_qsl(query.lstrip("?"), keep_blank_values=True)
    ctx = C.Ctx(definitions, session.dialect)
    plan = make_plan(ctx, resource_type, params, strict=True, conditional=True)
    if not any(tq.conds for tq in plan.tqs):
        raise error(400, "invalid", f"conditional criteria '{query}' select no search parameter", resource_type)
    where, args = C.where_all(ctx, plan.tqs)
    rows = session.query(f"SELECT r.res_type, r.res_id FROM resource r WHERE {where} LIMIT ?", [*args, MATCH_LIMIT],
                         plan_per_call=True)
    return [(r[0], r[1]) for r in rows]


def _order(ctx: C.Ctx, plan: Plan) -> tuple[str, list]:
    parts, args = [], []
    for code, desc in plan.sort:
        expr, p = C.sort_key(ctx, plan.types or ["Resource"], code, desc)
        # Missing values last in both directions, the same on both backends.
        parts.append(f"CASE WHEN {expr} IS NULL THEN 1 ELSE 0 END, {expr} {'DESC' if desc else 'ASC'}")
        args += p + p
    parts.append("r.res_type, r.res_id")
    return ", ".join(parts), args


def _self_base(base_url: str, resource_type: str | None, compartment) -> str:
    if compartment:
        return f"{base_url}/{compartment[0]}/{compartment[1]}/{resource_type or '*'}"
    return f"{base_url}/{resource_type}" if resource_type else base_url


class NeedsSnapshot(Exception):
    """The search has more matches than a page: it must run again where it may write its snapshot."""


def search(session, definitions, *, resource_type: str | None, params: list[tuple[str, str]], base_url: str,
           strict: bool, compartment: tuple[str, str] | None = None, may_snapshot: bool = True) -> dict:
    """One page of results. Results larger than a page are snapshotted (a write): with
    ``may_snapshot=False`` (a read-only transaction) that case raises NeedsSnapshot instead."""
    base_url = base_url.rstrip("/")
    default_count, max_count = page_limits()
    ctx = C.Ctx(definitions, session.dialect, base_url)
    plan = make_plan(ctx, resource_type, params, strict=strict, compartment=compartment,
                     default_count=default_count, max_count=max_count)
    self_url = B.link_url(_self_base(base_url, resource_type, compartment), plan.used)
    links = [("self", self_url)]
    if plan.empty:
        return B.searchset(total=None if plan.total == "none" else 0, links=links, entries=[], ignored=plan.ignored)
    where, args = C.where_all(ctx, plan.tqs)
    if plan.summary == "count" or plan.count == 0:
        total = None
        if plan.total != "none":
            total = _count(session, where, args)
        return B.searchset(total=total, links=links, entries=[], ignored=plan.ignored)
    order_sql, order_args = _order(ctx, plan)
    rows = session.query(f"SELECT r.res_type, r.res_id, r.content FROM resource r WHERE {where} "
                         f"ORDER BY {order_sql} LIMIT ?", [*args, *order_args, plan.count + 1], plan_per_call=True)
    ignored = list(plan.ignored)
    if len(rows) <= plan.count:
        matches = [(r[0], r[1], r[2]) for r in rows]
        total = len(matches)
        links.append(("first", self_url))
    else:
        if not may_snapshot:
            raise NeedsSnapshot()
        state = [("_t", resource_type or ""), ("_c", "/".join(compartment) if compartment else ""), *plan.used]
        sid, held = paging.create(session, where, order_sql, args, order_args, state)
        matches = paging.read(session, sid, 0, plan.count)
        total = held
        if held >= paging.MAX_ENTRIES:
            total = _count(session, where, args)
            ignored.append(Issue("warning", "too-costly",
                                 f"only the first {held} of {total} matches can be paged; narrow the search"))
        links += paging.page_links(base_url, sid, 0, plan.count, held)
    return _bundle(session, definitions, plan, base_url, matches, links, total, ignored, max_count)


def _count(session, where: str, args: list) -> int:
    return int(session.query(f"SELECT COUNT(*) FROM resource r WHERE {where}", args, plan_per_call=True)[0][0])


def _bundle(session, definitions, plan: Plan, base_url: str, matches, links, total, ignored, max_count: int) -> dict:
    included, truncated = includes.resolve(session, definitions, plan.includes,
                                           [(t, i) for t, i, _ in matches], limit=max_count)
    if truncated:
        ignored = ignored + [Issue("warning", "too-costly", f"included resources were limited to {max_count}")]
    entries = [B.entry(definitions, base_url, t, i, c, "match", plan.summary, plan.elements) for t, i, c in matches]
    entries += [B.entry(definitions, base_url, t, i, c, "include", plan.summary, None) for t, i, c in included]
    return B.searchset(total=None if plan.total == "none" else total, links=links, entries=entries, ignored=ignored)


def page(session, definitions, params: list[tuple[str, str]], base_url: str) -> dict:
    """A page of a snapshotted search: ``[base]?_getpages=ID&_offset=N&_count=M``."""
    base_url = base_url.rstrip("/")
    p = dict(params)
    sid = p.get("_getpages", "")
    default_count, max_count = page_limits()
    state, held = paging.load(session, sid)
    try:
        offset = int(p.get("_offset", "0"))
        count = min(int(p.get("_count", str(default_count))), max_count)
        if offset < 0 or count < 1:
            raise ValueError
    except ValueError:
        raise error(400, "invalid", "_offset and _count must be non-negative integers", "_offset") from None
    st = dict(state[:2])
    rtype = st.get("_t") or None
    compartment = tuple(st["_c"].split("/", 1)) if st.get("_c") else None
    ctx = C.Ctx(definitions, session.dialect, base_url)
    plan = make_plan(ctx, rtype, state[2:], strict=False, compartment=compartment,
                     default_count=default_count, max_count=max_count)
    matches = paging.read(session, sid, offset, count)
    links = [("self", f"{base_url}?_getpages={sid}&_offset={offset}&_count={count}")]
    links += paging.page_links(base_url, sid, offset, count, held)
    return _bundle(session, definitions, plan, base_url, matches, links, held, [], max_count)


def capability_search_params(definitions, resource_type: str | None) -> list[dict]:
    """CapabilityStatement searchParam entries for a type (None: system level, the parameters
    every resource has)."""
    out = []
    for code, sp in sorted(definitions.search_params(resource_type or "Resource").items()):
        if code in SPECIAL_SUPPORT and not SPECIAL_SUPPORT[code]:
            continue
        if sp.get("type") == "special" or (not sp.get("expression") and code not in ("_id", "_lastUpdated", "_content")):
            continue
        entry = {"name": code, "definition": sp.get("url"), "type": sp.get("type")}
        if sp.get("description"):
            entry["documentation"] = sp["description"][:1000]
        out.append(entry)
    return out


def reindex(repo, definitions, progress=None, batch: int = 500) -> int:
    """Re-extract the index rows of every current resource; returns how many were indexed."""
    with repo.transaction() as session:
        total = int(session.query("SELECT COUNT(*) FROM resource WHERE deleted = ?", [False])[0][0])
    done, last = 0, ("", "")
    while True:
        with repo.transaction(write=True) as session:
            rows = session.query(
                "SELECT res_type, res_id, content FROM resource WHERE deleted = ? AND "
                "(res_type > ? OR (res_type = ? AND res_id > ?)) ORDER BY res_type, res_id LIMIT ?",
                [False, last[0], last[0], last[1], batch])
            if not rows:
                break
            from .. import jsonutil
            for rtype, rid, content in rows:
                session.replace_index(rtype, rid, index_resource(definitions, jsonutil.loads(content)))
            last = (rows[-1][0], rows[-1][1])
            done += len(rows)
        if progress:
            progress(done, total)
    return done
