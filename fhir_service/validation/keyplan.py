"""Per-layout key tables for the walker's fast path, compiled once per (element, type, walk).

Each JSON property name an object may use maps to what the walker must do with its value,
decided from the definitions alone: its child's position (definition order), a kind, and the
pre-resolved pieces (path suffix, JSON types accepted, lexical check, value rules). The walker
uses the table when the object's properties are in definition order with one property per
child (the usual case); anything else goes through the general code, so results are the same.
"""
from __future__ import annotations

from decimal import Decimal

from . import checks
from .model import RESOURCE_TYPE_CODES
from .primitives import _CHECKS, JSON_KIND, PRIMITIVE_TYPES

GENERAL, PRIM, ONE, MANY, PRIMS = 0, 1, 2, 3, 4

# Exact Python types each JSON kind accepts (anything else: the general code reports it).
_OK_TYPES = {"string": frozenset({str}), "boolean": frozenset({bool}), "integer": frozenset({int}),
             "number": frozenset({int, Decimal, float})}


def _kind(v, child, t: str, underscore: bool, base: bool) -> int:
    if not base and child.slices:
        return GENERAL  # slices are assigned over the whole array
    if underscore:
        return GENERAL
    if t in PRIMITIVE_TYPES:
        return PRIMS if child.is_array else PRIM
    if not t or child.content_ref or t in RESOURCE_TYPE_CODES or v.definitions.is_resource_type(t):
        return GENERAL
    return MANY if child.is_array else ONE


def build(v, layout, base: bool) -> dict:
    """json key -> (pos, kind, child, t, path suffix, ok types, lexical check, value plan,
    cardinality of one item is wrong, child is required, key is a "_x", key)."""
    table = {}
    pos = layout.pos
    wanted = None if base else layout.profile_set
    for key, (child, t, underscore) in layout.keys.items():
        if wanted is not None and child not in wanted:
            continue  # a profile walk skips what the profile does not change
        kind = _kind(v, child, t, underscore, base)
        suffix = f".{child.name}.ofType({t})" if child.choice else "." + child.name
        plan = checks.value_plan(child, t, base)
        if kind in (PRIM, PRIMS):
            # the "_x" rule has nothing to do without a "_x" object
            plan = tuple(fn for fn in plan if fn is not checks._primitive_extensions)
        ok_types = _OK_TYPES[JSON_KIND.get(t, "string")] if kind in (PRIM, PRIMS) else None
        table[key] = (pos[child], kind, child, t, suffix, ok_types, _CHECKS.get(t) if base else None, plan or None,
                      child.max < 1 or child.min > 1, child.min > 0, underscore, key)
    return table
