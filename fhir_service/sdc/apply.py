"""PlanDefinition/$apply (R4): a PlanDefinition's actions for one subject.

Actions become a RequestGroup. An applicability condition that can be decided from what is
known now (the subject and the inputs the caller binds) keeps or drops its action; one that
depends on something only known later (it names a %variable that is not bound, such as
"the reliever is not helping") is carried into the RequestGroup as that action's condition.
Text that carries a ``cqf-expression`` is computed. The draft CarePlan contains the
RequestGroup and refers to it from its activity.
"""
from __future__ import annotations

import copy
from typing import Any

from ..outcome import Issue
from . import urls
from .expressions import ExpressionError, Scope, UndefinedVariable, evaluate_json
from .items import expression_text, extensions, typed_value

_COPIED = ("prefix", "title", "description", "textEquivalent", "priority", "code", "documentation",
           "relatedAction", "participant", "type", "groupingBehavior", "selectionBehavior", "requiredBehavior",
           "precheckBehavior", "cardinalityBehavior")


def canonical_of(resource: dict) -> str:
    return resource.get("url", "") + (f"|{resource['version']}" if resource.get("version") else "")


class Application:
    """Applies one PlanDefinition; ``issues`` collects what could not be applied."""

    def __init__(self, plan_definition: dict, subject_ref: str, scope: Scope):
        self.pd = plan_definition
        self.subject_ref = subject_ref
        self.scope = scope
        self.issues: list[Issue] = []

    def note(self, severity: str, code: str, text: str, where: str) -> None:
        self.issues.append(Issue(severity, code, text, [where]))

    def request_group(self) -> dict:
        rg: dict = {"resourceType": "RequestGroup", "instantiatesCanonical": [canonical_of(self.pd)],
                    "status": "draft", "intent": "proposal", "subject": {"reference": self.subject_ref}}
        actions = self.actions(self.pd.get("action") or [], "PlanDefinition")
        if actions:
            rg["action"] = actions
        return rg

    def actions(self, actions: list, path: str) -> list:
        out = []
        for i, action in enumerate(actions):
            made = self.action(action, f"{path}.action[{i}]")
            if made is not None:
                out.append(made)
        return out

    def action(self, action: dict, where: str) -> dict | None:
        deferred = []
        for c in action.get("condition") or ():
            if c.get("kind") != "applicability":
                deferred.append(c)
                continue
            verdict = self._decide(c, where)
            if verdict is False:
                return None
            if verdict is None:
                deferred.append(c)
        out: dict = {"id": action["id"]} if action.get("id") else {}
        for key in _COPIED:
            if key in action:
                out[key] = copy.deepcopy(action[key])
        for key in ("title", "description", "textEquivalent"):
            text = self._computed_text(action, key, where)
            if text is not None:
                out[key] = text
        kind, timing = typed_value(action, "timing")
        if kind:
            out["timing" + kind] = timing
        if deferred:
            out["condition"] = copy.deepcopy(deferred)
        if action.get("definitionCanonical") or action.get("definitionUri"):
            self.note("warning", "not-supported", "Actions defined by an ActivityDefinition are not applied; "
                      "only their text is carried", where + ".definition")
        if action.get("dynamicValue"):
            self.note("warning", "not-supported", "dynamicValue is not applied", where + ".dynamicValue")
        children = self.actions(action.get("action") or [], where)
        if children:
            out["action"] = children
        return out

    def _decide(self, condition: dict, where: str) -> bool | None:
        """True/False when the applicability condition can be decided now, None when it cannot."""
        text, _, _ = expression_text(condition.get("expression"))
        if not text:
            return None
        try:
            values = evaluate_json(text, None, self.scope)
        except UndefinedVariable:
            return None
        except ExpressionError as exc:
            self.note("warning", "processing", f"Condition {text!r} could not be evaluated: {exc}", where + ".condition")
            return None
        return values == [True]

    def _computed_text(self, action: dict, key: str, where: str) -> str | None:
        for ext in extensions(action.get("_" + key), urls.CQF_EXPRESSION):
            text = expression_text(typed_value(ext)[1])[0]
            try:
                values = evaluate_json(text or "", None, self.scope)
            except ExpressionError as exc:
                self.note("warning", "processing", f"The {key} expression {text!r} could not be evaluated: {exc}; "
                          "the template wording is kept", f"{where}.{key}")
                return None
            if values and isinstance(values[0], str):
                return values[0]
        return None


def draft_care_plan(plan_definition: dict, request_group: dict, subject_ref: str, author: Any = None) -> dict:
    """The R4 $apply result: a draft CarePlan containing the RequestGroup."""
    rg = dict(request_group, id="request-group")
    plan: dict = {"resourceType": "CarePlan", "contained": [rg], "instantiatesCanonical": [canonical_of(plan_definition)],
                  "status": "draft", "intent": "plan", "subject": {"reference": subject_ref}}
    if plan_definition.get("title"):
        plan["title"] = plan_definition["title"]
    if author:
        plan["author"] = author
    plan["activity"] = [{"reference": {"reference": "#request-group"}}]
    return plan
