"""The SDC engines on small hand-made forms, without a server (a stub answers the searches)."""
from __future__ import annotations

from decimal import Decimal

import pytest

from fhir_service import fhirpath
from fhir_service.asthma.render import Contact, Medicine, PlanView, Zone, narrative
from fhir_service.sdc.apply import Application
from fhir_service.sdc.assemble import AssembleError, assemble
from fhir_service.sdc.expressions import Scope, bind_variables, evaluate_json
from fhir_service.sdc.extract_observations import extract_observations
from fhir_service.sdc.extract_templates import extract_templates
from fhir_service.sdc.extraction import Extraction
from fhir_service.sdc.items import first_answer
from fhir_service.sdc.populate import Population

SDC = "http://hl7.org/fhir/uv/sdc/StructureDefinition/"
CORE = "http://hl7.org/fhir/StructureDefinition/"
FP = "text/fhirpath"


def ext(name: str, **value) -> dict:
    return {"url": (CORE if name in ("variable", "questionnaire-unit", "itemWeight") else SDC) + name, **value}


def tev(expression: str) -> dict:
    return {"extension": [ext("sdc-questionnaire-templateExtractValue", valueString=expression)]}


class StubDefinitions:
    def code_system(self, url):
        return None


class StubService:
    """Answers searches from a table: (type, frozenset(params)) -> resources; records each search."""

    def __init__(self, results=None, resources=None):
        self.definitions = StubDefinitions()
        self.results = results or {}
        self.resources = resources or {}
        self.searches: list[tuple[str, list]] = []

    def search(self, res_type, params, base_url, **_):
        self.searches.append((res_type, list(params)))
        for (rtype, keys), found in self.results.items():
            if rtype == res_type and keys <= {k for k, _ in params}:
                return {"resourceType": "Bundle", "type": "searchset", "total": len(found),
                        "entry": [{"resource": r, "search": {"mode": "match"}} for r in found]}
        return {"resourceType": "Bundle", "type": "searchset", "total": 0, "entry": []}


def job_for(q: dict, qr: dict) -> Extraction:
    qr = dict(qr, id=qr.get("id", "qr1"))
    scope = Scope(questionnaire=q, variables={"resource": qr, "questionnaire": q})
    return Extraction(StubService(), q, qr, f"QuestionnaireResponse/{qr['id']}", "http://x/fhir", scope)


RESPONSE_BASE = {"resourceType": "QuestionnaireResponse", "status": "completed", "subject": {"reference": "Patient/p1"},
                 "authored": "2026-11-28T10:00:00+00:00", "author": {"reference": "Practitioner/d1"}}


# -- observation-based extraction ------------------------------------------------------------
def observation_form() -> dict:
    unit = ext("questionnaire-unit", valueCoding={"system": "http://unitsofmeasure.org", "code": "kg", "display": "kg"})
    return {"resourceType": "Questionnaire", "item": [
        {"linkId": "panel", "type": "group", "code": [{"system": "http://loinc.org", "code": "P"}],
         "extension": [ext("sdc-questionnaire-observationExtract", valueBoolean=True),
                       ext("sdc-questionnaire-observation-extract-category",
                           valueCodeableConcept={"coding": [{"code": "survey"}]})],
         "item": [{"linkId": "c1", "type": "integer", "code": [{"code": "C1"}],
                   "extension": [ext("sdc-questionnaire-observationExtract", valueCode="component")]},
                  {"linkId": "m1", "type": "decimal", "code": [{"code": "M1"}], "extension": [unit]},
                  {"linkId": "skip", "type": "string", "code": [{"code": "S"}],
                   "extension": [ext("sdc-questionnaire-observationExtract", valueBoolean=False)]},
                  {"linkId": "blank", "type": "string", "code": [{"code": "B"}]}]},
        {"linkId": "multi", "type": "choice", "repeats": True, "code": [{"code": "T"}],
         "extension": [ext("sdc-questionnaire-observationExtract", valueBoolean=True)]},
        {"linkId": "nocode", "type": "string", "extension": [ext("sdc-questionnaire-observationExtract", valueBoolean=True)]}]}


