"""Template-based extraction (SDC ``templateExtract``).

An item (or the root) with ``templateExtract`` names a contained resource as a template. For
each occurrence of the item in the response the template is copied, with the item occurrence
as the FHIRPath focus (%context) and the response as %resource:
- ``templateExtractContext`` on an element: the element is repeated once per result, each
  with that result as its focus; no result removes the element;
- ``templateExtractValue`` on an element (or on ``_x`` of a primitive ``x``): the result
  replaces the element (sets the primitive); no result removes it;
- ``extractAllocateId`` on an item makes a fresh ``urn:uuid`` available as %name to its templates
  and those below it, so the extracted resources can refer to each other.
The templates' own ``id`` and the SDC extensions do not appear in the output.
"""
from __future__ import annotations

import copy
from typing import Any

from . import urls
from .expressions import ExpressionError, Scope, as_focus, evaluate, to_json
from .extraction import Extraction, new_full_url
from .items import contained, expression_text, extensions, matched, typed_value

_TEMPLATE_EXTENSIONS = {urls.TEMPLATE_EXTRACT_CONTEXT, urls.TEMPLATE_EXTRACT_VALUE}
_REQUEST_FIELDS = ("ifNoneMatch", "ifModifiedSince", "ifMatch", "ifNoneExist")


def extract_templates(job: Extraction) -> None:
    q, qr = job.questionnaire, job.response
    scope = _allocate(q, job.scope)
    _run_templates(job, q, qr, scope)
    _walk(job, q.get("item") or [], qr.get("item") or [], scope)


def _allocate(element: dict, scope: Scope) -> Scope:
    ids = {}
    for ext in extensions(element, urls.EXTRACT_ALLOCATE_ID):
        name = typed_value(ext)[1]
        if isinstance(name, str) and name:
            ids[name] = [new_full_url()]
    return scope.bind(**ids) if ids else scope


def _walk(job: Extraction, q_items: list, r_items: list, scope: Scope) -> None:
    for q, r, children in matched(q_items, r_items):
        item_scope = _allocate(q, scope)
        _run_templates(job, q, r, item_scope)
        _walk(job, q.get("item") or [], children, item_scope)


def _run_templates(job: Extraction, q_element: dict, r_element: dict, scope: Scope) -> None:
    is_root = r_element is job.response
    focus = r_element if is_root else as_focus(r_element, "QuestionnaireResponse.item")
    scope = scope.bind(context=[focus])
    where = "Questionnaire" if is_root else f"Questionnaire.item.where(linkId='{q_element.get('linkId')}')"
    for ext in extensions(q_element, urls.TEMPLATE_EXTRACT):
        ref = _reference(typed_value(ext_sub(ext, "template") or {})[1])
        template = contained(job.questionnaire, ref)
        if template is None:
            job.note("error", "not-found", f"templateExtract names {ref!r}, which is not a contained resource", where)
            continue
        filler = _Filler(job, where)
        made = filler.element(copy.deepcopy(template), focus, scope)
        if not made or not isinstance(made[0], dict):
            continue
        resource = made[0]
        resource.pop("id", None)
        resource["resourceType"] = template["resourceType"]
        job.add(resource, **_request(job, ext, focus, scope, resource["resourceType"], where))


def _reference(value) -> str | None:
    return value.get("reference") if isinstance(value, dict) else None


def ext_sub(ext: dict, name: str) -> dict | None:
    for sub in ext.get("extension") or ():
        if isinstance(sub, dict) and sub.get("url") == name:
            return sub
    return None


def _request(job: Extraction, ext: dict, focus: Any, scope: Scope, res_type: str, where: str) -> dict:
    """fullUrl and Bundle.entry.request from the templateExtract's sub-extensions."""
    def one(name: str) -> str | None:
        sub = ext_sub(ext, name)
        if sub is None:
            return None
        text = expression_text(typed_value(sub)[1])[0]
        try:
            values = [to_json(v) for v in evaluate(text, focus, scope)]
        except ExpressionError as exc:
            job.note("warning", "processing", f"templateExtract {name} failed: {exc}", where)
            return None
        return str(values[0]) if values and not isinstance(values[0], (dict, list)) else None

    request: dict = {"method": "POST", "url": res_type}
    resource_id = one("resourceId")
    if resource_id:
        request = {"method": "PUT", "url": f"{res_type}/{resource_id}"}
    for name in _REQUEST_FIELDS:
        value = one(name)
        if value:
            request[name] = value
    return {"full_url": one("fullUrl"), "request": request}


