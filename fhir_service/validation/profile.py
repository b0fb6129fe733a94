"""Profile constraints on one element: fixed[x], pattern[x], maxLength, minValue/maxValue."""
from __future__ import annotations

import datetime as _dt
from decimal import Decimal

from .fp_values import Item, compare_temporal


def fixed_or_pattern(node) -> tuple[str, object] | None:
    """('fixed', value) or ('pattern', value) from the element definition (cached)."""
    got = node.extras.get("fp", False)
    if got is False:
        got = None
        for k, v in node.ed.items():
            if k.startswith("fixed") and len(k) > 5:
                got = ("fixed", v)
                break
            if k.startswith("pattern") and len(k) > 7:
                got = ("pattern", v)
                break
        node.extras["fp"] = got
    return got


def _num(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, Decimal)):
        return Decimal(v)
    return None


def _prim_equal(a, b) -> bool:
    na, nb = _num(a), _num(b)
    if na is not None and nb is not None:
        return na == nb
    return a == b and type(a) is type(b) or (isinstance(a, str) and a == b)


def matches_fixed(value, fixed) -> bool:
    if isinstance(fixed, dict):
        if not isinstance(value, dict):
            return False
        keys = set(value) | set(fixed)
        return all(k in value and k in fixed and matches_fixed(value[k], fixed[k]) for k in keys)
    if isinstance(fixed, list):
        return isinstance(value, list) and len(value) == len(fixed) and all(
            matches_fixed(a, b) for a, b in zip(value, fixed))
    return _prim_equal(value, fixed)


def matches_pattern(value, pattern) -> bool:
    if isinstance(pattern, dict):
        if not isinstance(value, dict):
            return False
        return all(k in value and matches_pattern(value[k], v) for k, v in pattern.items())
    if isinstance(pattern, list):
        if not isinstance(value, list):
            value = [value]
        return all(any(matches_pattern(v, p) for v in value) for p in pattern)
    return _prim_equal(value, pattern)


def _show(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _rules(node) -> tuple:
    """(fixed/pattern, maxLength, [(bound type, "min" | "max", bound)]) of the element (cached)."""
    got = node.extras.get("profile-rules")
    if got is None:
        ed = node.ed
        ml = ed.get("maxLength")
        bounds = tuple((key[8:], "min" if key.startswith("minValue") else "max", value) for key, value in ed.items()
                       if key.startswith(("minValue", "maxValue")))
        got = node.extras["profile-rules"] = (fixed_or_pattern(node), ml if isinstance(ml, int) else None, bounds)
    return got


def check(w, node, type_code: str, val, path: str) -> None:
    fp, ml, bounds = _rules(node)
    if fp is not None and val is not None:
        kind, expected = fp
        if kind == "fixed":
            _check_fixed(w, val, expected, path)
        elif not matches_pattern(val, expected):
            if isinstance(expected, dict):
                w.add("error", "value", f"The pattern {_describe(expected)} defined in the profile "
                      f"{w.model.label if w.model else ''} not found", path)
            else:
                w.add("error", "value", f"Value is '{_show(val)}' but must be '{_show(expected)}'", path)
    if ml is not None and isinstance(val, str) and len(val) > ml:
        w.add("error", "too-long", f"value is longer than permitted maximum length of {ml}", path)
    for btype, kind, value in bounds:
        _bound(w, val, value, btype, kind, path)


def _describe(v: dict) -> str:
    if isinstance(v.get("coding"), list):
        return ", ".join(f"{c.get('system')}#{c.get('code')}" for c in v["coding"] if isinstance(c, dict))
    if "system" in v or "code" in v:
        return f"{v.get('system')}#{v.get('code')}"
    return str(v)


def _check_fixed(w, val, fixed, path: str) -> None:
    if isinstance(fixed, dict) and isinstance(val, dict):
        for k, v in val.items():
            if k not in fixed:
                w.add("error", "value", f"The element {k.lstrip('_')} is present in the instance but not allowed in "
                      "the applicable fixed value specified in profile", f"{path}.{k.lstrip('_')}")
        for k, f in fixed.items():
            if k not in val:
                w.add("error", "value", f"Missing element '{k}' - required by fixed value assigned in profile "
                      f"{w.model.label if w.model else ''}", path)
            elif isinstance(f, list) and isinstance(val[k], list):
                for i, (a, b) in enumerate(zip(val[k], f)):
                    _check_fixed(w, a, b, f"{path}.{k}[{i}]")
                if len(val[k]) != len(f):
                    w.add("error", "value", f"Expected {len(f)} but found {len(val[k])} {k} elements", path)
            else:
                _check_fixed(w, val[k], f, f"{path}.{k}")
        return
    if not matches_fixed(val, fixed):
        w.add("error", "value", f"Value is '{_show(val)}' but must be '{_show(fixed)}'", path)


def _duration_bound(w, val, bound: dict, kind: str, path: str) -> None:
    """minValueDuration / maxValueDuration on a date: relative to now (max: at most now + d;
    min: at least now - d)."""
    from ..terminology import ucum
    secs = ucum.convert(bound.get("value"), bound.get("code") or "", "s") if _num(bound.get("value")) is not None \
        else None
    if secs is None or not isinstance(val, str):
        return
    now = _dt.datetime.now(_dt.timezone.utc)
    delta = _dt.timedelta(seconds=float(secs))
    limit = (now + delta) if kind == "max" else (now - delta)
    text = limit.date().isoformat() if len(val) <= 10 else limit.isoformat(timespec="seconds")
    c = compare_temporal(val, text[:len(val)] if len(val) <= 10 else text)
    if c is None:
        return
    shown = f"{bound.get('value')} {bound.get('unit') or bound.get('code')}"
    if kind == "max" and c > 0:
        w.add("error", "invalid", f"The value in the instance ({val}) is later than the maximum allowed (now + "
              f"{shown})", path)
    if kind == "min" and c < 0:
        w.add("error", "invalid", f"The value in the instance ({val}) is earlier than the minimum allowed (now - "
              f"{shown})", path)


def _bound(w, val, bound, btype: str, kind: str, path: str) -> None:
    if val is None:
        return
    if btype == "Duration":
        if isinstance(bound, dict):
            _duration_bound(w, val, bound, kind, path)
        return
    if btype == "Quantity":
        if not isinstance(val, dict) or not isinstance(bound, dict):
            return
        from .fp_values import compare_quantity
        c = compare_quantity(Item(val, None, "Quantity"), Item(bound, None, "Quantity"))
        shown = f"{val.get('value')} {val.get('code') or val.get('unit') or ''}".strip()
        bshown = f"{bound.get('value')} {bound.get('code') or bound.get('unit') or ''}".strip()
        words = ("minValue", "maxValue")
        tail = " after UCUM conversion" if val.get("code") != bound.get("code") else ""
    else:
        if btype in ("Date", "DateTime", "Instant", "Time") and isinstance(val, str) and isinstance(bound, str):
            c = compare_temporal(val, bound, time=btype == "Time")
        else:
            a, b = _num(val), _num(bound)
            c = None if a is None or b is None else (a > b) - (a < b)
        shown, bshown, words, tail = _show(val), _show(bound), ("minimum value", "maximum value"), ""
    if c is None:
        return
    if kind == "min" and c < 0:
        w.add("error", "invalid", f"The value in the instance ({shown}) is less than the specified {words[0]} "
              f"({bshown}){tail}", path)
    if kind == "max" and c > 0:
        w.add("error", "invalid", f"The value in the instance ({shown}) is greater than the specified {words[1]} "
              f"({bshown}){tail}", path)
