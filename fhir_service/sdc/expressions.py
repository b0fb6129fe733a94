"""SDC expressions: FHIRPath with the SDC variables and functions, and x-fhir-query.

A :class:`Scope` carries what an expression may refer to: ``%resource`` (the response),
``%questionnaire``, ``%context``, the launch contexts (``%patient``, ``%user``...), and the
``variable`` extensions in force. Results keep fhirpathpy's typed nodes so that a result can be
the focus or a variable of a later expression (``answer.value`` still knows it is a choice);
:func:`to_json` turns them back into plain JSON.

SDC functions that the shared ``fhir_service.fhirpath`` does not have (``weight()``,
``ordinal()``) are added through our own compile wrapper, not by changing the shared module.
"""
from __future__ import annotations

import contextvars
import functools
import re
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Callable
from urllib.parse import parse_qsl, quote

import fhirpathpy
from fhirpathpy.engine.nodes import FP_Quantity, FP_Type, ResourceNode

from .. import fhirpath  # noqa: F401  (registers resolve(), memberOf()... with fhirpathpy)
from ..outcome import FHIRError
from . import urls
from .items import expression_text, ext_value, typed_value

_EMBEDDED = re.compile(r"\{\{(.+?)\}\}")


class ExpressionError(Exception):
    """An expression could not be evaluated; ``expression`` is the text that failed."""

    def __init__(self, message: str, expression: str = ""):
        super().__init__(message)
        self.expression = expression


class UndefinedVariable(ExpressionError):
    """The expression names a %variable that is not bound (yet)."""


# -- SDC functions --------------------------------------------------------------------------
_weights: contextvars.ContextVar[Callable[[dict], Any] | None] = contextvars.ContextVar("sdc_weights", default=None)


def _weight(inputs: list) -> list:
    """weight() / ordinal(): the itemWeight of each answer coding (answerOption or CodeSystem)."""
    lookup = _weights.get()
    out = []
    for coding in inputs:
        if not isinstance(coding, dict):
            continue
        w = ext_value(coding, urls.ITEM_WEIGHT)
        if w is None:
            w = ext_value(coding, urls.ORDINAL_VALUE)
        if w is None and lookup is not None:
            w = lookup(coding)
        if w is not None:
            out.append(w)
    return out


_SDC_FUNCTIONS = {
    "weight": {"fn": _weight, "arity": {0: []}},
    "ordinal": {"fn": _weight, "arity": {0: []}},
}


@functools.lru_cache(maxsize=4096)
def _compiled(expression: str) -> Callable[..., list]:
    return fhirpathpy.compile(expression, model=fhirpath.R4_MODEL,
                              options={"userInvocationTable": _SDC_FUNCTIONS, "returnRawData": True})


def weight_lookup(questionnaire: dict | None, code_system: Callable[[str], dict | None] | None) -> Callable[[dict], Any]:
    """Weights by (system, code) from the questionnaire's answerOptions, then CodeSystems."""
    table: dict[tuple, Any] = {}
    from .items import walk
    for it in walk((questionnaire or {}).get("item")):
        for opt in it.get("answerOption") or ():
            kind, coding = typed_value(opt)
            w = ext_value(opt, urls.ITEM_WEIGHT)
            if kind == "Coding" and isinstance(coding, dict) and w is not None:
                table.setdefault((coding.get("system"), coding.get("code")), w)

    def lookup(coding: dict) -> Any:
        key = (coding.get("system"), coding.get("code"))
        if key in table:
            return table[key]
        cs = code_system(key[0]) if code_system and key[0] else None
        for concept in _concepts((cs or {}).get("concept")):
            if concept.get("code") == key[1]:
                for prop in concept.get("property") or ():
                    if prop.get("code") in ("itemWeight", "weight", "ordinalValue"):
                        return typed_value(prop)[1]
        return None
    return lookup


def _concepts(concepts) -> list[dict]:
    out = []
    for c in concepts or ():
        out.append(c)
        out.extend(_concepts(c.get("concept")))
    return out


# -- scope and evaluation -------------------------------------------------------------------
@dataclass
class Scope:
    """The variables an expression may use, plus what the SDC functions need."""
    variables: dict[str, Any] = field(default_factory=dict)
    questionnaire: dict | None = None
    code_system: Callable[[str], dict | None] | None = None  # canonical -> CodeSystem
    resolve: Callable[[str], dict | None] | None = None  # "Type/id" -> resource, for resolve()
    _weights: Callable | None = None

    def bind(self, **more: Any) -> "Scope":
        return replace(self, variables={**self.variables, **more})

    def weights(self) -> Callable:
        if self._weights is None:
            self._weights = weight_lookup(self.questionnaire, self.code_system)
        return self._weights


