"""A FHIRPath compiler for invariants: fhirpathpy's parse tree turned into Python closures.

Why: invariants run on every element of every write; fhirpathpy interprets its tree on each
call and takes ~0.3 ms per expression. Closures compiled once run 10-50x faster. Navigation
uses the validator's compiled element layouts, so choice types (``value`` ->
``valueQuantity``) and types (``is``, ``ofType``) are known exactly.

Expressions using something not implemented here raise :class:`Unsupported` at compile time
and the caller falls back to fhirpathpy.
"""
from __future__ import annotations

import datetime as _dt
import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from fhirpathpy.parser import parse

from .fp_values import (DATE_TYPES, FALSE, TIME_TYPES, TRUE, FPError, Item, SYSTEM_OF, as_bool, boolean, implication,
                        item_compare, item_equal, item_equivalent, short_circuit, sys_item)
from .primitives import PRIMITIVE_TYPES


class Unsupported(Exception):
    pass


class Env:
    """Evaluation context: the validator (for layouts), %variables and hooks."""

    __slots__ = ("v", "vars", "this", "index", "total", "resolve", "member_of", "conforms_to", "memo", "stable")

    def __init__(self, validator, variables: dict, resolve=None, member_of=None, conforms_to=None):
        self.v = validator
        self.vars = variables
        self.this = None
        self.index = None
        self.total = None
        self.resolve = resolve
        self.member_of = member_of
        self.conforms_to = conforms_to
        self.memo: dict = {}  # (id(item), name) -> children, for one evaluation
        # subexpression text -> result, for subexpressions that depend only on the
        # environment's own variables (%resource.repeat(item)...): the life of the Env
        self.stable: dict = {}


# -- navigation -----------------------------------------------------------------------------
def _fp_map(env: Env, it: Item):
    """name -> [(json key, child node, type)] for an item's children (cached on the layout)."""
    node, t = it.node, it.t
    v = env.v
    if node is None:
        if not t or t in PRIMITIVE_TYPES:
            return None
        m = v.type_model(t)
        if m is None:
            return None
        node = it.node = m.root
    lay = v.layout(node, t if node.model.root is not node else (t or node.model.type))
    fp = lay.fp
    if fp is None:
        fp = FpMap()
        fp.v = v
        for key, (child, ct, underscore) in lay.keys.items():
            if underscore:
                continue
            fp.setdefault(child.name, _Entries()).append((key, child, ct))
        for ents in fp.values():
            ents.order = {e[0]: i for i, e in enumerate(ents)}
            # (key, "_key" or None for non-primitives, child, type): fp_fast.collect's form
            ents.plain = tuple((k, "_" + k if ct in PRIMITIVE_TYPES else None, c, ct) for k, c, ct in ents)
        lay.fp = fp
    return fp


class FpMap(dict):
    """name -> _Entries. ``v``: the validator whose layouts it came from, so that fp_fast can
    find the maps of the children (it also serves as the ``env`` _fp_map needs)."""
    __slots__ = ("v",)


class _Entries(list):
    """The JSON keys of one FHIRPath name, with each key's position (for choice types)."""
    __slots__ = ("order", "plain")


def _present(v: dict, ents: _Entries) -> list:
    """The entries of a choice element that ``v`` uses, in entry order. value[x] has ~50 types:
    looking up the object's few keys beats trying every type."""
    order = ents.order
    hits = set()
    for k in v:
        i = order.get(k[1:] if k[:1] == "_" else k)
        if i is not None:
            hits.add(i)
    return [ents[i] for i in sorted(hits)]


def _wrap_child(val, ext, child, ct):
    if isinstance(val, dict) and "resourceType" in val and (ct in ("Resource", "DomainResource") or not ct
                                                           or ct == val.get("resourceType")):
        return Item(val, None, val["resourceType"])
    return Item(val, child, ct, ext)


def _children_named(env: Env, it: Item, name: str, out: list) -> None:
    v = it.v
    if not isinstance(v, dict):
        return
    fp = _fp_map(env, it)
    if fp is None:
        x = v.get(name)
        if x is None:
            return
        for e in (x if isinstance(x, list) else [x]):
            if e is not None:
                out.append(Item(e, None, e.get("resourceType") if isinstance(e, dict) else None))
        return
    ents = fp.get(name, ())
    if len(ents) > 4 and len(v) < len(ents):
        ents = _present(v, ents)
    for key, child, ct in ents:
        val = v.get(key)
        ext = v.get("_" + key) if ct in PRIMITIVE_TYPES else None
        if val is None and ext is None:
            continue
        if isinstance(val, list) or isinstance(ext, list):
            vals = val if isinstance(val, list) else []
            exts = ext if isinstance(ext, list) else []
            for i in range(max(len(vals), len(exts))):
                a = vals[i] if i < len(vals) else None
                b = exts[i] if i < len(exts) else None
                if a is not None or b is not None:
                    out.append(_wrap_child(a, b, child, ct))
        else:
            out.append(_wrap_child(val, ext, child, ct))


