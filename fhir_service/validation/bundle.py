"""Bundle rules beyond the bdl-* invariants: link relations, fullUrl/id consistency,
duplicate entries, and what document and message bundles must contain."""
from __future__ import annotations

import re

_RESTFUL = re.compile(r"^(https?://.+/)?([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/[A-Za-z0-9\-.]{1,64})?$")


def check(w, bundle: dict, path: str) -> None:
    btype = bundle.get("type")
    _links(w, bundle, path)
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        if btype in ("document", "message"):
            w.add("error", "invalid", f"A {btype} bundle must have at least one entry", path)
        return
    seen: dict[tuple, int] = {}
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            continue
        epath = f"{path}.entry[{i}]"
        _links(w, e, epath)
        res = e.get("resource")
        full = e.get("fullUrl")
        if not isinstance(res, dict):
            continue
        rt, rid = res.get("resourceType"), res.get("id")
        if isinstance(full, str):
            m = _RESTFUL.match(full)
            if m and full.startswith(("http://", "https://")) and isinstance(rid, str):
                if m.group(2) != rt or m.group(3) != rid:
                    w.add("error", "invalid", f"The fullUrl '{full}' looks like a RESTful server URL, so it must end "
                          f"with the correct type and id (/{rt}/{rid})", epath + ".fullUrl")
            version = (res.get("meta") or {}).get("versionId") if isinstance(res.get("meta"), dict) else None
            key = (full, version)
            if btype != "history" and key in seen and not _is_search_outcome(e):
                w.add("error", "invalid", f"Duplicate entries in the bundle for fullUrl {full}"
                      + (f" (version {version})" if version else ""), epath)
            seen.setdefault(key, i)
        elif btype not in ("transaction", "batch", "transaction-response", "batch-response", "history") \
                and not _is_search_outcome(e):
            w.add("error", "required", "Except for transactions and batches, each entry in a Bundle must have a fullUrl "
                  "which is the identity of the resource in the entry", epath)
    if btype == "document":
        _document(w, entries, path)
    elif btype == "message":
        first = entries[0].get("resource") if entries and isinstance(entries[0], dict) else None
        if not isinstance(first, dict) or first.get("resourceType") != "MessageHeader":
            w.add("error", "invalid", "The first entry in a message must be a MessageHeader", path + ".entry[0]")


def _is_search_outcome(e: dict) -> bool:
    s = e.get("search")
    return isinstance(s, dict) and s.get("mode") == "outcome"


def _links(w, holder: dict, path: str) -> None:
    links = holder.get("link")
    if not isinstance(links, list):
        return
    seen = set()
    for i, link in enumerate(links):
        rel = link.get("relation") if isinstance(link, dict) else None
        if not isinstance(rel, str):
            continue
        if rel in seen:
            w.add("error", "invalid", f"The link relationship type '{rel}' can only occur once", f"{path}.link[{i}]")
        seen.add(rel)


def _document(w, entries: list, path: str) -> None:
    first = entries[0].get("resource") if entries and isinstance(entries[0], dict) else None
    if not isinstance(first, dict) or first.get("resourceType") != "Composition":
        w.add("error", "invalid", "The first entry in a document must be a Composition", path + ".entry[0]")
        return
    from .references import find_in_bundle
    bundle = {"entry": entries}
    base = entries[0].get("fullUrl") if isinstance(entries[0].get("fullUrl"), str) else None
    for key in ("subject", "author", "encounter", "custodian"):
        refs = first.get(key)
        for r in (refs if isinstance(refs, list) else [refs]):
            ref = r.get("reference") if isinstance(r, dict) else None
            if isinstance(ref, str) and not ref.startswith("#") and not find_in_bundle(bundle, ref, base):
                w.add("warning", "not-found", f"Can't find '{ref}' in the document bundle (Composition.{key})",
                      path + ".entry[0]")