def evaluate(expression: str, focus: Any, scope: Scope) -> list:
    """Evaluate FHIRPath; any failure becomes an :class:`ExpressionError`."""
    try:
        fn = _compiled(expression)
    except Exception as exc:  # fhirpathpy raises plain Exceptions for syntax errors
        raise ExpressionError(f"Invalid FHIRPath: {exc}", expression) from None
    env = {k: v for k, v in scope.variables.items()}
    if scope.resolve is not None:
        env["__resolve"] = scope.resolve
    token = _weights.set(scope.weights())
    try:
        result = fn(focus if focus is not None else {}, env)
    except ValueError as exc:
        if "undefined environment variable" in str(exc):
            raise UndefinedVariable(str(exc), expression) from None
        raise ExpressionError(f"FHIRPath evaluation failed: {exc}", expression) from None
    except Exception as exc:
        raise ExpressionError(f"FHIRPath evaluation failed: {exc}", expression) from None
    finally:
        _weights.reset(token)
    return list(result) if isinstance(result, list) else [result]


def evaluate_json(expression: str, focus: Any, scope: Scope) -> list:
    return [to_json(v) for v in evaluate(expression, focus, scope)]


def to_json(value: Any) -> Any:
    """A FHIRPath result as plain JSON (dicts, lists, str, bool, int, Decimal)."""
    if isinstance(value, ResourceNode):
        return to_json(value.data)
    if isinstance(value, FP_Quantity):
        unit = str(value.unit).strip("'")
        return {"value": value.value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
    if isinstance(value, FP_Type):
        return str(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, list):
        return [to_json(v) for v in value]
    return value


def as_focus(value: Any, path: str) -> Any:
    """A plain element wrapped with its FHIR path, so choice elements (value[x]) resolve."""
    if isinstance(value, (dict, list)) and not isinstance(value, ResourceNode):
        return fhirpath.typed_node(value, path)
    return value


# -- x-fhir-query ---------------------------------------------------------------------------
def substitute(template: str, focus: Any, scope: Scope) -> str:
    """Replace each ``{{expr}}`` with its (URL-escaped) FHIRPath result."""
    def one(m: re.Match) -> str:
        values = [to_json(v) for v in evaluate(m.group(1).strip(), focus, scope)]
        if not values:
            raise ExpressionError(f"'{m.group(1).strip()}' has no value", template)
        if any(isinstance(v, (dict, list)) for v in values):
            raise ExpressionError(f"'{m.group(1).strip()}' is not a primitive value", template)
        text = ",".join("true" if v is True else "false" if v is False else str(v) for v in values)
        return quote(text, safe=",|:/")
    return _EMBEDDED.sub(one, template)


def run_query(service, base_url: str, template: str, focus: Any, scope: Scope) -> dict:
    """An x-fhir-query against this server's own search; the answer is a searchset Bundle."""
    query = substitute(template, focus, scope)
    res_type, _, qs = query.lstrip("/").partition("?")
    if not res_type or "/" in res_type:
        raise ExpressionError(f"x-fhir-query must be [type]?[parameters], not {query!r}", template)
    try:
        return service.search(res_type, parse_qsl(qs, keep_blank_values=True), base_url)
    except FHIRError as exc:
        raise ExpressionError(f"x-fhir-query {query!r} failed: {exc}", template) from None


def evaluate_expression(value: Any, focus: Any, scope: Scope, service=None, base_url: str = "") -> list:
    """An Expression (FHIRPath or x-fhir-query) to a list of results."""
    text, language, _ = expression_text(value)
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("The expression is empty", "")
    if language == urls.FHIR_QUERY:
        if service is None:
            raise ExpressionError("x-fhir-query needs a server to run against", text)
        return [run_query(service, base_url, text, focus, scope)]
    if language not in (None, urls.FHIRPATH):
        raise ExpressionError(f"Unsupported expression language {language!r}", text)
    return evaluate(text, focus, scope)


def bind_variables(element: dict, focus: Any, scope: Scope, service=None, base_url: str = "",
                   on_error: Callable[[ExpressionError, str], None] | None = None) -> Scope:
    """The scope with ``element``'s ``variable`` extensions bound, in their order.

    A variable that fails is bound to empty (so later expressions see "no data", never a
    guess) and reported through ``on_error``.
    """
    for ext in element.get("extension") or ():
        if not isinstance(ext, dict) or ext.get("url") != urls.VARIABLE:
            continue
        _, value = typed_value(ext)
        _, _, name = expression_text(value)
        if not name:
            continue
        try:
            result = evaluate_expression(value, focus, scope, service, base_url)
        except ExpressionError as exc:
            if on_error:
                on_error(exc, name)
            result = []
        scope = scope.bind(**{name: result})
    return scope
