"""Dispatch from the walker to the rule modules.

The rules that apply to an element depend only on its definition, its type and the kind of
walk, so each (element, type, walk) gets a plan once: the list of rule functions to call. Most
elements have none, and then the walker pays one dictionary lookup.
"""
from __future__ import annotations

from . import (bindings, bundle, datatypes, extensions, invariants, profile, questionnaire, references, resources,
               xhtml)


# -- after an object's children ---------------------------------------------------------------
def _node_invariants(w, node, type_code, obj, path, layout) -> None:
    if not ("resourceType" in obj and node.model.root is not node):
        # (a resource under a profiled element: that element's invariants ran on the container)
        invariants.evaluate(w, node, obj, path, type_code)


def _type_invariants(w, node, type_code, obj, path, layout) -> None:
    invariants.evaluate(w, layout.type_root, obj, path, type_code)


def _coding(w, node, type_code, obj, path, layout) -> None:
    bindings.check_coding_validity(w, obj, path)


def _extensions(w, node, type_code, obj, path, layout) -> None:
    if "extension" in obj or "modifierExtension" in obj:
        extensions.check_all(w, node, type_code, obj, path)


def _must_support(children):
    """mustSupport is reported (information), never an error: systems must be able to handle it."""
    def run(w, node, type_code, obj: dict, path: str, layout) -> None:
        for child in children:
            name = child.name
            present = name in obj or ("_" + name) in obj or (child.choice and any(
                k.startswith(name) and k[len(name):len(name) + 1].isupper() for k in obj))
            if not present:
                w.add("information", "informational", f"{child.path} is marked mustSupport in "
                      f"{w.model.label if w.model else child.model.label} and is not present", path)
    return run


def _datatype_rule(rule):
    def run(w, node, type_code, obj, path, layout):
        rule(w, obj, path)
    return run


def object_plan(node, type_code: str, base: bool, layout) -> tuple:
    """The rules run on an object after its children (the walker keeps it on the layout)."""
    plan = []
    if invariants.constraints_of(node):
        plan.append(_node_invariants)
    if base:
        rule = datatypes.BY_TYPE.get(type_code)
        if rule is not None:
            plan.append(_datatype_rule(rule))
        if layout.type_root is not None and invariants.constraints_of(layout.type_root):
            plan.append(_type_invariants)
        if type_code == "Coding":
            plan.append(_coding)
        if type_code != "Element":
            plan.append(_extensions)
    else:
        wanted = [c for c in layout.children if c.ed.get("mustSupport") and c.min <= 0]
        if wanted:
            plan.append(_must_support(wanted))
    return tuple(plan)


# -- each value -------------------------------------------------------------------------------
def _narrative(w, node, type_code, val, path, ext) -> None:
    xhtml.check_narrative(w, val, path, w.frame.resource if w.frame else None)


def _binding(w, node, type_code, val, path, ext) -> None:
    bindings.check(w, node, type_code, val, path)


def _profile_rules(w, node, type_code, val, path, ext) -> None:
    profile.check(w, node, type_code, val, path)


def _reference(w, node, type_code, val, path, ext) -> None:
    if isinstance(val, dict):
        references.check_reference(w, node, val, path)


def _primitive_extensions(w, node, type_code, val, path, ext) -> None:
    if isinstance(ext, dict) and ("extension" in ext or "modifierExtension" in ext):
        extensions.check_all(w, node, type_code, ext, path)


def _type_profiles(profiles):
    def run(w, node, type_code, val, path, ext):
        if val is not None:
            w.v.walk_type_profiles(w, val, type_code, profiles, path)
    return run


def _primitive_invariants(w, node, type_code, val, path, ext) -> None:
    if val is not None and not isinstance(val, dict):
        invariants.evaluate(w, node, val, path, type_code, ext)


_RULE_PREFIXES = ("fixed", "pattern", "minValue", "maxValue", "maxLength")


def _value_plan(node, type_code: str, base: bool) -> tuple:
    plan = []
    if type_code == "xhtml" and base:
        plan.append(_narrative)
    if type_code in bindings.CODED_TYPES and bindings.binding_of(node) is not None:
        plan.append(_binding)
    if any(k.startswith(_RULE_PREFIXES) for k in node.ed):
        plan.append(_profile_rules)
    if type_code == "Reference":
        plan.append(_reference)
    if base and type_code in datatypes.PRIMITIVES:
        plan.append(_primitive_extensions)
    if not base:
        for t in node.types:
            if t.code == type_code and t.profiles:
                plan.append(_type_profiles(t.profiles))
    if type_code in datatypes.PRIMITIVES and invariants.constraints_of(node):
        plan.append(_primitive_invariants)
    return tuple(plan)


def value_plan(node, type_code: str, base: bool) -> tuple:
    key = ("v", type_code, base)
    plan = node.extras.get(key)
    if plan is None:
        plan = node.extras[key] = _value_plan(node, type_code, base)
    return plan


def element(w, node, type_code, val, path, base, ext=None) -> None:
    for fn in value_plan(node, type_code, base):
        fn(w, node, type_code, val, path, ext)


def resource(w, obj, model, path, base) -> None:
    if base:
        resources.check(w, obj, path)
        rt = obj.get("resourceType")
        if rt == "QuestionnaireResponse":
            questionnaire.check_response(w, obj, path)
        elif rt == "Bundle":
            bundle.check(w, obj, path)
        elif rt == "Questionnaire":
            resources.check_questionnaire(w, obj, path)
