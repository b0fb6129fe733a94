"""$populate, $extract, $assemble and PlanDefinition/$apply over HTTP: the edges and the errors."""
from __future__ import annotations

import uuid
from datetime import date, timedelta

from fhir_service.sdc.items import answers, first_answer
from test_sdc_support import CLINICIAN, REVIEW, ReviewForm, json_of, out_param, parameters, practice  # noqa: F401

SDC = "http://hl7.org/fhir/uv/sdc/StructureDefinition/"


def _issue_texts(outcome: dict | None) -> str:
    return " | ".join(i.get("details", {}).get("text", "") for i in (outcome or {}).get("issue", []))


def _expressions(outcome: dict) -> list[str]:
    return [e for i in outcome["issue"] for e in i.get("expression", [])]


# -- $populate -------------------------------------------------------------------------------
def test_populating_a_patient_with_no_history_gives_empty_answers_and_issues(practice):  # noqa: F811
    r = practice.post("Patient", json={"resourceType": "Patient", "name": [{"family": "Newcomer", "given": ["Nia"]}],
                                       "generalPractitioner": [{"reference": "Organization/meadowbank-practice"}]})
    assert r.status_code == 201, r.text
    patient = json_of(r)
    form = ReviewForm(practice)
    response, issues = form.populate(f"Patient/{patient['id']}")
    assert response["status"] == "in-progress"
    assert response["subject"] == {"reference": f"Patient/{patient['id']}"}
    assert response["author"] == {"reference": CLINICIAN}
    for unknown in ("act-previous", "pef-previous", "pef-best", "risk-exacerbations", "risk-oral-steroids", "plan-type",
                    "plan-replaces", "plan-condition", "plan-medicines", "plan-contact-clinician"):
        assert not answers(response, unknown), unknown  # nothing guessed
    # what the record does give is still filled in: the practice from the Patient
    assert first_answer(response, "plan-contact-practice") == {"reference": "Organization/meadowbank-practice"}
    text = _issue_texts(issues)
    assert "Last recorded ACT score" in text and "Personal best peak flow" in text and "Type of plan" in text
    assert all(i["severity"] in ("information", "warning") for i in issues["issue"])


def test_populate_prefills_the_record_for_an_example_patient(practice):  # noqa: F811
    response, _ = ReviewForm(practice).populate("Patient/robert-brown")
    assert first_answer(response, "pef-best") == 540  # the latest personal best
    assert first_answer(response, "plan-worse-percent") == 75  # the current plan's thresholds
    assert first_answer(response, "plan-worse-lmin") == 405  # calculated from them
    assert first_answer(response, "plan-replaces").startswith("CarePlan/robert-brown")
    assert answers(response, "plan-medicine-product")  # one repetition per plan medicine
    assert first_answer(response, "plan-contact-clinician")["reference"].startswith("Practitioner/")


def _candidate_issues(outcome: dict, link_id: str) -> list[str]:
    where = f"Questionnaire.item.where(linkId='{link_id}')"
    return [i["details"]["text"] for i in outcome["issue"] if where in i.get("expression", []) and "candidate" in i["details"]["text"]]


def test_populate_offers_prescribed_inhalers_to_a_patient_with_no_plan(practice):  # noqa: F811
    """Liam has asthma prescriptions and no plan: his inhalers are offered as candidates, never chosen for him."""
    response, issues = ReviewForm(practice).populate("Patient/liam-murray")
    offered = _candidate_issues(issues, "plan-medicine-product")
    assert len(offered) == 1, offered  # once, however many prescriptions and medicine rows
    assert offered[0].startswith("2 candidate answer(s) for 'Inhaler'")
    assert "Beclometasone 100micrograms/dose inhaler CFC free" in offered[0] and "Salbutamol" in offered[0]
    # rows come only from an active plan's medicines (Liam has none, unless a test here gave him one)
    planned = json_of(practice.get("MedicationRequest?subject=Patient/liam-murray&intent=plan&status=active"))
    assert answers(response, "plan-medicine-product") == [
        e["resource"]["medicationCodeableConcept"]["coding"][0] for e in planned.get("entry", [])]


