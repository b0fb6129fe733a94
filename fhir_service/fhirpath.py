"""FHIRPath, compiled once per expression, with the functions FHIR needs that fhirpathpy lacks.

Shared by search (index extraction), validation (invariants) and SDC (expressions). Add a
function to ``_FUNCTIONS`` once and every layer gets it.

Two kinds of additions:
- ``_FUNCTIONS``: fhirpathpy "user" functions; they receive the input values only.
- ``_CONTEXT_FUNCTIONS``: functions that need the evaluation context (type information, or
  hooks the caller passes in the context such as a reference resolver), and corrections of
  fhirpathpy built-ins (``round()`` rounds halves up). fhirpathpy gives user functions no
  context, so these are registered with its built-in table, where every compile sees them.

Hooks a caller may put in ``context`` (all optional):
- ``__resolve``: ``f(reference: str) -> dict | None`` used by ``resolve()``;
- ``__member_of``: ``f(coding_or_code, valueset_url) -> bool | None`` used by ``memberOf()``;
- ``__conforms_to``: ``f(resource: dict, profile_url) -> bool`` used by ``conformsTo()``;
- ``__html_checks``: ``f(div: str) -> bool`` used by ``htmlChecks()``.
"""
from __future__ import annotations

import functools
import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Callable

import fhirpathpy
from fhirpathpy.engine.invocations import invocation_registry as _BUILTINS
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.engine.util import get_data, is_empty
from fhirpathpy.models import models

R4_MODEL = models["r4"]

_REF_TYPE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[^/]+)?$")


def _reference_text(data) -> str | None:
    if isinstance(data, dict):
        ref = data.get("reference")
        return ref if isinstance(ref, str) else None
    return data if isinstance(data, str) else None


def _stand_in(ref: str) -> dict | None:
    """Without a store we know a reference's target type from its text."""
    m = _REF_TYPE.search(ref)
    if m:
        return {"resourceType": m.group(1), "id": ref.rsplit("/", 1)[-1].split("/_history/")[0]}
    return None


def _resolve(ctx, coll):
    """resolve(): through the caller's ``__resolve`` hook when given, else a typed stand-in.

    Results are ResourceNodes so that ``resolve() is Patient`` works.
    """
    hook = ctx["vars"].get("__resolve")
    out = []
    for item in coll:
        ref = _reference_text(get_data(item))
        if not ref:
            continue
        target = hook(ref) if hook else None
        if target is None and not hook:
            target = _stand_in(ref)
        if isinstance(target, dict):
            out.append(ResourceNode.create_node(target))
    return out


def _has_value(ctx, coll):
    """hasValue(): a single primitive that has a value (not just extensions)."""
    if len(coll) != 1:
        return [False]
    data = get_data(coll[0])
    return [data is not None and not isinstance(data, (dict, list))]


def _html_checks(ctx, coll):
    hook = ctx["vars"].get("__html_checks")
    if not coll:
        return [True]
    if hook is None:
        return [True]  # the validator checks narrative natively; other callers trust it
    return [all(hook(get_data(c)) for c in coll)]


def _member_of(ctx, coll, valueset):
    hook = ctx["vars"].get("__member_of")
    vs = valueset[0] if isinstance(valueset, list) and valueset else valueset
    if hook is None or not coll or not isinstance(vs, str):
        return []
    results = [hook(get_data(c), vs) for c in coll]
    if any(r is None for r in results):
        return []
    return [all(results)]


def _conforms_to(ctx, coll, profile):
    hook = ctx["vars"].get("__conforms_to")
    url = profile[0] if isinstance(profile, list) and profile else profile
    if hook is None or not coll or not isinstance(url, str):
        return []
    return [all(hook(get_data(c), url) for c in coll)]


def _round(ctx, coll, precision=None):
    """round([precision]): halves round up, away from zero (FHIRPath), not to even (fhirpathpy).

    430 L/min x 75% = 322.5 gives 323. The result is a Decimal with ``precision`` places.
    """
    if is_empty(coll):
        return []
    if len(coll) != 1:
        raise Exception("round() expects a single number")
    value = get_data(coll[0])
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise Exception(f"round() expects a number, not {value!r}")
    places = 0
    if precision is not None and not is_empty(precision):
        places = precision[0] if isinstance(precision, list) else precision
        if isinstance(places, bool) or not isinstance(places, int) or places < 0:
            raise Exception("round() precision must be a non-negative integer")
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    return [number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)]


def _trace(ctx, coll, *args):
    """trace(): a no-op here; R4 invariants use it and fhirpathpy's prints to stdout."""
    return coll


_CONTEXT_FUNCTIONS: dict[str, dict] = {
    "trace": {"fn": _trace, "arity": {0: [], 1: ["String"], 2: ["String", "Expr"]}},
    "resolve": {"fn": _resolve, "arity": {0: []}},
    "hasValue": {"fn": _has_value, "arity": {0: []}},
    "htmlChecks": {"fn": _html_checks, "arity": {0: []}},
    "memberOf": {"fn": _member_of, "arity": {1: ["String"]}},
    "conformsTo": {"fn": _conforms_to, "arity": {1: ["String"]}},
    "round": {"fn": _round, "arity": {0: [], 1: ["Integer"]}},
}
_BUILTINS.update(_CONTEXT_FUNCTIONS)

# fhirpathpy user functions (input values only); none needed at present.
_FUNCTIONS: dict[str, dict] = {}


@functools.lru_cache(maxsize=8192)
def compile(expression: str) -> Callable[..., list]:
    """A callable ``f(resource, context=None) -> list`` for the expression (cached)."""
    return fhirpathpy.compile(expression, model=R4_MODEL, options={"userInvocationTable": _FUNCTIONS})


def evaluate(resource: Any, expression: str, context: dict | None = None) -> list:
    return compile(expression)(resource, context or {})


def typed_node(data: Any, path: str) -> ResourceNode:
    """Wrap an element so FHIRPath knows its type (``path`` is a type name or element path)."""
    return ResourceNode.create_node(data, path)