class _Filler:
    """Fills one template copy; elements whose expressions give nothing are removed."""

    def __init__(self, job: Extraction, where: str):
        self.job, self.where = job, where

    def _eval(self, ext: dict, focus: Any, scope: Scope) -> tuple[list, str | None]:
        text, _, name = expression_text(typed_value(ext)[1])
        try:
            return evaluate(text or "", focus, scope), name
        except ExpressionError as exc:
            self.job.note("warning", "processing", f"Template expression {text!r} failed: {exc}", self.where)
            return [], name

    def element(self, node: Any, focus: Any, scope: Scope) -> list:
        """0..n filled copies of a template element (a list element may multiply)."""
        if not isinstance(node, dict):
            return [node]
        for ext in extensions(node, urls.TEMPLATE_EXTRACT_CONTEXT):
            results, name = self._eval(ext, focus, scope)
            out = []
            for result in results:
                inner = scope.bind(**{name: [result]}) if name else scope
                out.extend(self._object(node, result, inner.bind(context=[result])))
            return out
        for ext in extensions(node, urls.TEMPLATE_EXTRACT_VALUE):
            results, _ = self._eval(ext, focus, scope)
            return [to_json(r) for r in results]
        return self._object(node, focus, scope)

    def _object(self, node: dict, focus: Any, scope: Scope) -> list:
        out: dict = {}
        for key, value in node.items():
            if key == "extension":
                kept = [e for e in value if isinstance(e, dict) and e.get("url") not in _TEMPLATE_EXTENSIONS]
                filled = [x for e in kept for x in self.element(e, focus, scope)]
                if filled:
                    out[key] = filled
            elif key.startswith("_"):
                continue  # handled with its primitive
            elif isinstance(value, list):
                filled = self._list(key, value, node.get("_" + key), focus, scope)
                if filled:
                    out[key] = filled
            elif isinstance(value, dict):
                filled = self.element(value, focus, scope)
                if filled and filled[0] not in ({}, None):
                    out[key] = filled[0]
            else:
                self._primitive(out, key, value, node.get("_" + key), focus, scope)
        for key, value in node.items():  # "_x" without "x": the value comes only from the template
            if key.startswith("_") and key[1:] not in node:
                if isinstance(value, list):
                    filled = self._list(key[1:], [None] * len(value), value, focus, scope)
                    if filled:
                        out[key[1:]] = filled
                else:
                    self._primitive(out, key[1:], None, value, focus, scope)
        return [out] if out and not _only_meta(out) else []

    def _primitive(self, out: dict, key: str, value: Any, shadow: Any, focus: Any, scope: Scope) -> None:
        """A primitive ``key``, possibly set by a templateExtractValue on ``_key``."""
        if isinstance(shadow, dict):
            for ext in extensions(shadow, urls.TEMPLATE_EXTRACT_CONTEXT):
                if not self._eval(ext, focus, scope)[0]:
                    return
            for ext in extensions(shadow, urls.TEMPLATE_EXTRACT_VALUE):
                results, _ = self._eval(ext, focus, scope)
                values = [to_json(r) for r in results]
                if not values:
                    return
                if isinstance(values[0], (dict, list)):
                    self.job.note("warning", "value", f"Template value for '{key}' is not a primitive", self.where)
                    return
                value = values[0]
            rest = [e for e in shadow.get("extension") or () if e.get("url") not in _TEMPLATE_EXTENSIONS]
            if rest:
                out["_" + key] = dict(shadow, extension=rest)
        if value is not None:
            out[key] = value

    def _list(self, key: str, values: list, shadows: Any, focus: Any, scope: Scope) -> list:
        shadows = shadows if isinstance(shadows, list) else []
        out = []
        for i, value in enumerate(values):
            shadow = shadows[i] if i < len(shadows) else None
            if isinstance(value, dict) or (value is None and not isinstance(shadow, dict)):
                out.extend(x for x in self.element(value, focus, scope) if x not in ({}, None))
                continue
            holder: dict = {}
            self._primitive(holder, key, value, shadow, focus, scope)
            if key in holder:
                out.append(holder[key])
        return out


def _only_meta(obj: dict) -> bool:
    """An element left with nothing but a resourceType (and the template's meta) is empty."""
    return set(obj) <= {"resourceType", "meta"}
