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
    """Entries a reference points at: by fullUrl (a relative reference is resolved against the
    referencing entry's base), else by type/id; ``/_history/v`` selects meta.versionId."""
    ref = ref.split("#", 1)[0]
    if not ref:
        return []
    version = None
    if "/_history/" in ref:
        ref, version = ref.split("/_history/", 1)
    absolute = ref.startswith(_ABSOLUTE)
    wanted = ref
    if not absolute and base_full_url and base_full_url.startswith("http"):
        parts = base_full_url.rsplit("/", 2)
        if len(parts) == 3:
            wanted = parts[0] + "/" + ref
    entries = [e for e in bundle.get("entry", ()) if isinstance(e, dict)] if isinstance(bundle.get("entry"), list) \
        else []
    found = [e for e in entries if e.get("fullUrl") == wanted]
    if not found and not absolute:
        rt, _, rid = ref.partition("/")
        found = [e for e in entries if isinstance(e.get("resource"), dict) and e["resource"].get("resourceType") == rt
                 and e["resource"].get("id") == rid and not (isinstance(e.get("fullUrl"), str)
                                                            and e["fullUrl"].startswith("http") and wanted != ref)]
    if version is not None:
        found = [e for e in found if isinstance(e.get("resource"), dict)
                 and isinstance(e["resource"].get("meta"), dict) and e["resource"]["meta"].get("versionId") == version]
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
                last = p.rsplit("/", 1)[-1]
                if p.startswith("http://hl7.org/fhir/StructureDefinition/") and \
                        (w.v.definitions.is_resource_type(last) or last == "Resource"):
                    types.add(last)
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
                w.add("warning", "not-found", f"Can't find '{ref}' in the bundle", path)
            elif _aggregated(node):
                # type.aggregation says the target travels with the resource (bundled/contained)
                w.add("error", "required", f"Bundled or contained reference not found within the bundle/resource "
                      f"{ref}", path)
        if found_type is None:
            m = _REF_TYPE.search(ref)
            found_type = m.group(1) if m else None
    allowed = _target_types(w, node)
    if allowed is not None and isinstance(found_type, str) and found_type not in allowed and \
            not any(w.v.is_subtype(found_type, a) for a in allowed):
        w.add("error", "structure", f"Invalid Resource target type. Found {found_type}, but expected one of "
              f"({', '.join(sorted(allowed))})", path)


def _aggregated(node) -> bool:
    return any(a in ("bundled", "contained") for t in node.ed.get("type", ()) if t.get("code") == "Reference"
               for a in t.get("aggregation", ()))


