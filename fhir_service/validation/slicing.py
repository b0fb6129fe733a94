"""Slicing: which slice each repeating value belongs to, and the slice rules.

Discriminators: value, pattern, type, profile, exists. Rules: open, closed, openAtEnd; ordered.
Assignment is computed once per array and returned to the walker, which then walks each item
against its slice's definition.
"""
from __future__ import annotations

import re
from functools import lru_cache

from .model import ElementNode, upper_first
from .profile import fixed_or_pattern, matches_fixed, matches_pattern

_EXT_CALL = re.compile(r"extension\('([^']*)'\)")


@lru_cache(maxsize=1024)
def _segments(path: str) -> tuple[str, ...]:
    out, depth, cur = [], 0, ""
    for ch in path:
        if ch == "." and depth == 0:
            out.append(cur)
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    if cur:
        out.append(cur)
    return tuple(s for s in out if s != "$this")


# -- the instance side ----------------------------------------------------------------------
def instance_values(w, value, path: str) -> list:
    """Values at a discriminator path in one JSON item (a small FHIRPath subset)."""
    current = [value]
    for seg in _segments(path):
        nxt = []
        for v in current:
            if seg == "resolve()":
                ref = v.get("reference") if isinstance(v, dict) else None
                target = w.v.resolve_reference(w, ref) if isinstance(ref, str) else None
                if target is not None:
                    nxt.append(target)
                continue
            m = _EXT_CALL.fullmatch(seg)
            if m:
                for e in v.get("extension", ()) if isinstance(v, dict) else ():
                    if isinstance(e, dict) and e.get("url") == m.group(1):
                        nxt.append(e)
                continue
            if seg.startswith("ofType(") and seg.endswith(")"):
                nxt.append(v)  # the type was chosen by the element the discriminator lands on
                continue
            if not isinstance(v, dict):
                continue
            x = _child(v, seg)
            if x is None:
                continue
            nxt.extend(x if isinstance(x, list) else [x])
        current = nxt
    return current


def _child(v: dict, seg: str):
    """Element ``seg`` of a JSON object: the key itself, or a choice key (``seg`` + a type name)."""
    if seg in v:
        return v[seg]
    return next((v[k] for k in v if k.startswith(seg) and k[len(seg):len(seg) + 1].isupper()), None)


_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9]*")


def _values_getter(path: str):
    """instance_values() for a path of plain child names (the usual discriminator, "system",
    "code.coding"), without its per-segment parsing; None for any other path."""
    segs = _segments(path)
    if not all(_PLAIN.fullmatch(seg) for seg in segs):
        return None

    def values(w, value, _path=path):
        current = [value]
        for seg in segs:
            nxt = []
            for v in current:
                if not isinstance(v, dict):
                    continue
                x = _child(v, seg)
                if x is None:
                    continue
                if isinstance(x, list):
                    nxt.extend(x)
                else:
                    nxt.append(x)
            current = nxt
        return current
    return values


# -- the definition side --------------------------------------------------------------------
def element_at(w, node: ElementNode, path: str):
    """The ElementNode a discriminator path lands on inside a slice (following type profiles).
    Paths that stay within the node's own children depend on nothing else: cached on the node."""
    key = ("slice-at", path)
    hit = node.extras.get(key)
    if hit is not None:
        return hit
    current = node
    local = True
    for seg in _segments(path):
        if _EXT_CALL.fullmatch(seg) or seg == "resolve()" or seg.startswith("ofType(") or \
                not any(c.name == seg for c in current.children):
            local = False
            break
        current = next(c for c in current.children if c.name == seg)
    if local:
        node.extras[key] = current
        return current
    current = node
    for seg in _segments(path):
        m = _EXT_CALL.fullmatch(seg)
        if m:
            ext = next((s for s in current.child("extension").slices if _slice_url(w, s) == m.group(1)), None) \
                if current.child("extension") else None
            if ext is None:
                prof = w.v.model(m.group(1), w.resolver)
                return prof.root if prof else None
            current = ext
            continue
        if seg == "resolve()" or seg.startswith("ofType("):
            continue
        nxt = _child_in(w, current, seg)
        if nxt is None:
            return None
        current = nxt
    return current


