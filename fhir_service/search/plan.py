"""Turn a parsed request into a plan: the per-type conditions plus the result controls, with
strict/lenient handling of what the server does not know."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..outcome import FHIRError, Issue, error
from . import compiler as C
from .parameters import Request, invalid, parse

SUMMARY = {"true", "text", "data", "count", "false"}
TOTAL = {"none", "estimate", "accurate"}


@dataclass
class Include:
    source: str  # a type or "*"
    param: str  # a reference parameter code or "*"
    target: str | None
    iterate: bool
    reverse: bool


@dataclass
class Plan:
    types: list[str] | None  # None: every type (system search without _type)
    tqs: list[C.TypeQuery]
    sort: list[tuple[str, bool]] = field(default_factory=list)
    count: int = 20
    total: str = "accurate"
    summary: str | None = None
    elements: list[str] | None = None
    includes: list[Include] = field(default_factory=list)
    used: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[Issue] = field(default_factory=list)
    empty: bool = False  # nothing can match (e.g. a type outside the compartment)


def _unknown(strict: bool, plan: Plan, name: str, text: str) -> None:
    if strict:
        raise error(400, "not-supported", text, name)
    plan.ignored.append(Issue("warning", "not-supported", f"{text}: ignored", [name]))


def make_plan(ctx: C.Ctx, resource_type: str | None, params: list[tuple[str, str]], *, strict: bool,
              compartment: tuple[str, str] | None = None, default_count: int = 20, max_count: int = 1000,
              conditional: bool = False) -> Plan:
    defs = ctx.defs
    req: Request = parse(params)
    if resource_type is not None and not defs.is_resource_type(resource_type):
        raise error(404, "not-found", f"unknown resource type '{resource_type}'")
    types: list[str] | None
    if resource_type is not None:
        types = [resource_type]
    elif req.types:
        bad = [t for t in req.types if not defs.is_resource_type(t)]
        if bad:
            raise invalid("_type", f"unknown resource type(s) {', '.join(bad)}")
        types = list(dict.fromkeys(req.types))
    elif compartment is not None:
        cd = defs.compartment_definition(compartment[0])
        types = sorted({e["code"] for e in (cd or {}).get("resource", []) if e.get("param")} | {compartment[0]})
    else:
        types = None
    plan = Plan(types, [], count=default_count)
    if resource_type is None and req.types:
        plan.used.extend((n, v) for n, v in req.used if n == "_type")
    tqs = {t: C.TypeQuery(t) for t in (types or [None])}
    if compartment is not None:
        for t in list(tqs):
            cond = C.compartment_cond(ctx, t, compartment)
            if cond is None:
                del tqs[t]
            else:
                tqs[t].conds.append(cond)
        if not tqs:
            plan.empty = True
    for crit in req.criteria:
        try:
            conds = []
            for t, tq in tqs.items():
                if t is None:
                    conds.append((tq, _system_cond(ctx, crit)))
                else:
                    conds.append((tq, C.build(ctx, t, crit)))
        except KeyError:
            where = f"on {resource_type}" if resource_type else ("on " + ", ".join(types) if types else "for all types")
            _unknown(strict, plan, crit.name.raw, f"unknown search parameter '{crit.name.raw}' {where}")
            continue
        for tq, cond in conds:
            tq.conds.append(cond)
        plan.used.extend((crit.name.raw, v) for v in [",".join(crit.values)])
    plan.tqs = list(tqs.values())
    if not conditional:
        _result_params(ctx, plan, req, strict, max_count)
    return plan


def _system_cond(ctx: C.Ctx, crit) -> C.Cond:
    """A criterion for a search across all types: only parameters every resource has."""
    if crit.name.code == "_has":
        raise KeyError(crit.name.raw)
    if crit.name.code in ("_id", "_lastUpdated", "_content"):
        return C.build(ctx, "Resource", crit)
    sp = ctx.defs.search_params("Resource").get(crit.name.code)
    if sp is None:
        raise KeyError(crit.name.raw)
    cond = C.build(ctx, "Resource", crit)
    cond.rank = 99  # rendered correlated on r.res_type; never a driver (its id-set is tied to a type)
    return cond


def _result_params(ctx: C.Ctx, plan: Plan, req: Request, strict: bool, max_count: int) -> None:
    r = req.result
    if "_count" in r:
        v = r["_count"][-1]
        if not v.isdigit():
            raise invalid("_count", f"'{v}' is not a non-negative integer")
        plan.count = min(int(v), max_count)
        plan.used.append(("_count", str(plan.count)))
    if "_total" in r:
        v = r["_total"][-1]
        if v not in TOTAL:
            raise invalid("_total", f"'{v}' is not one of {', '.join(sorted(TOTAL))}")
        plan.total = v
        plan.used.append(("_total", v))
    if "_summary" in r:
        v = r["_summary"][-1]
        if v not in SUMMARY:
            raise invalid("_summary", f"'{v}' is not one of {', '.join(sorted(SUMMARY))}")
        plan.summary = None if v == "false" else v
        plan.used.append(("_summary", v))
    if "_elements" in r:
        els = [e.strip() for v in r["_elements"] for e in v.split(",") if e.strip()]
        plan.elements = [e.split(".", 1)[1] if "." in e and e[:1].isupper() else e for e in els]
        plan.used.append(("_elements", ",".join(els)))
    if "_sort" in r:
        keys = []
        for v in r["_sort"]:
            for key in v.split(","):
                key = key.strip()
                if not key:
                    continue
                desc = key.startswith("-")
                code = key.lstrip("-")
                try:
                    for t in plan.types or ["Resource"]:
                        C.sort_key(ctx, [t], code, desc)
                except KeyError:
                    _unknown(strict, plan, "_sort", f"unknown sort parameter '{code}'")
                    continue
                keys.append(key)
                plan.sort.append((code, desc))
        if keys:
            plan.used.append(("_sort", ",".join(keys)))
    for name, values in r.items():
        base, _, mod = name.partition(":")
        if base not in ("_include", "_revinclude"):
            continue
        if mod not in ("", "iterate", "recurse"):
            raise invalid(name, f"unknown modifier ':{mod}'")
        for v in values:
            plan.includes.append(_include(ctx, name, v, base == "_revinclude", bool(mod), strict, plan))
            plan.used.append((name, v))
    plan.includes = [i for i in plan.includes if i is not None]
    if "_contained" in r:
        v = r["_contained"][-1]
        if v != "false":
            _unknown(strict, plan, "_contained", f"_contained={v} is not supported")
    if "_containedType" in r:
        _unknown(strict, plan, "_containedType", "_containedType is not supported")


def _include(ctx, name: str, value: str, reverse: bool, iterate: bool, strict: bool, plan: Plan) -> Include | None:
    if value == "*":
        return Include("*", "*", None, iterate, reverse)
    parts = value.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise invalid(name, f"'{value}' is not Type:parameter[:targetType]")
    source, code = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if not ctx.defs.is_resource_type(source) or (target and not ctx.defs.is_resource_type(target)):
        raise invalid(name, f"unknown resource type in '{value}'")
    if code != "*":
        sp = ctx.defs.search_params(source).get(code)
        if sp is None or sp.get("type") != "reference":
            _unknown(strict, plan, name, f"'{code}' is not a reference parameter of {source}")
            return None
    return Include(source, code, target, iterate, reverse)


def raise_if_error(plan: Plan) -> None:
    errors = [i for i in plan.ignored if i.is_error]
    if errors:
        raise FHIRError(400, errors)
