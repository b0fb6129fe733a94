"""QuestionnaireResponse checked against its Questionnaire (resolved by canonical URL|version)."""
from __future__ import annotations

import copy

from fhir_service.definitions import get_definitions
from fhir_service.validation import validate_resource

Q_URL = "http://example.org/Questionnaire/q-test"
QUESTIONNAIRE = {
    "resourceType": "Questionnaire", "url": Q_URL, "version": "1", "status": "active",
    "item": [
        {"linkId": "smoker", "type": "boolean", "required": True},
        {"linkId": "per-day", "type": "integer", "required": True,
         "enableWhen": [{"question": "smoker", "operator": "=", "answerBoolean": True}],
         "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/minValue", "valueInteger": 1},
                       {"url": "http://hl7.org/fhir/StructureDefinition/maxValue", "valueInteger": 100}]},
        {"linkId": "pef", "type": "decimal",
         "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/maxDecimalPlaces", "valueInteger": 1}]},
        {"linkId": "control", "type": "choice", "answerOption": [
            {"valueCoding": {"system": "http://example.org/cs", "code": "good"}},
            {"valueCoding": {"system": "http://example.org/cs", "code": "poor"}}]},
        {"linkId": "email", "type": "string", "maxLength": 20,
         "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/regex", "valueString": "[^@]+@[^@]+"}]},
        {"linkId": "triggers", "type": "group", "item": [
            {"linkId": "trigger", "type": "choice", "repeats": True,
             "answerValueSet": "http://hl7.org/fhir/ValueSet/administrative-gender"}]},
    ]}


def resolver(url):
    base, _, version = url.partition("|")
    if base == Q_URL and version in ("", "1"):
        return QUESTIONNAIRE
    return None


def qr(items, status="completed"):
    return {"resourceType": "QuestionnaireResponse", "questionnaire": Q_URL + "|1", "status": status, "item": items}


def errors(res):
    return [(i.expression[0] if i.expression else "", i.text)
            for i in validate_resource(res, get_definitions(), resolver=resolver) if i.is_error]


VALID = [{"linkId": "smoker", "answer": [{"valueBoolean": True}]},
         {"linkId": "per-day", "answer": [{"valueInteger": 10}]},
         {"linkId": "pef", "answer": [{"valueDecimal": 450.5}]},
         {"linkId": "control", "answer": [{"valueCoding": {"system": "http://example.org/cs", "code": "good"}}]},
         {"linkId": "email", "answer": [{"valueString": "a@b.org"}]},
         {"linkId": "triggers", "item": [{"linkId": "trigger", "answer": [
             {"valueCoding": {"system": "http://hl7.org/fhir/administrative-gender", "code": "male"}}]}]}]


def test_valid_response():
    assert errors(qr(VALID)) == []


def test_required_only_when_enabled():
    items = [{"linkId": "smoker", "answer": [{"valueBoolean": False}]}]
    assert errors(qr(items)) == []
    items = [{"linkId": "smoker", "answer": [{"valueBoolean": True}]}]
    assert ("QuestionnaireResponse", "No response answer found for required item 'per-day'") in errors(qr(items))
    assert errors(qr(items, status="in-progress")) == []


def test_answer_to_a_disabled_item():
    items = [{"linkId": "smoker", "answer": [{"valueBoolean": False}]},
             {"linkId": "per-day", "answer": [{"valueInteger": 5}]}]
    assert any(p == "QuestionnaireResponse.item[1]" for p, _ in errors(qr(items)))


def test_unknown_link_id_and_wrong_type():
    items = copy.deepcopy(VALID) + [{"linkId": "nope", "answer": [{"valueString": "x"}]}]
    assert ("QuestionnaireResponse", "LinkId 'nope' not found in questionnaire") in errors(qr(items))
    items = copy.deepcopy(VALID)
    items[1]["answer"] = [{"valueString": "ten"}]
    assert any(p == "QuestionnaireResponse.item[1].answer[0].value.ofType(string)" for p, _ in errors(qr(items)))


def test_values_bounds_places_regex_length_and_repeats():
    items = copy.deepcopy(VALID)
    items[1]["answer"] = [{"valueInteger": 500}, {"valueInteger": 6}]
    items[2]["answer"] = [{"valueDecimal": __import__("decimal").Decimal("450.25")}]
    items[4]["answer"] = [{"valueString": "not-an-email-and-far-too-long"}]
    texts = [t for _, t in errors(qr(items))]
    assert any("greater than the allowed maximum of 100" in t for t in texts)
    assert any("Only one response answer item" in t for t in texts)
    assert any("decimal places" in t for t in texts)
    assert any("does not conform to the regex" in t for t in texts)
    assert any("maximum length of 20" in t for t in texts)


def test_answer_options_and_value_sets():
    items = copy.deepcopy(VALID)
    items[3]["answer"] = [{"valueCoding": {"system": "http://example.org/cs", "code": "great"}}]
    items[5]["item"][0]["answer"] = [{"valueCoding": {"system": "http://hl7.org/fhir/administrative-gender",
                                                      "code": "robot"}}]
    paths = {p for p, _ in errors(qr(items))}
    assert "QuestionnaireResponse.item[3].answer[0]" in paths
    assert "QuestionnaireResponse.item[5].item[0].answer[0]" in paths


def test_group_nesting_and_answers_on_groups():
    items = copy.deepcopy(VALID)
    items[5] = {"linkId": "triggers", "answer": [{"valueString": "x"}]}
    assert any("Items of type group should not have answers" in t for _, t in errors(qr(items)))
    items = copy.deepcopy(VALID)
    items.append({"linkId": "trigger", "answer": [{"valueString": "x"}]})
    assert any("wrong place" in t for _, t in errors(qr(items)))


def test_unresolvable_questionnaire_is_a_warning():
    res = qr(VALID)
    res["questionnaire"] = "http://example.org/Questionnaire/unknown"
    got = validate_resource(res, get_definitions(), resolver=resolver)
    assert not any(i.is_error for i in got)
    assert any(i.severity == "warning" and "could not be resolved" in i.text for i in got)


def test_questionnaire_status_is_reported():
    draft = dict(QUESTIONNAIRE, status="draft", effectivePeriod={"start": "2099-01-01"})
    got = validate_resource(qr(VALID), get_definitions(), resolver=lambda u: draft)
    assert not any(i.is_error for i in got)
    assert sum(i.severity == "warning" and "questionnaire" in i.text.lower() for i in got) >= 2
