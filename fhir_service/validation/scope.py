"""Which parts of a profile need walking: the elements it changes, and their ancestors.

A profile walk repeats nothing the base walk already did. An element whose definition matches
the base definition (same cardinality, types, bindings, constraints, no fixed/pattern values,
no slicing; mustSupport aside) and which has no changed descendants and no optional mustSupport
child to report is skipped entirely.
"""
from __future__ import annotations

_COMPARED = ("min", "max", "contentReference", "maxLength")
_PREFIXES = ("fixed", "pattern", "minValue", "maxValue")


def _signature(ed: dict) -> tuple:
    types = tuple((t.get("code"), tuple(t.get("profile", ())), tuple(t.get("targetProfile", ())),
                   tuple(t.get("aggregation", ()))) for t in ed.get("type", ()))
    b = ed.get("binding") or {}
    binding = (b.get("strength"), b.get("valueSet")) if b else None
    constraints = tuple(sorted(c.get("key", "") for c in ed.get("constraint", ())))
    values = tuple(sorted((k, repr(v)) for k, v in ed.items() if k.startswith(_PREFIXES)))
    # (mustSupport is not compared: it only matters to the parent's after-children rule, see
    # relevant())
    return tuple(ed.get(k) for k in _COMPARED) + (types, binding, constraints, values, bool(ed.get("slicing")))


def _base_ed(v, node) -> dict | None:
    """The core definition the element refines: the same path in the core type (Patient.contact
    .extension), else its base path (HumanName.family for Patient.name.family)."""
    if ":" not in node.id:
        core = v.type_model(node.model.type)
        n = core.by_path.get(node.path) if core is not None else None
        if n is not None and n is not node:
            return n.ed
    base = node.ed.get("base") or {}
    bpath = base.get("path")
    if not bpath:
        return None
    m = v.type_model(bpath.split(".", 1)[0])
    if m is None:
        return None
    n = m.by_path.get(bpath)
    return n.ed if n is not None else None


def _no_op_slicing(slicing: dict) -> bool:
    """Slicing without slices that is open and unordered assigns nothing and reports nothing
    (the snapshot's ``extension`` elements all carry one): compared like any other element."""
    return slicing.get("rules", "open") == "open" and not slicing.get("ordered")


def relevant(v, node) -> bool:
    """Whether a profile walk must visit ``node`` (cached on the node)."""
    got = node.extras.get("rel")
    if got is not None:
        return got
    node.extras["rel"] = True  # provisional, guards against cycles
    if node.slices or (node.slicing and not _no_op_slicing(node.slicing)):
        got = True
    else:
        base = _base_ed(v, node)
        got = base is None or _signature(base) != _signature(node.ed) or \
            any(relevant(v, c) for c in node.children) or \
            any(c.ed.get("mustSupport") and c.min <= 0 for c in node.children)  # its mustSupport report
        if base is not None and node.model.url.startswith("http://hl7.org/fhir/StructureDefinition/") and \
                node.model.derivation == "specialization":
            got = False  # a core definition is its own base
    node.extras["rel"] = got
    return got
