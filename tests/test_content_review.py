"""The asthma review Questionnaire calculates and shows the right things.

The SDC expressions in profiles/Questionnaire-asthma-review-*.json are evaluated with the project's
FHIRPath (fhir_service.fhirpath) against sample QuestionnaireResponses:
- calculatedExpression: ACT total (from itemWeight), RCP 3 score, % of best PEF, thresholds in L/min,
  the plan template;
- enableWhen / enableWhenExpression: the "not well controlled" prompts appear exactly when the ACT
  total is 19 or less or 2 or more RCP 3 Questions are "yes"; the thresholds only for peak-flow users.
"""
from __future__ import annotations

import json
import sys
from decimal import Decimal
from functools import lru_cache

import pytest

from fhir_service.fhirpath import evaluate
from test_content_conformance import BASE, EXAMPLES, PROFILES, SDC, load, walk_items as walk

ITEM_WEIGHT = "http://hl7.org/fhir/StructureDefinition/itemWeight"
ACT_RESPONSE = f"{BASE}/CodeSystem/act-response"


@lru_cache(maxsize=None)
def review() -> dict:
    """The review's modules' items in one Questionnaire (enough for expression evaluation)."""
    modules = [load(p) for p in sorted(PROFILES.glob("Questionnaire-asthma-review-*.json"))]
    return {"resourceType": "Questionnaire", "item": [i for m in modules for i in m["item"]]}


def q_item(link_id: str) -> dict:
    return next(i for i in walk(review()["item"]) if i["linkId"] == link_id)


def expression(link_id: str, url: str) -> str:
    return next(e["valueExpression"]["expression"] for e in q_item(link_id).get("extension", []) if e["url"] == SDC + url)


# -- weight(): SDC's FHIRPath function for itemWeight ------------------------------------------
def _weight(ctx, coll):
    """weight(): the itemWeight of each Coding, from the Coding or from %questionnaire's answerOptions."""
    from fhirpathpy.engine.util import get_data
    questionnaire = ctx["vars"].get("questionnaire") or {}
    out = []
    for node in coll:
        coding = get_data(node)
        weights = [e["valueDecimal"] for e in coding.get("extension", []) if e["url"] == ITEM_WEIGHT]
        for item in ([] if weights else walk(questionnaire.get("item", []))):
            for opt in item.get("answerOption", []):
                c = opt.get("valueCoding", {})
                if (c.get("system"), c.get("code")) == (coding.get("system"), coding.get("code")):
                    weights += [e["valueDecimal"] for e in opt.get("extension", []) if e["url"] == ITEM_WEIGHT]
        if weights:
            out.append(weights[0])
    return out


@pytest.fixture(scope="module", autouse=True)
def sdc_weight_function():
    """Use the project's weight() when fhir_service.fhirpath has one; until then, this reference one."""
    from fhirpathpy.engine.invocations import invocation_registry
    added = "weight" not in invocation_registry
    if added:
        invocation_registry["weight"] = {"fn": _weight, "arity": {0: []}}
    yield
    if added:
        del invocation_registry["weight"]


@lru_cache(maxsize=None)
def plan_templates() -> dict:
    """What the form's %planTemplates x-fhir-query finds: the action-plan PlanDefinitions in profiles/."""
    found = [load(p) for p in sorted(PROFILES.glob("PlanDefinition-*.json"))]
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": pd} for pd in found]}


def calc(link_id: str, qr: dict):
    """The item's calculatedExpression on ``qr`` (%resource), as a single value or None."""
    result = evaluate(qr, expression(link_id, "sdc-questionnaire-calculatedExpression"),
                      {"resource": qr, "questionnaire": review(), "planTemplates": [plan_templates()]})
    assert len(result) <= 1
    return result[0] if result else None


# -- building sample responses --------------------------------------------------------------------
def answer_for(link_id: str, value) -> dict:
    if isinstance(value, bool):
        return {"valueBoolean": value}
    if q_item(link_id)["type"] == "choice" and link_id.startswith("act-q"):
        return {"valueCoding": {"system": ACT_RESPONSE, "code": str(value)}}
    if isinstance(value, dict):
        return {"valueCoding": value}
    return {"valueInteger": value} if isinstance(value, int) else {"valueDecimal": value}


def response(**answers) -> dict:
    """A response with the given answers (linkId with '_' for '-'), grouped as the form groups them."""
    items = [{"linkId": k.replace("_", "-"), "answer": [answer_for(k.replace("_", "-"), v)]}
             for k, v in answers.items() if v is not None]
    return {"resourceType": "QuestionnaireResponse", "status": "in-progress", "item": [{"linkId": "sample", "item": items}]}


