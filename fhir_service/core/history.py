"""The history interaction at instance, type and system level (http.html#history).

Paging is keyset paging on the global write sequence: the ``_cursor`` in a next link is the
sequence number of the last entry shown, so pages stay correct while others write.
"""
from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode

from .. import jsonutil
from ..outcome import error
from ..storage import Row
from .resource_utils import normalise_instant

if TYPE_CHECKING:
    from .service import FHIRService



def _entry(row: Row, base_url: str) -> dict:
    full_url = f"{base_url}/{row.res_type}/{row.res_id}"
    entry: dict = {"fullUrl": full_url}
    if row.deleted:
        request = {"method": "DELETE", "url": f"{row.res_type}/{row.res_id}"}
        response = {"status": "204 No Content"}
    else:
        entry["resource"] = jsonutil.loads(row.content)
        method = row.method or ("POST" if row.version == 1 else "PUT")
        request = {"method": method, "url": row.res_type if method == "POST" else f"{row.res_type}/{row.res_id}"}
        response = {"status": "201 Created" if row.version == 1 else "200 OK"}
    response["etag"] = f'W/"{row.version}"'
    response["lastModified"] = row.last_updated
    response["location"] = f"{full_url}/_history/{row.version}"
    entry["request"] = request
    entry["response"] = response
    return entry


def history_bundle(service: "FHIRService", res_type: str | None, res_id: str | None,
                   params: list[tuple[str, str]], base_url: str) -> dict:
    args = dict(params)
    settings = service.settings
    try:
        count = int(args.get("_count", settings.default_page_size))
        cursor = int(args["_cursor"]) if "_cursor" in args else None
    except ValueError:
        raise error(400, "value", "_count and _cursor must be whole numbers", "_count")
    if count < 0:
        raise error(400, "value", "_count must not be negative", "_count")
    count = min(count, settings.max_page_size)
    since = normalise_instant(args["_since"], "_since") if args.get("_since") else None
    at = normalise_instant(args["_at"], "_at") if args.get("_at") else None

    with service.repo.transaction() as s:
        if res_id is not None and s.current(res_type, res_id) is None:
            raise error(404, "not-found", f"{res_type}/{res_id} is not known")
        rows = s.history(res_type=res_type, res_id=res_id, since=since, at=at, before_seq=cursor, limit=count + 1)
        total = None if at else s.count_history(res_type=res_type, res_id=res_id, since=since)

    path = "/".join(p for p in (base_url, res_type, res_id, "_history") if p)
    keep = [(k, v) for k, v in params if k in ("_since", "_at", "_format", "_pretty")]

    def link(extra: list[tuple[str, str]]) -> str:
        q = urlencode(keep + [("_count", str(count))] + extra)
        return f"{path}?{q}"

    bundle: dict = {"resourceType": "Bundle", "type": "history"}
    if total is not None:
        bundle["total"] = total
    links = [{"relation": "self", "url": link([("_cursor", str(cursor))] if cursor else [])},
             {"relation": "first", "url": link([])}]
    page = rows[:count]
    if len(rows) > count and page:
        links.append({"relation": "next", "url": link([("_cursor", str(page[-1].seq))])})
    bundle["link"] = links
    bundle["entry"] = [_entry(r, base_url) for r in page]
    return bundle