def _child_in(w, node: ElementNode, name: str):
    for c in node.children:
        if c.name == name:
            return c
    # Not expanded in the profile: look in the type's profile, then the type itself.
    for t in node.types:
        for prof in t.profiles:
            m = w.v.model(prof, w.resolver)
            if m is not None and m.root is not None:
                c = m.root.child(name)
                if c is not None:
                    return c
    if len(node.type_codes) == 1:
        lay = w.v.layout(node, node.type_codes[0])
        for c in lay.children:
            if c.name == name:
                return c
    return None


def _slice_url(w, s: ElementNode) -> str | None:
    """The extension URL an extension slice stands for."""
    for t in s.types:
        if t.profiles:
            return t.profiles[0]
    url = s.child("url")
    if url is not None:
        fp = fixed_or_pattern(url)
        if fp:
            return fp[1]
    return None


# -- matching -------------------------------------------------------------------------------
_UNSET = object()


def _compiled_match(w, slice_node: ElementNode, dtype, dpath):
    """A matcher for the discriminators that depend only on the slice's own definition
    (value/pattern/exists on a path within its children), else None."""
    if dtype not in ("value", "pattern", "exists") or not isinstance(dpath, str):
        return None
    if dpath == "url" and "url" not in [c.name for c in slice_node.children]:
        return None  # extension slices: by the extension's URL (general code)
    target = element_at(w, slice_node, dpath)
    if target is None or slice_node.extras.get(("slice-at", dpath)) is not target:
        return None
    values = _values_getter(dpath) or instance_values
    if dtype == "exists":
        required, forbidden = target.min > 0, target.max == 0
        return lambda w, item: (bool(values(w, item, dpath)) if required else
                                (not values(w, item, dpath)) if forbidden else True)
    fp = fixed_or_pattern(target)
    if fp is None:
        b = target.ed.get("binding")
        if b and b.get("strength") == "required" and isinstance(b.get("valueSet"), str):
            return None  # membership: general code
        return lambda w, item: True
    kind, expected = fp
    test = matches_fixed if kind == "fixed" else matches_pattern
    return lambda w, item: any(test(v, expected) for v in values(w, item, dpath))


def _matches(w, slice_node: ElementNode, item, disc: dict) -> bool:
    dtype, dpath = disc.get("type"), disc.get("path", "$this")
    key = ("slice-match", dtype, dpath)
    m = slice_node.extras.get(key, _UNSET)
    if m is _UNSET:
        m = slice_node.extras[key] = _compiled_match(w, slice_node, dtype, dpath)
    if m is not None:
        return m(w, item)
    if dpath == "url" and "url" not in [c.name for c in slice_node.children] and isinstance(item, dict):
        url = _slice_url(w, slice_node)
        if url is not None:
            return item.get("url") == url
    target = element_at(w, slice_node, dpath)
    values = instance_values(w, item, dpath)
    if dtype == "exists":
        required = target is not None and target.min > 0
        forbidden = target is not None and target.max == 0
        return bool(values) if required else (not values) if forbidden else True
    if target is None:
        return True
    if dtype in ("value", "pattern"):
        fp = fixed_or_pattern(target)
        if fp is None:
            b = target.ed.get("binding")
            if b and b.get("strength") == "required" and isinstance(b.get("valueSet"), str):
                from .bindings import terminology
                vs = terminology(w).value_set(b["valueSet"], w.resolver)
                return vs is not None and any(_in_vs(vs, v) for v in values)
            return True
        kind, expected = fp
        test = matches_fixed if kind == "fixed" else matches_pattern
        return any(test(v, expected) for v in values)
    if dtype == "type":
        codes = set(target.type_codes)
        for v in values:
            if isinstance(v, dict) and "resourceType" in v:
                if v["resourceType"] in codes or not codes:
                    return True
            elif _json_type_fits(item, v, codes):
                return True
        return not values and not codes
    if dtype == "profile":
        pairs = [(t.code, p) for t in target.types for p in (t.target_profiles if dpath.endswith("resolve()")
                                                             else t.profiles)]
        if not pairs:
            return True
        for v in values:
            for code, p in pairs:
                ok = w.v.conforms(w, v, p)
                if ok is None:  # profile unknown offline: fall back to the type it constrains
                    ok = isinstance(v, dict) and v.get("resourceType", code) == code
                if ok:
                    return True
        return False
    return True