def act(*scores) -> dict:
    return {f"act_q{n}": s for n, s in enumerate(scores, 1)}


# -- calculatedExpression -----------------------------------------------------------------------
@pytest.mark.parametrize("scores, total", [
    ((5, 5, 5, 5, 5), 25), ((1, 1, 1, 1, 1), 5), ((5, 4, 3, 2, 1), 15), ((4, 4, 4, 4, 3), 19), ((4, 4, 4, 4, 4), 20)])
def test_act_total_from_item_weights(scores, total):
    assert calc("act-total", response(**act(*scores))) == total


def test_act_total_needs_all_five_items():
    assert calc("act-total", response(**act(5, 5, 5, 5, None))) is None


def test_act_weights_are_the_scores():
    for n in range(1, 6):
        options = q_item(f"act-q{n}")["answerOption"]
        assert [o["extension"][0] for o in options] == [{"url": ITEM_WEIGHT, "valueDecimal": s} for s in range(1, 6)]
        assert [o["valueCoding"]["code"] for o in options] == ["1", "2", "3", "4", "5"]


@pytest.mark.parametrize("answers, score", [((False, False, False), 0), ((True, False, True), 2), ((True, True, True), 3)])
def test_rcp3_score(answers, score):
    sleep, daytime, activities = answers
    assert calc("rcp3-score", response(rcp3_sleep=sleep, rcp3_daytime=daytime, rcp3_activities=activities)) == score
    assert calc("rcp3-score", response(rcp3_sleep=sleep, rcp3_daytime=daytime)) is None


@pytest.mark.parametrize("current, best, percent", [(440, 460, 96), (300, 520, 58), (410, 540, 76), (460, 460, 100), (231, 462, 50)])
def test_percent_of_best_peak_flow(current, best, percent):
    assert calc("pef-percent-best", response(pef_current=current, pef_best=best)) == percent


def test_percent_of_best_needs_both_readings():
    assert calc("pef-percent-best", response(pef_current=400)) is None


@pytest.mark.parametrize("best, worse, attack, worse_lmin, attack_lmin", [
    (460, 80, 50, 368, 230), (540, 75, 50, 405, 270), (410, 75, 50, 308, 205), (380, 80, 50, 304, 190), (455, 80, 50, 364, 228),
    (430, 75, 50, 323, 215), (470, 75, 45, 353, 212)])  # halves round up: 322.5 -> 323, 352.5 -> 353, 211.5 -> 212
def test_zone_thresholds_in_litres_per_minute(best, worse, attack, worse_lmin, attack_lmin):
    qr = response(pef_best=best, plan_worse_percent=worse, plan_attack_percent=attack)
    assert calc("plan-worse-lmin", qr) == worse_lmin
    assert calc("plan-attack-lmin", qr) == attack_lmin


def test_plan_template_follows_the_plan_type():
    plan_types = load(PROFILES / "CodeSystem-asthma-plan-type.json")
    for concept in plan_types["concept"]:
        qr = response(plan_type={"system": plan_types["url"], "code": concept["code"]})
        url, version = calc("plan-template", qr).split("|")
        plan = load(PROFILES / f"PlanDefinition-{url.rsplit('/', 1)[1]}.json")
        assert plan["url"] == url and plan["version"] == version
        assert plan["extension"][0]["valueCoding"]["code"] == concept["code"]
    assert calc("plan-template", response()) is None


def test_plan_template_version_comes_from_the_plan_definition(monkeypatch):
    """The form names no template version: a new version of a PlanDefinition is the one a new plan follows."""
    assert "|0." not in expression("plan-template", "sdc-questionnaire-calculatedExpression")
    bumped = json.loads(json.dumps(plan_templates()))
    for e in bumped["entry"]:
        e["resource"]["version"] = "0.2.0"
    monkeypatch.setattr(sys.modules[__name__], "plan_templates", lambda: bumped)
    qr = response(plan_type={"system": f"{BASE}/CodeSystem/asthma-plan-type", "code": "mart"})
    assert calc("plan-template", qr) == f"{BASE}/PlanDefinition/asthma-action-plan-mart|0.2.0"


def example_responses() -> list[dict]:
    return [e["resource"] for f in sorted(EXAMPLES.glob("*.json")) for e in load(f)["entry"]
            if e["resource"]["resourceType"] == "QuestionnaireResponse"]


