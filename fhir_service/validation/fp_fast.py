"""A fast path for the simplest invariant shapes, evaluated straight on the JSON.

Why: most invariants that run on every element only test whether children are present or
equal a literal (``detail.empty() or reference.empty()``, ``type != 'display' or
code.empty()``, que-1..13, qrs-1, cpl-3, ...). The general compiled engine (fp_compiler) pays
for its environment, memo and typed navigation on each call; here those shapes cost a few
dictionary lookups.

Exactness over coverage: a fast function raises :class:`Bail` whenever the value is not the
plain case it understands (a ``_x`` extension on a primitive, a value that would make the
general engine raise, a subtree it cannot compile), and the caller then runs the general
engine, so results are always the general engine's.
"""
from __future__ import annotations

import threading
from functools import lru_cache
from typing import NamedTuple

from fhirpathpy.parser import parse

from . import fp_compiler
from .fp_values import (DATE_TYPES, FALSE, TIME_TYPES, TRUE, Item, as_bool, boolean, implication, item_compare,
                        item_equal, short_circuit)
from .primitives import PRIMITIVE_TYPES


class Bail(Exception):
    """The fast path cannot answer exactly; use the general engine."""


_TEMPORAL = DATE_TYPES | TIME_TYPES


def _bail(d, fp):
    raise Bail


class Fast(NamedTuple):
    fn: object  # (json object, fp map) -> list[Item]; raises Bail
    uses: tuple | None  # ((name, "len" | "value"), ...): all the result depends on (None: native)


@lru_cache(maxsize=4096)
def compile_fast(expression: str) -> Fast | None:
    """The fast form of an expression, or None when nothing of it is fast."""
    native = NATIVE.get(expression)
    if native is not None:
        return Fast(native, None)
    _tl.uses = uses = {}
    try:
        fn = _compile(parse(expression)["children"][0])
    except Exception:
        return None
    if fn is _bail:
        return None
    return Fast(fn, tuple(sorted(uses.items())))


def compile_node(node):
    """The fast function of a parse subtree (a macro's criterion), or None."""
    _tl.uses = {}
    try:
        fn = _compile(node)
    except Exception:
        return None
    return None if fn is _bail else fn


_tl = threading.local()


def _use(name: str, kind: str) -> None:
    """Record how the expression reads a child: only its count ("len") or its values."""
    uses = _tl.uses
    if uses.get(name) != "value":
        uses[name] = kind


def _compile(node):
    fn = _compile_raw(node)
    name = getattr(fn, "fp_name", None)
    if name is not None:
        _use(name, "value")  # a bare child, compared or tested as a boolean
    return fn


def _compile_raw(node):
    kind = node["type"]
    ch = node.get("children", [])
    if kind in ("TermExpression", "ParenthesizedTerm"):
        return _compile_raw(ch[0])
    build = _BUILDERS.get(kind)
    return _bail if build is None else build(node, ch)


def _const(node):
    """A subtree made of literals only, evaluated once by the general engine (or None)."""
    if not fp_compiler._all_constant(node):
        return None
    try:
        return fp_compiler._compile(node)(None, [])
    except Exception:
        return None


# -- navigation: a child of the context object ----------------------------------------------
def _member_term(node, ch):
    inv = ch[0]
    if inv["type"] != "MemberInvocation":
        return _function(inv, None)
    name = fp_compiler._ident(inv["children"][0])
    if name[:1].isupper():
        return _bail  # a type name ("Patient.x"): general engine

    member = lambda d, fp: collect(d, fp, name)  # noqa: E731
    member.fp_name = name
    return member


def collect(d: dict, fp: dict, name: str) -> list:
    """The items of child ``name`` of ``d`` (as fp_compiler._children_named), or Bail."""
    out = []
    ents = fp.get(name, ())
    if len(ents) > 4 and len(d) < len(ents):
        ents = fp_compiler._present(d, ents)
    for key, child, ct in ents:
        if ct in PRIMITIVE_TYPES and ("_" + key) in d:
            raise Bail  # a primitive with extensions: general engine pairs them
        val = d.get(key)
        if val is None:
            continue
        if type(val) is list:
            out.extend(Item(x, child, ct) for x in val if x is not None)
        elif type(val) is dict and "resourceType" in val:
            raise Bail  # a resource: typed by its own resourceType
        else:
            out.append(Item(val, child, ct))
    return out