def _all_children(env: Env, it: Item, out: list) -> None:
    v = it.v
    if not isinstance(v, dict):
        return
    fp = _fp_map(env, it)
    if fp is None:
        for k, x in v.items():
            if k == "resourceType" or k.startswith("_"):
                continue
            for e in (x if isinstance(x, list) else [x]):
                out.append(Item(e, None, e.get("resourceType") if isinstance(e, dict) else None))
        return
    for name in fp:
        _children_named(env, it, name, out)


# -- type tests -----------------------------------------------------------------------------
_SYSTEM_NAMES = frozenset({"Boolean", "String", "Integer", "Decimal", "Date", "DateTime", "Time", "Quantity"})


def _type_matches(env: Env, it: Item, spec: str) -> bool:
    ns, _, name = spec.rpartition(".")
    t = it.t
    if t is None:
        return False
    if ns == "System" or (not ns and name in _SYSTEM_NAMES and name != "Quantity"):
        if t == name:
            return True
        return ns == "System" and SYSTEM_OF.get(t) == name and it.node is None
    if t == name:
        return True
    if t in SYSTEM_OF or t in _SYSTEM_NAMES:
        return False
    return env.v.is_subtype(t, name)


# -- compilation ----------------------------------------------------------------------------
def _ident(node) -> str:
    text = node.get("text") or ""
    if text.startswith("`") and text.endswith("`"):
        text = text[1:-1]
    return text