def _in_vs(vs, v) -> bool:
    if isinstance(v, str):
        return bool(vs.contains(None, v))
    if isinstance(v, dict):
        codings = v.get("coding") if isinstance(v.get("coding"), list) else [v]
        return any(isinstance(c, dict) and isinstance(c.get("code"), str) and vs.contains(c.get("system"), c["code"])
                   for c in codings)
    return False


def _json_type_fits(item, v, codes: set) -> bool:
    if not isinstance(item, dict):
        return False
    for key, val in item.items():
        if val is v:
            for c in codes:
                if key.endswith(upper_first(c)):
                    return True
    return False


def _slicing_plan(node: ElementNode) -> tuple:
    """(discriminators, rules, ordered, slice -> position) of a sliced element (cached)."""
    got = node.extras.get("slicing-plan")
    if got is None:
        slicing = node.slicing or {}
        got = node.extras["slicing-plan"] = (slicing.get("discriminator") or [], slicing.get("rules", "open"),
                                             slicing.get("ordered"), {s: k for k, s in enumerate(node.slices)})
    return got


def _slice_matchers(w, node: ElementNode, discs: list) -> tuple:
    """Per slice: its compiled matchers, one per discriminator (as _matches keeps them), or
    None when one of them needs the general code (cached on the sliced element)."""
    got = node.extras.get("slice-matchers")
    if got is None:
        out = []
        for s in node.slices:
            ms = []
            for d in discs:
                dtype, dpath = d.get("type"), d.get("path", "$this")
                key = ("slice-match", dtype, dpath)
                m = s.extras.get(key, _UNSET)
                if m is _UNSET:
                    m = s.extras[key] = _compiled_match(w, s, dtype, dpath)
                ms.append(m)
            out.append(tuple(ms) if all(m is not None for m in ms) else None)
        got = node.extras["slice-matchers"] = tuple(out)
    return got


def assign(w, node: ElementNode, items: list, path: str, parent_path: str) -> list:
    """The slice node (or None) for each item, reporting slice-level problems."""
    discs, rules, ordered, order = _slicing_plan(node)
    slices = node.slices
    matchers = _slice_matchers(w, node, discs)
    chosen: list = []
    counts: dict = {}
    for i, item in enumerate(items):
        hit = None
        if item is not None and discs:
            for s, ms in zip(slices, matchers):
                if all(m(w, item) for m in ms) if ms is not None else all(_matches(w, s, item, d) for d in discs):
                    hit = s
                    counts[s] = counts.get(s, 0) + 1
                    break
        chosen.append(hit)
    for s in slices:
        n = counts.get(s, 0)
        if n < s.min or n > s.max:
            label = w.model.label if w.model else node.model.label
            name = f"{node.path}:{s.slice_name}"
            if n < s.min:
                w.add("error", "structure", f"Slice '{name}': a matching slice is required, but not found (from "
                      f"{label})" + (". Note that other slices are allowed in addition to this required slice"
                                     if rules != "closed" else ""), parent_path)
            else:
                w.add("error", "structure", f"{name}: max allowed = {s.max}, but found {n} (from {label})",
                      parent_path)
    if rules == "open" and not ordered:
        return chosen  # nothing below can report
    label = w.model.label if w.model else node.model.label
    last_slice = -1
    seen_unmatched = False
    for i, (item, s) in enumerate(zip(items, chosen)):
        ipath = f"{path}[{i}]"
        if s is None:
            seen_unmatched = True
            if rules == "closed" and item is not None:
                w.add("error", "structure", f"This element does not match any known slice defined in the profile "
                      f"{label}", ipath)
            continue
        if rules == "openAtEnd" and seen_unmatched:
            w.add("error", "structure", f"The slice '{s.slice_name}' comes after content that matches no slice "
                  f"(slicing is open at the end only)", ipath)
        if ordered and order[s] < last_slice:
            w.add("error", "structure", f"As specified by profile {label}, Element '{node.name}' is out of order "
                  f"(slice '{s.slice_name}')", ipath)
        last_slice = max(last_slice, order[s])
    return chosen
