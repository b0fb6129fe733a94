"""Extensions: ext-1, known definitions (context, value type, structure), unknown URLs.

Unknown extensions are errors, as in the HL7 validator, except in the domains it lets
through (examples and tooling) and those configured on the Validator
(``allowed_extension_domains``), where they are warnings.
"""
from __future__ import annotations

from .model import upper_first
from .primitives import PRIMITIVE_TYPES

EXT1 = "Constraint failed: ext-1: 'Must have either extensions or value[x], not both'"
_LENIENT = ("example.org", "example.com", "acme.com", "nema.org", "hl7.org/fhir/tools/StructureDefinition/")
# Core-namespace extensions published after R4 live in the HL7 extensions package, which the
# HL7 validator loads and we do not have offline: unknown ones there are warnings.
_EXTENSIONS_PACK = "http://hl7.org/fhir/StructureDefinition/"


def check_all(w, host_node, host_type: str, obj: dict, path: str) -> None:
    """Every extension and modifierExtension directly on one element."""
    for key in ("extension", "modifierExtension"):
        exts = obj.get(key)
        if not isinstance(exts, list):
            continue
        for i, ext in enumerate(exts):
            if isinstance(ext, dict):
                _check_one(w, host_node, host_type, ext, f"{path}.{key}[{i}]", key == "modifierExtension")


def _value_key(ext: dict) -> str | None:
    return next((k for k in ext if k.startswith("value") and len(k) > 5), None)


def _check_one(w, host_node, host_type: str, ext: dict, path: str, modifier: bool) -> None:
    vkey = _value_key(ext)
    has_children = bool(ext.get("extension"))
    if (vkey is None) == (not has_children):
        w.add("error", "invariant", EXT1, path)
    url = ext.get("url")
    if not isinstance(url, str) or ":" not in url:
        return  # relative URLs name the parts of a complex extension; its definition checks them
    model = w.v.model(url, w.resolver)
    if model is None or model.type != "Extension":
        _unknown(w, url, path, modifier)
        return
    if host_node is None:
        problem = _context_problem(w, model, host_node, host_type, url)
    else:
        # the answer depends only on the definitions: once per (host element, extension)
        key = ("ext-context", url, host_type)
        hit = host_node.extras.get(key)
        if hit is None or hit[0] is not model:
            hit = host_node.extras[key] = (model, _context_problem(w, model, host_node, host_type, url))
        problem = hit[1]
    if problem:
        w.add("error", "business-rule", problem, path)
    if vkey is not None:
        _check_value_type(w, model, url, vkey, path)
    w.v.walk_element_profile(w, ext, model, "Extension", path)


def _unknown(w, url: str, path: str, modifier: bool) -> None:
    lenient = any(d in url for d in _LENIENT) or url.startswith(_EXTENSIONS_PACK) or \
        any(url.startswith(d) for d in w.v.allowed_extension_domains)
    if lenient and not modifier:
        w.add("warning", "structure", f"Unknown extension {url}", path)
    else:
        w.add("error", "structure", f"The extension {url} could not be found so is not allowed here", path)


def _check_value_type(w, model, url: str, vkey: str, path: str) -> None:
    root = model.root
    vnode = next((c for c in root.children if c.name == "value" and c.choice), None)
    if vnode is None:
        return
    allowed = [t for t in vnode.type_codes]
    if vnode.max == 0:
        w.add("error", "structure", f"Extension {url} must not have a value (it is a complex extension)", path)
        return
    found = vkey[5:]
    if not any(upper_first(t) == found for t in allowed):
        shown = found[0].lower() + found[1:] if found[0].lower() + found[1:] in PRIMITIVE_TYPES else found
        w.add("error", "structure", f"The Extension '{url}' definition allows for the types "
              f"[{', '.join(allowed)}] but found type {shown}", path)


def _host_names(w, host_node, host_type: str) -> set[str]:
    names = {host_type} if host_type else set()
    if host_node is not None:
        names.add(host_node.path)
        base = host_node.ed.get("base")
        if isinstance(base, dict) and base.get("path"):
            names.add(base["path"])
        if host_node.model.root is host_node:
            names.add(host_node.model.type)
    return names


def _context_problem(w, model, host_node, host_type: str, url: str) -> str | None:
    """The message when the extension's context does not allow this element (else None)."""
    contexts = model.sd.get("context")
    if not isinstance(contexts, list) or not contexts:
        return None
    names = _host_names(w, host_node, host_type)
    is_resource = host_node is not None and host_node.model.root is host_node and host_node.model.kind == "resource"
    for c in contexts:
        if not isinstance(c, dict):
            continue
        expr = c.get("expression", "")
        ctype = c.get("type", "element")
        if ctype == "extension":
            if host_type == "Extension" or expr in names:
                return None
            continue
        if ctype == "fhirpath":
            return None  # not evaluated here
        if expr in ("Element", "Base") or expr in names:
            return None
        if expr in ("Resource", "DomainResource") and is_resource:
            return None
        if any(w.v.is_subtype(n, expr) for n in names if n and "." not in n):
            return None
        if "." in expr and any(n.endswith("." + expr.split(".", 1)[1]) and n.split(".")[0] == expr.split(".")[0]
                               for n in names):
            return None
    allowed = ", ".join(f"{c.get('type', 'element')[:1]}:{c.get('expression')}" for c in contexts
                        if isinstance(c, dict))
    where = sorted(n for n in names if n)[:1]
    return (f"The extension {url} is not allowed to be used at this point (allowed = {allowed}; this element is "
            f"[{', '.join(where)}])")
