"""Extract and normalise the search-index rows for one resource.

Rows are tuples in the column order of storage/schema.py INDEX_TABLES (after res_type,
res_id): every row starts with (param, grp). ``grp`` is 0 for ordinary values; composite
parameters store each component in its own type's table under ``param = "<code>#<i>"``, and
components taken from the same element share a ``grp`` number so a search can join them.
Reference parameters also index the reference's ``identifier`` as a token under
``"<code>:identifier"`` (for the ``:identifier`` modifier).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable

from . import normalize as N
from .paths import Extractor, compile_expression, compile_nodes, compile_relative, root_keys

# Parameters answered from the resource table itself, or not indexed at all.
NOT_INDEXED = {"_id", "_lastUpdated", "_text", "_content", "_query", "_filter", "_list", "_has", "_type"}

IndexRows = dict[str, list[tuple]]


@dataclass(frozen=True)
class ParamPlan:
    code: str
    type: str
    extract: Extractor | None
    components: tuple = ()  # composite: ((type, relative extractor), ...)
    base_nodes: Callable | None = None
    keys: frozenset[str] | None = None  # top-level keys it can start from (paths.root_keys); None: any


_cache: dict[str, tuple[tuple, list[ParamPlan]]] = {}
_cache_lock = threading.Lock()


def plans(definitions, resource_type: str) -> list[ParamPlan]:
    """Compiled extraction plans for a type, rebuilt when its SearchParameters change."""
    # Any added conformance resource bumps the generation: cheaper to check than the parameters.
    stamp = (id(definitions), definitions.generation)
    hit = _cache.get(resource_type)
    if hit and hit[0] == stamp:
        return hit[1]
    params = definitions.search_params(resource_type)
    out = []
    for code, sp in params.items():
        if code in NOT_INDEXED or not sp.get("expression") or sp.get("type") == "special":
            continue
        try:
            out.append(_plan(definitions, resource_type, code, sp))
        except Exception:
            continue  # an expression we cannot compile is simply not indexed
    out = [p for p in out if p.extract is not None or p.base_nodes is not None]
    with _cache_lock:
        _cache[resource_type] = (stamp, out)
    return out


def _plan(definitions, resource_type: str, code: str, sp: dict) -> ParamPlan:
    ptype = sp["type"]
    keys = root_keys(sp["expression"], resource_type)
    if ptype != "composite":
        return ParamPlan(code, ptype, compile_expression(sp["expression"], resource_type), keys=keys)
    base = compile_nodes(sp["expression"], resource_type)
    comps = []
    for comp in sp.get("component", []):
        target = _component_definition(definitions, comp.get("definition", ""))
        if target is None:
            return ParamPlan(code, ptype, None)
        comps.append((target.get("type"), compile_relative(comp.get("expression", ""), "")))
    return ParamPlan(code, ptype, None, tuple(comps), base, keys)


def _component_definition(definitions, url: str) -> dict | None:
    sp = definitions.get(url)
    if sp is None and "/SearchParameter/" in url:
        # Some core composites point at ids that are not canonical URLs of their own.
        sp = definitions.get("http://hl7.org/fhir/SearchParameter/" + url.rsplit("/", 1)[1])
    return sp


def index_resource(definitions, resource: dict) -> IndexRows:
    rtype = resource.get("resourceType")
    rows: IndexRows = {}
    if not isinstance(rtype, str):
        return rows
    for plan in plans(definitions, rtype):
        if plan.keys is not None and plan.keys.isdisjoint(resource):
            continue  # nothing it could find is there
        try:
            if plan.type == "composite":
                _composite_rows(plan, resource, rows)
                continue
            values = plan.extract(resource)
            if values:
                add_values(rows, plan.type, plan.code, 0, values)
        except Exception:
            continue  # odd-but-valid data never breaks a write; that value is just not indexed
    # The same value reached by two paths is one row.
    return {t: list(dict.fromkeys(r)) for t, r in rows.items() if r}


def _composite_rows(plan: ParamPlan, resource: dict, rows: IndexRows) -> None:
    for grp, node in enumerate(plan.base_nodes(resource), start=1):
        comp_values = [ex(node) for _, ex in plan.components]
        if not all(comp_values):
            continue
        for i, ((ctype, _), values) in enumerate(zip(plan.components, comp_values)):
            add_values(rows, ctype, f"{plan.code}#{i}", grp, values)


# -- per-type normalisation -------------------------------------------------------------------

def add_values(rows: IndexRows, ptype: str, code: str, grp: int, values: list[tuple[Any, str | None]]) -> None:
    fn = _CONVERTERS.get(ptype)
    if fn is None:
        return
    for value, ftype in values:
        if value is None:
            continue
        try:
            fn(rows, code, grp, value, ftype or infer_type(value))
        except (N.BadValue, ValueError, TypeError, AttributeError, ArithmeticError):
            continue


def infer_type(v) -> str | None:
    """A FHIR type from the JSON shape, for values found by the general FHIRPath engine."""
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, (float, N.Decimal)):
        return "decimal"
    if isinstance(v, str):
        return "string"
    if not isinstance(v, dict):
        return None
    if "resourceType" in v:
        return "Resource"
    if "coding" in v or set(v) <= {"text", "id", "extension"}:
        return "CodeableConcept"
    if "reference" in v or ("type" in v and "identifier" in v):
        return "Reference"
    if "start" in v or "end" in v:
        return "Period"
    if "family" in v or "given" in v:
        return "HumanName"
    if "line" in v or "city" in v or "postalCode" in v:
        return "Address"
    if "value" in v and ("unit" in v or "code" in v or "comparator" in v):
        return "Quantity"
    if "system" in v and "code" in v:
        return "Coding"
    if "system" in v and "value" in v:
        return "Identifier"
    if "event" in v or "repeat" in v:
        return "Timing"
    if "low" in v or "high" in v:
        return "Range"
    return None


def _put(rows: IndexRows, table: str, row: tuple) -> None:
    rows.setdefault(table, []).append(row)


def _text(value) -> str | None:
    return N.norm_string(value)[:512] if isinstance(value, str) and value else None


def _string(rows, code, grp, v, t):
    if isinstance(v, str):
        if v:
            _put(rows, "idx_string", (code, grp, N.norm_string(v)[:512], v[:512]))
        return
    if not isinstance(v, dict):
        return
    parts: list = []
    if t == "HumanName":
        parts = [v.get("family"), v.get("text"), *v.get("given", []), *v.get("prefix", []), *v.get("suffix", [])]
    elif t == "Address":
        parts = [v.get(k) for k in ("text", "city", "district", "state", "postalCode", "country")] + list(v.get("line", []))
    else:
        parts = [v.get("text"), v.get("display"), v.get("value") if isinstance(v.get("value"), str) else None]
    for p in parts:
        if isinstance(p, str) and p:
            _put(rows, "idx_string", (code, grp, N.norm_string(p)[:512], p[:512]))


def _token(rows, code, grp, v, t):
    if isinstance(v, bool):
        _put(rows, "idx_token", (code, grp, None, "true" if v else "false", None))
    elif isinstance(v, str):
        _put(rows, "idx_token", (code, grp, None, v, None))
    elif isinstance(v, (int, N.Decimal)):
        _put(rows, "idx_token", (code, grp, None, str(v), None))
    elif isinstance(v, dict):
        if t == "CodeableConcept" or "coding" in v:
            for c in v.get("coding", []):
                if isinstance(c, dict):
                    _coding(rows, code, grp, c)
            if v.get("text"):
                _put(rows, "idx_token", (code, grp, None, None, _text(v["text"])))
        elif t == "Identifier":
            if v.get("value") is not None or v.get("system"):
                type_text = (v.get("type") or {}).get("text") if isinstance(v.get("type"), dict) else None
                _put(rows, "idx_token", (code, grp, v.get("system"), v.get("value"), _text(type_text)))
        elif t == "ContactPoint":
            if v.get("value") is not None:
                _put(rows, "idx_token", (code, grp, v.get("system"), v.get("value"), None))
        elif t in ("Quantity", "Age", "Duration", "Count", "Distance", "Money"):
            if v.get("code") or v.get("currency"):
                _put(rows, "idx_token", (code, grp, v.get("system"), v.get("code") or v.get("currency"), None))
        elif t == "Reference":
            ident = v.get("identifier")
            if isinstance(ident, dict):
                _token(rows, code, grp, ident, "Identifier")
        elif "code" in v or "system" in v:
            _coding(rows, code, grp, v)
        elif "value" in v and "system" in v:
            _token(rows, code, grp, v, "Identifier")


def _coding(rows, code, grp, c):
    if c.get("code") is not None or c.get("system"):
        _put(rows, "idx_token", (code, grp, c.get("system"), c.get("code"), _text(c.get("display"))))


def parse_reference(ref: str) -> tuple[str | None, str | None, str | None, str | None]:
    """(type, id, version, absolute url) of a reference string."""
    if ref.startswith("#"):
        return None, None, None, None
    url = ref if "://" in ref or ref.startswith(("urn:", "/")) else None
    body, version = ref, None
    if "/_history/" in body:
        body, version = body.split("/_history/", 1)
    parts = body.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2][:1].isupper() and parts[-2].isalpha():
        return parts[-2], parts[-1], version, url
    return None, None, None, url or ref


def _reference(rows, code, grp, v, t):
    if isinstance(v, str):  # canonical or uri
        url, _, version = v.partition("|")
        rtype, rid, _, _ = parse_reference(url) if "/" in url else (None, None, None, None)
        _put(rows, "idx_reference", (code, grp, rtype, rid, version or None, url))
        return
    if not isinstance(v, dict):
        return
    if "resourceType" in v:  # an inline resource (Bundle.entry.resource)
        if v.get("id"):
            _put(rows, "idx_reference", (code, grp, v["resourceType"], v["id"], None, None))
        return
    ref = v.get("reference")
    if isinstance(ref, str) and ref:
        rtype, rid, version, url = parse_reference(ref)
        if rtype is None and rid is None and url is None:
            return  # a contained reference
        if rtype is None and isinstance(v.get("type"), str) and url is None:
            rtype = v["type"]
        _put(rows, "idx_reference", (code, grp, rtype, rid, version, url))
    ident = v.get("identifier")
    if isinstance(ident, dict):
        _token(rows, code + ":identifier", grp, ident, "Identifier")


def _date(rows, code, grp, v, t):
    if isinstance(v, str):
        low, high = N.date_range(v)
    elif isinstance(v, dict):
        if t == "Timing" or "event" in v or "repeat" in v:
            ranges = [N.date_range(e) for e in v.get("event", []) if isinstance(e, str)]
            bounds = (v.get("repeat") or {}).get("boundsPeriod")
            if isinstance(bounds, dict):
                ranges.append(_period(bounds))
            if not ranges:
                return
            low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
        else:
            if not (v.get("start") or v.get("end")):
                return
            low, high = _period(v)
    else:
        return
    _put(rows, "idx_date", (code, grp, low, high))


def _period(p: dict) -> tuple[int, int]:
    low = N.date_range(p["start"])[0] if isinstance(p.get("start"), str) else N.DATE_MIN
    high = N.date_range(p["end"])[1] if isinstance(p.get("end"), str) else N.DATE_MAX
    return low, high


def _number(rows, code, grp, v, t):
    if isinstance(v, dict):
        if t == "Range" or "low" in v or "high" in v:
            lo = (v.get("low") or {}).get("value")
            hi = (v.get("high") or {}).get("value")
            _put(rows, "idx_number", (code, grp, None,
                                      float(N.to_decimal(lo)) if lo is not None else None,
                                      float(N.to_decimal(hi)) if hi is not None else None))
        elif "value" in v:
            _number(rows, code, grp, v["value"], None)
        return
    value, low, high = N.number_range(v)
    _put(rows, "idx_number", (code, grp, value, low, high))


def _quantity(rows, code, grp, v, t):
    if not isinstance(v, dict):
        if isinstance(v, (int, N.Decimal, float)) and not isinstance(v, bool):
            value, low, high = N.number_range(v)
            _put(rows, "idx_quantity", (code, grp, None, None, value, low, high, None, None))
        return
    if t == "Range" or ("low" in v or "high" in v) and "value" not in v:
        for end in ("low", "high"):
            q = v.get(end)
            if isinstance(q, dict):
                _quantity(rows, code, grp, q, "Quantity")
        return
    if v.get("value") is None:
        return
    value, low, high = N.number_range(v["value"])
    system = v.get("system")
    unit = v.get("code") or v.get("currency") or v.get("unit")
    canon_code = canon_value = None
    if system == N.UCUM or (system is None and v.get("code")):
        canon = N.ucum_canonical(v.get("code") or "")
        if canon:
            canon_code, canon_value = canon[0], value * canon[1]
    _put(rows, "idx_quantity", (code, grp, system, unit, value, low, high, canon_code, canon_value))
    if v.get("unit") and v.get("code") and v["unit"] != v["code"]:
        _put(rows, "idx_quantity", (code, grp, None, v["unit"], value, low, high, canon_code, canon_value))


def _uri(rows, code, grp, v, t):
    if isinstance(v, str) and v:
        _put(rows, "idx_uri", (code, grp, v))
    elif isinstance(v, dict) and isinstance(v.get("reference"), str):
        _put(rows, "idx_uri", (code, grp, v["reference"]))


_CONVERTERS: dict[str, Callable] = {
    "string": _string, "token": _token, "reference": _reference, "date": _date,
    "number": _number, "quantity": _quantity, "uri": _uri,
}
