"""A small UCUM unit converter: enough to compare quantities (min/max checks) in common units.

Units are parsed as products/quotients of prefixed atoms with integer exponents, e.g. ``mg``,
``kg/m2``, ``mm[Hg]``, ``mL/min``, ``[mi_i]``. An unknown atom gives ``None`` (not comparable).
"""
from __future__ import annotations

import re
from decimal import Decimal
from functools import lru_cache

# atom -> (factor to base units, dimension vector (m, g, s, K, mol, cd, A))
_D = {
    "m": (1, (1, 0, 0, 0, 0, 0, 0)), "g": (1, (0, 1, 0, 0, 0, 0, 0)), "s": (1, (0, 0, 1, 0, 0, 0, 0)),
    "K": (1, (0, 0, 0, 1, 0, 0, 0)), "mol": (1, (0, 0, 0, 0, 1, 0, 0)), "cd": (1, (0, 0, 0, 0, 0, 1, 0)),
    "A": (1, (0, 0, 0, 0, 0, 0, 1)),
}
_ATOMS: dict[str, tuple[Decimal, tuple]] = {k: (Decimal(v[0]), v[1]) for k, v in _D.items()}


def _derived(atom: str, factor, unit: str) -> None:
    f, dim = _parse(unit)
    _ATOMS[atom] = (Decimal(str(factor)) * f, dim)


_PREFIXES = {
    "Y": Decimal("1e24"), "Z": Decimal("1e21"), "E": Decimal("1e18"), "P": Decimal("1e15"), "T": Decimal("1e12"),
    "G": Decimal("1e9"), "M": Decimal("1e6"), "k": Decimal("1e3"), "h": Decimal("1e2"), "da": Decimal("1e1"),
    "d": Decimal("1e-1"), "c": Decimal("1e-2"), "m": Decimal("1e-3"), "u": Decimal("1e-6"), "n": Decimal("1e-9"),
    "p": Decimal("1e-12"), "f": Decimal("1e-15"), "a": Decimal("1e-18"),
}
_TERM = re.compile(r"(\[[^\]]+\]|[A-Za-z%'\"]+(?:\[[^\]]+\])?)(-?\d+)?")


def _atom(sym: str):
    if sym in _ATOMS:
        return _ATOMS[sym]
    for p in sorted(_PREFIXES, key=len, reverse=True):
        if sym.startswith(p) and sym[len(p):] in _ATOMS:
            f, dim = _ATOMS[sym[len(p):]]
            return _PREFIXES[p] * f, dim
    return None


def _parse(unit: str):
    unit = re.sub(r"\{[^}]*\}", "", unit)  # annotations carry no meaning
    factor, dim = Decimal(1), [0] * 7
    if unit in ("", "1"):
        return factor, tuple(dim)
    sign = 1
    pos = 0
    first = True
    while pos < len(unit):
        if not first:
            op = unit[pos]
            if op not in "./":
                raise ValueError(unit)
            sign = -1 if op == "/" else 1
            pos += 1
        elif unit[pos] == "/":
            sign = -1
            pos += 1
        first = False
        m = re.match(r"\d+(?![A-Za-z\[])", unit[pos:])
        if m:  # a numeric factor such as 10*3 or 100
            txt = m.group(0)
            pos += len(txt)
            if unit[pos:pos + 1] in ("*", "^"):
                m2 = re.match(r"[*^]([+-]?\d+)", unit[pos:])
                pos += len(m2.group(0))
                val = Decimal(txt) ** int(m2.group(1))
            else:
                val = Decimal(txt)
            factor = factor * val if sign > 0 else factor / val
            continue
        m = _TERM.match(unit, pos)
        if not m:
            raise ValueError(unit)
        pos = m.end()
        a = _atom(m.group(1))
        if a is None:
            raise ValueError(unit)
        exp = int(m.group(2) or 1) * sign
        f, d = a
        factor = factor * (f ** exp) if exp > 0 else factor / (f ** -exp)
        dim = [x + y * exp for x, y in zip(dim, d)]
    return factor, tuple(dim)


for _atom_name, _f, _u in (
    ("L", "0.001", "m3"), ("l", "0.001", "m3"), ("min", 60, "s"), ("h", 3600, "s"), ("d", 86400, "s"),
    ("wk", 604800, "s"), ("mo", "2629800", "s"), ("a", "31557600", "s"), ("Hz", 1, "/s"),
    ("N", 1000, "g.m/s2"), ("Pa", 1, "N/m2"), ("J", 1, "N.m"), ("W", 1, "J/s"), ("bar", 100000, "Pa"),
    ("m[Hg]", "133322", "Pa"), ("m[H2O]", "9806.65", "Pa"), ("cal", "4.184", "J"), ("[in_i]", "0.0254", "m"),
    ("[ft_i]", "0.3048", "m"), ("[yd_i]", "0.9144", "m"), ("[mi_i]", "1609.344", "m"), ("[lb_av]", "453.59237", "g"),
    ("[oz_av]", "28.349523125", "g"), ("[stone_av]", "6350.29318", "g"), ("t", 1000000, "g"), ("%", "0.01", "1"),
    ("[ppm]", "0.000001", "1"), ("[iU]", 1, "1"), ("[IU]", 1, "1"), ("U", 1, "1"), ("eq", 1, "mol"),
    ("osm", 1, "mol"), ("[pi]", "3.14159265358979", "1"), ("[degF]", 1, "K"), ("Cel", 1, "K"), ("kat", 1, "mol/s"),
    ("[drp]", "0.00000005", "m3"), ("[pt_us]", "0.000473176473", "m3"), ("[gal_us]", "0.003785411784", "m3"),
    ("[foz_us]", "0.0000295735295625", "m3"), ("[pH]", 1, "1"), ("[beth'U]", 1, "1"), ("[arb'U]", 1, "1"),
):
    _derived(_atom_name, _f, _u)
del _atom_name, _f, _u


@lru_cache(maxsize=1024)
def canonical(unit: str):
    """(factor, dimension) of a UCUM unit, or None when we cannot interpret it."""
    try:
        return _parse(unit)
    except (ValueError, ArithmeticError):
        return None


def convert(value, from_unit: str, to_unit: str) -> Decimal | None:
    """``value`` in ``from_unit`` expressed in ``to_unit``; None when not comparable."""
    a, b = canonical(from_unit), canonical(to_unit)
    if a is None or b is None or a[1] != b[1]:
        return None
    if from_unit in ("Cel", "[degF]") or to_unit in ("Cel", "[degF]"):
        return Decimal(str(value)) if from_unit == to_unit else None  # offset scales: same unit only
    return Decimal(str(value)) * a[0] / b[0]


def comparable(u1: str, u2: str) -> bool:
    a, b = canonical(u1), canonical(u2)
    return a is not None and b is not None and a[1] == b[1]
