"""Value normalisation shared by indexing (stored values) and querying (search values).

- strings: case-folded, accents removed, whitespace collapsed;
- dates: [low, high] in epoch milliseconds (UTC), both ends inclusive, from the precision
  written (``2013`` covers the whole year). Values without a timezone are taken as UTC;
- numbers: [low, high) from the significant figures (``100`` -> [99.5, 100.5));
- quantities: UCUM units converted to a canonical unit where the unit is in our table.
"""
from __future__ import annotations

import calendar
import functools
import re
import unicodedata
from decimal import Decimal, InvalidOperation

# -- strings ----------------------------------------------------------------------------------
_SPACE = re.compile(r"\s+")


@functools.lru_cache(maxsize=65536)
def norm_string(value: str) -> str:
    s = unicodedata.normalize("NFKD", value.casefold())
    s = "".join(c for c in s if not unicodedata.combining(c))
    return _SPACE.sub(" ", s).strip()


# A string that sorts after any normalised text with the same prefix (byte-wise collation).
PREFIX_END = "\U0010ffff"

# -- dates ------------------------------------------------------------------------------------
DATE_MIN = -62135596800000  # 0001-01-01T00:00:00Z
DATE_MAX = 253402300799999  # 9999-12-31T23:59:59.999Z

_DATE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?$")


class BadValue(ValueError):
    """A search or stored value that cannot be read as its type."""


def date_range(text: str) -> tuple[int, int]:
    """[low, high] epoch ms covered by a FHIR date/dateTime/instant (or a search date)."""
    m = _DATE.match(text.strip()) if isinstance(text, str) else None
    if not m:
        raise BadValue(f"not a date: {text!r}")
    y, mo, d, h, mi, s, frac, tz = m.groups()
    year = int(y)
    try:
        if mo is None:
            low = _ms(year, 1, 1)
            high = _ms(year + 1, 1, 1) - 1 if year < 9999 else DATE_MAX
            return low, high
        month = int(mo)
        if not 1 <= month <= 12:
            raise BadValue(f"not a date: {text!r}")
        if d is None:
            low = _ms(year, month, 1)
            days = calendar.monthrange(year, month)[1]
            return low, low + days * 86400000 - 1
        day = int(d)
        if not 1 <= day <= calendar.monthrange(year, month)[1]:
            raise BadValue(f"not a date: {text!r}")
        if h is None:
            low = _ms(year, month, day)
            return low, low + 86400000 - 1
        hour, minute = int(h), int(mi or 0)
        if hour > 24 or minute > 59:
            raise BadValue(f"not a date: {text!r}")
        offset = 0
        if tz and tz != "Z":
            sign = -1 if tz[0] == "-" else 1
            offset = sign * (int(tz[1:3]) * 60 + int(tz[4:6])) * 60000
        base = _ms(year, month, day) + (hour * 3600 + minute * 60) * 1000 - offset
        if mi is None:
            return base, base + 3600000 - 1
        if s is None:
            return base, base + 60000 - 1
        sec = int(s)
        if sec > 60:
            raise BadValue(f"not a date: {text!r}")
        base += sec * 1000
        if frac is None:
            return base, base + 999
        digits = frac[:3]
        ms = int(digits.ljust(3, "0"))
        width = 10 ** (3 - len(digits))
        return base + ms, base + ms + width - 1
    except (ValueError, OverflowError) as exc:
        raise BadValue(f"not a date: {text!r}") from exc


def _ms(year: int, month: int, day: int) -> int:
    return calendar.timegm((year, month, day, 0, 0, 0)) * 1000


def instant_text(ms: int) -> str:
    """Epoch ms as the storage layer's last_updated text (UTC, millisecond precision)."""
    ms = max(DATE_MIN, min(DATE_MAX, ms))
    secs, milli = divmod(ms, 1000)
    import time
    t = time.gmtime(secs) if secs >= 0 else _gmtime_neg(secs)
    return f"{t[0]:04d}-{t[1]:02d}-{t[2]:02d}T{t[3]:02d}:{t[4]:02d}:{t[5]:02d}.{milli:03d}Z"


def _gmtime_neg(secs: int):
    import datetime
    d = datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=secs)
    return (d.year, d.month, d.day, d.hour, d.minute, d.second)


# -- numbers ----------------------------------------------------------------------------------

def to_decimal(value) -> Decimal:
    if isinstance(value, bool):
        raise BadValue(f"not a number: {value!r}")
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    try:
        d = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise BadValue(f"not a number: {value!r}") from exc
    if not d.is_finite():
        raise BadValue(f"not a number: {value!r}")
    return d


def number_range(value) -> tuple[float, float, float]:
    """(value, low, high): half a unit of the last significant digit either side."""
    d = to_decimal(value)
    half = Decimal(5).scaleb(d.as_tuple().exponent - 1)
    return float(d), float(d - half), float(d + half)


# -- UCUM -------------------------------------------------------------------------------------
UCUM = "http://unitsofmeasure.org"
_PREFIX = {"": 1, "k": 1e3, "h": 1e2, "da": 1e1, "d": 1e-1, "c": 1e-2, "m": 1e-3, "u": 1e-6,
           "n": 1e-9, "p": 1e-12, "f": 1e-15}
# base unit -> (canonical unit, factor): prefixes are applied to the ones marked True
_UNITS = {
    "g": ("g", 1.0, True), "L": ("m3", 1e-3, True), "l": ("m3", 1e-3, True), "m": ("m", 1.0, True),
    "s": ("s", 1.0, True), "mol": ("mol", 1.0, True), "eq": ("eq", 1.0, True), "[iU]": ("[iU]", 1.0, True),
    "U": ("U", 1.0, True), "Pa": ("g/(m.s2)", 1e3, True), "min": ("s", 60.0, False), "h": ("s", 3600.0, False),
    "d": ("s", 86400.0, False), "wk": ("s", 604800.0, False), "mo": ("s", 2629800.0, False),
    "a": ("s", 31557600.0, False), "mm[Hg]": ("g/(m.s2)", 133322.0, False), "%": ("1", 0.01, False),
    "1": ("1", 1.0, False), "[lb_av]": ("g", 453.59237, False), "[in_i]": ("m", 0.0254, False),
    "Cel": ("Cel", 1.0, False), "[degF]": ("[degF]", 1.0, False), "kg/m2": ("g/m2", 1e3, False),
    "/min": ("/s", 1 / 60, False), "{beats}/min": ("/s", 1 / 60, False), "{breaths}/min": ("/s", 1 / 60, False),
}


def _unit_atom(unit: str) -> tuple[str, float] | None:
    if unit in _UNITS:
        canon, factor, _ = _UNITS[unit]
        return canon, factor
    for prefix in ("da", "k", "h", "d", "c", "m", "u", "n", "p", "f"):
        if unit.startswith(prefix) and unit[len(prefix):] in _UNITS:
            canon, factor, prefixable = _UNITS[unit[len(prefix):]]
            if prefixable:
                return canon, factor * _PREFIX[prefix]
    return None


def ucum_canonical(code: str) -> tuple[str, float] | None:
    """(canonical unit, factor) for a UCUM code we know, else None. Handles ``a/b``."""
    if not code:
        return None
    atom = _unit_atom(code)
    if atom:
        return atom
    if code.count("/") == 1:
        num, den = code.split("/")
        a, b = _unit_atom(num), _unit_atom(den)
        if a and b:
            return f"{a[0]}/{b[0]}", a[1] / b[1]
    return None
