"""Dispatch from the walker to the rule modules."""
from __future__ import annotations

from . import bindings, extensions, invariants, profile, questionnaire, references, resources

def after_children(w, node, type_code, obj, path, base, layout) -> None:
    invariants.evaluate(w, node, obj, path, type_code)
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
        if obj.get("resourceType") == "QuestionnaireResponse":
            questionnaire.check_response(w, obj, path)
