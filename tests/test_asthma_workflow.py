"""The review-to-plan workflow over HTTP, once per plan type, with the example patients.

$populate -> answer the rest -> POST the response (validated against the Questionnaire) ->
$extract -> POST the transaction Bundle; then the plan, the record and the narrative are checked.
"""
from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field

import pytest

from fhir_service.sdc.items import first_answer
from test_sdc_support import ReviewForm, json_of, out_param, practice  # noqa: F401

LOINC_PLAN = "http://loinc.org|69981-9"
SNOMED = "http://snomed.info/sct|"
PROFILE = "https://fhir.imp2art.org/StructureDefinition/asthma-action-plan"
GOAL_PROFILE = "https://fhir.imp2art.org/StructureDefinition/asthma-zone-goal"


@dataclass
class Case:
    patient: str
    old_plan: str
    plan_type: str
    answers: dict
    medicines: list | None
    best: int
    percents: tuple[int, int]
    lmin: tuple[int, int]  # the thresholds the narrative must show for this personal best
    wording: list[str] = field(default_factory=list)  # template wording that must appear


def coding(system: str, code: str) -> dict:
    return {"system": system, "code": code}


PLAN_TYPE = "https://fhir.imp2art.org/CodeSystem/asthma-plan-type"
ROLE = "https://fhir.imp2art.org/CodeSystem/asthma-medicine-role"
ACT = "https://fhir.imp2art.org/CodeSystem/act-response"
TRIGGER = "https://fhir.imp2art.org/CodeSystem/asthma-trigger"


def control(act: list[int], rcp3: list[bool], exacerbations: int, **more) -> dict:
    answers = {f"act-q{i + 1}": [coding(ACT, str(v))] for i, v in enumerate(act)}
    answers.update({"rcp3-sleep": [rcp3[0]], "rcp3-daytime": [rcp3[1]], "rcp3-activities": [rcp3[2]],
                    "risk-exacerbations": [exacerbations], "risk-oral-steroids": [exacerbations],
                    "closing-plan-outcome": [coding("http://snomed.info/sct", "810901000000102")],
                    "closing-annual-review": [coding("http://snomed.info/sct", "394700004")]})
    answers.update(more)
    return answers


CASES = {
    # same plan type, a new personal best: the thresholds in L/min move with it
    "preventer-reliever": Case(
        "fiona-macleod", "fiona-macleod-plan-2026-09-14", "preventer-reliever",
        control([5, 5, 4, 5, 4], [False, False, False], 0, **{"pef-uses": [True], "pef-current": [450], "pef-best": [480],
                "risk-triggers": [coding(TRIGGER, "pollen")]}),
        None, 480, (80, 50), (384, 240), ["up to 10 puffs"]),
    # poorly controlled on preventer plus reliever, moved to MART
    "mart": Case(
        "gary-thomson", "gary-thomson-plan-2026-07-20", "mart",
        control([3, 3, 3, 4, 3], [True, True, False], 2, **{"pef-uses": [True], "pef-current": [400], "pef-best": [540],
                "plan-type": [coding(PLAN_TYPE, "mart")], "plan-worse-percent": [75], "plan-attack-percent": [50]}),
        [{"plan-medicine-product": [coding("http://snomed.info/sct", "134498003")],
          "plan-medicine-role": [coding(ROLE, "mart")], "plan-medicine-dose": ["2 puffs twice a day"]}],
        540, (75, 50), (405, 270), ["up to 6 puffs", "MART"]),
    # a teenager on AIR
    "air": Case(
        "priya-sharma", "priya-sharma-plan-2026-05-11", "air",
        control([4, 5, 4, 5, 4], [False, True, False], 0, **{"pef-uses": [True], "pef-current": [390], "pef-best": [420]}),
        None, 420, (75, 50), (315, 210), ["AIR"]),
}


@pytest.fixture(scope="module")
def done(practice):  # noqa: F811
    """Each case run once per backend: the ids and documents the assertions look at."""
    form = ReviewForm(practice)
    results = {}
    for name, case in CASES.items():
        results[name] = run_review(practice, form, case)
    return results


