"""Invariants, terminology bindings, extensions, narrative, Bundles and the NHS number rule."""
from __future__ import annotations

from fhir_service import jsonutil
from fhir_service.definitions import get_definitions
from fhir_service.validation import validate_resource
from fhir_service.validation.datatypes import nhs_number_valid


def issues(res: dict | str, **kw):
    if isinstance(res, str):
        res = jsonutil.loads(res)
    return validate_resource(res, get_definitions(), **kw)


def errors(res, **kw):
    return [(i.expression[0] if i.expression else "", i.text) for i in issues(res, **kw) if i.is_error]


def warnings(res, **kw):
    return [(i.expression[0] if i.expression else "", i.text) for i in issues(res, **kw) if i.severity == "warning"]


# -- invariants -----------------------------------------------------------------------------
def test_period_start_after_end_fails_per_1():
    errs = errors({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
                   "period": {"start": "2020-01-02", "end": "2020-01-01"}})
    assert any(p == "Encounter.period" and "per-1" in t for p, t in errs)


def test_period_with_uncertain_order_fails_like_the_hl7_engine():
    # same day, one with a time: FHIRPath cannot order them, so per-1 is not satisfied
    errs = errors({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
                   "period": {"start": "2023-06-21", "end": "2023-06-21T06:20:00Z"}})
    assert any("per-1" in t for _, t in errs)


def test_que_7_technical_correction_accepts_exists_with_boolean():
    q = {"resourceType": "Questionnaire", "status": "active", "item": [
        {"linkId": "a", "type": "boolean"},
        {"linkId": "b", "type": "string", "enableWhen": [{"question": "a", "operator": "exists", "answerBoolean": True}]}]}
    assert errors(q) == []
    q["item"][1]["enableWhen"][0] = {"question": "a", "operator": "exists", "answerString": "x"}
    assert any("que-7" in t for _, t in errors(q))


def test_invariant_on_decimal_range():
    errs = errors({"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": "Patient/1"},
                   "prediction": [{"probabilityDecimal": 101}]})
    assert any(p == "RiskAssessment.prediction[0]" and "ras-2" in t for p, t in errs)


def test_local_reference_without_contained_resource_fails_ref_1():
    errs = errors({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                   "subject": {"reference": "#nope"}})
    assert any("Observation.subject" == p for p, _ in errs)


def test_extension_needs_value_or_children_not_both():
    errs = errors({"resourceType": "Patient", "extension": [{"url": "http://example.org/x"}]})
    assert any("ext-1" in t for _, t in errs)


# -- terminology ----------------------------------------------------------------------------
def test_required_binding_on_code():
    errs = errors({"resourceType": "Patient", "gender": "man"})
    assert any(p == "Patient.gender" and "administrative-gender" in t for p, t in errs)


def test_required_binding_on_codeable_concept_and_unknown_code():
    errs = errors({"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/1"},
                   "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                            "allergyintolerance-clinical", "code": "gone"}]}})
    paths = {p for p, _ in errs}
    assert "AllergyIntolerance.clinicalStatus" in paths
    assert "AllergyIntolerance.clinicalStatus.coding[0].code" in paths


def test_wrong_display_is_a_warning_only():
    res = {"resourceType": "Patient", "maritalStatus": {"coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M", "display": "Wed"}]}}
    assert errors(res) == []
    assert any("Wrong Display Name 'Wed'" in t for _, t in warnings(res))


def test_codes_from_systems_we_cannot_check_offline_are_not_errors():
    res = {"resourceType": "Condition", "subject": {"reference": "Patient/1"},
           "code": {"coding": [{"system": "http://snomed.info/sct", "code": "195967001"}]}}
    assert errors(res) == []


def test_extensible_binding_miss_is_a_warning():
    res = {"resourceType": "Patient", "identifier": [{"type": {"coding": [{"system": "http://example.org/t",
                                                                        "code": "x"}]}, "value": "1"}]}
    assert errors(res) == []
    assert any("IdentifierType" in t for _, t in warnings(res))


# -- NHS number -----------------------------------------------------------------------------
def test_nhs_number_modulus_11():
    assert nhs_number_valid("9000000009") and nhs_number_valid("9449306613")
    assert not nhs_number_valid("9000000001") and not nhs_number_valid("123456789")
    bad = {"resourceType": "Patient", "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number",
                                                      "value": "9000000001"}]}
    assert ("Patient.identifier[0].value" in {p for p, _ in errors(bad)})
    bad["identifier"][0]["value"] = "9449306613"
    assert errors(bad) == []


