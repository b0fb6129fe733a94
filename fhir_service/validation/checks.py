"""Dispatch from the walker to the rule modules."""
from __future__ import annotations

from . import bindings, bundle, datatypes, xhtml, extensions, invariants, profile, questionnaire, references, resources

def after_children(w, node, type_code, obj, path, base, layout) -> None:
    if not ("resourceType" in obj and node.model.root is not node):
        # (a resource under a profiled element: that element's invariants ran on the container)
        invariants.evaluate(w, node, obj, path, type_code)
    if base:
        rule = datatypes.BY_TYPE.get(type_code)
        if rule is not None:
            rule(w, obj, path)
    if base and layout.type_root is not None:
        invariants.evaluate(w, layout.type_root, obj, path, type_code)
    if base and type_code == "Coding":
        bindings.check_coding_validity(w, obj, path)
    if base and type_code != "Element" and ("extension" in obj or "modifierExtension" in obj):
        extensions.check_all(w, node, type_code, obj, path)


def _has_profile_rules(node) -> bool:
    got = node.extras.get("rules")
    if got is None:
        got = node.extras["rules"] = any(k.startswith(("fixed", "pattern", "minValue", "maxValue", "maxLength"))
                                         for k in node.ed)
    return got


def element(w, node, type_code, val, path, base, ext=None) -> None:
    if type_code == "xhtml" and base:
        xhtml.check_narrative(w, val, path, w.frame.resource if w.frame else None)
    if type_code in bindings.CODED_TYPES:
        bindings.check(w, node, type_code, val, path)
    if _has_profile_rules(node):
        profile.check(w, node, type_code, val, path)
    if type_code == "Reference" and isinstance(val, dict):
        references.check_reference(w, node, val, path)
    if base and isinstance(ext, dict) and ("extension" in ext or "modifierExtension" in ext):
        extensions.check_all(w, node, type_code, ext, path)
    if not base and val is not None:
        for t in node.types:
            if t.code == type_code and t.profiles:
                w.v.walk_type_profiles(w, val, type_code, t.profiles, path)
    if val is not None and not isinstance(val, dict) and node.ed.get("constraint"):
        invariants.evaluate(w, node, val, path, type_code, ext)


def resource(w, obj, model, path, base) -> None:
    if base:
        resources.check(w, obj, path)
        rt = obj.get("resourceType")
        if rt == "QuestionnaireResponse":
            questionnaire.check_response(w, obj, path)
        elif rt == "Bundle":
            bundle.check(w, obj, path)
