"""ElementDefinition.constraint: FHIRPath invariants, compiled once per element.

A few core invariants are checked natively instead (they are on every element or resource,
and the FHIRPath form is slow or wrong in R4); R4's published technical corrections are
applied to the expressions that misfire on valid resources.
"""
from __future__ import annotations

from typing import NamedTuple

from .. import fhirpath
from . import fp_compiler, fp_fast
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
    fast: object = None  # fp_fast's function for simple shapes (compiled expressions only)
    message: tuple = ()  # (severity, text) of the issue when it fails


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
    human, source = c.get("human", ""), c.get("source", "")
    text = f"Constraint failed: {key}: '{human}'"
    if source and not source.startswith(CORE_PREFIX):
        text += f" (defined in {source})"
    return Constraint(key, severity, human, expr, source, fn, fallback,
                      None if fallback else fp_fast.compile_fast(expr),
                      (severity if severity in ("error", "warning") else "error", text))


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
    states = node.extras.get("inv_state")
    st = states.get(type_code) if states is not None else None
    if st is None:
        st = _state(w, node, data, type_code, ext)
    cons = st.cons
    if not cons:
        return
    done = w.done_constraints
    item = None
    fast = fp = None
    if st.fp and type(data) is dict:
        fp = st.fp
        sig = fp_fast.signature_of(data, st.sig_plan)
        fast = st.live if sig is None else st.cache.get(sig) or _results(st, data, sig)
    for i, c in enumerate(cons):
        mark = (c.key, c.source, path)
        if mark in done:
            continue
        done.add(mark)
        if fast is not None:
            ok = fast[i]
            if ok is _LIVE:
                ok = _run_fast(c.fast.fn, data, fp)
            if ok is not None:
                if not ok:
                    _failed(w, c, path)
                continue
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
            _failed(w, c, path)


_LIVE = object()  # a fast result that depends on more than the signature: computed each time
_CACHE_LIMIT = 512


class _State:
    """What evaluate() needs for one (element, type), looked up once per call: the
    constraints, the fp map of the type (False: no fast path), the signature plan (the
    children the fast expressions read, with their JSON keys), the all-live results and the
    results cached by signature."""
    __slots__ = ("cons", "fp", "sig_plan", "live", "cache")

    def __init__(self, cons, fp, sig_plan):
        self.cons = cons
        self.fp = fp
        self.sig_plan = sig_plan
        self.live = tuple(_LIVE if c.fast is not None else None for c in cons)
        self.cache: dict = {}


def _state(w, node, data, type_code, ext) -> _State:
    states = node.extras.get("inv_state")
    if states is None:
        states = node.extras["inv_state"] = {}
    st = states.get(type_code)
    if st is None:
        cons = constraints_of(node)
        plan = _fast_plan(cons) if cons else None
        # FHIRPath child name -> JSON keys of the context object (False when it has none): it
        # depends only on the element and type, so it is kept here with the rest.
        fp = (fp_compiler._fp_map(w, Item(data, node, type_code, ext)) or False) if plan is not None else False
        sig_plan = fp_fast.signature_plan(fp, plan) if fp else None
        st = states[type_code] = _State(cons, fp, sig_plan)
    return st


def _fast_plan(cons) -> tuple | None:
    """The children the node's fast invariants read (merged fp_fast uses), or None."""
    uses: dict = {}
    for c in cons:
        for name, kind in (c.fast.uses or ()) if c.fast is not None else ():
            if uses.get(name) != "value":
                uses[name] = kind
    return tuple(sorted(uses.items())) if any(c.fast is not None for c in cons) else None


def _results(st: _State, data: dict, sig) -> tuple:
    """Per constraint: True (passes), False (fails), None (general engine) or _LIVE. Results
    are cached per (element, type) by what the expressions read (their signature, from
    fp_fast.signature_of), so the same shape of element (a Questionnaire item of one type, a
    Reference) is evaluated once."""
    if sig is None:
        return st.live
    cache = st.cache
    got = cache.get(sig)
    if got is None:
        fp = st.fp
        got = tuple(None if c.fast is None else _LIVE if c.fast.uses is None else _run_fast(c.fast.fn, data, fp)
                    for c in st.cons)
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[sig] = got
    return got


def _fast_results(w, node, data, type_code, ext) -> tuple | None:
    """(_results(), the fp map), or None without a fast path. For the tests, which cross-check
    the fast results with the general engine's."""
    st = _state(w, node, data, type_code, ext)
    if not st.fp:
        return None
    return _results(st, data, fp_fast.signature_of(data, st.sig_plan)), st.fp


def _run_fast(fn, data, fp):
    """True/False, or None when the general engine must decide (fp_fast.Bail)."""
    try:
        result = fn(data, fp)
    except Exception:
        return None
    return len(result) == 1 and result[0].v is True


def _failed(w, c: Constraint, path: str) -> None:
    w.add(c.message[0], "invariant", c.message[1], path)