def _string_literal(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", lambda m: _unescape(m.group(1)), body)


def _unescape(s: str) -> str:
    if s.startswith("u") and len(s) == 5:
        return chr(int(s[1:], 16))
    return {"n": "\n", "t": "\t", "r": "\r", "f": "\f"}.get(s, s)


@lru_cache(maxsize=4096)
def compile_expression(expression: str):
    tree = parse(expression)
    return _compile(tree["children"][0])


_FOLDABLE = frozenset({"UnionExpression", "AdditiveExpression", "MultiplicativeExpression", "PolarityExpression",
                       "EqualityExpression", "InequalityExpression", "ParenthesizedTerm", "TermExpression"})


def _compile(node):
    kind = node["type"]
    ch = node.get("children", [])
    f = _COMPILERS.get(kind)
    if f is None:
        raise Unsupported(kind)
    fn = f(node, ch)
    if kind in _FOLDABLE and _all_constant(node):
        # an expression made only of literals ('a' | 'b' | 'c') is computed once
        try:
            value = fn(None, [])
        except Exception:
            return fn
        const = lambda env, focus: value  # noqa: E731
        const.fp_ident = getattr(fn, "fp_ident", None)
        return const
    return fn


def _all_constant(node) -> bool:
    kind = node["type"]
    if kind == "LiteralTerm":
        return True
    if kind in _FOLDABLE:
        return all(_all_constant(c) for c in node.get("children", []))
    return False


def _c_passthrough(node, ch):
    return _compile(ch[0])


def _c_literal(node, ch):
    lit = ch[0]
    k = lit["type"]
    text = lit.get("text", "")
    if k == "NullLiteral":
        return lambda env, focus: []
    if k == "BooleanLiteral":
        res = TRUE if text == "true" else FALSE
        return lambda env, focus: res
    if k == "StringLiteral":
        val = [Item(_string_literal(text), None, "String")]
        return lambda env, focus: val
    if k == "NumberLiteral":
        val = [Item(int(text), None, "Integer")] if re.fullmatch(r"\d+", text) else \
            [Item(Decimal(text), None, "Decimal")]
        return lambda env, focus: val
    if k == "DateTimeLiteral" or k == "DateLiteral":
        s = text[1:]
        val = [Item(s, None, "DateTime" if "T" in s else "Date")]
        return lambda env, focus: val
    if k == "TimeLiteral":
        val = [Item(text[2:], None, "Time")]
        return lambda env, focus: val
    if k == "QuantityLiteral":
        q = lit["children"][0]
        number = q["terminalNodeText"][0]
        unit = q["children"][0]["terminalNodeText"][0] if q.get("children") else "1"
        unit = unit[1:-1] if unit.startswith("'") else unit
        val = [Item({"value": Decimal(number), "code": unit, "system": "http://unitsofmeasure.org"}, None,
                    "Quantity")]
        return lambda env, focus: val
    raise Unsupported(k)


_CONSTANTS = {"ucum": "http://unitsofmeasure.org", "sct": "http://snomed.info/sct", "loinc": "http://loinc.org"}


def _c_external(node, ch):
    inner = ch[0]["children"][0]
    name = _ident(inner) if inner["type"] == "Identifier" else _string_literal(inner.get("text", "''"))
    if name in _CONSTANTS:
        val = [Item(_CONSTANTS[name], None, "String")]
        return lambda env, focus: val
    if name.startswith("vs-"):
        val = [Item("http://hl7.org/fhir/ValueSet/" + name[3:], None, "String")]
        return lambda env, focus: val
    if name.startswith("ext-"):
        val = [Item("http://hl7.org/fhir/StructureDefinition/" + name[4:], None, "String")]
        return lambda env, focus: val

    def var(env, focus):
        x = env.vars.get(name)
        if x is None:
            raise FPError(f"unknown variable %{name}")
        return x
    return var


def _c_invocation_term(node, ch):
    return _invocation(ch[0], None)


def _c_invocation_expr(node, ch):
    left = _compile(ch[0])
    fn = _invocation(ch[1], left)
    key = node.get("text")
    by_key = _where_equals(ch)
    if by_key is not None and ch[0].get("text") and _env_constant(ch[0]):
        fn = _indexed_where(left, fn, ch[0]["text"], *by_key)
    if key and _env_constant(node):
        def stable(env, focus):
            got = env.stable.get(key)
            if got is None:
                got = env.stable[key] = fn(env, focus)
            return got
        return stable
    return fn


def _where_equals(ch):
    """(name, 'literal') when the invocation is ``where(name = 'literal')``, else None."""
    inv = ch[1]
    if inv["type"] != "FunctionInvocation":
        return None
    fn = inv["children"][0]
    if _ident(fn["children"][0]) != "where" or len(fn["children"]) < 2 or len(fn["children"][1]["children"]) != 1:
        return None
    crit = fn["children"][1]["children"][0]
    if crit["type"] != "EqualityExpression" or crit.get("terminalNodeText", [None])[0] != "=":
        return None
    a, b = crit["children"]
    try:
        member = a["children"][0]["children"][0]
        literal = b["children"][0]["children"][0]
    except (KeyError, IndexError):
        return None
    if a["type"] != "TermExpression" or member["type"] != "MemberInvocation" or b["type"] != "TermExpression" \
            or literal["type"] != "StringLiteral":
        return None
    name = _ident(member["children"][0])
    if not name or name[:1].isupper():
        return None
    return name, _string_literal(literal["text"])


def _indexed_where(left, general, left_text: str, name: str, value: str):
    """``X.where(name = 'v')`` on an X that is constant for the Env (%resource.repeat(item)):
    X's items are indexed by their plain string ``name`` once, then each lookup is one get.
    Items whose ``name`` is not one plain string make the index unusable: general code."""
    key = ("where-index", left_text, name)

    def where(env, focus):
        index = env.stable.get(key)
        if index is None:
            index = env.stable[key] = _index_by(env, left(env, focus), name)
        if index is False:
            return general(env, focus)
        return list(index.get(value, ()))
    return where


def _index_by(env: Env, coll: list, name: str):
    index: dict = {}
    for it in coll:
        if not isinstance(it.v, dict):
            continue  # no children: never selected
        got: list = []
        _children_named(env, it, name, got)
        if not got:
            continue  # empty = 'v' is empty: not selected
        x = got[0]
        if len(got) > 1 or type(x.v) is not str or x.t in DATE_TYPES or x.t in TIME_TYPES:
            return False  # (what _c_equality does for these is not a plain string test)
        index.setdefault(x.v, []).append(it)
    return index


_PER_ITEM_MACROS = frozenset({"where", "select", "repeat", "exists", "all"})


def _env_constant(node) -> bool:
    """Whether a subexpression depends only on the environment's variables other than
    %context (not on the focus, $this or the clock), so one Env may keep its result."""
    kind = node["type"]
    ch = node.get("children", [])
    if kind in ("TermExpression", "ParenthesizedTerm"):
        return _env_constant(ch[0])
    if kind == "LiteralTerm":
        return True
    if kind == "ExternalConstantTerm":
        return _external_name(node) != "context"
    if kind != "InvocationExpression" or not _env_constant(ch[0]):
        return False
    inv = ch[1]
    if inv["type"] == "MemberInvocation":
        return True
    if inv["type"] != "FunctionInvocation":
        return False
    fn = inv["children"][0]
    name = _ident(fn["children"][0])
    pnodes = fn["children"][1]["children"] if len(fn["children"]) > 1 else []
    if name in _PER_ITEM_MACROS:
        # criteria run per item ($this): only %context could bring in the outside
        return not any(_mentions_context(p) for p in pnodes)
    if name in ("today", "now", "trace"):
        return False
    return all(_env_constant(p) for p in pnodes)


def _external_name(node) -> str:
    inner = node["children"][0]["children"][0]
    return _ident(inner) if inner["type"] == "Identifier" else _string_literal(inner.get("text", "''"))


def _mentions_context(node) -> bool:
    if node["type"] == "ExternalConstantTerm":
        return _external_name(node) == "context"
    return any(_mentions_context(c) for c in node.get("children", ()))


def _invocation(inv, left):
    k = inv["type"]
    if k == "MemberInvocation":
        name = _ident(inv["children"][0])
        return _member(name, left)
    if k == "FunctionInvocation":
        fn = inv["children"][0]
        name = _ident(fn["children"][0])
        pnodes = fn["children"][1]["children"] if len(fn["children"]) > 1 else []
        params = [_compile(p) for p in pnodes]
        for p, pnode in zip(params, pnodes):
            try:
                p.fp_node = pnode  # for _per_item's fast form, compiled on first use
            except AttributeError:
                pass
        impl = _FUNCTIONS.get(name)
        if impl is None:
            raise Unsupported(f"function {name}")
        return impl(left, params)
    if k == "ThisInvocation":
        return lambda env, focus: [env.this] if env.this is not None else []
    if k == "IndexInvocation":
        return lambda env, focus: [Item(env.index, None, "Integer")] if env.index is not None else []
    if k == "TotalInvocation":
        return lambda env, focus: env.total if env.total is not None else []
    raise Unsupported(k)


def _member(name: str, left):
    if left is None:
        if not name[:1].isupper():
            def plain_member(env, focus):
                if len(focus) == 1:
                    # the same name is often read several times in one expression (que-5)
                    # (the memo keeps the item alive, so its id cannot be reused meanwhile)
                    key = (id(focus[0]), name)
                    hit = env.memo.get(key)
                    if hit is None:
                        got: list = []
                        if isinstance(focus[0].v, dict):
                            _children_named(env, focus[0], name, got)
                        env.memo[key] = (focus[0], got)
                        return got
                    return hit[1]
                out: list = []
                for it in focus:
                    if isinstance(it.v, dict):
                        _children_named(env, it, name, out)
                return out
            return plain_member

        def root_member(env, focus):
            out = []
            for it in focus:
                if isinstance(it.v, dict) and it.node is not None and it.node.model.root is it.node and \
                        (it.t == name or env.v.is_subtype(it.t or "", name)):
                    out.append(it)  # "Patient.name": the leading type name selects the resource itself
                elif isinstance(it.v, dict) and it.v.get("resourceType") == name:
                    out.append(it)
                else:
                    _children_named(env, it, name, out)
            return out
        return root_member

    def member(env, focus):
        out = []
        for it in left(env, focus):
            if isinstance(it.v, dict):
                _children_named(env, it, name, out)
        return out
    return member


def _c_indexer(node, ch):
    left, idx = _compile(ch[0]), _compile(ch[1])

    def index(env, focus):
        coll = left(env, focus)
        i = idx(env, focus)
        if not i or not isinstance(i[0].v, int):
            return []
        n = i[0].v
        return [coll[n]] if 0 <= n < len(coll) else []
    return index


def _c_polarity(node, ch):
    inner = _compile(ch[0])
    if node["terminalNodeText"][0] == "+":
        return inner

    def neg(env, focus):
        r = inner(env, focus)
        if not r:
            return []
        v = r[0].v
        if isinstance(v, dict):
            q = dict(v, value=-Decimal(str(v.get("value"))))
            return [Item(q, None, "Quantity")]
        return [sys_item(-v)]
    return neg


def _binary(node, ch):
    return node["terminalNodeText"][0], _compile(ch[0]), _compile(ch[1])


def _c_equality(node, ch):
    op, left, right = _binary(node, ch)

    def eq(env, focus):
        a, b = left(env, focus), right(env, focus)
        if op in ("=", "!="):
            if not a or not b:
                return []
            if len(a) == 1 and len(b) == 1:
                x, y = a[0], b[0]
                if type(x.v) is str and type(y.v) is str and x.t not in DATE_TYPES and y.t not in DATE_TYPES \
                        and x.t not in TIME_TYPES and y.t not in TIME_TYPES:
                    return boolean((x.v == y.v) is (op == "="))
            if len(a) != len(b):
                r = False
            else:
                r = True
                for x, y in zip(a, b):
                    e = item_equal(x, y)
                    if e is None:
                        return []
                    if not e:
                        r = False
                        break
            return boolean(r if op == "=" else not r)
        if not a and not b:
            r = True
        elif len(a) != len(b):
            r = False
        else:
            r = all(any(item_equivalent(x, y) for y in b) for x in a)
        return boolean(r if op == "~" else not r)
    return eq


def _c_inequality(node, ch):
    op, left, right = _binary(node, ch)

    def cmp(env, focus):
        a, b = left(env, focus), right(env, focus)
        if not a or not b:
            return []
        if len(a) > 1 or len(b) > 1:
            raise FPError("comparison needs single values")
        c = item_compare(a[0], b[0])
        if c is None:
            return []
        return boolean(c < 0 if op == "<" else c > 0 if op == ">" else c <= 0 if op == "<=" else c >= 0)
    return cmp


def _short_circuit(left, right, decisive: bool):
    def logic(env, focus):
        return short_circuit(as_bool(left(env, focus)), lambda: as_bool(right(env, focus)), decisive)
    return logic


def _c_and(node, ch):
    _, left, right = _binary(node, ch)
    return _short_circuit(left, right, False)


def _c_or(node, ch):
    op, left, right = _binary(node, ch)
    if op == "xor":
        def xor(env, focus):
            a, b = as_bool(left(env, focus)), as_bool(right(env, focus))
            return [] if a is None or b is None else boolean(a != b)
        return xor
    return _short_circuit(left, right, True)


def _c_implies(node, ch):
    _, left, right = _binary(node, ch)

    def implies(env, focus):
        return implication(as_bool(left(env, focus)), lambda: as_bool(right(env, focus)))
    return implies


def _c_union(node, ch):
    _, left, right = _binary(node, ch)
    return lambda env, focus: _distinct(left(env, focus) + right(env, focus))


def _c_membership(node, ch):
    op, left, right = _binary(node, ch)
    if op == "contains":
        left, right = right, left

    def member(env, focus):
        a, b = left(env, focus), right(env, focus)
        if not a:
            return []
        if len(a) > 1:
            raise FPError("membership needs a single value")
        return boolean(any(item_equal(a[0], y) for y in b))
    return member


def _c_type(node, ch):
    op = node["terminalNodeText"][0]
    left = _compile(ch[0])
    spec = ch[1].get("text", "")

    def typ(env, focus):
        coll = left(env, focus)
        if not coll:
            return []
        if len(coll) > 1:
            raise FPError(f"'{op}' needs a single value")
        ok = _type_matches(env, coll[0], spec)
        if op == "is":
            return boolean(ok)
        return coll if ok else []
    return typ


def _c_additive(node, ch):
    op, left, right = _binary(node, ch)

    def add(env, focus):
        a, b = left(env, focus), right(env, focus)
        if op == "&":
            sa = a[0].v if a else ""
            sb = b[0].v if b else ""
            return [Item(f"{sa}{sb}", None, "String")]
        if not a or not b:
            return []
        x, y = a[0].v, b[0].v
        if isinstance(x, str) and isinstance(y, str):
            if op == "+":
                return [Item(x + y, None, "String")]
            raise FPError("cannot subtract strings")
        if isinstance(x, bool) or isinstance(y, bool) or isinstance(x, dict) or isinstance(y, dict) \
                or isinstance(x, str) or isinstance(y, str):
            raise Unsupported("date/quantity arithmetic")
        return [sys_item(x + y if op == "+" else x - y)]
    return add


def _c_multiplicative(node, ch):
    op, left, right = _binary(node, ch)

    def mul(env, focus):
        a, b = left(env, focus), right(env, focus)
        if not a or not b:
            return []
        x, y = a[0].v, b[0].v
        tx, ty = type(x), type(y)
        if (tx is not int and tx is not Decimal) or (ty is not int and ty is not Decimal):
            raise FPError("arithmetic needs numbers")
        try:
            if op == "*":
                return [sys_item(x * y)]
            if op == "/":
                return [] if y == 0 else [sys_item(Decimal(x) / Decimal(y))]
            if op == "div":
                return [] if y == 0 else [sys_item(int(Decimal(x) // Decimal(y)))]
            return [] if y == 0 else [sys_item(x % y)]
        except InvalidOperation:
            return []
    return mul


_COMPILERS = {
    "TermExpression": _c_passthrough, "ParenthesizedTerm": _c_passthrough, "LiteralTerm": _c_literal,
    "ExternalConstantTerm": _c_external, "InvocationTerm": _c_invocation_term,
    "InvocationExpression": _c_invocation_expr, "IndexerExpression": _c_indexer,
    "PolarityExpression": _c_polarity, "EqualityExpression": _c_equality,
    "InequalityExpression": _c_inequality, "AndExpression": _c_and, "OrExpression": _c_or,
    "ImpliesExpression": _c_implies, "UnionExpression": _c_union, "MembershipExpression": _c_membership,
    "TypeExpression": _c_type, "AdditiveExpression": _c_additive, "MultiplicativeExpression": _c_multiplicative,
}


# -- functions ------------------------------------------------------------------------------
def _key(it: Item):
    """A hashable key equal for FHIRPath-equal values (None when only a full compare will do)."""
    v = it.v
    if isinstance(v, str):
        return None if it.t in DATE_TYPES or it.t in TIME_TYPES else ("s", v)
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, (int, Decimal)):
        return ("n", Decimal(v).normalize())
    return None


def _distinct(coll: list) -> list:
    out: list = []
    keys: set = set()
    slow: list = []
    for it in coll:
        k = _key(it)
        if k is not None:
            if k not in keys:
                keys.add(k)
                out.append(it)
        elif not any(it is o or item_equal(it, o) for o in slow):
            slow.append(it)
            out.append(it)
    return out


def _focus_of(left):
    if left is None:
        return lambda env, focus: focus
    return left


def _with_this(env: Env, it: Item, i: int, fn, focus_for_fn):
    saved = env.this, env.index
    env.this, env.index = it, i
    try:
        return fn(env, [it])
    finally:
        env.this, env.index = saved


_NO_FAST = object()


def _per_item(env: Env, it: Item, i: int, fn, focus_for_fn) -> list:
    """A macro's parameter on one item ($this). Plain criteria (``linkId = 'x'``, ``item``)
    run in fp_fast's form straight on the JSON; anything else, or a Bail, in _with_this."""
    fast = getattr(fn, "fp_fast", None)
    if fast is None:
        fast = _NO_FAST
        node = getattr(fn, "fp_node", None)
        if node is not None:
            from . import fp_fast
            fast = fp_fast.compile_node(node) or _NO_FAST
        try:
            fn.fp_fast = fast
        except AttributeError:
            pass
    if fast is not _NO_FAST and type(it.v) is dict:
        fp = _fp_map(env, it)
        if fp:
            try:
                return fast(it.v, fp)
            except Exception:  # fp_fast.Bail
                pass
    return _with_this(env, it, i, fn, focus_for_fn)


def _fn(arity):
    """Register a function taking (env, input collection, *evaluated params)."""
    def deco(impl):
        def build(left, params):
            if len(params) not in arity:
                raise Unsupported(f"{impl.__name__} arity")
            src = _focus_of(left)
            if not params:
                return lambda env, focus: impl(env, src(env, focus))
            if len(params) == 1:
                p0 = params[0]
                return lambda env, focus: impl(env, src(env, focus), p0(env, focus))

            def call(env, focus):
                coll = src(env, focus)
                args = [p(env, focus) for p in params]
                return impl(env, coll, *args)
            return call
        return build
    return deco


def _macro(arity):
    """Register a function whose parameters are evaluated per item ($this)."""
    def deco(impl):
        def build(left, params):
            if len(params) not in arity:
                raise Unsupported(f"{impl.__name__} arity")
            src = _focus_of(left)

            def call(env, focus):
                return impl(env, src(env, focus), *params)
            return call
        return build
    return deco


def _single_str(coll) -> str | None:
    if not coll:
        return None
    v = coll[0].v
    return v if isinstance(v, str) else None


@_fn({0})
def f_empty(env, coll):
    return boolean(not coll)


@_macro({0, 1})
def f_exists(env, coll, crit=None):
    if crit is None:
        return boolean(bool(coll))
    return boolean(any(as_bool(_per_item(env, it, i, crit, coll)) for i, it in enumerate(coll)))


@_macro({1})
def f_all(env, coll, crit):
    return boolean(all(as_bool(_per_item(env, it, i, crit, coll)) is True for i, it in enumerate(coll)))


@_macro({1})
def f_where(env, coll, crit):
    return [it for i, it in enumerate(coll) if as_bool(_per_item(env, it, i, crit, coll)) is True]


@_macro({1})
def f_select(env, coll, expr):
    out = []
    for i, it in enumerate(coll):
        out.extend(_with_this(env, it, i, expr, coll))
    return out


@_macro({1})
def f_repeat(env, coll, expr):
    out: list = []
    in_out: set = set()  # ids of the items in out (kept alive by out): identity, in O(1)
    todo = list(coll)
    seen = 0
    while todo and seen < 10000:
        nxt = []
        for i, it in enumerate(todo):
            for r in _per_item(env, it, i, expr, todo):
                if id(r) not in in_out:
                    in_out.add(id(r))
                    out.append(r)
                    nxt.append(r)
        todo = nxt
        seen += 1
    return out


@_macro({2, 3})
def f_iif(env, coll, cond, yes, no=None):
    c = as_bool(cond(env, coll))
    if c is True:
        return yes(env, coll)
    return no(env, coll) if no is not None else []


@_fn({0})
def f_not(env, coll):
    b = as_bool(coll)
    return [] if b is None else boolean(not b)


@_fn({0})
def f_count(env, coll):
    return [Item(len(coll), None, "Integer")]


@_fn({0})
def f_first(env, coll):
    return coll[:1]


@_fn({0})
def f_last(env, coll):
    return coll[-1:]


@_fn({0})
def f_tail(env, coll):
    return coll[1:]


@_fn({1})
def f_skip(env, coll, n):
    return coll[n[0].v:] if n else coll


@_fn({1})
def f_take(env, coll, n):
    return coll[:n[0].v] if n else []


@_fn({0})
def f_single(env, coll):
    if len(coll) > 1:
        raise FPError("single() on several items")
    return coll


@_fn({0})
def f_distinct(env, coll):
    return _distinct(coll)


@_fn({0})
def f_isDistinct(env, coll):
    return boolean(len(_distinct(coll)) == len(coll))


@_fn({0})
def f_hasValue(env, coll):
    return boolean(len(coll) == 1 and coll[0].v is not None and not isinstance(coll[0].v, (dict, list)))


@_fn({0})
def f_getValue(env, coll):
    return [Item(it.v, None, SYSTEM_OF.get(it.t or "", "String")) for it in coll
            if it.v is not None and not isinstance(it.v, dict)][:1]


def _truth(aggregate, want: bool):
    """allTrue(), anyTrue(), allFalse(), anyFalse()."""
    return _fn({0})(lambda env, coll: boolean(aggregate(it.v is want for it in coll)))


f_allTrue, f_anyTrue = _truth(all, True), _truth(any, True)
f_allFalse, f_anyFalse = _truth(all, False), _truth(any, False)


@_fn({1})
def f_union(env, coll, other):
    return _distinct(coll + other)


@_fn({1})
def f_combine(env, coll, other):
    return coll + other


@_fn({1})
def f_intersect(env, coll, other):
    return _distinct([x for x in coll if any(item_equal(x, y) for y in other)])


@_fn({1})
def f_exclude(env, coll, other):
    return [x for x in coll if not any(item_equal(x, y) for y in other)]


@_fn({1})
def f_subsetOf(env, coll, other):
    return boolean(all(any(item_equal(x, y) for y in other) for x in coll))


@_fn({1})
def f_supersetOf(env, coll, other):
    return boolean(all(any(item_equal(x, y) for y in coll) for x in other))


def _string_fn(impl, empty=None):
    """String functions: empty in, empty out (``empty`` overrides); a non-string single input
    is an error."""
    def wrapped(env, coll, *args):
        if not coll:
            return [] if empty is None else empty
        if len(coll) > 1:
            raise FPError(f"{impl.__name__} on several items")
        s = coll[0].v
        if not isinstance(s, str):
            raise FPError(f"{impl.__name__} needs a string")
        return impl(s, *args)
    wrapped.__name__ = impl.__name__
    return wrapped


def _test_fn(impl):
    # The HL7 Java engine answers false (not empty) for startsWith/contains/... on nothing;
    # R4 invariants such as ref-1 and bdl-8 rely on it.
    return _string_fn(impl, FALSE)


@_fn({1})
@_test_fn
def f_startsWith(s, prefix):
    p = _single_str(prefix)
    return [] if p is None else boolean(s.startswith(p))


@_fn({1})
@_test_fn
def f_endsWith(s, suffix):
    p = _single_str(suffix)
    return [] if p is None else boolean(s.endswith(p))


@_fn({1})
@_test_fn
def f_contains(s, sub):
    p = _single_str(sub)
    return [] if p is None else boolean(p in s)


_lru_regex = lru_cache(maxsize=512)(re.compile)


@_fn({1})
@_test_fn
def f_matches(s, rx):
    p = _single_str(rx)
    if p is None:
        return []
    try:
        return boolean(_lru_regex(p, re.DOTALL).fullmatch(s) is not None)
    except re.error as exc:
        raise FPError(f"bad regex: {exc}")


@_fn({2})
@_string_fn
def f_replaceMatches(s, rx, sub):
    p, r = _single_str(rx), _single_str(sub)
    if p is None or r is None:
        return []
    return [Item(_lru_regex(p).sub(r.replace("$", "\\"), s), None, "String")]


@_fn({2})
@_string_fn
def f_replace(s, a, b):
    x, y = _single_str(a), _single_str(b)
    return [] if x is None or y is None else [Item(s.replace(x, y), None, "String")]


@_fn({1})
@_string_fn
def f_indexOf(s, sub):
    p = _single_str(sub)
    return [] if p is None else [Item(s.find(p), None, "Integer")]


@_fn({1, 2})
@_string_fn
def f_substring(s, start, length=None):
    if not start:
        return []
    i = start[0].v
    if i < 0 or i >= len(s):
        return []
    if length is not None and length:
        return [Item(s[i:i + length[0].v], None, "String")]
    return [Item(s[i:], None, "String")]


@_fn({0})
@_string_fn
def f_length(s):
    return [Item(len(s), None, "Integer")]


@_fn({0})
@_string_fn
def f_upper(s):
    return [Item(s.upper(), None, "String")]


@_fn({0})
@_string_fn
def f_lower(s):
    return [Item(s.lower(), None, "String")]


@_fn({0})
@_string_fn
def f_trim(s):
    return [Item(s.strip(), None, "String")]


@_fn({1})
@_string_fn
def f_split(s, sep):
    p = _single_str(sep)
    return [] if p is None else [Item(x, None, "String") for x in s.split(p)]


@_fn({0, 1})
def f_join(env, coll, sep=None):
    p = _single_str(sep) if sep else ""
    return [Item((p or "").join(str(it.v) for it in coll), None, "String")]


@_fn({0})
def f_toString(env, coll):
    if len(coll) != 1:
        return []
    v = coll[0].v
    if isinstance(v, bool):
        return [Item("true" if v else "false", None, "String")]
    if isinstance(v, dict):
        return []
    return [Item(str(v), None, "String")]


@_fn({0})
def f_toInteger(env, coll):
    if len(coll) != 1:
        return []
    v = coll[0].v
    if isinstance(v, bool):
        return [Item(int(v), None, "Integer")]
    if isinstance(v, int):
        return [Item(v, None, "Integer")]
    if isinstance(v, str) and re.fullmatch(r"[+-]?\d+", v):
        return [Item(int(v), None, "Integer")]
    return []


@_fn({0})
def f_toDecimal(env, coll):
    if len(coll) != 1:
        return []
    v = coll[0].v
    try:
        if isinstance(v, (int, Decimal)) and not isinstance(v, bool):
            return [Item(Decimal(v), None, "Decimal")]
        if isinstance(v, str):
            return [Item(Decimal(v), None, "Decimal")]
    except InvalidOperation:
        pass
    return []


@_fn({0})
def f_convertsToInteger(env, coll):
    return boolean(bool(f_toInteger(None, [])(env, coll))) if len(coll) == 1 else []


@_fn({0})
def f_abs(env, coll):
    if not coll:
        return []
    v = coll[0].v
    if isinstance(v, dict):
        return [Item(dict(v, value=abs(Decimal(str(v.get("value"))))), None, "Quantity")]
    return [sys_item(abs(v))]


@_fn({0})
def f_today(env, coll):
    return [Item(_dt.date.today().isoformat(), None, "Date")]


@_fn({0})
def f_now(env, coll):
    return [Item(_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), None, "DateTime")]


@_fn({0, 1, 2})
def f_trace(env, coll, *args):
    return coll


def _type_fn(name):
    def build(left, params):
        if len(params) != 1:
            raise Unsupported(name)
        # the parameter is a type name, written as an identifier
        spec = _type_param(params)
        src = _focus_of(left)

        def call(env, focus):
            coll = src(env, focus)
            if name == "ofType":
                return [it for it in coll if _type_matches(env, it, spec)]
            if not coll:
                return []
            if len(coll) > 1:
                if name == "as":
                    return [it for it in coll if _type_matches(env, it, spec)]
                raise FPError(f"{name}() needs a single value")
            ok = _type_matches(env, coll[0], spec)
            return boolean(ok) if name == "is" else (coll if ok else [])
        return call
    return build


def _type_param(params) -> str:
    p = params[0]
    spec = getattr(p, "fp_ident", None)
    if spec is None:
        raise Unsupported("type parameter")
    return spec


@_fn({0})
def f_children(env, coll):
    out: list = []
    for it in coll:
        _all_children(env, it, out)
    return out


@_fn({0})
def f_descendants(env, coll):
    out: list = []
    todo = list(coll)
    while todo:
        nxt: list = []
        for it in todo:
            _all_children(env, it, nxt)
        out.extend(nxt)
        todo = nxt
    return out


@_fn({1})
def f_extension(env, coll, url):
    u = _single_str(url)
    out: list = []
    for it in coll:
        exts: list = []
        if isinstance(it.v, dict):
            _children_named(env, it, "extension", exts)
        elif isinstance(it.ext, dict):
            _children_named(env, Item(it.ext, None, "Element"), "extension", exts)
        out.extend(e for e in exts if isinstance(e.v, dict) and e.v.get("url") == u)
    return out


@_fn({0})
def f_resolve(env, coll):
    out = []
    for it in coll:
        v = it.v
        ref = v.get("reference") if isinstance(v, dict) else v if isinstance(v, str) else None
        if not isinstance(ref, str) or env.resolve is None:
            continue
        target = env.resolve(ref)
        if isinstance(target, dict) and isinstance(target.get("resourceType"), str):
            out.append(Item(target, None, target["resourceType"]))
    return out


@_fn({1})
def f_memberOf(env, coll, vs):
    url = _single_str(vs)
    if not coll or url is None or env.member_of is None:
        return []
    results = [env.member_of(it.v, url) for it in coll]
    if any(r is None for r in results):
        return []
    return boolean(all(results))


@_fn({1})
def f_conformsTo(env, coll, url):
    u = _single_str(url)
    if not coll or u is None or env.conforms_to is None:
        return []
    return boolean(all(env.conforms_to(it.v, u) for it in coll))


@_fn({0})
def f_type(env, coll):
    out = []
    for it in coll:
        t = it.t or ""
        ns = "System" if t in ("Boolean", "String", "Integer", "Decimal", "Date", "DateTime", "Time") else "FHIR"
        out.append(Item({"namespace": ns, "name": t}, None, "TypeInfo"))
    return out


@_fn({0})
def f_htmlChecks(env, coll):
    return TRUE  # narrative is checked natively (xhtml.py)


_FUNCTIONS = {name[2:]: obj for name, obj in list(globals().items()) if name.startswith("f_") and callable(obj)}
for _n in ("ofType", "is", "as"):
    _FUNCTIONS[_n] = _type_fn(_n)
del _n


def _mark_identifiers():
    """Type parameters (``ofType(Quantity)``) are parsed as member names: remember the text."""
    orig = _member

    def member_with_ident(name, left):
        fn = orig(name, left)
        if left is None:
            fn.fp_ident = name
        elif getattr(left, "fp_ident", None):
            fn.fp_ident = left.fp_ident + "." + name  # FHIR.Patient
        return fn
    globals()["_member"] = member_with_ident


_mark_identifiers()


def evaluate(fn, env: Env, item: Item) -> list:
    saved = env.vars.get("context"), env.this, env.index
    env.memo.clear()
    env.vars["context"] = [item]
    env.this, env.index = item, None  # at the top level $this is the context item
    try:
        return fn(env, [item])
    finally:
        env.vars["context"], env.this, env.index = saved