def test_observation_extraction():
    qr = dict(RESPONSE_BASE, item=[
        {"linkId": "panel", "item": [{"linkId": "c1", "answer": [{"valueInteger": 3}]},
                                     {"linkId": "m1", "answer": [{"valueDecimal": 70.5}]},
                                     {"linkId": "skip", "answer": [{"valueString": "no"}]}]},
        {"linkId": "multi", "answer": [{"valueCoding": {"code": "a"}}, {"valueCoding": {"code": "b"}}]},
        {"linkId": "nocode", "answer": [{"valueString": "x"}]}])
    job = job_for(observation_form(), qr)
    extract_observations(job)
    obs = [e["resource"] for e in job.entries]
    assert [o["code"]["coding"][0]["code"] for o in obs] == ["P", "M1", "T", "T"]  # panel first, one per answer
    panel, member = obs[0], obs[1]
    assert panel["component"] == [{"code": {"coding": [{"code": "C1"}]}, "valueInteger": 3}]
    assert panel["hasMember"] == [{"reference": job.entries[1]["fullUrl"]}]
    assert member["valueQuantity"] == {"value": 70.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}
    assert member["category"] == [{"coding": [{"code": "survey"}]}]  # inherited from the group
    for o in obs:
        assert o["status"] == "final" and o["effectiveDateTime"] == RESPONSE_BASE["authored"]
        assert o["performer"] == [RESPONSE_BASE["author"]] and o["subject"] == RESPONSE_BASE["subject"]
        assert o["derivedFrom"] == [{"reference": "QuestionnaireResponse/qr1"}]
    assert [o["valueCodeableConcept"]["coding"][0]["code"] for o in obs[2:]] == ["a", "b"]


def test_an_unanswered_panel_produces_nothing():
    qr = dict(RESPONSE_BASE, item=[{"linkId": "panel", "item": [{"linkId": "skip", "answer": [{"valueString": "no"}]}]}])
    job = job_for(observation_form(), qr)
    extract_observations(job)
    assert job.entries == []


# -- template-based extraction ---------------------------------------------------------------
def template_form() -> dict:
    return {"resourceType": "Questionnaire", "contained": [
        {"resourceType": "Patient", "id": "patient-t",
         "name": [{"extension": [ext("sdc-questionnaire-templateExtractContext", valueString="item.where(linkId='name')")],
                   "_family": tev("item.where(linkId='family').answer.value.first()"),
                   "given": ["placeholder"],
                   "_given": [tev("item.where(linkId='given').answer.value.first()")]}],
         "telecom": [{"extension": [ext("sdc-questionnaire-templateExtractContext",
                                        valueString="item.where(linkId='phone').answer.value")],
                      "system": "phone", "_value": tev("%context")}],
         "birthDate": "1900-01-01", "_birthDate": tev("item.where(linkId='dob').answer.value.first()"),
         "generalPractitioner": [{"_reference": tev("%gpId")}]},
        {"resourceType": "Organization", "id": "gp-t", "name": "GP", "_name": tev("'Practice of ' + %resource.id")},
        {"resourceType": "Observation", "id": "note-t", "status": "final", "code": {"text": "note"},
         "valueString": "x", "_valueString": tev("answer.value.first()")}],
        "extension": [ext("sdc-questionnaire-extractAllocateId", valueString="gpId"),
                      ext("sdc-questionnaire-templateExtract", extension=[
                          {"url": "template", "valueReference": {"reference": "#gp-t"}},
                          {"url": "fullUrl", "valueString": "%gpId"}])],
        "item": [{"linkId": "person", "type": "group",
                  "extension": [ext("sdc-questionnaire-templateExtract", extension=[
                      {"url": "template", "valueReference": {"reference": "#patient-t"}},
                      {"url": "resourceId", "valueString": "'p-' + item.where(linkId='name').item.where(linkId='family').answer.value.first().lower()"}])],
                  "item": [{"linkId": "name", "type": "group", "item": [{"linkId": "family", "type": "string"},
                                                                        {"linkId": "given", "type": "string"}]},
                           {"linkId": "phone", "type": "string", "repeats": True},
                           {"linkId": "dob", "type": "date"}]},
                 {"linkId": "note", "type": "string", "repeats": True,
                  "extension": [ext("sdc-questionnaire-templateExtract", extension=[
                      {"url": "template", "valueReference": {"reference": "#note-t"}}])]}]}


