"""Snapshot generation: a profile given only as a differential, expanded against its base.

The algorithm, simplified from the FHIR ProfileUtilities:
1. start from the base definition's snapshot, re-rooted at the profile's type;
2. for each differential element, find (or create) its place in the snapshot:
   - an element that exists is merged (differential properties win, constraints add up);
   - a slice is inserted after its sliced element's group, as a copy of that element's subtree;
   - an element inside a datatype the snapshot has not expanded yet expands that datatype
     (from its StructureDefinition) first;
   - a renamed choice (``valueQuantity``) maps to ``value[x]`` restricted to that type.
"""
from __future__ import annotations

import copy

# Properties that accumulate rather than replace.
_ADDITIVE = ("constraint", "condition", "mapping", "alias", "code")
_SKIP = ("id", "path", "extension")


def generate_snapshot(sd: dict, definitions, _depth: int = 0) -> list[dict] | None:
    """Snapshot elements for ``sd``, or None when its base cannot be found."""
    if _depth > 12:
        return None
    diff = (sd.get("differential") or {}).get("element") or []
    base_url = sd.get("baseDefinition")
    sd_type = sd.get("type")
    if not base_url or not sd_type:
        return None
    base = definitions.get(base_url)
    if not base or base.get("resourceType") != "StructureDefinition":
        return None
    base_elems = (base.get("snapshot") or {}).get("element")
    if not base_elems:
        base_elems = generate_snapshot(base, definitions, _depth + 1)
        if not base_elems:
            return None
    gen = _Generator(sd, definitions, base_elems, _depth)
    for ed in diff:
        gen.apply(ed)
    return gen.elements


def _rename(ed: dict, old_prefix: str, new_prefix: str, old_id: str | None = None, new_id: str | None = None) -> dict:
    e = copy.deepcopy(ed)
    p = e.get("path", "")
    if p == old_prefix or p.startswith(old_prefix + "."):
        e["path"] = new_prefix + p[len(old_prefix):]
    i = e.get("id") or p
    oi = old_id if old_id is not None else old_prefix
    ni = new_id if new_id is not None else new_prefix
    if i == oi or i.startswith(oi + ".") or i.startswith(oi + ":"):
        e["id"] = ni + i[len(oi):]
    else:
        e["id"] = e["path"]
    return e