def test_populate_candidates_are_recent_asthma_prescriptions_only(practice):  # noqa: F811
    r = practice.post("Patient", json={"resourceType": "Patient", "name": [{"family": "Candidate", "given": ["Cara"]}]})
    assert r.status_code == 201, r.text
    patient = f"Patient/{json_of(r)['id']}"

    def prescribe(code: str, display: str, authored: str, status: str = "completed") -> None:
        r = practice.post("MedicationRequest", json={
            "resourceType": "MedicationRequest", "status": status, "intent": "order", "subject": {"reference": patient},
            "medicationCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": code, "display": display}]},
            "authoredOn": authored})
        assert r.status_code == 201, r.text

    today = date.today()
    prescribe("39113611000001102", "Salbutamol 100micrograms/dose inhaler CFC free", (today - timedelta(days=30)).isoformat(),
              status="active")
    prescribe("39113611000001102", "Salbutamol 100micrograms/dose inhaler CFC free", (today - timedelta(days=90)).isoformat())
    prescribe("35908111000001105", "Beclometasone 100micrograms/dose inhaler CFC free",
              (today - timedelta(days=800)).isoformat())  # more than a year ago: not current
    prescribe("323509004", "Amoxicillin 500mg capsules", (today - timedelta(days=10)).isoformat())  # not for asthma
    response, issues = ReviewForm(practice).populate(patient)
    assert _candidate_issues(issues, "plan-medicine-product") == [
        "1 candidate answer(s) for 'Inhaler' for the user to choose from: Salbutamol 100micrograms/dose inhaler CFC free"]
    assert not answers(response, "plan-medicine-product")  # no plan, so no medicine rows: nothing chosen


def test_populate_at_instance_level_with_get(practice):  # noqa: F811
    root = json_of(practice.get(f"Questionnaire?url={REVIEW}"))["entry"][0]["resource"]
    r = practice.get(f"Questionnaire/{root['id']}/$populate?subject=Patient/priya-sharma")
    assert r.status_code == 200, r.text
    response = out_param(json_of(r), "response")
    assert first_answer(response, "plan-type")["code"] == "air"


def test_populate_errors_name_the_parameter(practice):  # noqa: F811
    r = practice.post("Questionnaire/$populate", json=parameters(canonical={"valueCanonical": REVIEW}))
    assert r.status_code == 400 and "subject" in _expressions(json_of(r))[0]
    r = practice.post("Questionnaire/$populate", json=parameters(
        canonical={"valueCanonical": REVIEW}, subject={"valueReference": {"reference": "Patient/nobody-" + uuid.uuid4().hex}}))
    assert r.status_code == 404 and "subject" in _expressions(json_of(r))[0]
    r = practice.post("Questionnaire/$populate", json=parameters(
        canonical={"valueCanonical": "https://example.org/Questionnaire/unknown"},
        subject={"valueReference": {"reference": "Patient/fiona-macleod"}}))
    assert r.status_code == 404 and "canonical" in _expressions(json_of(r))[0]


# -- $extract --------------------------------------------------------------------------------
def test_extract_refuses_an_in_progress_response(practice):  # noqa: F811
    response, _ = ReviewForm(practice).populate("Patient/fiona-macleod")
    r = practice.post("QuestionnaireResponse/$extract", json=parameters(**{"questionnaire-response": response}))
    assert r.status_code == 422, r.text
    outcome = json_of(r)
    assert outcome["resourceType"] == "OperationOutcome"
    assert "in-progress" in _issue_texts(outcome) and _expressions(outcome) == ["QuestionnaireResponse.status"]


def test_extract_with_an_unknown_questionnaire(practice):  # noqa: F811
    response = {"resourceType": "QuestionnaireResponse", "status": "completed",
                "questionnaire": "https://example.org/Questionnaire/never-published|1.0",
                "subject": {"reference": "Patient/fiona-macleod"}, "authored": "2026-11-28T10:00:00+00:00"}
    r = practice.post("QuestionnaireResponse/$extract", json=parameters(**{"questionnaire-response": response}))
    assert r.status_code == 404, r.text
    assert _expressions(json_of(r)) == ["QuestionnaireResponse.questionnaire"]