def test_template_extraction():
    qr = dict(RESPONSE_BASE, item=[
        {"linkId": "person", "item": [
            {"linkId": "name", "item": [{"linkId": "family", "answer": [{"valueString": "Reid"}]},
                                        {"linkId": "given", "answer": [{"valueString": "Anna"}]}]},
            {"linkId": "phone", "answer": [{"valueString": "0131 496 0000"}, {"valueString": "07700 900000"}]}]}])
    job = job_for(template_form(), qr)
    extract_templates(job)
    (gp, patient) = job.entries  # the root template first; no note was given, so no note
    assert gp["resource"] == {"resourceType": "Organization", "name": "Practice of qr1"}
    assert gp["fullUrl"].startswith("urn:uuid:")
    assert patient["request"] == {"method": "PUT", "url": "Patient/p-reid"}
    p = patient["resource"]
    assert p["name"] == [{"family": "Reid", "given": ["Anna"]}]
    assert [t["value"] for t in p["telecom"]] == ["0131 496 0000", "07700 900000"]
    assert "birthDate" not in p and "id" not in p  # no answer removes the placeholder; the template id goes
    assert p["generalPractitioner"] == [{"reference": gp["fullUrl"]}]  # allocated ids tie resources together
    assert "extension" not in str(p)  # no SDC extensions left behind


def test_template_per_answer_of_a_repeating_item():
    qr = dict(RESPONSE_BASE, item=[{"linkId": "note", "answer": [{"valueString": "first"}]},
                                   {"linkId": "note", "answer": [{"valueString": "second"}]}])
    job = job_for(template_form(), qr)
    extract_templates(job)
    assert [e["resource"].get("valueString") for e in job.entries[1:]] == ["first", "second"]


# -- $assemble -------------------------------------------------------------------------------
def module(url, items, *, expectation="assemble-child", extensions=()) -> dict:
    return {"resourceType": "Questionnaire", "url": url, "version": "1", "status": "active",
            "extension": [ext("sdc-questionnaire-assemble-expectation", valueCode=expectation), *extensions],
            "item": items}


def sub(link_id, canonical, **more) -> dict:
    return {"linkId": link_id, "type": "display", "text": "not available",
            "extension": [ext("sdc-questionnaire-subQuestionnaire", valueCanonical=canonical)], **more}


def variable(name, expression, language=FP) -> dict:
    return ext("variable", valueExpression={"name": name, "language": language, "expression": expression})


def test_assemble_propagates_variables_prefixes_and_contexts():
    launch = ext("sdc-questionnaire-launchContext", extension=[
        {"url": "name", "valueCoding": {"code": "patient"}}, {"url": "type", "valueCode": "Patient"}])
    child = module("http://x/c", [{"linkId": "q", "type": "string", "enableWhen": [
        {"question": "q", "operator": "exists", "answerBoolean": True}]}], extensions=[variable("v", "1"), launch])
    child["contained"] = [{"resourceType": "ValueSet", "id": "vs", "status": "active"}]
    root = module("http://x/root", [{"linkId": "g", "type": "group", "extension": [variable("linkIdPrefix", "'a.'")],
                                     "item": [sub("s", "http://x/c|1")]}], expectation="assemble-root",
                  extensions=[launch])
    out, warnings = assemble(root, {"http://x/c|1": child}.get)
    group = out["item"][0]
    assert [i["linkId"] for i in group["item"]] == ["a.q"]
    assert group["item"][0]["enableWhen"][0]["question"] == "a.q"
    assert [e["valueExpression"]["name"] for e in group["extension"]] == ["linkIdPrefix", "v"]
    assert [c["id"] for c in out["contained"]] == ["a.vs"]
    urls = [e["url"] for e in out["extension"]]
    assert urls.count(SDC + "sdc-questionnaire-launchContext") == 1  # unique by name
    assert SDC + "sdc-questionnaire-assemble-expectation" not in urls  # assemble-root: removed
    assert {"url": SDC + "sdc-questionnaire-assembledFrom", "valueCanonical": "http://x/c|1"} in out["extension"]
    assert warnings == []