def run_review(client, form: ReviewForm, case: Case) -> dict:
    patient = f"Patient/{case.patient}"
    response, issues = form.populate(patient)
    assert first_answer(response, "plan-replaces") == f"CarePlan/{case.old_plan}"
    form.complete(response, {"plan-provide": [True], **case.answers}, case.medicines)
    r = client.post("QuestionnaireResponse", json=response)
    assert r.status_code == 201, r.text  # validated against the (assembled) Questionnaire
    qr = json_of(r)
    r = client.post(f"QuestionnaireResponse/{qr['id']}/$extract")
    assert r.status_code == 200, r.text
    bundle = out_param(json_of(r), "return")
    assert bundle["type"] == "transaction"
    r = client.post("", json=bundle)
    assert r.status_code == 200, r.text
    locations = [e["response"].get("location", "") for e in json_of(r)["entry"]]
    plan_id = next(loc.split("/")[1] for loc in locations if loc.startswith("CarePlan/") and case.old_plan not in loc)
    again = _post_again(client, bundle, qr)
    return {"qr": qr, "plan": json_of(client.get(f"CarePlan/{plan_id}")), "bundle": bundle, "locations": locations,
            "again": again}


def _post_again(client, bundle: dict, qr: dict) -> list[list[str]]:
    """The same bundle posted again, and a fresh extraction of the same review posted: statuses."""
    out = []
    for attempt in (bundle, None):
        if attempt is None:
            r = client.post(f"QuestionnaireResponse/{qr['id']}/$extract")
            attempt = out_param(json_of(r), "return")
        r = client.post("", json=attempt)
        assert r.status_code == 200, r.text
        out.append([e["response"]["status"] for e in json_of(r)["entry"]])
    return out


@pytest.fixture(params=sorted(CASES))
def case(request, done):
    return CASES[request.param], done[request.param]


def test_new_plan_is_active_and_valid_against_its_profile(practice, case):  # noqa: F811
    c, out = case
    plan = out["plan"]
    assert plan["status"] == "active" and plan["intent"] == "plan"
    assert plan["instantiatesCanonical"][0].startswith(f"https://fhir.imp2art.org/PlanDefinition/asthma-action-plan-{c.plan_type}|")
    active = json_of(practice.get(f"CarePlan?subject=Patient/{c.patient}&status=active&category={LOINC_PLAN}"))
    assert [e["resource"]["id"] for e in active["entry"]] == [plan["id"]]
    r = practice.post(f"CarePlan/$validate?profile={PROFILE}", json=plan)
    errors = [i for i in json_of(r)["issue"] if i["severity"] in ("error", "fatal")]
    assert r.status_code == 200 and not errors, errors
    zones = {a["extension"][0]["valueCoding"]["code"] for a in plan["activity"]}
    assert zones == {"everyday", "worse", "attack"}


def test_plan_and_goals_claim_their_profiles_from_the_templates(practice, case):  # noqa: F811
    _, out = case
    assert out["plan"]["meta"]["profile"] == [PROFILE]
    goals = [json_of(practice.get(g["reference"])) for g in out["plan"]["goal"]]
    assert len(goals) == 3
    assert all(g["meta"]["profile"] == [GOAL_PROFILE] for g in goals)


def test_posting_again_makes_no_duplicates(practice, case):  # noqa: F811
    c, out = case
    for statuses in out["again"]:
        assert all(s.startswith("200") for s in statuses), statuses
    found = json_of(practice.get(f"CarePlan?subject=Patient/{c.patient}&status=active"))
    assert found["total"] == 1
    found = json_of(practice.get(f"DocumentReference?subject=Patient/{c.patient}&related=CarePlan/{out['plan']['id']}"))
    assert found["total"] == 1


def test_old_plan_is_revoked_and_replaced(practice, case):  # noqa: F811
    c, out = case
    assert {"reference": f"CarePlan/{c.old_plan}"} in out["plan"]["replaces"]
    old = json_of(practice.get(f"CarePlan/{c.old_plan}"))
    assert old["status"] == "revoked"
    for goal in old.get("goal", []):
        assert json_of(practice.get(goal["reference"]))["lifecycleStatus"] == "cancelled"


