"""Values for the compiled FHIRPath engine: typed items, equality and ordering.

Semantics follow the FHIRPath spec as the HL7 Java engine implements it: comparing dates of
different precision that agree on their common precision gives empty (unknown), decimals
compare by value, strings by code point.
"""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

SYSTEM_OF = {
    "boolean": "Boolean", "string": "String", "code": "String", "id": "String", "uri": "String", "url": "String",
    "canonical": "String", "oid": "String", "uuid": "String", "markdown": "String", "base64Binary": "String",
    "xhtml": "String", "integer": "Integer", "positiveInt": "Integer", "unsignedInt": "Integer",
    "decimal": "Decimal", "date": "Date", "dateTime": "DateTime", "instant": "DateTime", "time": "Time",
}
DATE_TYPES = frozenset({"date", "dateTime", "instant", "Date", "DateTime"})
TIME_TYPES = frozenset({"time", "Time"})


class Item:
    """One value in a FHIRPath collection: JSON value, defining element node, type, and "_x"."""

    __slots__ = ("v", "node", "t", "ext")

    def __init__(self, v, node=None, t: str | None = None, ext=None):
        self.v = v
        self.node = node
        self.t = t
        self.ext = ext

    def __repr__(self) -> str:
        return f"Item({self.v!r}, {self.t})"


def sys_item(v) -> Item:
    """A System-typed value computed by an expression."""
    if isinstance(v, bool):
        return Item(v, None, "Boolean")
    if isinstance(v, int):
        return Item(v, None, "Integer")
    if isinstance(v, (Decimal, float)):
        return Item(Decimal(str(v)), None, "Decimal")
    return Item(v, None, "String")


TRUE = [Item(True, None, "Boolean")]
FALSE = [Item(False, None, "Boolean")]


def boolean(b: bool | None) -> list:
    if b is None:
        return []
    return TRUE if b else FALSE


def as_bool(coll: list) -> bool | None:
    """Singleton evaluation as a boolean: empty -> None; one non-boolean item -> True."""
    if not coll:
        return None
    if len(coll) == 1:
        v = coll[0].v
        return v if isinstance(v, bool) else True
    raise FPError("a collection of several items cannot be used as a boolean")


def short_circuit(a: bool | None, right_bool, decisive: bool) -> list:
    """and/or in three-valued logic: ``decisive`` (False for and, True for or) on either side
    decides; otherwise an unknown side makes the result unknown. ``right_bool()`` is only
    evaluated when ``a`` does not decide."""
    if a is not decisive:
        b = right_bool()
        if b is not decisive:
            if a is None or b is None:
                return []
            return FALSE if decisive else TRUE
    return TRUE if decisive else FALSE


def implication(a: bool | None, right_bool) -> list:
    """``implies`` in three-valued logic (``right_bool()`` only evaluated when needed)."""
    if a is False:
        return TRUE
    b = right_bool()
    if b is True:
        return TRUE
    if a is None:
        return []
    return FALSE if b is False else []


class FPError(Exception):
    pass


# -- dates and times ------------------------------------------------------------------------
_DT = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?"
                 r"(Z|[+-]\d{2}:\d{2})?)?)?)?$")
_TM = re.compile(r"T?(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?$")


def parse_datetime(s: str):
    """(components, timezone offset minutes or None); components are ints, precision = len."""
    m = _DT.match(s)
    if not m:
        return None
    parts = [m.group(i) for i in range(1, 7)]
    comps = []
    for p in parts:
        if p is None:
            break
        comps.append(int(p))
    if m.group(7) is not None and len(comps) == 6:
        comps[5] = Decimal(f"{comps[5]}.{m.group(7)}")
    tz = m.group(8)
    offset = None
    if tz:
        offset = 0 if tz == "Z" else (1 if tz[0] == "+" else -1) * (int(tz[1:3]) * 60 + int(tz[4:6]))
    return comps, offset


def parse_time(s: str):
    m = _TM.match(s)
    if not m:
        return None
    comps = [int(g) for g in m.groups()[:3] if g is not None]
    if m.group(4) is not None and len(comps) == 3:
        comps[2] = Decimal(f"{comps[2]}.{m.group(4)}")
    return comps