def test_extract_of_an_unsaved_response_carries_it_in_the_bundle(practice):  # noqa: F811
    """Type level: the response travels with the bundle; a patient with no plan gets one, replacing nothing."""
    form = ReviewForm(practice)
    response, _ = form.populate("Patient/liam-murray")
    form.complete(response, {
        "rcp3-sleep": [False], "rcp3-daytime": [False], "rcp3-activities": [False], "pef-uses": [True],
        "pef-best": [600], "plan-provide": [True],
        "plan-type": [{"system": "https://fhir.imp2art.org/CodeSystem/asthma-plan-type", "code": "preventer-reliever"}],
        "plan-worse-percent": [80], "plan-attack-percent": [50],
        "closing-plan-outcome": [{"system": "http://snomed.info/sct", "code": "527171000000103"}]},
        medicines=[{"plan-medicine-product": [{"system": "http://snomed.info/sct", "code": "35908111000001105"}],
                    "plan-medicine-role": [{"system": "https://fhir.imp2art.org/CodeSystem/asthma-medicine-role",
                                            "code": "preventer"}],
                    "plan-medicine-dose": ["2 puffs twice a day"]}])
    r = practice.post("QuestionnaireResponse/$extract", json=parameters(**{"questionnaire-response": response}))
    assert r.status_code == 200, r.text
    bundle = out_param(json_of(r), "return")
    first = bundle["entry"][0]
    assert first["request"]["method"] == "PUT" and first["resource"]["resourceType"] == "QuestionnaireResponse"
    qr_id = first["resource"]["id"]
    assert not any(e["request"]["method"] == "PATCH" for e in bundle["entry"])  # nothing to replace
    r = practice.post("", json=bundle)
    assert r.status_code == 200, r.text
    plan = json_of(practice.get("CarePlan?subject=Patient/liam-murray&status=active"))["entry"][0]["resource"]
    assert "replaces" not in plan
    assert "Beclometasone" in plan["text"]["div"] and "480 L/min or more" in plan["text"]["div"]
    assert json_of(practice.get(f"QuestionnaireResponse/{qr_id}"))["status"] == "completed"


# -- $assemble -------------------------------------------------------------------------------
def _module(url: str, items: list, *, expectation: str = "assemble-child", extensions=()) -> dict:
    return {"resourceType": "Questionnaire", "url": url, "version": "1", "status": "active",
            "extension": [{"url": SDC + "sdc-questionnaire-assemble-expectation", "valueCode": expectation},
                          *extensions], "item": items}


def _sub(link_id: str, canonical: str) -> dict:
    return {"linkId": link_id, "type": "display", "text": f"{canonical} (not available)",
            "extension": [{"url": SDC + "sdc-questionnaire-subQuestionnaire", "valueCanonical": canonical}]}


def _store(practice, q: dict) -> dict:  # noqa: F811
    r = practice.post("Questionnaire", json=q)
    assert r.status_code == 201, r.text
    return json_of(r)


def test_assemble_the_review(practice):  # noqa: F811
    root = json_of(practice.get(f"Questionnaire?url={REVIEW}"))["entry"][0]["resource"]
    r = practice.post(f"Questionnaire/{root['id']}/$assemble")
    assert r.status_code == 200, r.text
    q = out_param(json_of(r), "return")
    assert (q["url"], q["version"]) == (root["url"], root["version"])
    assembled_from = [e["valueCanonical"] for e in q["extension"] if e["url"] == SDC + "sdc-questionnaire-assembledFrom"]
    assert len(assembled_from) == 7 and all("|" in c for c in assembled_from)
    names = [e["valueExpression"]["name"] for e in q["extension"] if e["url"].endswith("/variable")]
    assert "currentPlan" in names and "relieverPrescriptions" in names
    contexts = [e for e in q["extension"] if e["url"] == SDC + "sdc-questionnaire-launchContext"]
    assert len(contexts) == 2  # patient and user, once each
    assert not any(it.get("type") == "display" and "subQuestionnaire" in str(it) for it in q["item"])
    assert not any(e["url"] == SDC + "sdc-questionnaire-assemble-expectation" for e in q["extension"])


def test_assemble_reports_a_cycle(practice):  # noqa: F811
    tag = uuid.uuid4().hex[:8]
    a, b = f"https://example.org/Questionnaire/a-{tag}", f"https://example.org/Questionnaire/b-{tag}"
    _store(practice, _module(b, [{"linkId": "b1", "type": "string"}, _sub("to-a", a + "|1")], expectation="assemble-root-or-child"))
    stored_a = _store(practice, _module(a, [_sub("to-b", b + "|1")], expectation="assemble-root-or-child"))
    r = practice.post(f"Questionnaire/{stored_a['id']}/$assemble")
    assert r.status_code == 422, r.text
    assert "cycle" in _issue_texts(json_of(r))