def test_assemble_errors():
    twice = module("http://x/v", [{"linkId": "v1", "type": "string"}], extensions=[variable("dup", "1")])
    root_only = module("http://x/r", [{"linkId": "r1", "type": "string"}], expectation="assemble-root")
    root = module("http://x/root", [sub("s1", "http://x/v|1"), sub("s2", "http://x/r|1")], expectation="assemble-root",
                  extensions=[variable("dup", "2")])
    with pytest.raises(AssembleError) as caught:
        assemble(root, {"http://x/v|1": twice, "http://x/r|1": root_only}.get)
    texts = " | ".join(i.text for i in caught.value.issues)
    assert "variable 'dup'" in texts and "may not be used as a subQuestionnaire" in texts


# -- expressions and population --------------------------------------------------------------
def test_weight_and_x_fhir_query_variables():
    q = {"resourceType": "Questionnaire", "item": [{"linkId": "a", "type": "choice", "answerOption": [
        {"valueCoding": {"system": "s", "code": "hi"}, "extension": [ext("itemWeight", valueDecimal=4)]}]}]}
    qr = {"resourceType": "QuestionnaireResponse", "item": [{"linkId": "a", "answer": [{"valueCoding": {"system": "s", "code": "hi"}}]}]}
    scope = Scope(questionnaire=q, variables={"resource": qr, "patient": [{"resourceType": "Patient", "id": "p1"}]})
    assert evaluate_json("%resource.item.answer.value.weight()", qr, scope) == [4]
    service = StubService({("Observation", frozenset({"subject"})): [{"resourceType": "Observation", "id": "o1"}]})
    holder = {"extension": [variable("obs", "Observation?subject=Patient/{{%patient.id}}&date=ge{{'2026-01-01T00:00:00+00:00'}}",
                                     "application/x-fhir-query"),
                            variable("broken", "Observation?subject={{%nowhere}}", "application/x-fhir-query")]}
    failures = []
    bound = bind_variables(holder, qr, scope, service, "http://x", on_error=lambda exc, name: failures.append(name))
    assert service.searches[0] == ("Observation", [("subject", "Patient/p1"), ("date", "ge2026-01-01T00:00:00+00:00")])
    assert bound.variables["obs"][0]["entry"][0]["resource"]["id"] == "o1"
    assert bound.variables["broken"] == [] and failures == ["broken"]


def test_population_mechanisms():
    period = ext("sdc-questionnaire-observationLinkPeriod", valueDuration={"value": 1, "code": "a"})
    q = {"resourceType": "Questionnaire", "url": "http://x/q", "extension": [
        ext("sdc-questionnaire-launchContext", extension=[{"url": "name", "valueCoding": {"code": "patient"}}]),
        variable("meds", "MedicationRequest?subject={{%patient.id}}", "application/x-fhir-query")],
        "item": [
            {"linkId": "weight", "type": "decimal", "code": [{"system": "http://loinc.org", "code": "29463-7"}],
             "extension": [period]},
            {"linkId": "med", "type": "group", "repeats": True, "extension": [ext(
                "sdc-questionnaire-itemPopulationContext", valueExpression={
                    "name": "m", "language": FP, "expression": "%meds.entry.resource"})],
             "item": [{"linkId": "med-name", "type": "string", "extension": [ext(
                 "sdc-questionnaire-initialExpression", valueExpression={"language": FP, "expression": "%m.id"})]}]},
            {"linkId": "one", "type": "string", "extension": [ext(
                "sdc-questionnaire-initialExpression", valueExpression={"language": FP, "expression": "%meds.entry.resource.id"})]},
            {"linkId": "pick", "type": "string", "extension": [ext(
                "sdc-questionnaire-candidateExpression", valueExpression={"language": FP, "expression": "'x' | 'y'"})]}]}
    service = StubService({
        ("Observation", frozenset({"code", "date", "status", "_sort"})): [
            {"resourceType": "Observation", "id": "w", "valueQuantity": {"value": 71.5, "unit": "kg"}}],
        ("MedicationRequest", frozenset({"subject"})): [{"resourceType": "MedicationRequest", "id": "a"},
                                                         {"resourceType": "MedicationRequest", "id": "b"}]})
    run = Population(service, q, {"resourceType": "Patient", "id": "p1"}, base_url="http://x")
    response = run.run()
    assert first_answer(response, "weight") == 71.5
    obs_search = dict(next(p for t, p in service.searches if t == "Observation"))
    assert obs_search["code"] == "http://loinc.org|29463-7" and obs_search["status"] == "final,amended,corrected"
    assert obs_search["date"].startswith("ge") and obs_search["_sort"] == "-date"
    assert [g["item"][0]["answer"][0]["valueString"] for g in response["item"] if g["linkId"] == "med"] == ["a", "b"]
    texts = " | ".join(i.text for i in run.issues)
    assert first_answer(response, "one") is None and "takes one answer" in texts  # two values: not guessed
    assert first_answer(response, "pick") is None and "2 candidate answer(s)" in texts