class _Generator:
    def __init__(self, sd: dict, definitions, base_elems: list[dict], depth: int):
        self.sd = sd
        self.defs = definitions
        self.depth = depth
        self.url = sd.get("url", "")
        root_old = base_elems[0]["path"].split(".")[0]
        root_new = sd["type"]
        self.elements = [_rename(e, root_old, root_new) for e in base_elems]
        # content references expand from the base, never from elements this profile changed
        self.base = [copy.deepcopy(e) for e in self.elements]
        self._reindex()
        self._last_slice_prefix: dict[str, str] = {}

    def _reindex(self) -> None:
        self.index = {e["id"]: n for n, e in enumerate(self.elements)}

    # -- ids ---------------------------------------------------------------------------------
    def _diff_id(self, ed: dict) -> str:
        if ed.get("id"):
            return ed["id"]
        path = ed["path"]
        # An element without an id inside a slice: reuse the latest slice prefix of its path.
        best = None
        for p, sid in self._last_slice_prefix.items():
            if path.startswith(p + ".") and (best is None or len(p) > len(best[0])):
                best = (p, sid)
        eid = best[1] + path[len(best[0]):] if best else path
        if ed.get("sliceName"):
            eid = eid + ":" + ed["sliceName"]
        return eid

    # -- applying one differential element ---------------------------------------------------
    def apply(self, ed: dict) -> None:
        eid = self._diff_id(ed)
        if ed.get("sliceName") and not ed.get("id"):
            self._last_slice_prefix[ed["path"]] = eid
        n = self._locate(eid)
        if n is None:
            return
        self._merge(self.elements[n], ed)

    def _locate(self, eid: str) -> int | None:
        n = self.index.get(eid)
        if n is not None:
            return n
        parent_id, last = _split_last(eid)
        if parent_id is None:
            return None
        name, _, slice_name = last.partition(":")
        pn = self._locate(parent_id)
        if pn is None:
            return None
        self._expand(pn)
        parent_id = self.elements[pn]["id"]  # a renamed choice (valueQuantity) lives at value[x]
        if slice_name:
            base_id = parent_id + "." + name
            if "/" in slice_name:  # re-slice
                base_id += ":" + slice_name.rsplit("/", 1)[0]
            bn = self._locate(base_id)
            if bn is None:
                return None
            return self._add_slice(bn, eid, slice_name.rsplit("/", 1)[-1])
        n = self.index.get(parent_id + "." + name)
        if n is not None:
            return n
        return self._choice_rename(parent_id, name)

    def _choice_rename(self, parent_id: str, name: str) -> int | None:
        """``valueQuantity`` in a differential is ``value[x]`` restricted to Quantity."""
        for n, e in enumerate(self.elements):
            eid = e["id"]
            if not eid.startswith(parent_id + ".") or not eid.endswith("[x]"):
                continue
            stem = eid[len(parent_id) + 1:-3]
            if "." in stem or ":" in stem or not name.startswith(stem):
                continue
            suffix = name[len(stem):]
            types = [t for t in e.get("type", ()) if t.get("code", "")[:1].upper() + t.get("code", "")[1:] == suffix]
            if types:
                e["type"] = types
                # alias the renamed id so later children find it
                self.index[parent_id + "." + name] = n
                return n
        return None

    def _children_end(self, n: int) -> int:
        eid = self.elements[n]["id"]
        m = n + 1
        while m < len(self.elements):
            oid = self.elements[m]["id"]
            if oid.startswith(eid + ".") or oid.startswith(eid + ":"):
                m += 1
            else:
                break
        return m

    def _has_children(self, n: int) -> bool:
        eid = self.elements[n]["id"]
        return n + 1 < len(self.elements) and self.elements[n + 1]["id"].startswith(eid + ".")

    def _expand(self, n: int) -> None:
        """Give element ``n`` explicit children from its type (or content reference)."""
        if self._has_children(n):
            return
        e = self.elements[n]
        source: list[dict] | None = None
        src_root = None
        if e.get("contentReference"):
            ref = e["contentReference"].split("#", 1)[-1]
            rn = next((k for k, x in enumerate(self.base) if x.get("path") == ref and ":" not in x["id"]), None)
            if rn is not None:
                src_root = self.base[rn]
                rid = src_root["id"]
                source = [src_root] + [x for x in self.base[rn + 1:] if x["id"].startswith(rid + ".")
                                       and ":" not in x["id"][len(rid):]]
        else:
            codes = {t.get("code") for t in e.get("type", ())}
            if len(codes) != 1:
                return
            code = codes.pop()
            tsd = self.defs.get(code if "/" in code else "http://hl7.org/fhir/StructureDefinition/" + code)
            if not tsd:
                return
            source = (tsd.get("snapshot") or {}).get("element") or generate_snapshot(tsd, self.defs, self.depth + 1)
            if not source:
                return
            src_root = source[0]
        root_path = src_root["path"]
        root_id = src_root.get("id") or root_path
        new = []
        for x in source[1:]:
            c = _rename(x, root_path, e["path"], root_id, e["id"])
            new.append(c)
        if e.get("contentReference"):
            # the element now carries its own children: it takes the referenced element's type
            e.pop("contentReference", None)
            e["type"] = copy.deepcopy(src_root.get("type") or [{"code": "BackboneElement"}])
        self.elements[n + 1:n + 1] = new
        self._reindex()

    def _add_slice(self, bn: int, eid: str, slice_name: str) -> int:
        base = self.elements[bn]
        end = self._children_end(bn)
        # the slice starts as a copy of the sliced element and its own children (not other slices)
        subtree = [base] + [x for x in self.elements[bn + 1:end]
                            if x["id"].startswith(base["id"] + ".") and ":" not in x["id"][len(base["id"]):]]
        copies = []
        for x in subtree:
            c = copy.deepcopy(x)
            c["id"] = eid + x["id"][len(base["id"]):]
            copies.append(c)
        copies[0]["sliceName"] = slice_name
        copies[0].pop("slicing", None)
        self.elements[end:end] = copies
        self._reindex()
        return end

    def _merge(self, target: dict, ed: dict) -> None:
        for k, v in ed.items():
            if k in _SKIP:
                continue
            if k in _ADDITIVE and isinstance(v, list):
                existing = target.get(k) or []
                if k == "constraint":
                    keys = {c.get("key") for c in existing}
                    v = [dict(c, source=c.get("source") or self.url) for c in v if c.get("key") not in keys]
                target[k] = existing + copy.deepcopy(v)
            else:
                target[k] = copy.deepcopy(v)
        if "extension" in ed:
            target["extension"] = copy.deepcopy(ed["extension"])


def _split_last(eid: str) -> tuple[str | None, str]:
    """'A.b:s.c' -> ('A.b:s', 'c'); dots inside slice names are not supported."""
    if "." not in eid:
        return None, eid
    head, _, last = eid.rpartition(".")
    return head, last
