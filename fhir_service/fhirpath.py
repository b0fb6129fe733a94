"""FHIRPath, compiled once per expression, with the functions FHIR needs that fhirpathpy lacks.

Shared by search (index extraction), validation (invariants) and SDC (expressions). Add a
function to ``_FUNCTIONS`` once and every layer gets it.
"""
from __future__ import annotations

import functools
import re
from typing import Any, Callable

import fhirpathpy
from fhirpathpy.models import models

R4_MODEL = models["r4"]

_REF_TYPE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[^/]+)?$")


def _resolve(coll):
    """resolve(): without a store we know a reference's target type from its text.

    Returns minimal ``{"resourceType": T, "id": ...}`` stand-ins, enough for ``is T`` checks
    in search expressions. (User functions get no evaluation context in fhirpathpy, so
    contained ``#id`` references are not resolved here.)
    """
    out = []
    for data in coll:
        ref = data.get("reference") if isinstance(data, dict) else data if isinstance(data, str) else None
        if isinstance(ref, str):
            m = _REF_TYPE.search(ref)
            if m:
                out.append({"resourceType": m.group(1), "id": ref.rsplit("/", 1)[-1]})
    return out


_FUNCTIONS: dict[str, dict] = {
    "resolve": {"fn": _resolve, "arity": {0: []}},
}


@functools.lru_cache(maxsize=8192)
def compile(expression: str) -> Callable[..., list]:
    """A callable ``f(resource, context=None) -> list`` for the expression (cached)."""
    return fhirpathpy.compile(expression, model=R4_MODEL, options={"userInvocationTable": _FUNCTIONS})


def evaluate(resource: Any, expression: str, context: dict | None = None) -> list:
    return compile(expression)(resource, context or {})