# -- extensions -----------------------------------------------------------------------------
def test_known_extension_value_type_and_context():
    wrong_type = {"resourceType": "Patient", "extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace", "valueString": "Leith"}]}
    assert any(p == "Patient.extension[0]" for p, _ in errors(wrong_type))
    wrong_place = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace", "valueAddress": {"city": "Leith"}}]}
    assert any("not allowed to be used at this point" in t for _, t in errors(wrong_place))


def test_unknown_extensions_follow_hl7_severities():
    res = {"resourceType": "Patient", "extension": [
        {"url": "http://hl7.org/fhir/uv/sdc/StructureDefinition/no-such-extension", "valueString": "x"}]}
    assert any("could not be found" in t for _, t in errors(res))
    res["extension"][0]["url"] = "http://example.org/fhir/StructureDefinition/anything"
    assert errors(res) == []


# -- narrative ------------------------------------------------------------------------------
def _with_div(div: str) -> dict:
    return {"resourceType": "Patient", "text": {"status": "generated", "div": div}}


def test_narrative_must_be_safe_xhtml():
    ok = '<div xmlns="http://www.w3.org/1999/xhtml"><p>Anna&nbsp;Reid</p></div>'
    assert errors(_with_div(ok)) == []
    for bad in ('<div xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script>x</div>',
                '<div xmlns="http://www.w3.org/1999/xhtml"><p onclick="x()">a</p></div>',
                '<div xmlns="http://www.w3.org/1999/xhtml"><a href="javascript:x()">a</a></div>',
                '<div>no namespace</div>',
                '<div xmlns="http://www.w3.org/1999/xhtml"><p>unclosed</div>',
                '<div xmlns="http://www.w3.org/1999/xhtml">  </div>'):
        assert any(p == "Patient.text.div" for p, _ in errors(_with_div(bad))), bad


# -- bundles --------------------------------------------------------------------------------
def test_bundle_rules():
    b = {"resourceType": "Bundle", "type": "searchset",
         "link": [{"relation": "self", "url": "http://x/Patient"}, {"relation": "self", "url": "http://x/Patient"}],
         "entry": [{"fullUrl": "http://x/fhir/Patient/1", "resource": {"resourceType": "Patient", "id": "2"}},
                   {"fullUrl": "http://x/fhir/Patient/1", "resource": {"resourceType": "Patient", "id": "1"}}]}
    paths = {p for p, _ in errors(b)}
    assert "Bundle.link[1]" in paths
    assert "Bundle.entry[0].fullUrl" in paths
    assert "Bundle.entry[1]" in paths  # duplicate fullUrl


def test_bundle_references_resolve_inside_the_bundle():
    b = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:6b1c7e8a-4f5d-4c1b-9d6e-0a1b2c3d4e5f",
         "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:7c2d8f9b-5a6e-4d2c-8e7f-1b2c3d4e5f60",
         "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": "urn:uuid:6b1c7e8a-4f5d-4c1b-9d6e-0a1b2c3d4e5f"}},
         "request": {"method": "POST", "url": "Observation"}}]}
    assert errors(b) == []
    b["entry"][1]["resource"]["subject"]["reference"] = "urn:uuid:00000000-0000-4000-8000-000000000000"
    assert any("Can't find" in t for _, t in warnings(b))


def test_reference_target_type():
    errs = errors({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                   "subject": {"reference": "Medication/1"}})
    assert any(p == "Observation.subject" and "Invalid Resource target type" in t for p, t in errs)


def test_questionnaire_link_ids_are_unique():
    q = {"resourceType": "Questionnaire", "status": "active", "item": [
        {"linkId": "a", "type": "group", "item": [{"linkId": "b", "type": "string"}]},
        {"linkId": "b", "type": "string"}]}
    assert any(p == "Questionnaire" and "que-2" in t for p, t in errors(q))


def test_profile_invariants_can_use_member_of():
    import copy as _copy

    from fhir_service.config import Settings
    from fhir_service.definitions import Definitions
    from fhir_service.definitions.fetch import core_package_dir
    defs = Definitions(core_package_dir(Settings().package_cache))
    defs.add({"resourceType": "StructureDefinition", "url": "http://example.org/sd/g", "name": "G",
              "status": "active", "kind": "resource", "abstract": False, "type": "Patient",
              "derivation": "constraint", "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
              "differential": {"element": [{"id": "Patient", "path": "Patient", "constraint": [
                  {"key": "g-1", "severity": "error", "human": "gender from the ValueSet",
                   "expression": "gender.memberOf('http://hl7.org/fhir/ValueSet/administrative-gender')"}]}]}})
    res = {"resourceType": "Patient", "gender": "female", "meta": {"profile": ["http://example.org/sd/g"]}}
    assert not [i for i in validate_resource(res, defs) if i.is_error]
    bad = _copy.deepcopy(res)
    bad["gender"] = "robot"
    assert any("g-1" in i.text for i in validate_resource(bad, defs) if i.is_error)