def _normalise(comps: list, offset: int | None) -> list:
    """Shift a date-time with minutes to UTC so different zones compare."""
    if offset is None or len(comps) < 5 or offset == 0:
        return comps
    import datetime as _d
    sec = comps[5] if len(comps) > 5 else 0
    base = _d.datetime(comps[0], comps[1], comps[2], comps[3], comps[4]) - _d.timedelta(minutes=offset)
    out = [base.year, base.month, base.day, base.hour, base.minute]
    if len(comps) > 5:
        out.append(sec)
    return out


def compare_temporal(a: str, b: str, time: bool = False) -> int | None:
    """-1/0/1, or None when precision makes the answer unknown."""
    if time:
        pa, pb = parse_time(a), parse_time(b)
        if pa is None or pb is None:
            return None
    else:
        x, y = parse_datetime(a), parse_datetime(b)
        if x is None or y is None:
            return None
        pa, pb = _normalise(*x), _normalise(*y)
    n = min(len(pa), len(pb))
    # seconds and milliseconds are one precision in FHIRPath
    for i in range(n):
        if pa[i] != pb[i]:
            return -1 if pa[i] < pb[i] else 1
    if len(pa) != len(pb):
        return None
    return 0


# -- equality and order ---------------------------------------------------------------------
def _num(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return Decimal(v)
    if isinstance(v, Decimal):
        return v
    if isinstance(v, float):
        return Decimal(str(v))
    return None


def _kind(it: Item) -> str:
    t = it.t or ""
    if t in DATE_TYPES:
        return "date"
    if t in TIME_TYPES:
        return "time"
    return ""


def item_equal(a: Item, b: Item) -> bool | None:
    va, vb = a.v, b.v
    if isinstance(va, dict) or isinstance(vb, dict):
        if a.t == "Quantity" and b.t == "Quantity":
            c = compare_quantity(a, b)
            return None if c is None else c == 0
        return va == vb
    ka, kb = _kind(a), _kind(b)
    if (ka or kb) and isinstance(va, str) and isinstance(vb, str):
        if ka == "time" or kb == "time":
            c = compare_temporal(va, vb, time=True)
        else:
            c = compare_temporal(va, vb)
        return None if c is None else c == 0
    na, nb = _num(va), _num(vb)
    if na is not None and nb is not None:
        return na == nb
    if isinstance(va, bool) or isinstance(vb, bool):
        return va is vb if isinstance(va, bool) and isinstance(vb, bool) else False
    return va == vb


def item_equivalent(a: Item, b: Item) -> bool:
    va, vb = a.v, b.v
    if isinstance(va, str) and isinstance(vb, str) and not (_kind(a) or _kind(b)):
        return " ".join(va.lower().split()) == " ".join(vb.lower().split())
    na, nb = _num(va), _num(vb)
    if na is not None and nb is not None:
        # equivalent at the precision of the less precise value
        ea, eb = na.as_tuple().exponent, nb.as_tuple().exponent
        e = max(ea if isinstance(ea, int) else 0, eb if isinstance(eb, int) else 0)
        q = Decimal(1).scaleb(e)
        try:
            return na.quantize(q) == nb.quantize(q)
        except InvalidOperation:
            return na == nb
    r = item_equal(a, b)
    return bool(r)


def compare_quantity(a: Item, b: Item) -> int | None:
    from ..terminology import ucum
    qa, qb = a.v, b.v
    va, vb = _num(qa.get("value")), _num(qb.get("value"))
    if va is None or vb is None:
        return None
    ua, ub = qa.get("code") or qa.get("unit"), qb.get("code") or qb.get("unit")
    if ua != ub:
        conv = ucum.convert(va, ua, ub) if isinstance(ua, str) and isinstance(ub, str) else None
        if conv is None:
            return None
        va = conv
    return (va > vb) - (va < vb)


def item_compare(a: Item, b: Item) -> int | None:
    va, vb = a.v, b.v
    if isinstance(va, dict) and isinstance(vb, dict):
        return compare_quantity(a, b)
    ka, kb = _kind(a), _kind(b)
    if (ka or kb) and isinstance(va, str) and isinstance(vb, str):
        return compare_temporal(va, vb, time=(ka == "time" or kb == "time"))
    na, nb = _num(va), _num(vb)
    if na is not None and nb is not None:
        return (na > nb) - (na < nb)
    if isinstance(va, str) and isinstance(vb, str):
        return (va > vb) - (va < vb)
    raise FPError(f"cannot compare {a.t} with {b.t}")
