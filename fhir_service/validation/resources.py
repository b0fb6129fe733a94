"""Rules for every resource that are cheaper (or only correct) in Python: dom-2..dom-5."""
from __future__ import annotations

_DOM = {
    "dom-2": "If the resource is contained in another resource, it SHALL NOT contain nested Resources",
    "dom-3": "If the resource is contained in another resource, it SHALL be referred to from elsewhere in the "
             "resource or SHALL refer to the containing resource",
    "dom-4": "If a resource is contained in another resource, it SHALL NOT have a meta.versionId or a "
             "meta.lastUpdated",
    "dom-5": "If a resource is contained in another resource, it SHALL NOT have a security label",
}


_QUE_2 = "The link ids for groups and questions must be unique within the Questionnaire"


def check_questionnaire(w, q: dict, path: str) -> None:
    """que-2: linkIds are unique across the whole item tree."""
    seen: set = set()
    stack = [q.get("item")]
    while stack:
        items = stack.pop()
        for it in items if isinstance(items, list) else ():
            if not isinstance(it, dict):
                continue
            lid = it.get("linkId")
            if isinstance(lid, str):
                if lid in seen:
                    w.add("error", "invariant", f"Constraint failed: que-2: '{_QUE_2}'", path)
                    return
                seen.add(lid)
            stack.append(it.get("item"))


def _fail(w, key: str, path: str) -> None:
    w.add("error", "invariant", f"Constraint failed: {key}: '{_DOM[key]}'", path)


def _local_refs(value, out: set) -> bool:
    """Collect '#id' strings anywhere below ``value``; True if some value is exactly '#'."""
    to_container = False
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, str) and v[:1] == "#":
            if v == "#":
                to_container = True
            out.add(v)
    return to_container


def check(w, obj: dict, path: str) -> None:
    contained = obj.get("contained")
    if not isinstance(contained, list) or not contained:
        return
    # dom-3, as corrected: a contained resource must be referenced from the resource (or from
    # another contained resource), or itself refer to its container ('#').
    refs: set = set()
    for key, value in obj.items():
        if key != "contained":
            _local_refs(value, refs)
    inner_refs: list[set] = []
    to_container: list[bool] = []
    for c in contained:
        s: set = set()
        to_container.append(_local_refs(c, s))
        inner_refs.append(s)
    for i, c in enumerate(contained):
        if not isinstance(c, dict):
            continue
        if "contained" in c:
            _fail(w, "dom-2", path)
        meta = c.get("meta")
        if isinstance(meta, dict):
            if "versionId" in meta or "lastUpdated" in meta:
                _fail(w, "dom-4", path)
            if "security" in meta:
                _fail(w, "dom-5", path)
        cid = c.get("id")
        if not isinstance(cid, str):
            continue
        ref = "#" + cid
        if ref in refs or to_container[i] or any(ref in s for j, s in enumerate(inner_refs) if j != i):
            continue
        _fail(w, "dom-3", path)
