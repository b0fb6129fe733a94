"""Stable paging over a materialised snapshot.

When a search has more matches than fit on one page, the ordered list of its matches —
(type, id, version) — is written to ``search_snapshot_entry`` in the same transaction that
evaluates the search. Later pages read that list and the stored versions from
``resource_version``, so walking ``next`` returns every match exactly once, as it was when the
search ran, whatever other clients write meanwhile. Included resources are computed per page
from current data.

The snapshot lives in the database, so paging links work across server processes and
restarts. Snapshots expire after ``FHIR_SEARCH_SNAPSHOT_TTL`` seconds (default 3600); a link to
an expired or unknown snapshot gets 410 Gone. At most ``FHIR_SEARCH_SNAPSHOT_MAX`` matches
(default 100,000) are held; a larger result says so in an OperationOutcome entry and the
client should narrow the search. Expired snapshots are deleted as new ones are made.
"""
from __future__ import annotations

import os
import random
import secrets
import time
from urllib.parse import parse_qsl, urlencode

from ..outcome import error

TTL_SECONDS = int(os.environ.get("FHIR_SEARCH_SNAPSHOT_TTL", "3600"))
MAX_ENTRIES = int(os.environ.get("FHIR_SEARCH_SNAPSHOT_MAX", "100000"))


def _instant(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def create(session, select_sql: str, order_sql: str, params: list, order_params: list,
           state: list[tuple[str, str]]) -> tuple[str, int]:
    """Materialise the ordered matches; returns (snapshot id, number of entries held)."""
    now = time.time()
    if random.random() < 0.05:
        purge(session, now)
    sid = secrets.token_urlsafe(18)
    session.execute("INSERT INTO search_snapshot (id, created, expires, query, total) VALUES (?, ?, ?, ?, ?)",
                    (sid, _instant(now), _instant(now + TTL_SECONDS), urlencode(state), None))
    n = session.execute(
        "INSERT INTO search_snapshot_entry (snapshot_id, pos, res_type, res_id, version, mode) "
        f"SELECT ?, x.rn - 1, x.res_type, x.res_id, x.version, ? FROM ("
        f"SELECT r.res_type, r.res_id, r.version, ROW_NUMBER() OVER (ORDER BY {order_sql}) AS rn "
        f"FROM resource r WHERE {select_sql}) x WHERE x.rn <= ?",
        [sid, "match", *order_params, *params, MAX_ENTRIES], plan_per_call=True)
    session.execute("UPDATE search_snapshot SET total = ? WHERE id = ?", (n, sid))
    return sid, n


def load(session, sid: str) -> tuple[list[tuple[str, str]], int]:
    """(stored request state, entries held) of a live snapshot; 410 if gone or expired."""
    rows = session.query("SELECT expires, query, total FROM search_snapshot WHERE id = ?", (sid,))
    if not rows or rows[0][0] < _instant(time.time()):
        raise error(410, "expired" if rows else "not-found",
                    "these search results have expired or are unknown: repeat the search", "_getpages")
    return parse_qsl(rows[0][1], keep_blank_values=True), int(rows[0][2] or 0)


def read(session, sid: str, offset: int, count: int) -> list[tuple[str, str, str]]:
    """[(type, id, content)] for positions [offset, offset + count), as they were snapshotted."""
    rows = session.query(
        "SELECT e.res_type, e.res_id, v.content FROM search_snapshot_entry e JOIN resource_version v "
        "ON v.res_type = e.res_type AND v.res_id = e.res_id AND v.version = e.version "
        "WHERE e.snapshot_id = ? AND e.pos >= ? AND e.pos < ? ORDER BY e.pos",
        (sid, offset, offset + count))
    return [(r[0], r[1], r[2]) for r in rows]


def purge(session, now: float | None = None) -> None:
    cutoff = _instant(now or time.time())
    session.execute("DELETE FROM search_snapshot_entry WHERE snapshot_id IN "
                    "(SELECT id FROM search_snapshot WHERE expires < ?)", (cutoff,))
    session.execute("DELETE FROM search_snapshot WHERE expires < ?", (cutoff,))


def page_links(base_url: str, sid: str, offset: int, count: int, held: int) -> list[tuple[str, str]]:
    def url(off: int) -> str:
        return f"{base_url}?" + urlencode([("_getpages", sid), ("_offset", str(off)), ("_count", str(count))])
    links = [("first", url(0))]
    if offset > 0:
        links.append(("previous", url(max(0, offset - count))))
    if offset + count < held:
        links.append(("next", url(offset + count)))
    links.append(("last", url(max(0, (held - 1) // count * count) if count else 0)))
    return links
