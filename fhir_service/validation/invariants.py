"""ElementDefinition.constraint: FHIRPath invariants, compiled once per element.

A few core invariants are checked natively instead (they are on every element or resource,
and the FHIRPath form is slow or wrong in R4); R4's published technical corrections are
applied to the expressions that misfire on valid resources.
"""
from __future__ import annotations

from typing import NamedTuple

from .. import fhirpath
from . import fp_compiler
from .fp_values import Item

# Checked natively: structure.py (ele-1: empty objects), extensions.py (ext-1),
# resources.py (dom-2..dom-5; que-2, whose descendants() walk is the slowest R4 invariant),
# xhtml.py (txt-1, txt-2).
NATIVE = frozenset({"ele-1", "ext-1", "dom-2", "dom-3", "dom-4", "dom-5", "txt-1", "txt-2", "que-2"})

# R4 technical corrections (expression as published in 4.0.1 -> corrected expression).
CORRECTIONS = {
    # FHIR types are lower case: 'Boolean' is the System type, never a FHIR answer[x] type.
    "operator = 'exists' implies (answer is Boolean)": "operator = 'exists' implies (answer is boolean)",
}
BEST_PRACTICE = "http://hl7.org/fhir/StructureDefinition/elementdefinition-bestpractice"
CORE_PREFIX = "http://hl7.org/fhir/StructureDefinition/"


class Constraint(NamedTuple):
    key: str
    severity: str
    human: str
    expression: str
    source: str
    fn: object  # compiled closure (fp_compiler), or fhirpathpy's callable when ``fallback``
    fallback: bool


def _compile(c: dict) -> Constraint | None:
    key = c.get("key", "")
    expr = c.get("expression")
    if not expr or key in NATIVE:
        return None
    expr = CORRECTIONS.get(expr, expr)
    fallback = False
    try:
        fn = fp_compiler.compile_expression(expr)
    except Exception:
        fallback = True
        try:
            fn = fhirpath.compile(expr)
        except Exception:
            return None
    severity = c.get("severity", "error")
    for ext in c.get("extension", ()):
        if ext.get("url") == BEST_PRACTICE and ext.get("valueBoolean"):
            severity = "warning"
    return Constraint(key, severity, c.get("human", ""), expr, c.get("source", ""), fn, fallback)


def constraints_of(node) -> tuple[Constraint, ...]:
    got = node.extras.get("inv")
    if got is None:
        got = tuple(x for x in (_compile(c) for c in node.ed.get("constraint", ())) if x is not None)
        node.extras["inv"] = got
    return got


def evaluate(w, node, data, path: str, type_code: str, ext=None) -> None:
    """Evaluate ``node``'s invariants on one instance value.

    Compiled expressions follow the HL7 engine: only ``true`` passes (empty fails).
    Expressions we cannot compile run on fhirpathpy, where only ``false`` fails, because
    its semantics differ in places and a false alarm would block a valid write.
    """
    cons = constraints_of(node)
    if not cons:
        return
    done = w.done_constraints
    item = None
    for c in cons:
        mark = (c.key, c.source, path)
        if mark in done:
            continue
        done.add(mark)
        try:
            if c.fallback:
                ctx = w.v.fhirpath_context(w)
                arg = data if isinstance(data, dict) and "resourceType" in data else \
                    fhirpath.typed_node(data, type_code or node.path)
                result = c.fn(arg, dict(ctx, context=arg))
                failed = result == [False] or bool(result and result[0] is False)
            else:
                if item is None:
                    item = Item(data, node, type_code, ext)
                result = fp_compiler.evaluate(c.fn, w.v.fp_env(w), item)
                failed = not (len(result) == 1 and result[0].v is True)
        except Exception as exc:  # an expression we cannot run must not block a write
            w.add("information", "informational", f"Unable to evaluate constraint {c.key}: {exc}"[:300], path)
            continue
        if failed:
            text = f"Constraint failed: {c.key}: '{c.human}'"
            if c.source and not c.source.startswith(CORE_PREFIX):
                text += f" (defined in {c.source})"
            w.add(c.severity if c.severity in ("error", "warning") else "error", "invariant", text, path)