def test_observations_and_coded_entries_can_be_found(practice, case):  # noqa: F811
    c, out = case
    qr_ref = f"QuestionnaireResponse/{out['qr']['id']}"
    today = out["qr"]["authored"][:10]
    for code, value in ((SNOMED + "251936000", c.best), (SNOMED + "366874008", c.answers["risk-exacerbations"][0]),
                        (SNOMED + "443117005", None), (SNOMED + "394700004", None), (SNOMED + "810901000000102", None)):
        found = json_of(practice.get(f"Observation?subject=Patient/{c.patient}&code={code}&date={today}"))
        mine = [e["resource"] for e in found["entry"] if {"reference": qr_ref} in e["resource"].get("derivedFrom", [])]
        assert len(mine) == 1, (code, found)
        obs = mine[0]
        assert obs["effectiveDateTime"] == out["qr"]["authored"]
        assert obs["performer"] == [out["qr"]["author"]]
        if value is not None:
            assert obs["valueQuantity"]["value"] == value
    act = [e["resource"] for e in json_of(practice.get(f"Observation?subject=Patient/{c.patient}&code=http://loinc.org|82674-3"
                                                      f"&date={today}"))["entry"]]
    assert any(len(o.get("component", [])) == 5 and o.get("hasMember") for o in act)


def test_provenance_leads_back_to_the_review(practice, case):  # noqa: F811
    c, out = case
    plan_ref = f"CarePlan/{out['plan']['id']}"
    found = json_of(practice.get(f"Provenance?target={plan_ref}"))
    assert found["total"] == 1
    prov = found["entry"][0]["resource"]
    assert prov["entity"] == [{"role": "source", "what": {"reference": f"QuestionnaireResponse/{out['qr']['id']}"}}]
    created = {loc.rsplit("/_history", 1)[0] for loc in out["locations"] if loc and not loc.startswith("Provenance/")}
    targets = {t["reference"] for t in prov["target"]}
    # every created resource; the superseded plan's records are updated, not created
    assert targets <= created and plan_ref in targets
    assert any(t.startswith("DocumentReference/") for t in targets)


def _plan_definition(practice, case: Case) -> dict:  # noqa: F811
    url = f"https://fhir.imp2art.org/PlanDefinition/asthma-action-plan-{case.plan_type}"
    return json_of(practice.get(f"PlanDefinition?url={url}"))["entry"][0]["resource"]


def test_narrative_has_the_zone_wording_and_thresholds_for_the_personal_best(practice, case):  # noqa: F811
    c, out = case
    div = out["plan"]["text"]["div"]
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", div))
    for zone in _plan_definition(practice, c)["action"]:
        assert zone["title"] in text
    worse, attack = c.lmin
    assert f"{worse} L/min or more" in text
    assert f"below {worse} L/min ({c.percents[0]}% of your best)" in text
    assert f"below {attack} L/min ({c.percents[1]}% of your best)" in text
    assert f"{c.best} L/min" in text
    for words in c.wording:
        assert words in text
    if c.plan_type in ("mart", "air"):
        assert "10 puffs" not in text.lower()
    assert "Review this plan" in text and "My contacts" in text
    if c.answers.get("risk-triggers"):
        assert "Pollen" in text


def test_document_reference_carries_the_readable_plan(practice, case):  # noqa: F811
    c, out = case
    found = json_of(practice.get(f"DocumentReference?subject=Patient/{c.patient}&type={LOINC_PLAN}"))
    docs = [e["resource"] for e in found["entry"]
            if {"reference": f"CarePlan/{out['plan']['id']}"} in e["resource"]["context"]["related"]]
    assert len(docs) == 1
    attachment = docs[0]["content"][0]["attachment"]
    assert attachment["contentType"] == "text/html"
    html = base64.b64decode(attachment["data"]).decode("utf-8")
    assert out["plan"]["text"]["div"] in html and "viewport" in html