_SCALARS = (str, bool, int)


def signature(d: dict, fp: dict, uses: tuple):
    """What the results of expressions with these ``uses`` depend on in ``d``, hashable
    (None when a value is not a plain scalar, or on Bail)."""
    parts = []
    try:
        for name, kind in uses:
            coll = collect(d, fp, name)
            if kind == "len":
                parts.append(len(coll))
                continue
            for it in coll:
                v = it.v
                if type(v) not in _SCALARS:
                    return None
                parts.append((it.t, type(v), v))
            parts.append(None)  # end of this child's values
    except Bail:
        return None
    return tuple(parts)


def _invocation_expr(node, ch):
    inv = ch[1]
    if inv["type"] != "FunctionInvocation":
        return _bail  # a.b: general engine
    return _function(inv, _compile_raw(ch[0]))


# -- functions on a collection ----------------------------------------------------------------
def _function(inv, left):
    if inv["type"] != "FunctionInvocation" or left is None or left is _bail:
        return _bail
    fn = inv["children"][0]
    name = fp_compiler._ident(fn["children"][0])
    params = fn["children"][1]["children"] if len(fn["children"]) > 1 else []
    if name == "trace":
        return left  # trace() only logs
    member_name = getattr(left, "fp_name", None)
    if member_name is not None:
        _use(member_name, "len" if name in ("empty", "exists", "count") and not params else "value")
    if params and name != "startsWith":
        return _bail
    if name == "empty":
        return lambda d, fp: TRUE if not left(d, fp) else FALSE
    if name == "exists":
        return lambda d, fp: TRUE if left(d, fp) else FALSE
    if name == "count":
        return lambda d, fp: [Item(len(left(d, fp)), None, "Integer")]
    if name == "not":
        def not_(d, fp):
            b = _bool(left(d, fp))
            return [] if b is None else boolean(not b)
        return not_
    if name == "hasValue":
        def has_value(d, fp):
            c = left(d, fp)
            return boolean(len(c) == 1 and c[0].v is not None and not isinstance(c[0].v, (dict, list)))
        return has_value
    if name == "startsWith" and len(params) == 1:
        prefix = _const(params[0])
        if not prefix or len(prefix) != 1 or not isinstance(prefix[0].v, str):
            return _bail
        p = prefix[0].v

        def starts_with(d, fp):
            c = left(d, fp)
            if not c:
                return FALSE  # as the HL7 engine (see fp_compiler._test_fn)
            if len(c) > 1 or not isinstance(c[0].v, str):
                raise Bail
            return boolean(c[0].v.startswith(p))
        return starts_with
    return _bail


def _bool(coll):
    try:
        return as_bool(coll)
    except Exception:
        raise Bail from None


# -- operators -----------------------------------------------------------------------------------
def _sides(ch):
    return _compile(ch[0]), _compile(ch[1])


def _logic(node, ch):
    op = node["terminalNodeText"][0]
    left, right = _sides(ch)
    if left is _bail and right is _bail:
        return _bail
    if op == "xor":
        return _bail
    decisive = op == "or"

    def logic(d, fp):
        return short_circuit(_bool(left(d, fp)), lambda: _bool(right(d, fp)), decisive)
    return logic


def _implies(node, ch):
    left, right = _sides(ch)
    if left is _bail:
        return _bail

    def implies(d, fp):
        return implication(_bool(left(d, fp)), lambda: _bool(right(d, fp)))
    return implies


def _equality(node, ch):
    op = node["terminalNodeText"][0]
    lit = _const(ch[1])
    left = _compile(ch[0])
    if op not in ("=", "!=") or left is _bail or not lit or len(lit) != 1:
        return _bail
    y = lit[0]
    want = op == "="
    plain = y.v if type(y.v) is str and y.t not in _TEMPORAL else None

    def eq(d, fp):
        a = left(d, fp)
        if not a:
            return []
        if len(a) != 1:
            return boolean(not want)  # sizes differ: not equal
        x = a[0]
        if plain is not None and type(x.v) is str and x.t not in _TEMPORAL:
            return TRUE if (x.v == plain) is want else FALSE  # what item_equal does for plain strings
        e = item_equal(x, y)
        if e is None:
            return []
        return boolean(e is want)
    return eq


