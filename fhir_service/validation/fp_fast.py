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

from decimal import Decimal
import threading
from functools import lru_cache
from typing import NamedTuple

from fhirpathpy.parser import parse

from . import fp_compiler
from .datatypes import NHS_NUMBER_SYSTEM, nhs_number_valid
from .fp_values import (DATE_TYPES, FALSE, SYSTEM_OF, TIME_TYPES, TRUE, Item, boolean, implication, item_compare,
                        item_equal)
from .primitives import PRIMITIVE_TYPES


class Bail(Exception):
    """The fast path cannot answer exactly; use the general engine."""


_TEMPORAL = DATE_TYPES | TIME_TYPES
_NUMBERS = (int, Decimal)  # JSON numbers (use_decimal); bool and float take the general route


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
    _tl.this_mode = False
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
    _tl.this_mode = False
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
    if inv["type"] == "ThisInvocation":
        return _this_term(inv, ())
    if inv["type"] != "MemberInvocation":
        return _function(inv, None)
    name = fp_compiler._ident(inv["children"][0])
    if name[:1].isupper() or _tl.this_mode:
        return _bail  # a type name ("Patient.x"): general engine; $this's children: not here

    member = lambda d, fp: collect(d, fp, name)  # noqa: E731
    member.fp_name = name
    return member


def collect(d: dict, fp: dict, name: str) -> list:
    """The items of child ``name`` of ``d`` (as fp_compiler._children_named), or Bail."""
    ents = fp.get(name)
    if ents is None:
        return []
    if len(ents) == 1:  # not a choice: one key (the usual case, without the loop below)
        key, ukey, child, ct = ents.plain[0]
        if ukey is not None and ukey in d:
            raise Bail
        val = d.get(key)
        if val is None:
            return []
        if type(val) is list:
            return [Item(x, child, ct) for x in val if x is not None]
        if type(val) is dict and "resourceType" in val:
            raise Bail
        return [Item(val, child, ct)]
    out = []
    if len(ents) > 4 and len(d) < len(ents):
        plain = [(k, "_" + k if ct in PRIMITIVE_TYPES else None, c, ct) for k, c, ct in fp_compiler._present(d, ents)]
    else:
        plain = ents.plain
    for key, ukey, child, ct in plain:
        val = d.get(key)
        if ukey is not None and ukey in d:
            raise Bail  # a primitive with extensions: general engine pairs them
        if val is None:
            continue
        if type(val) is list:
            out.extend(Item(x, child, ct) for x in val if x is not None)
        elif type(val) is dict and "resourceType" in val:
            raise Bail  # a resource: typed by its own resourceType
        else:
            out.append(Item(val, child, ct))
    return out


_SCALARS = frozenset({str, bool, int})
# Signatures are cache keys (invariants.py keeps up to 512 per element): a longer client string
# makes the value "not plain", evaluated each time rather than kept.
_SIGNATURE_MAX_TEXT = 256


def signature_plan(fp: dict, uses: tuple) -> tuple:
    """``uses`` with each name's entries looked up in ``fp`` once (for signature_of)."""
    plan = []
    for name, kind in uses:
        ents = fp.get(name, ())
        plan.append((ents, getattr(ents, "plain", ()), kind == "len"))
    return tuple(plan)


def signature_of(d: dict, plan: tuple):
    """What the results of expressions with a signature_plan's ``uses`` depend on in ``d``,
    hashable (None when a value is not a plain scalar, or where collect() would Bail). Read
    straight from the JSON, as collect() would see it."""
    parts = []
    for ents, rows, count in plan:
        if len(ents) > 4 and len(d) < len(ents):
            rows = [(k, "_" + k if ct in PRIMITIVE_TYPES else None, c, ct) for k, c, ct in fp_compiler._present(d, ents)]
        n = 0
        for key, ukey, child, ct in rows:  # (ukey: the "_x" key of a primitive, else None)
            if ukey is not None and ukey in d:
                return None
            val = d.get(key)
            if val is None:
                continue
            if type(val) is list:
                for x in val:
                    if x is None:
                        continue
                    if count:
                        n += 1
                    elif type(x) in _SCALARS and (type(x) is not str or len(x) <= _SIGNATURE_MAX_TEXT):
                        parts.append((ct, type(x), x))
                    else:
                        return None
            elif type(val) in _SCALARS:
                if count:
                    n += 1
                elif type(val) is str and len(val) > _SIGNATURE_MAX_TEXT:
                    return None
                else:
                    parts.append((ct, type(val), val))
            elif count and not (type(val) is dict and "resourceType" in val):
                n += 1
            else:
                return None
        parts.append(n if count else None)
    return tuple(parts)


