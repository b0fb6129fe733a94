"""Compile parsed search criteria into SQL over the index tables.

Every criterion becomes a ``Cond`` that can render itself two ways:
- ``idset()``: ``SELECT res_id ...`` of the resources of one type that match, used for the most
  selective criterion (``r.res_id IN (...)``, which drives the query from an index) and
  inside chains and ``_has``;
- ``pred(alias)``: a predicate on a resource alias, for the others (a correlated ``EXISTS``
  probing the (res_type, res_id, param) index, so SQLite never materialises a large set).

Index tables only hold rows of current, non-deleted resources, so subqueries on them need no
join to ``resource``. All values are bound parameters; identifiers (table and column names,
aliases) come from this module only.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable

from . import normalize as N
from .parameters import Criterion, Name, invalid, parse_prefix, split_unescaped, unescape
from .terminology import codes_for_modifier

TABLE = {"string": "idx_string", "token": "idx_token", "reference": "idx_reference", "date": "idx_date",
         "number": "idx_number", "quantity": "idx_quantity", "uri": "idx_uri"}
MODIFIERS = {
    "string": {"exact", "contains", "missing", "not"},
    "token": {"text", "not", "above", "below", "in", "not-in", "missing"},
    "reference": {"missing", "identifier", "not"},
    "date": {"missing", "not"},
    "number": {"missing", "not"},
    "quantity": {"missing", "not"},
    "uri": {"above", "below", "missing", "not", "contains"},
    "composite": {"missing"},
}
# Rough selectivity used to pick the driving criterion (lower is more selective).
_RANK = {"_id": 0, "reference": 1, "_has": 2, "token": 3, "uri": 3, "string": 4, "composite": 4,
         "quantity": 5, "number": 5, "date": 6, "_lastUpdated": 7, "custom": 8}


class Ctx:
    def __init__(self, definitions, dialect: str, base_url: str = ""):
        self.defs = definitions
        self.dialect = dialect
        self.base_url = base_url.rstrip("/")
        self._n = itertools.count()

    def alias(self, prefix: str = "i") -> str:
        return f"{prefix}{next(self._n)}"


@dataclass
class Cond:
    """One criterion on one type. A predicate is rendered against a *key*: the SQL expressions
    for a resource's (type, id), e.g. ("r.res_type", "r.res_id") or, inside a chain,
    ("a.target_type", "a.target_id"), so nested criteria correlate instead of materialising."""
    rtype: str
    rank: float
    # index form: table + a predicate on the index alias
    table: str | None = None
    where: Callable[[str], tuple[str, list]] | None = None
    # custom form: predicate on a key (type_sql, id_sql), and optionally an id-set query
    custom: Callable[[Ctx, tuple[str, str]], tuple[str, list]] | None = None
    custom_idset: Callable[[Ctx], tuple[str, list]] | None = None
    needs_row: bool = False  # custom reads resource columns (last_updated, content)
    negate: bool = False

    @property
    def drives(self) -> bool:
        """Whether an id-set of this criterion is a good way into the data."""
        return not self.negate and (self.table is not None or self.custom_idset is not None)

    def idset(self, ctx: Ctx) -> tuple[str, list]:
        if self.table and not self.negate:
            a = ctx.alias()
            w, p = self.where(a)
            return f"SELECT {a}.res_id FROM {self.table} {a} WHERE {a}.res_type = ? AND {w}", [self.rtype, *p]
        if self.custom_idset and not self.negate:
            return self.custom_idset(ctx)
        a = ctx.alias("r")
        w, p = self.pred(ctx, (f"{a}.res_type", f"{a}.res_id"), row=a)
        return (f"SELECT {a}.res_id FROM resource {a} WHERE {a}.res_type = ? AND {a}.deleted = ? AND {w}",
                [self.rtype, False, *p])

    def pred(self, ctx: Ctx, key: tuple[str, str], row: str | None = None) -> tuple[str, list]:
        """A predicate on ``key``; ``row`` is the resource alias when key is a resource row."""
        if self.table:
            a = ctx.alias()
            w, p = self.where(a)
            sql = (f"EXISTS (SELECT 1 FROM {self.table} {a} WHERE {a}.res_type = {key[0]} "
                   f"AND {a}.res_id = {key[1]} AND {w})")
        elif self.needs_row and row is None:
            x = ctx.alias("x")
            inner, p = self.custom(ctx, (f"{x}.res_type", f"{x}.res_id"), x)
            sql = (f"EXISTS (SELECT 1 FROM resource {x} WHERE {x}.res_type = {key[0]} AND {x}.res_id = {key[1]} "
                   f"AND {inner})")
        elif self.needs_row:
            sql, p = self.custom(ctx, key, row)
        else:
            sql, p = self.custom(ctx, key)
        return (f"NOT {sql}" if self.negate else sql), p


def _or(parts: list[tuple[str, list]]) -> tuple[str, list]:
    if len(parts) == 1:
        return parts[0]
    return "(" + " OR ".join(f"({s})" for s, _ in parts) + ")", [x for _, p in parts for x in p]


def _and(parts: list[tuple[str, list]]) -> tuple[str, list]:
    parts = [p for p in parts if p[0]]
    if not parts:
        return "1 = 1", []
    return " AND ".join(s for s, _ in parts), [x for _, p in parts for x in p]


# -- resolving parameters -----------------------------------------------------------------------

def search_param(ctx: Ctx, rtype: str, code: str) -> dict | None:
    return ctx.defs.search_params(rtype).get(code)


def build(ctx: Ctx, rtype: str, crit: Criterion) -> Cond:
    """The Cond for one criterion on one resource type; FHIRError(400) if it is invalid.
    Raises KeyError(name) for a parameter unknown on this type (the caller decides between
    strict and lenient)."""
    name = crit.name
    if name.code == "_has":
        return _has(ctx, rtype, name, crit.values)
    if name.code == "_id":
        _no_modifier(name, {"missing", "not"})
        ids = [unescape(v) for v in crit.values]
        marks = ", ".join("?" for _ in ids)
        return Cond(rtype, _RANK["_id"], custom=lambda c, k: (f"{k[1]} IN ({marks})", list(ids)),
                    custom_idset=lambda c: (f"SELECT res_id FROM resource WHERE res_type = ? AND deleted = ? "
                                            f"AND res_id IN ({marks})", [rtype, False, *ids]),
                    negate=name.modifier == "not")
    if name.code == "_lastUpdated":
        _no_modifier(name, set())
        return Cond(rtype, _RANK["_lastUpdated"], needs_row=True, custom=lambda c, k, row, v=crit.values,
                    n=name.raw: _or([_last_updated(row, x, n) for x in v]))
    if name.code == "_list":
        return _list(ctx, rtype, crit.values)
    if name.code == "_content":
        return _content(ctx, rtype, name, crit.values)
    sp = search_param(ctx, rtype, name.code)
    if sp is None or sp.get("type") == "special" or (not sp.get("expression") and sp["code"] not in ("_id",)):
        raise KeyError(name.raw)
    ptype = sp["type"]
    if name.chain is not None:
        if ptype != "reference":
            raise invalid(name.raw, "only reference parameters can be chained")
        return _chain(ctx, rtype, sp, name, crit.values)
    mod = name.modifier
    if mod is not None and mod not in MODIFIERS.get(ptype, set()):
        if ptype == "reference" and ctx.defs.is_resource_type(mod):
            pass  # :[type]
        else:
            raise invalid(name.raw, f"modifier ':{mod}' is not supported on a {ptype} parameter")
    code = sp["code"]
    if mod == "missing":
        flag = crit.values[0].lower()
        if flag not in ("true", "false") or len(crit.values) != 1:
            raise invalid(name.raw, ":missing takes true or false")
        if ptype == "composite":
            code = code + "#0"
            table = _composite_tables(ctx, sp)[0]
        else:
            table = TABLE[ptype]
        return Cond(rtype, 9, table, lambda a, c=code: (f"{a}.param = ?", [c]), negate=flag == "true")
    if ptype == "composite":
        return _composite(ctx, rtype, sp, name, crit.values)
    if mod == "identifier":
        vals = [_token_where(ctx, name, v, None) for v in crit.values]
        return Cond(rtype, _RANK["token"], "idx_token", lambda a, c=code + ":identifier", vs=vals: _param_or(a, c, vs))
    table = TABLE.get(ptype)
    if table is None:
        raise KeyError(name.raw)
    negate = mod in ("not", "not-in")
    builder = _WHERE[ptype]
    vals = [builder(ctx, name, v, sp) for v in crit.values]
    return Cond(rtype, _rank(ptype, code, name, crit.values), table,
                lambda a, c=code, vs=vals: _param_or(a, c, vs), negate=negate)


_DAY_MS = 86400000


def _rank(ptype: str, code: str, name: Name, values: list[str]) -> float:
    mod = name.modifier
    if ptype == "token" and "identifier" in code:
        return 1.5
    if ptype == "token" and code in _LOW_SELECTIVITY:
        return 6.5
    if ptype == "date" and mod is None and values:
        # An equality on a day or less (e.g. birthdate=1980-05-17) is a narrow index range:
        # a better way in than a code or a short name prefix.
        parts = [_date_parts(name.raw, v) for v in values]
        if all(p == "eq" and hi - lo < _DAY_MS for p, lo, hi in parts):
            return 2.8
    if ptype == "string" and mod is None and values:
        # A short prefix matches many: rank it after longer ones (still before dates/numbers).
        shortest = min(len(N.norm_string(unescape(v))) for v in values)
        return _RANK["string"] + 0.25 * max(0, 4 - shortest)
    return _RANK.get(ptype, 8)


_LOW_SELECTIVITY = {"status", "gender", "active", "intent", "category", "clinical-status", "verification-status",
                    "lifecycle-status", "deceased", "priority", "_tag", "_security"}


def _param_or(alias: str, code: str, value_wheres: list) -> tuple[str, list]:
    ors = _or([w(alias) for w in value_wheres])
    return f"{alias}.param = ? AND {ors[0]}", [code, *ors[1]]


def _no_modifier(name: Name, allowed: set[str]) -> None:
    if name.modifier is not None and name.modifier not in allowed:
        raise invalid(name.raw, f"modifier ':{name.modifier}' is not supported here")


# -- value predicates per type (each returns f(alias) -> (sql, params)) -------------------------

def _string_where(ctx, name: Name, raw: str, sp):
    value = unescape(raw)
    mod = name.modifier
    if mod == "exact":
        return lambda a: (f"{a}.value_exact = ?", [value[:512]])
    norm = N.norm_string(value)
    if mod == "contains":
        pattern = "%" + norm.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        return lambda a: (f"{a}.value_norm LIKE ? ESCAPE '\\'", [pattern])
    return lambda a: (f"{a}.value_norm >= ? AND {a}.value_norm < ?", [norm, norm + N.PREFIX_END])


def _token_where(ctx, name: Name, raw: str, sp):
    mod = name.modifier
    if mod == "text":
        norm = N.norm_string(unescape(raw))
        return lambda a: (f"{a}.text_norm >= ? AND {a}.text_norm < ?", [norm, norm + N.PREFIX_END])
    parts = split_unescaped(raw, "|")
    if len(parts) > 2:
        raise invalid(name.raw, f"token '{raw}' has more than one unescaped '|'")
    if mod in ("in", "not-in", "above", "below"):
        pairs = codes_for_modifier(ctx.defs, mod, [unescape(p) for p in parts], name.raw)
        return _codes_where(pairs)
    if len(parts) == 1:
        code = unescape(parts[0])
        return lambda a: (f"{a}.code = ?", [code])
    system, code = unescape(parts[0]), unescape(parts[1])
    if not system and not code:
        raise invalid(name.raw, "a token needs a system or a code")
    if not system:
        return lambda a: (f"{a}.code = ? AND {a}.system IS NULL", [code])
    if not code:
        return lambda a: (f"{a}.system = ?", [system])
    return lambda a: (f"{a}.code = ? AND {a}.system = ?", [code, system])


def _codes_where(pairs: list[tuple[str | None, str]]):
    by_system: dict[str | None, list[str]] = {}
    for system, code in pairs:
        by_system.setdefault(system, []).append(code)

    def where(a):
        if not by_system:
            return "1 = 0", []
        parts = []
        for system, codes in by_system.items():
            marks = ", ".join("?" for _ in codes)
            if system is None:
                parts.append((f"{a}.code IN ({marks})", list(codes)))
            else:
                # code-typed elements are indexed without a system: their system is implied
                parts.append((f"({a}.system = ? OR {a}.system IS NULL) AND {a}.code IN ({marks})",
                              [system, *codes]))
        return _or(parts)
    return where


def _reference_where(ctx, name: Name, raw: str, sp):
    value = unescape(raw)
    mod = name.modifier
    type_filter = mod if mod and mod not in ("not", "missing") else None
    if type_filter and type_filter not in sp.get("target", [type_filter]):
        raise invalid(name.raw, f"'{type_filter}' is not a target type of '{sp['code']}'")
    if ctx.base_url and value.startswith(ctx.base_url + "/"):
        value = value[len(ctx.base_url) + 1:]
    if "://" in value or value.startswith(("urn:", "/")):
        url, _, version = value.partition("|")
        if version:
            return lambda a: (f"{a}.url = ? AND {a}.target_version = ?", [url, version])
        return lambda a: (f"{a}.url = ?", [url])
    version = None
    if "/_history/" in value:
        value, version = value.split("/_history/", 1)
    parts = value.split("/")
    if len(parts) == 2 and parts[0]:
        rtype, rid = parts
        if not ctx.defs.is_resource_type(rtype):
            raise invalid(name.raw, f"unknown resource type '{rtype}' in reference '{raw}'")
        if type_filter and type_filter != rtype:
            return lambda a: ("1 = 0", [])
    elif len(parts) == 1 and parts[0]:
        rtype, rid = type_filter, parts[0]
        if rtype is None and len(sp.get("target", [])) == 1:
            rtype = sp["target"][0]
    else:
        raise invalid(name.raw, f"'{raw}' is not a reference")
    sql, params = "{a}.target_id = ?", [rid]
    if rtype:
        sql += " AND {a}.target_type = ?"
        params.append(rtype)
    if version:
        sql += " AND {a}.target_version = ?"
        params.append(version)
    return lambda a, s=sql, p=params: (s.format(a=a), list(p))


def _date_parts(pname: str, raw: str) -> tuple[str, int, int]:
    prefix, text = parse_prefix(unescape(raw))
    try:
        lo, hi = N.date_range(text)
    except N.BadValue:
        raise invalid(pname, f"'{raw}' is not a valid date") from None
    return prefix, lo, hi


def _date_where(ctx, name: Name, raw: str, sp):
    prefix, lo, hi = _date_parts(name.raw, raw)
    return _range_pred(prefix, lo, hi, "low", "high", _approx_span(lo, hi))


def _approx_span(lo: int, hi: int) -> int:
    import time
    now = int(time.time() * 1000)
    return max(abs(now - (lo + hi) // 2) // 10, _DAY_MS)


def _range_pred(prefix: str, lo, hi, low_col: str, high_col: str, span):
    """Spec range semantics for dates: the target range [low, high] against [lo, hi]."""
    def where(a):
        L, H = f"{a}.{low_col}", f"{a}.{high_col}"
        return {
            # "L <= hi" is implied (low <= high) but bounds the index range on low.
            "eq": (f"{L} >= ? AND {L} <= ? AND {H} <= ?", [lo, hi, hi]),
            "ne": (f"({L} < ? OR {H} > ?)", [lo, hi]),
            "gt": (f"{H} > ?", [hi]),
            "lt": (f"{L} < ?", [lo]),
            "ge": (f"({H} > ? OR ({L} >= ? AND {H} <= ?))", [hi, lo, hi]),
            "le": (f"({L} < ? OR ({L} >= ? AND {H} <= ?))", [lo, lo, hi]),
            "sa": (f"{L} > ?", [hi]),
            "eb": (f"{H} < ?", [lo]),
            "ap": (f"{L} <= ? AND {H} >= ?", [hi + span, lo - span]),
        }[prefix]
    return where


def _last_updated(alias: str, raw: str, pname: str) -> tuple[str, list]:
    prefix, lo, hi = _date_parts(pname, raw)
    lo_t, hi_t = N.instant_text(lo), N.instant_text(hi)
    col = f"{alias}.last_updated"
    span = _approx_span(lo, hi)
    return {
        "eq": (f"{col} >= ? AND {col} <= ?", [lo_t, hi_t]),
        "ne": (f"({col} < ? OR {col} > ?)", [lo_t, hi_t]),
        "gt": (f"{col} > ?", [hi_t]), "sa": (f"{col} > ?", [hi_t]),
        "lt": (f"{col} < ?", [lo_t]), "eb": (f"{col} < ?", [lo_t]),
        "ge": (f"{col} >= ?", [lo_t]), "le": (f"{col} <= ?", [hi_t]),
        "ap": (f"{col} >= ? AND {col} <= ?", [N.instant_text(lo - span), N.instant_text(hi + span)]),
    }[prefix]


def _number_parts(name: Name, raw: str) -> tuple[str, float, float, float]:
    prefix, text = parse_prefix(raw)
    try:
        value, lo, hi = N.number_range(text)
    except N.BadValue:
        raise invalid(name.raw, f"'{raw}' is not a valid number") from None
    return prefix, value, lo, hi


def _numeric(prefix: str, value: float, lo: float, hi: float, col: str, scale: float = 1.0):
    value, lo, hi = value * scale, lo * scale, hi * scale
    d = abs(value) * 0.1
    return {
        "eq": (f"{col} >= ? AND {col} < ?", [lo, hi]),
        "ne": (f"({col} < ? OR {col} >= ?)", [lo, hi]),
        "gt": (f"{col} > ?", [value]), "sa": (f"{col} > ?", [value]),
        "lt": (f"{col} < ?", [value]), "eb": (f"{col} < ?", [value]),
        "ge": (f"{col} >= ?", [value]), "le": (f"{col} <= ?", [value]),
        "ap": (f"{col} >= ? AND {col} <= ?", [value - d, value + d]),
    }[prefix]


def _number_where(ctx, name: Name, raw: str, sp):
    prefix, value, lo, hi = _number_parts(name, unescape(raw))
    return lambda a: _numeric(prefix, value, lo, hi, f"{a}.value")


def _quantity_where(ctx, name: Name, raw: str, sp):
    parts = split_unescaped(raw, "|")
    if len(parts) not in (1, 3):
        raise invalid(name.raw, f"'{raw}' is not [prefix]number|system|code")
    prefix, value, lo, hi = _number_parts(name, unescape(parts[0]))
    system = unescape(parts[1]) if len(parts) == 3 else ""
    code = unescape(parts[2]) if len(parts) == 3 else ""
    canon = N.ucum_canonical(code) if code and system in ("", N.UCUM) else None

    def where(a):
        if canon:
            s, p = _numeric(prefix, value, lo, hi, f"{a}.canon_value", canon[1])
            return f"{a}.canon_code = ? AND {s}", [canon[0], *p]
        s, p = _numeric(prefix, value, lo, hi, f"{a}.value")
        if code and system:
            return f"{a}.code = ? AND {a}.system = ? AND {s}", [code, system, *p]
        if code:
            return f"{a}.code = ? AND {s}", [code, *p]
        return s, p
    return where


def _uri_where(ctx, name: Name, raw: str, sp):
    value = unescape(raw)
    mod = name.modifier
    if mod == "below":
        return lambda a: (f"{a}.value >= ? AND {a}.value < ?", [value, value + N.PREFIX_END])
    if mod == "above":
        return lambda a: (f"substr(?, 1, length({a}.value)) = {a}.value", [value])
    if mod == "contains":
        pattern = "%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        return lambda a: (f"{a}.value LIKE ? ESCAPE '\\'", [pattern])
    return lambda a: (f"{a}.value = ?", [value])


_WHERE = {"string": _string_where, "token": _token_where, "reference": _reference_where, "date": _date_where,
          "number": _number_where, "quantity": _quantity_where, "uri": _uri_where}


# -- composite, chains, _has, _list ---------------------------------------------------------------

def _component_sps(ctx, sp) -> list[dict]:
    from .indexer import _component_definition
    out = []
    for comp in sp.get("component", []):
        target = _component_definition(ctx.defs, comp.get("definition", ""))
        if target is None or target.get("type") not in TABLE:
            raise invalid(sp["code"], "composite component definition not known")
        out.append(target)
    return out


def _composite_tables(ctx, sp) -> list[str]:
    return [TABLE[c["type"]] for c in _component_sps(ctx, sp)]


def _composite(ctx, rtype: str, sp: dict, name: Name, values: list[str]) -> Cond:
    comps = _component_sps(ctx, sp)
    code = sp["code"]
    per_value = []
    for raw in values:
        pieces = split_unescaped(raw, "$")
        if len(pieces) != len(comps):
            raise invalid(name.raw, f"'{raw}' needs {len(comps)} components separated by '$'")
        wheres = []
        for comp_sp, piece in zip(comps, pieces):
            cname = Name(name.raw, comp_sp["code"])
            wheres.append((TABLE[comp_sp["type"]], _WHERE[comp_sp["type"]](ctx, cname, piece, comp_sp)))
        per_value.append(wheres)

    def custom(c: Ctx, key):
        ors = []
        for wheres in per_value:
            aliases = [c.alias("c") for _ in wheres]
            a0 = aliases[0]
            sql = f"SELECT 1 FROM {wheres[0][0]} {a0}"
            for (table, _), a in zip(wheres[1:], aliases[1:]):
                sql += (f" JOIN {table} {a} ON {a}.res_type = {a0}.res_type AND {a}.res_id = {a0}.res_id "
                        f"AND {a}.grp = {a0}.grp")
            conds, params = [f"{a0}.res_type = {key[0]}", f"{a0}.res_id = {key[1]}"], []
            for i, ((_, w), a) in enumerate(zip(wheres, aliases)):
                s, p = w(a)
                conds.append(f"{a}.param = ? AND {s}")
                params += [f"{code}#{i}", *p]
            ors.append((f"EXISTS ({sql} WHERE {' AND '.join(conds)})", params))
        return _or(ors)
    return Cond(rtype, _RANK["composite"], custom=custom)


def _targets_with(ctx, sp: dict, modifier: str | None, code: str, raw: str) -> list[str]:
    if modifier:
        if not ctx.defs.is_resource_type(modifier) or modifier not in sp.get("target", [modifier]):
            raise invalid(raw, f"'{modifier}' is not a target type of '{sp['code']}'")
        return [modifier]
    out = [t for t in sp.get("target", []) if code.startswith("_") or code in ctx.defs.search_params(t)]
    if not out:
        raise invalid(raw, f"no target type of '{sp['code']}' has a parameter '{code}'")
    return out


def _chain(ctx, rtype: str, sp: dict, name: Name, values: list[str]) -> Cond:
    inner = name.chain
    targets = _targets_with(ctx, sp, name.modifier, inner.code, name.raw)
    code = sp["code"]
    subs = []
    for t in targets:
        try:
            cond = build(ctx, t, Criterion(inner, values))
        except KeyError:
            if len(targets) == 1:
                raise invalid(name.raw, f"unknown parameter '{inner.code}' on {t}") from None
            continue
        subs.append((t, cond))

    def ors(c: Ctx, a: str, correlated: bool):
        out = []
        for t, cond in subs:
            if correlated:
                s, p = cond.pred(c, (f"{a}.target_type", f"{a}.target_id"))
                out.append((f"{a}.target_type = ? AND {s}", [t, *p]))
            else:
                s, p = cond.idset(c)
                out.append((f"{a}.target_type = ? AND {a}.target_id IN ({s})", [t, *p]))
        return _or(out) if out else ("1 = 0", [])

    def custom(c: Ctx, key):
        a = c.alias()
        o = ors(c, a, True)
        return (f"EXISTS (SELECT 1 FROM idx_reference {a} WHERE {a}.res_type = {key[0]} AND {a}.res_id = {key[1]} "
                f"AND {a}.param = ? AND {o[0]})", [code, *o[1]])

    def idset(c: Ctx):
        a = c.alias()
        o = ors(c, a, False)
        return (f"SELECT {a}.res_id FROM idx_reference {a} WHERE {a}.res_type = ? AND {a}.param = ? AND {o[0]}",
                [rtype, code, *o[1]])
    rank = min((cond.rank for _, cond in subs), default=9) + 0.5
    return Cond(rtype, rank, custom=custom, custom_idset=idset)


def _has(ctx, rtype: str, name: Name, values: list[str]) -> Cond:
    src_type, ref_code = name.has
    if not ctx.defs.is_resource_type(src_type):
        raise invalid(name.raw, f"unknown resource type '{src_type}' in _has")
    sp = search_param(ctx, src_type, ref_code)
    if sp is None or sp.get("type") != "reference":
        raise invalid(name.raw, f"'{ref_code}' is not a reference parameter of {src_type}")
    try:
        inner = build(ctx, src_type, Criterion(name.chain, values))
    except KeyError:
        raise invalid(name.raw, f"unknown parameter '{name.chain.raw}' on {src_type}") from None

    def custom(c: Ctx, key):
        a = c.alias()
        s, p = inner.pred(c, (f"{a}.res_type", f"{a}.res_id"))
        return (f"EXISTS (SELECT 1 FROM idx_reference {a} WHERE {a}.res_type = ? AND {a}.param = ? "
                f"AND {a}.target_type = {key[0]} AND {a}.target_id = {key[1]} AND {s})", [src_type, ref_code, *p])

    def idset(c: Ctx):
        a = c.alias()
        s, p = inner.idset(c)
        return (f"SELECT {a}.target_id FROM idx_reference {a} WHERE {a}.res_type = ? AND {a}.param = ? "
                f"AND {a}.target_type = ? AND {a}.res_id IN ({s})", [src_type, ref_code, rtype, *p])
    return Cond(rtype, inner.rank + 0.5, custom=custom, custom_idset=idset)


def _list(ctx, rtype: str, values: list[str]) -> Cond:
    ids = [unescape(v) for v in values]

    marks = ", ".join("?" for _ in ids)

    def idset(c: Ctx):
        a = c.alias()
        return (f"SELECT {a}.target_id FROM idx_reference {a} WHERE {a}.res_type = ? AND {a}.res_id IN ({marks}) "
                f"AND {a}.param = ? AND {a}.target_type = ?", ["List", *ids, "item", rtype])

    def custom(c: Ctx, key):
        s, p = idset(c)
        return f"{key[1]} IN ({s})", p
    return Cond(rtype, _RANK["reference"], custom=custom, custom_idset=idset)


def _content(ctx, rtype: str, name: Name, values: list[str]) -> Cond:
    """_content: every word of a value appears in the resource text (case-insensitive)."""
    _no_modifier(name, set())
    ors = []
    for raw in values:
        words = [w for w in unescape(raw).split() if w]
        ors.append(["%" + w.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                    for w in words])

    def custom(c: Ctx, key, row):
        parts = [(" AND ".join(f"lower({row}.content) LIKE ? ESCAPE '\\'" for _ in ws) or "1 = 1", ws)
                 for ws in ors]
        return _or(parts)
    return Cond(rtype, _RANK["custom"], custom=custom, needs_row=True)


def compartment_cond(ctx, rtype: str, compartment: tuple[str, str]) -> Cond | None:
    """Membership of ``compartment`` (e.g. ("Patient", "123")) for resources of ``rtype``;
    None if the type is not in that compartment."""
    ctype, cid = compartment
    cd = ctx.defs.compartment_definition(ctype)
    if cd is None:
        raise invalid(ctype, f"no compartment '{ctype}'")
    params = []
    for entry in cd.get("resource", []):
        if entry.get("code") == rtype:
            params = [p for p in entry.get("param", []) if p != "{def}"]
    if not params and rtype != ctype:
        return None

    def idset(c: Ctx):
        a = c.alias()
        parts = []
        if params:
            marks = ", ".join("?" for _ in params)
            parts.append((f"SELECT {a}.res_id FROM idx_reference {a} WHERE {a}.res_type = ? "
                          f"AND {a}.param IN ({marks}) AND {a}.target_id = ? AND {a}.target_type = ?",
                          [rtype, *params, cid, ctype]))
        if rtype == ctype:
            parts.append(("SELECT CAST(? AS TEXT)", [cid]))
        return " UNION ".join(s for s, _ in parts), [x for _, p in parts for x in p]

    def custom(c: Ctx, key):
        s, p = idset(c)
        return f"{key[1]} IN ({s})", p
    return Cond(rtype, _RANK["reference"], custom=custom, custom_idset=idset)


# -- whole query ---------------------------------------------------------------------------------

@dataclass
class TypeQuery:
    rtype: str
    conds: list[Cond] = field(default_factory=list)


def where_for_type(ctx: Ctx, tq: TypeQuery, ralias: str = "r") -> tuple[str, list]:
    """``r.res_type = ? AND r.deleted = ? AND ...`` with the most selective criterion as driver."""
    if tq.rtype is None:  # every type: only correlated predicates
        parts: list[tuple[str, list]] = [(f"{ralias}.deleted = ?", [False])]
    else:
        parts = [(f"{ralias}.res_type = ? AND {ralias}.deleted = ?", [tq.rtype, False])]
    conds = sorted(tq.conds, key=lambda c: c.rank)
    drivers = [c for c in conds if c.drives] if tq.rtype is not None else []
    if drivers:
        s, p = drivers[0].idset(ctx)
        parts.append((f"{ralias}.res_id IN ({s})", p))
        conds.remove(drivers[0])
    for c in conds:
        parts.append(c.pred(ctx, (f"{ralias}.res_type", f"{ralias}.res_id"), row=ralias))
    return _and(parts)


def where_all(ctx: Ctx, tqs: list[TypeQuery], ralias: str = "r") -> tuple[str, list]:
    if len(tqs) == 1:
        return where_for_type(ctx, tqs[0], ralias)
    return _or([where_for_type(ctx, tq, ralias) for tq in tqs])


def sort_key(ctx: Ctx, rtypes: list[str], code: str, desc: bool, ralias: str = "r") -> tuple[str, list]:
    """A scalar SQL expression to order by for one _sort parameter."""
    if code == "_id":
        return f"{ralias}.res_id", []
    if code == "_lastUpdated":
        return f"{ralias}.last_updated", []
    sps = [ctx.defs.search_params(t).get(code) for t in rtypes]
    sps = [sp for sp in sps if sp is not None]
    if not sps or sps[0]["type"] not in TABLE:
        raise KeyError(code)
    ptype = sps[0]["type"]
    agg = "MAX" if desc else "MIN"
    col = {"string": "value_norm", "token": "code", "number": "value", "quantity": "value", "uri": "value",
           "date": "high" if desc else "low",
           "reference": "COALESCE({a}.url, {a}.target_type || '/' || {a}.target_id)"}[ptype]
    a = ctx.alias("s")
    expr = col.format(a=a) if "{a}" in col else f"{a}.{col}"
    return (f"(SELECT {agg}({expr}) FROM {TABLE[ptype]} {a} WHERE {a}.res_type = {ralias}.res_type "
            f"AND {a}.res_id = {ralias}.res_id AND {a}.param = ?)", [code])