def _inequality(node, ch):
    op = node["terminalNodeText"][0]
    lit = _const(ch[1])
    left = _compile(ch[0])
    if left is _bail or not lit or len(lit) != 1:
        return _bail
    y = lit[0]

    def cmp(d, fp):
        a = left(d, fp)
        if not a:
            return []
        if len(a) > 1:
            raise Bail
        c = item_compare(a[0], y)
        if c is None:
            return []
        return boolean(c < 0 if op == "<" else c > 0 if op == ">" else c <= 0 if op == "<=" else c >= 0)
    return cmp


def _membership(node, ch):
    op = node["terminalNodeText"][0]
    options = _const(ch[1])
    left = _compile(ch[0])
    if op != "in" or left is _bail or options is None:
        return _bail

    def member(d, fp):
        a = left(d, fp)
        if not a:
            return []
        if len(a) > 1:
            raise Bail
        return boolean(any(item_equal(a[0], y) for y in options))
    return member


_BUILDERS = {
    "InvocationTerm": _member_term, "InvocationExpression": _invocation_expr,
    "AndExpression": _logic, "OrExpression": _logic, "ImpliesExpression": _implies,
    "EqualityExpression": _equality, "InequalityExpression": _inequality, "MembershipExpression": _membership,
}


# -- native checks for whole expressions -------------------------------------------------------
def _nhs_modulus11(d, fp):
    """imp2art-nhs-1 (the NHS number's Modulus 11 check digit), as its FHIRPath computes it."""
    if fp.get("identifier") is None or len(fp["identifier"]) != 1 or fp["identifier"][0][0] != "identifier":
        raise Bail
    ids = d.get("identifier")
    if ids is None:
        return TRUE  # all() of nothing
    for ident in ids if type(ids) is list else [ids]:
        if ident is None:
            continue
        if type(ident) is not dict or "_system" in ident or "_value" in ident:
            raise Bail
        system, value = ident.get("system"), ident.get("value")
        if system is None or value is None:
            continue  # not selected by where(), or no value to test
        if type(system) is not str or type(value) is not str:
            raise Bail
        if system != "https://fhir.nhs.uk/Id/nhs-number":
            continue
        if not (len(value) == 10 and value.isascii() and value.isdigit()):
            if "\n" in value or "\r" in value:
                raise Bail  # regex corner cases: general engine
            return FALSE
        digits = [ord(c) - 48 for c in value]
        total = sum(digits[i] * (10 - i) for i in range(9))
        if (11 - total % 11) % 11 != digits[9]:
            return FALSE
    return TRUE


def _has_narrative_div(d, fp):
    """dom-6 (text.`div`.exists()): on every resource, so worth a native form."""
    ents = fp.get("text")
    if ents is None or len(ents) != 1 or ents[0][0] != "text" or ents[0][2] != "Narrative":
        raise Bail
    text = d.get("text")
    if text is None:
        return FALSE
    if type(text) is not dict or "resourceType" in text or "_div" in text:
        raise Bail
    div = text.get("div")
    if type(div) is list:
        raise Bail
    return TRUE if div is not None else FALSE


NATIVE = {
    "text.`div`.exists()": _has_narrative_div,
    "identifier.where(system = 'https://fhir.nhs.uk/Id/nhs-number').value.all(matches('^[0-9]{10}$') and "
    "((11 - ((substring(0,1).toInteger() * 10 + substring(1,1).toInteger() * 9 + substring(2,1).toInteger() * 8 "
    "+ substring(3,1).toInteger() * 7 + substring(4,1).toInteger() * 6 + substring(5,1).toInteger() * 5 + "
    "substring(6,1).toInteger() * 4 + substring(7,1).toInteger() * 3 + substring(8,1).toInteger() * 2) mod 11)) "
    "mod 11) = substring(9,1).toInteger())": _nhs_modulus11,
}
