"""Resolving references inside the resource being validated: contained resources and Bundles."""
from __future__ import annotations

import re

_REF_TYPE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[^/]+)?$")

_ABSOLUTE = ("http://", "https://", "urn:")


def bundle_frames(frame):
    f = frame
    while f is not None:
        if f.resource.get("resourceType") == "Bundle":
            yield f
        f = f.parent


def find_in_bundle(bundle: dict, ref: str, base_full_url: str | None = None) -> list[dict]:
    """Entries whose resource a reference points at (fullUrl match, or Type/id match)."""
    ref = ref.split("#", 1)[0]
    if not ref:
        return []
    found = []
    rel = None if ref.startswith(_ABSOLUTE) else ref.split("/_history/")[0]
    if rel is None and base_full_url is None:
        pass
    candidates = []
    if rel is not None and base_full_url and base_full_url.startswith("http"):
        # a relative reference is relative to the referencing entry's base URL
        parts = base_full_url.rsplit("/", 2)
        if len(parts) == 3:
            candidates.append(parts[0] + "/" + rel)
    for e in bundle.get("entry", ()) if isinstance(bundle.get("entry"), list) else ():
        if not isinstance(e, dict):
            continue
        full = e.get("fullUrl")
        res = e.get("resource")
        if isinstance(full, str) and (full == ref or full in candidates):
            found.append(e)
        elif rel is not None and isinstance(res, dict) and not candidates:
            rt, _, rid = rel.partition("/")
            if res.get("resourceType") == rt and res.get("id") == rid:
                found.append(e)
            elif isinstance(full, str) and full.endswith("/" + rel):
                found.append(e)
    return found


def resolve_in(w, frame, ref: str) -> dict | None:
    if not isinstance(ref, str):
        return None
    if ref.startswith("#"):
        root = frame.root.resource
        if ref == "#":
            return root
        for c in root.get("contained", ()) if isinstance(root.get("contained"), list) else ():
            if isinstance(c, dict) and c.get("id") == ref[1:]:
                return c
        return None
    for bf in bundle_frames(frame):
        matches = find_in_bundle(bf.resource, ref)
        for m in matches:
            if isinstance(m.get("resource"), dict):
                return m["resource"]
    return None


_LOCAL_BUNDLE_TYPES = ("document", "message", "collection")


def _bundle_context(w):
    """(bundle resource, the entry's fullUrl) for the resource being walked, if inside a Bundle."""
    f = w.frame
    while f is not None and f.parent is not None:
        parent = f.parent
        if parent.resource.get("resourceType") == "Bundle":
            for e in parent.resource.get("entry", ()) if isinstance(parent.resource.get("entry"), list) else ():
                if isinstance(e, dict) and e.get("resource") is f.resource:
                    return parent.resource, e.get("fullUrl") if isinstance(e.get("fullUrl"), str) else None
            return parent.resource, None
        f = parent
    return None, None


def _target_types(w, node) -> set[str] | None:
    """Resource types a Reference element may point at (None: any)."""
    got = node.extras.get("targets", False)
    if got is False:
        types: set[str] = set()
        for t in node.types:
            if t.code != "Reference":
                continue
            for p in t.target_profiles:
                if p.startswith("http://hl7.org/fhir/StructureDefinition/") and "-" not in p.rsplit("/", 1)[-1]:
                    types.add(p.rsplit("/", 1)[-1])
                else:
                    m = w.v.model(p, w.resolver)
                    types.add(m.type if m is not None else "Resource")
        got = None if not types or "Resource" in types else types
        node.extras["targets"] = got
    return got


def check_reference(w, node, val: dict, path: str) -> None:
    ref = val.get("reference")
    if not isinstance(ref, str) or w.frame is None:
        return
    found_type = None
    if ref.startswith("#"):
        target = resolve_in(w, w.frame, ref)
        if target is None:
            w.add("error", "structure", f"The contained resource '{ref}' could not be found", path)
            return
        found_type = target.get("resourceType")
    else:
        bundle, full_url = _bundle_context(w)
        if bundle is not None:
            matches = find_in_bundle(bundle, ref, full_url)
            if len(matches) > 1:
                w.add("error", "invalid", f"Multiple matches in bundle for reference {ref}", path)
            if matches and isinstance(matches[0].get("resource"), dict):
                found_type = matches[0]["resource"].get("resourceType")
            elif ref.startswith(("urn:uuid:", "urn:oid:")):
                w.add("error", "not-found", f"Bundled or contained reference not found within the bundle/resource "
                      f"{ref}", path)
            elif bundle.get("type") in _LOCAL_BUNDLE_TYPES and _same_server(ref, full_url, bundle):
                w.add("error", "required", f"Bundled or contained reference not found within the bundle/resource "
                      f"{ref}", path)
        if found_type is None:
            m = _REF_TYPE.search(ref)
            found_type = m.group(1) if m else None
    allowed = _target_types(w, node)
    if allowed is not None and found_type and found_type not in allowed and \
            not any(w.v.is_subtype(found_type, a) for a in allowed):
        w.add("error", "structure", f"Invalid Resource target type. Found {found_type}, but expected one of "
              f"({', '.join(sorted(allowed))})", path)


def _same_server(ref: str, full_url: str | None, bundle: dict) -> bool:
    """A relative reference in a bundle whose entries live on one server should resolve in it."""
    if ref.startswith(("http://", "https://")):
        base = ref.rsplit("/", 2)[0]
        return any(isinstance(e, dict) and isinstance(e.get("fullUrl"), str) and e["fullUrl"].startswith(base + "/")
                   for e in bundle.get("entry", ()))
    if "/" not in ref or full_url is None or not full_url.startswith("http"):
        return False
    return True