def test_assemble_reports_missing_children_and_conflicting_link_ids(practice):  # noqa: F811
    tag = uuid.uuid4().hex[:8]
    child = f"https://example.org/Questionnaire/child-{tag}"
    _store(practice, _module(child, [{"linkId": "same", "type": "string"}]))
    root = _module(f"https://example.org/Questionnaire/root-{tag}",
                   [{"linkId": "same", "type": "boolean"}, _sub("c", child + "|1"),
                    _sub("gone", f"https://example.org/Questionnaire/missing-{tag}|1")], expectation="assemble-root")
    r = practice.post("Questionnaire/$assemble", json=parameters(questionnaire=root))
    assert r.status_code == 422, r.text
    text = _issue_texts(json_of(r))
    assert "missing-" in text and "could not be found" in text
    assert "linkId 'same'" in text


# -- PlanDefinition/$apply -------------------------------------------------------------------
def _plan_definition(practice, plan_type: str) -> dict:  # noqa: F811
    url = f"https://fhir.imp2art.org/PlanDefinition/asthma-action-plan-{plan_type}"
    return json_of(practice.get(f"PlanDefinition?url={url}"))["entry"][0]["resource"]


def _zone_steps(plan: dict) -> list[tuple[str, str]]:
    return [(a["extension"][0]["valueCoding"]["code"], a["detail"]["description"]) for a in plan["activity"] if "detail" in a]


def test_apply_gives_a_draft_plan_that_agrees_with_extract(practice):  # noqa: F811
    pd = _plan_definition(practice, "preventer-reliever")
    r = practice.post(f"PlanDefinition/{pd['id']}/$apply", json=parameters(
        subject="Patient/robert-brown", practitioner=CLINICIAN))
    assert r.status_code == 200, r.text
    draft = json_of(r)
    assert draft["resourceType"] == "CarePlan" and draft["status"] == "draft"
    rg = next(c for c in draft["contained"] if c["resourceType"] == "RequestGroup")
    assert len(rg["action"]) == 3 and all(a.get("condition") for a in rg["action"])  # zone triggers stay conditions
    assert {"reference": "#request-group"} in draft["supportingInfo"]

    form = ReviewForm(practice)  # the same patient reviewed with nothing changed
    response, _ = form.populate("Patient/robert-brown")
    form.complete(response, {"plan-provide": [True], "rcp3-sleep": [False], "rcp3-daytime": [False],
                             "rcp3-activities": [False], "pef-uses": [True],
                             "closing-plan-outcome": [{"system": "http://snomed.info/sct", "code": "810901000000102"}]})
    r = practice.post("QuestionnaireResponse/$extract", json=parameters(**{"questionnaire-response": response}))
    assert r.status_code == 200, r.text
    extracted = next(e["resource"] for e in out_param(json_of(r), "return")["entry"]
                     if e["resource"]["resourceType"] == "CarePlan")
    assert _zone_steps(draft) == _zone_steps(extracted)
    assert draft["extension"] == extracted["extension"]  # plan type and thresholds
    assert draft["instantiatesCanonical"] == extracted["instantiatesCanonical"]
    assert "405 L/min" in draft["text"]["div"]  # 75% of Robert's 540 L/min


def test_apply_a_plain_plan_definition(practice):  # noqa: F811
    pd = {"resourceType": "PlanDefinition", "status": "active", "url": f"https://example.org/PlanDefinition/{uuid.uuid4().hex}",
          "title": "Follow-up", "action": [
              {"id": "always", "title": "Book a review",
               "condition": [{"kind": "applicability", "expression": {"language": "text/fhirpath",
                                                                      "expression": "%subject.active.exists().not() or true"}}]},
              {"id": "never", "title": "Never shown",
               "condition": [{"kind": "applicability", "expression": {"language": "text/fhirpath", "expression": "false"}}]},
              {"id": "later", "title": "If symptoms return",
               "condition": [{"kind": "applicability", "expression": {"language": "text/fhirpath", "expression": "%symptoms"}}]}]}
    r = practice.post("PlanDefinition/$apply", json=parameters(planDefinition=pd, subject="Patient/fiona-macleod"))
    assert r.status_code == 200, r.text
    plan = json_of(r)
    rg = plan["contained"][0]
    assert [a["id"] for a in rg["action"]] == ["always", "later"]
    assert "condition" in rg["action"][1] and "condition" not in rg["action"][0]
    assert plan["activity"] == [{"reference": {"reference": "#request-group"}}]
