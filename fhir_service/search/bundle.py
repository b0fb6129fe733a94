"""Searchset Bundles: entries, links, and the _summary / _elements views of a resource."""
from __future__ import annotations

import time
import uuid
from urllib.parse import urlencode

from .. import jsonutil
from ..outcome import Issue, operation_outcome

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED",
             "display": "Resource encoded in summary mode"}
_ALWAYS = ("resourceType", "id", "meta")


_element_cache: dict[tuple[int, str], tuple[frozenset, frozenset]] = {}


def _top_elements(defs, rtype: str) -> tuple[frozenset, frozenset]:
    """(summary element names, mandatory element names) at the top level of a type."""
    key = (id(defs), rtype)
    hit = _element_cache.get(key)
    if hit is not None:
        return hit
    sd = defs.structure_definition(rtype) or {}
    summary, mandatory = set(), set()
    for el in (sd.get("snapshot") or {}).get("element", []):
        path = el.get("path", "")
        if path.count(".") != 1:
            continue
        name = path.split(".", 1)[1]
        if el.get("isSummary"):
            summary.add(name)
        if el.get("min", 0) >= 1:
            mandatory.add(name)
    _element_cache[key] = (frozenset(summary), frozenset(mandatory))
    return _element_cache[key]


def _matches(key: str, names) -> bool:
    if key.startswith("_"):
        key = key[1:]
    for n in names:
        if n == key or (n.endswith("[x]") and key.startswith(n[:-3]) and key[len(n) - 3:][:1].isupper()):
            return True
    return False


def _tag(res: dict) -> dict:
    meta = dict(res.get("meta") or {})
    tags = list(meta.get("tag", []))
    if not any(t.get("code") == "SUBSETTED" for t in tags if isinstance(t, dict)):
        tags.append(dict(SUBSETTED))
    meta["tag"] = tags
    res["meta"] = meta
    return res


def view(defs, res: dict, summary: str | None, elements: list[str] | None) -> dict:
    """The resource as _summary / _elements asks for (tagged SUBSETTED when cut)."""
    if summary in (None, "false") and not elements:
        return res
    summ, mand = _top_elements(defs, res.get("resourceType", ""))
    if summary == "true":
        keep = set(summ)
    elif summary == "text":
        keep = {"text"} | set(mand)
    elif summary == "data":
        out = {k: v for k, v in res.items() if k != "text"}
        return _tag(out)
    else:
        keep = set(elements or []) | set(mand)
    out = {k: v for k, v in res.items() if k in _ALWAYS or _matches(k, keep)}
    return _tag(out)


def link_url(base: str, params: list[tuple[str, str]]) -> str:
    q = urlencode(params, safe=":,|$/*")
    return f"{base}?{q}" if q else base


def searchset(*, total: int | None, links: list[tuple[str, str]], entries: list[dict],
              ignored: list[Issue]) -> dict:
    bundle: dict = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "type": "searchset",
    }
    if total is not None:
        bundle["total"] = total
    bundle["link"] = [{"relation": rel, "url": url} for rel, url in links]
    if ignored:
        entries = entries + [{
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": operation_outcome(ignored),
            "search": {"mode": "outcome"},
        }]
    if entries:
        bundle["entry"] = entries
    return bundle


def entry(defs, base_url: str, rtype: str, rid: str, content: str, mode: str,
          summary: str | None, elements: list[str] | None) -> dict:
    res = jsonutil.loads(content)
    if mode == "match" or summary is not None or elements:
        res = view(defs, res, summary, elements if mode == "match" else None)
    return {"fullUrl": f"{base_url}/{rtype}/{rid}", "resource": res, "search": {"mode": mode}}