def test_example_responses_hold_the_calculated_values():
    calculated = [i["linkId"] for i in walk(review()["item"])
                  if any(e["url"] == SDC + "sdc-questionnaire-calculatedExpression" for e in i.get("extension", []))]
    checked = 0
    for qr in example_responses():
        for item in walk(qr["item"]):
            if item["linkId"] in calculated:
                stored = next(iter(item["answer"][0].values()))
                assert calc(item["linkId"], qr) == stored, (qr["id"], item["linkId"])
                checked += 1
    assert checked >= 50


# -- enableWhen and enableWhenExpression ------------------------------------------------------------
def answers_to(qr: dict, link_id: str) -> list:
    return [next(iter(a.values())) for i in walk(qr["item"]) if i["linkId"] == link_id for a in i.get("answer", [])]


def _matches(value, operator: str, expected) -> bool:
    if isinstance(expected, (dict, bool)):  # Coding or boolean: equality only
        same = ((value.get("system"), value.get("code")) == (expected.get("system"), expected.get("code"))
                if isinstance(expected, dict) else value is expected)
        return same if operator == "=" else not same
    value, expected = Decimal(str(value)), Decimal(str(expected))
    return {"=": value == expected, "!=": value != expected, ">": value > expected, "<": value < expected,
            ">=": value >= expected, "<=": value <= expected}[operator]


def enabled(link_id: str, qr: dict) -> bool:
    """Whether the item is enabled in ``qr``: its enableWhen conditions, then its enableWhenExpression."""
    item = q_item(link_id)
    results = []
    for cond in item.get("enableWhen", []):
        expected = next(v for k, v in cond.items() if k.startswith("answer"))
        values = answers_to(qr, cond["question"])
        if cond["operator"] == "exists":
            results.append(bool(values) == expected)
        else:
            results.append(any(_matches(v, cond["operator"], expected) for v in values))
    if results and not (all(results) if item.get("enableBehavior", "all") == "all" else any(results)):
        return False
    for e in item.get("extension", []):
        if e["url"] == SDC + "sdc-questionnaire-enableWhenExpression":
            return evaluate(qr, e["valueExpression"]["expression"], {"resource": qr}) == [True]
    return True


@pytest.mark.parametrize("act_total, rcp3_score, poorly_controlled", [
    (19, 0, True), (20, 1, False), (25, 2, True), (5, 3, True), (20, None, False),
    (None, 0, False), (None, 1, False), (None, 2, True), (None, None, False)])
def test_poorly_controlled_prompts(act_total, rcp3_score, poorly_controlled):
    qr = response(act_total=act_total, rcp3_score=rcp3_score)
    assert enabled("risk-poor-control", qr) is poorly_controlled
    assert enabled("act-poor-control", qr) is (act_total is not None and act_total <= 19)
    assert enabled("rcp3-poor-control", qr) is (rcp3_score is not None and rcp3_score >= 2)


def test_prompts_follow_the_calculated_scores():
    """End to end: item answers -> calculated totals -> the prompts."""
    qr = response(**act(4, 4, 4, 4, 3), rcp3_sleep=False, rcp3_daytime=True, rcp3_activities=False)
    qr["item"][0]["item"] += [{"linkId": "act-total", "answer": [{"valueInteger": calc("act-total", qr)}]},
                              {"linkId": "rcp3-score", "answer": [{"valueInteger": calc("rcp3-score", qr)}]}]
    assert enabled("risk-poor-control", qr)  # ACT 19
    qr["item"][0]["item"][-2]["answer"] = [{"valueInteger": 20}]
    assert not enabled("risk-poor-control", qr)  # ACT 20 and one RCP "yes"


@pytest.mark.parametrize("uses, shown", [(True, True), (False, False), (None, False)])
def test_peak_flow_items_only_for_peak_flow_users(uses, shown):
    qr = response(pef_uses=uses)
    for link_id in ("pef-current", "pef-best", "pef-percent-best", "plan-thresholds"):
        assert enabled(link_id, qr) is shown


def test_plan_only_when_given():
    assert enabled("plan", response(plan_provide=True))
    assert not enabled("plan", response(plan_provide=False))


def test_example_responses_answer_only_enabled_items():
    for qr in example_responses():
        for item in walk(qr["item"]):
            assert enabled(item["linkId"], qr), (qr["id"], item["linkId"])
        poorly = enabled("risk-poor-control", qr)
        assert any(i["linkId"] == "risk-poor-control" for i in walk(qr["item"])) is poorly, qr["id"]