def _invocation_expr(node, ch):
    inv = ch[1]
    if inv["type"] == "MemberInvocation":
        name = fp_compiler._ident(inv["children"][0])
        left = _compile(ch[0])
        if left is _bail or name[:1].isupper():
            return _bail

        def nested(d, fp):  # a.b: the children of each item (as fp_compiler's member)
            out = []
            for it in left(d, fp):
                out.extend(_item_children(fp, it, name))
            return out
        return nested
    if inv["type"] != "FunctionInvocation":
        return _bail
    return _function(inv, _compile_raw(ch[0]))


def _item_children(fp, it: Item, name: str) -> list:
    """Children ``name`` of one item, found through its own element layout (``fp.v`` is the
    validator the context's map was built by)."""
    v = it.v
    if type(v) is not dict:
        return []  # primitives have no children here (a "_x" was already a Bail)
    cfp = _map_of(fp, it)
    if cfp is None:
        raise Bail  # untyped: the general engine's generic navigation
    return collect(v, cfp, name)


def _map_of(fp, it: Item):
    """fp_compiler._fp_map(fp, it) when the item's layout and map exist already (the same
    layout key Validator.layout would use), without the calls."""
    node = it.node
    if node is not None:
        lay = node._maps.get(it.t)
        if lay is not None:
            m = lay.fp
            if m is not None and (it.t or node.model.root is not node):
                return m
    return fp_compiler._fp_map(fp, it)


def _this_term(node, ch):
    """$this inside a criterion evaluated per item in "this" mode (``d`` is the Item)."""
    if not _tl.this_mode:
        return _bail
    return lambda d, fp: [d]


def _criterion(pnode):
    """A macro's criterion compiled twice: per JSON object (dict items, children by name)
    and per Item ($this and functions of it, for primitive items)."""
    saved_uses, saved_mode = _tl.uses, _tl.this_mode
    try:
        _tl.uses, _tl.this_mode = {}, False
        on_dict = _compile(pnode)
        _tl.uses, _tl.this_mode = {}, True
        on_item = _compile(pnode)
    finally:
        _tl.uses, _tl.this_mode = saved_uses, saved_mode
    if on_dict is _bail and on_item is _bail:
        return None

    def run(it: Item, fp):
        if type(it.v) is dict and on_dict is not _bail:
            cfp = _map_of(fp, it)
            if cfp is None:
                raise Bail
            return _bool(on_dict(it.v, cfp))
        if on_item is _bail:
            raise Bail
        return _bool(on_item(it, fp))
    return run


def _type_name(pnode) -> str | None:
    """The plain type name of ofType(X) (parsed as a member name)."""
    n = pnode
    while n["type"] in ("TermExpression", "InvocationTerm", "MemberInvocation") and n.get("children"):
        n = n["children"][0]
    if n["type"] != "Identifier":
        return None
    name = fp_compiler._ident(n)
    return name if name and name[:1].isupper() else None


# -- functions on a collection ----------------------------------------------------------------
def _function(inv, left):
    if inv["type"] != "FunctionInvocation" or left is _bail:
        return _bail
    fn = inv["children"][0]
    name = fp_compiler._ident(fn["children"][0])
    params = fn["children"][1]["children"] if len(fn["children"]) > 1 else []
    if left is None:
        if _tl.this_mode:
            left = lambda d, fp: [d]  # noqa: E731  (the focus is $this)
        elif name == "extension":
            _use("extension", "value")
            left = lambda d, fp: [Item(d, None, None)]  # noqa: E731  (marker: the context itself)
            left.fp_context = True
        else:
            return _bail
    if name == "trace":
        return left  # trace() only logs
    member_name = getattr(left, "fp_name", None)
    if member_name is not None:
        _use(member_name, "len" if name in ("empty", "exists", "count") and not params else "value")
    if params and name in _COLLECTION_FUNCTIONS:
        return _COLLECTION_FUNCTIONS[name](left, params)
    if name == "distinct" and not params:
        return lambda d, fp: fp_compiler._distinct(left(d, fp))
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


def _macro(empty_result, make):
    """A builder for where/all/exists(criterion): ``make(left, crit)`` gives the evaluator when
    the criterion is fast; otherwise any input bails (on an empty one the criterion never runs,
    and the answer is ``empty_result``)."""
    def build(left, params):
        crit = _criterion(params[0]) if len(params) == 1 else None
        if crit is not None:
            return make(left, crit)

        def macro(d, fp):
            if left(d, fp):
                raise Bail
            return empty_result
        return macro
    return build