# -- $apply and the renderer -----------------------------------------------------------------
def test_apply_defers_conditions_it_cannot_decide_and_computes_text():
    pd = {"resourceType": "PlanDefinition", "url": "http://x/pd", "action": [
        {"id": "zone", "title": "Zone", "condition": [{"kind": "applicability", "expression": {
            "language": FP, "expression": "%later"}}],
         "action": [{"id": "shown", "description": "static", "_description": {"extension": [
             {"url": CORE + "cqf-expression", "valueExpression": {"language": FP, "expression": "'below ' + %lmin.toString()"}}]}},
                    {"id": "hidden", "description": "gone", "condition": [{"kind": "applicability", "expression": {
                        "language": FP, "expression": "%usesPeakFlow"}}]}]}]}
    app = Application(pd, "Patient/p1", Scope(variables={"lmin": [368], "usesPeakFlow": [False]}))
    rg = app.request_group()
    zone = rg["action"][0]
    assert zone["condition"][0]["expression"]["expression"] == "%later"
    assert [a["id"] for a in zone["action"]] == ["shown"] and zone["action"][0]["description"] == "below 368"
    assert rg["instantiatesCanonical"] == ["http://x/pd"] and app.issues == []


@pytest.mark.parametrize("expression, expected", [
    ("(430 * 75 / 100).round(0)", "323"), ("(430 * 75 / 100).round()", "323"), ("(455 * 75 / 100).round()", "341"),
    ("2.5.round()", "3"), ("3.5.round()", "4"), ("(-2.5).round()", "-3"), ("2.675.round(2)", "2.68"),
    ("1.005.round(2)", "1.01"), ("2.4.round()", "2"), ("7.round()", "7"), ("3.14159.round(3)", "3.142")])
def test_round_takes_halves_up(expression, expected):
    """FHIRPath round() is a traditional round, not fhirpathpy's round-half-to-even; every layer shares it."""
    assert fhirpath.evaluate({}, expression) == [Decimal(expected)]
    assert evaluate_json(expression, {}, Scope()) == [Decimal(expected)]


@pytest.mark.parametrize("expression", ["(1 | 2).round()", "'a'.round()", "1.5.round(-1)"])
def test_round_refuses_what_is_not_one_number(expression):
    with pytest.raises(Exception):
        fhirpath.evaluate({}, expression)
    assert fhirpath.evaluate({}, "{}.round()") == []


def test_the_narrative_escapes_what_it_shows():
    view = PlanView("Plan <b>", "A & B", None, "2026-11-28", None, [Medicine("<script>", None, ["1 puff"])], None,
                    [Zone("Z", ["x < y"])], ["dust & <mites>"], [Contact("GP", "Dr <X>", "0131")])
    div = narrative(view)
    assert "<script>" not in div and "&lt;script&gt;" in div and "A &amp; B" in div and "x &lt; y" in div
    assert div.startswith('<div xmlns="http://www.w3.org/1999/xhtml">')
