"""Questionnaire/$populate: a QuestionnaireResponse pre-filled from the subject's record.

Two mechanisms (SDC populate.html):
- observation-based: ``item.code`` + ``observationLinkPeriod`` takes the value of the latest
  final, amended or corrected Observation of that code for the subject within the period;
- expression-based: ``launchContext``, ``variable`` (FHIRPath or x-fhir-query run against this
  server's own search), ``initialExpression``, ``itemPopulationContext`` (one group repetition
  per result) and ``candidateExpression`` (reported, never chosen).

Anything that could not be filled is reported in the ``issues`` OperationOutcome and left
unanswered: population never guesses.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from ..outcome import Issue
from . import urls
from .calculate import prune_disabled, recalculate
from .expressions import ExpressionError, Scope, bind_variables, evaluate_expression, to_json
from .items import expression_text, ext_value, extensions, typed_value
from .response import answer_for

# UCUM duration units -> days (observationLinkPeriod)
_DAYS = {"a": 365.25, "mo": 30.4375, "wk": 7, "d": 1, "h": 1 / 24, "min": 1 / 1440}
_UNIT_WORDS = {"year": "a", "years": "a", "month": "mo", "months": "mo", "week": "wk", "weeks": "wk",
               "day": "d", "days": "d"}
_OBSERVATION_STATUSES = "final,amended,corrected"


@dataclass
class Population:
    """One $populate call: the (assembled) form, the subject and the launch contexts."""
    service: Any
    questionnaire: dict
    subject: dict  # the subject resource
    launch: dict[str, dict] = field(default_factory=dict)  # launch context name -> resource
    base_url: str = ""
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    issues: list[Issue] = field(default_factory=list)
    scope: Scope | None = field(default=None, init=False)  # after run(): the form's variables, for recalculation

    @property
    def subject_ref(self) -> str:
        return f"{self.subject['resourceType']}/{self.subject['id']}"

    def note(self, severity: str, code: str, text: str, link_id: str | None = None) -> None:
        where = f"Questionnaire.item.where(linkId='{link_id}')" if link_id else "Questionnaire"
        self.issues.append(Issue(severity, code, text, [where]))

    # -- the run ---------------------------------------------------------------------------
    def run(self) -> dict:
        q = self.questionnaire
        response: dict = {"resourceType": "QuestionnaireResponse", "status": "in-progress"}
        if q.get("url"):
            response["questionnaire"] = q["url"] + (f"|{q['version']}" if q.get("version") else "")
        response["subject"] = {"reference": self.subject_ref}
        response["authored"] = self.now.isoformat(timespec="seconds")
        user = self.launch.get("user")
        if user and user.get("resourceType") in ("Practitioner", "PractitionerRole", "Patient", "RelatedPerson"):
            response["author"] = {"reference": f"{user['resourceType']}/{user['id']}"}
        scope = Scope(questionnaire=q, code_system=self.service.definitions.code_system,
                      variables={"questionnaire": q, "resource": response, **self._launch_variables()})
        scope = bind_variables(q, response, scope, self.service, self.base_url, on_error=self._variable_failed(None))
        self.scope = scope
        response["item"] = self._items(q.get("item") or [], scope)
        for link_id, exc in recalculate(q, response, scope):
            self.note("warning", "processing", f"The calculated value of '{link_id}' could not be worked out: {exc}",
                      link_id)
        return prune_disabled(q, response, scope, undecided_enabled=True)

    def _launch_variables(self) -> dict:
        bound: dict[str, Any] = {}
        for ext in extensions(self.questionnaire, urls.LAUNCH_CONTEXT):
            name = ext_value(ext, "name")
            name = name.get("code") if isinstance(name, dict) else name
            if not name:
                continue
            resource = self.launch.get(name)
            if resource is None and name == "patient" and self.subject.get("resourceType") == "Patient":
                resource = self.subject
            if resource is None:
                self.note("information", "not-found", f"No '{name}' launch context was given, so nothing that "
                          f"depends on %{name} is filled in")
            bound[name] = [resource] if resource else []
        for name, resource in self.launch.items():
            bound.setdefault(name, [resource])
        return bound

    def _variable_failed(self, link_id: str | None):
        def report(exc: ExpressionError, name: str) -> None:
            self.note("warning", "processing", f"The variable %{name} could not be worked out ({exc}); "
                      "answers that depend on it are left empty", link_id)
        return report

    # -- items -----------------------------------------------------------------------------
    def _items(self, q_items: list, scope: Scope) -> list:
        out = []
        for item in q_items:
            if item.get("type") == "display" or not item.get("linkId"):
                continue
            item_scope = bind_variables(item, scope.variables.get("resource"), scope, self.service, self.base_url,
                                        on_error=self._variable_failed(item["linkId"]))
            context = ext_value(item, urls.ITEM_POPULATION_CONTEXT)
            if context is not None:
                out.extend(self._repeated_group(item, context, item_scope))
            elif item.get("type") == "group":
                children = self._items(item.get("item") or [], item_scope)
                if children:
                    out.append(self._response_item(item, item=children))
            else:
                out.extend(self._question(item, item_scope))
        return out

    @staticmethod
    def _response_item(q_item: dict, **content) -> dict:
        made = {"linkId": q_item["linkId"]}
        if q_item.get("text"):
            made["text"] = q_item["text"]
        made.update(content)
        return made

    def _repeated_group(self, item: dict, context: Any, scope: Scope) -> list:
        """itemPopulationContext: one repetition of the group per result, named in the scope."""
        text, _, name = expression_text(context)
        try:
            results = evaluate_expression(context, None, scope, self.service, self.base_url)
        except ExpressionError as exc:
            self.note("warning", "processing", f"itemPopulationContext of '{item['linkId']}' failed: {exc}",
                      item["linkId"])
            results = []
        if not results:
            self.note("information", "not-found", f"Nothing in the record to fill '{item.get('text') or item['linkId']}'",
                      item["linkId"])
            self._report_nested_candidates(item.get("item") or [], scope.bind(**{name or "context": []}))
            return []
        if len(results) > 1 and not item.get("repeats"):
            self.note("warning", "multiple-matches", f"'{item['linkId']}' does not repeat but its "
                      f"itemPopulationContext found {len(results)} entries; it is left empty", item["linkId"])
            return []
        out = []
        for result in results:
            children = self._items(item.get("item") or [], scope.bind(**{name or "context": [result]}))
            if children:
                out.append(self._response_item(item, item=children))
        return out

    def _question(self, item: dict, scope: Scope) -> list:
        link_id = item["linkId"]
        self._report_candidates(item, scope)
        values: list | None = None
        initial = ext_value(item, urls.INITIAL_EXPRESSION)
        if initial is not None:
            try:
                values = [to_json(v) for v in evaluate_expression(initial, None, scope, self.service, self.base_url)]
            except ExpressionError as exc:
                self.note("warning", "processing", f"initialExpression of '{link_id}' failed: {exc}", link_id)
                values = []
            if not values:
                self.note("information", "not-found", f"Nothing in the record to fill "
                          f"'{item.get('text') or link_id}'", link_id)
        elif ext_value(item, urls.OBSERVATION_LINK_PERIOD) is not None and item.get("code"):
            values = self._from_observation(item)
        elif item.get("initial"):
            values = [typed_value(i)[1] for i in item["initial"]]
        if not values:
            return []
        if len(values) > 1 and not item.get("repeats"):
            self.note("warning", "multiple-matches", f"'{link_id}' takes one answer but the record gives "
                      f"{len(values)}; it is left for the user", link_id)
            return []
        answers = []
        for v in values:
            a = answer_for(item, v)
            if a is None:
                self.note("warning", "value", f"The value found for '{link_id}' is not a valid {item.get('type')} "
                          "answer; it is left unanswered", link_id)
                return []
            answers.append(a)
        made = self._response_item(item, answer=answers)
        if item.get("item"):
            children = self._items(item["item"], scope)
            if children:
                answers[0]["item"] = children
        return [made]

    def _report_nested_candidates(self, items: list, scope: Scope) -> None:
        """The questions of a group that got no repetitions still offer their candidates."""
        for item in items:
            self._report_candidates(item, scope)
            self._report_nested_candidates(item.get("item") or [], scope)

    def _report_candidates(self, item: dict, scope: Scope) -> None:
        """candidateExpression offers choices to the user (once per item); population never picks one."""
        candidate = ext_value(item, urls.CANDIDATE_EXPRESSION)
        if candidate is None:
            return
        try:
            found = [to_json(v) for v in evaluate_expression(candidate, None, scope, self.service, self.base_url)]
        except ExpressionError as exc:
            self.note("warning", "processing", f"candidateExpression of '{item['linkId']}' failed: {exc}", item["linkId"])
            return
        if found:
            shown = "; ".join(_describe(v) for v in found[:10])
            text = (f"{len(found)} candidate answer(s) for '{item.get('text') or item['linkId']}' for the user to "
                    f"choose from: {shown}")
            if not any(i.text == text for i in self.issues):  # a repeating group offers them once
                self.note("information", "informational", text, item["linkId"])

    # -- observation-based ------------------------------------------------------------------
    def _from_observation(self, item: dict) -> list:
        link_id = item["linkId"]
        period = ext_value(item, urls.OBSERVATION_LINK_PERIOD)
        codes = ",".join(f"{c.get('system', '')}|{c['code']}" for c in item["code"] if c.get("code"))
        since = self._since(period)
        params = [("subject", self.subject_ref), ("code", codes), ("status", _OBSERVATION_STATUSES),
                  ("_sort", "-date"), ("_count", "1")]
        if since:
            params.append(("date", "ge" + since))
        try:
            bundle = self.service.search("Observation", params, self.base_url)
        except Exception as exc:  # a search failure must not fail the whole population
            self.note("warning", "processing", f"Looking up Observations for '{link_id}' failed: {exc}", link_id)
            return []
        entries = [e.get("resource") for e in bundle.get("entry") or () if (e.get("search") or {}).get("mode", "match") == "match"]
        if not entries:
            span = f" in the last {period.get('value')} {period.get('unit') or period.get('code')}" if since else ""
            self.note("information", "not-found", f"No Observation for '{item.get('text') or link_id}'{span}; "
                      "left unanswered", link_id)
            return []
        kind, value = typed_value(entries[0])
        if kind is None:
            self.note("information", "not-found", f"The latest Observation for '{link_id}' has no value", link_id)
            return []
        if kind == "CodeableConcept":
            value = _pick_coding(item, value)
        return [value] if value is not None else []

    def _since(self, period: Any) -> str | None:
        value = period.get("value") if isinstance(period, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
            return None
        days = _DAYS.get(period.get("code")) or _DAYS.get(_UNIT_WORDS.get(period.get("unit"), ""))
        if not days:
            return None
        return (self.now - timedelta(days=float(value) * days)).date().isoformat()


def _pick_coding(item: dict, concept: dict) -> dict | None:
    """The coding of an Observation's CodeableConcept that the item offers (else the first)."""
    codings = [c for c in concept.get("coding") or () if isinstance(c, dict)]
    offered = {(typed_value(o)[1] or {}).get("code") for o in item.get("answerOption") or ()
               if isinstance(typed_value(o)[1], dict)}
    for c in codings:
        if c.get("code") in offered:
            return c
    return codings[0] if codings else None


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        for key in ("display", "reference", "code", "text"):
            if isinstance(value.get(key), str):
                return value[key]
        inner = typed_value(value)[1]
        if inner is not None:
            return _describe(inner)
        if value.get("resourceType"):
            return f"{value['resourceType']}/{value.get('id', '')}"
    return str(value)