_f_where = _macro([], lambda left, crit: lambda d, fp: [it for it in left(d, fp) if crit(it, fp) is True])
_f_all = _macro(TRUE, lambda left, crit: lambda d, fp: TRUE if all(crit(it, fp) is True for it in left(d, fp)) else FALSE)
_f_exists = _macro(FALSE, lambda left, crit: lambda d, fp: TRUE if any(crit(it, fp) for it in left(d, fp)) else FALSE)


def _f_of_type(left, params):
    name = _type_name(params[0]) if len(params) == 1 else None
    if name is None or (name in fp_compiler._SYSTEM_NAMES and name != "Quantity"):
        return _bail  # System types: the general engine's rules

    def of_type(d, fp):
        out = []
        for it in left(d, fp):
            t = it.t
            if t == name:
                out.append(it)
            elif t is None or t in SYSTEM_OF or t in fp_compiler._SYSTEM_NAMES:
                continue
            elif fp.v.is_subtype(t, name):
                out.append(it)
        return out
    return of_type


def _f_extension(left, params):
    url = _const(params[0]) if len(params) == 1 else None
    if not url or len(url) != 1 or not isinstance(url[0].v, str):
        return _bail
    u = url[0].v
    on_context = getattr(left, "fp_context", False)

    def extension(d, fp):
        exts = collect(d, fp, "extension") if on_context else \
            [e for it in left(d, fp) for e in _item_children(fp, it, "extension")]
        return [e for e in exts if type(e.v) is dict and e.v.get("url") == u]
    return extension


_COLLECTION_FUNCTIONS = {"where": _f_where, "all": _f_all, "exists": _f_exists, "ofType": _f_of_type,
                         "extension": _f_extension}


def _bool(coll):
    """fp_values.as_bool, with Bail for several items."""
    if coll is TRUE:  # the shared results of the boolean operators: no need to look inside
        return True
    if coll is FALSE:
        return False
    if not coll:
        return None
    if len(coll) == 1:
        v = coll[0].v
        return v if v is True or v is False else True
    raise Bail


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
    # three-valued and/or, as fp_values.short_circuit (the right side only when needed): one
    # side equal to ``decisive`` (true for or, false for and) settles it
    decisive = op == "or"
    settled, otherwise = (TRUE, FALSE) if decisive else (FALSE, TRUE)

    def logic(d, fp):
        a = _bool(left(d, fp))
        if a is decisive:
            return settled
        b = _bool(right(d, fp))
        if b is decisive:
            return settled
        return [] if a is None or b is None else otherwise
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
    name = getattr(left, "fp_name", None)
    return _member_equals(name, plain, want, eq) if plain is not None and name is not None else eq


def _member_equals(name: str, plain: str, want: bool, general):
    """``child = 'text'`` (or !=) read straight from the JSON when the child is one plain
    string; anything else goes the ``general`` way (_equality's)."""
    def eq_member(d, fp):
        ents = fp.get(name)
        if ents is not None and len(ents) == 1:
            key, ukey, child, ct = ents.plain[0]
            val = d.get(key)
            if type(val) is str and ct not in _TEMPORAL and (ukey is None or ukey not in d):
                return TRUE if (val == plain) is want else FALSE
        return general(d, fp)
    return eq_member


def _inequality(node, ch):
    op = node["terminalNodeText"][0]
    lit = _const(ch[1])
    left = _compile(ch[0])
    if left is _bail:
        return _bail
    if lit is not None:
        if len(lit) != 1:
            return _bail
        y, right = lit[0], None
    else:
        y, right = None, _compile(ch[1])  # both sides navigate (a.value > b.value)
        if right is _bail:
            return _bail

    # a number literal against a plain JSON number: what item_compare does, without its dispatch
    num = y.v if y is not None and type(y.v) in (int, Decimal) else None

    def cmp(d, fp):
        a = left(d, fp)
        if right is None:
            if not a:
                return []
            if len(a) > 1:
                raise Bail
            x = a[0].v
            if num is not None and type(x) in _NUMBERS:
                c = (x > num) - (x < num)
            else:
                c = item_compare(a[0], y)
        else:
            b = right(d, fp)
            if not a or not b:
                return []
            if len(a) > 1 or len(b) > 1:
                raise Bail
            c = item_compare(a[0], b[0])
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
    "InvocationTerm": _member_term, "InvocationExpression": _invocation_expr, "ThisInvocation": _this_term,
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
        if system != NHS_NUMBER_SYSTEM:
            continue
        if not (len(value) == 10 and value.isascii() and value.isdigit()):
            if "\n" in value or "\r" in value:
                raise Bail  # regex corner cases: general engine
            return FALSE
        if not nhs_number_valid(value):
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
