"""Profiles: snapshots from differentials, fixed/pattern, slicing, type profiles, mustSupport."""
from __future__ import annotations

import copy

import pytest

from fhir_service.config import Settings
from fhir_service.definitions import Definitions
from fhir_service.definitions.fetch import core_package_dir
from fhir_service.definitions.snapshot import generate_snapshot
from fhir_service.validation import validate_resource

PROFILE = "http://example.org/fhir/StructureDefinition/test-patient"
OBS = "http://example.org/fhir/StructureDefinition/test-obs"


def _sd(url, rtype, elements):
    return {"resourceType": "StructureDefinition", "url": url, "name": "T", "status": "active", "kind": "resource",
            "abstract": False, "type": rtype, "derivation": "constraint",
            "baseDefinition": f"http://hl7.org/fhir/StructureDefinition/{rtype}",
            "differential": {"element": [{"id": rtype, "path": rtype}] + elements}}


PATIENT_PROFILE = _sd(PROFILE, "Patient", [
    {"id": "Patient.identifier", "path": "Patient.identifier", "min": 1,
     "slicing": {"discriminator": [{"type": "value", "path": "system"}], "rules": "open"}},
    {"id": "Patient.identifier:nhs", "path": "Patient.identifier", "sliceName": "nhs", "min": 1, "max": "1"},
    {"id": "Patient.identifier:nhs.system", "path": "Patient.identifier.system", "min": 1,
     "fixedUri": "https://fhir.nhs.uk/Id/nhs-number"},
    {"id": "Patient.name", "path": "Patient.name", "min": 1, "mustSupport": True},
    {"id": "Patient.name.family", "path": "Patient.name.family", "min": 1, "maxLength": 10},
    {"id": "Patient.gender", "path": "Patient.gender", "patternCode": "female"},
    {"id": "Patient.maritalStatus", "path": "Patient.maritalStatus",
     "patternCodeableConcept": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                                            "code": "M"}]}},
])

OBS_PROFILE = _sd(OBS, "Observation", [
    {"id": "Observation.component", "path": "Observation.component",
     "slicing": {"discriminator": [{"type": "pattern", "path": "code"}], "rules": "closed", "ordered": True}},
    {"id": "Observation.component:sys", "path": "Observation.component", "sliceName": "sys", "min": 1, "max": "1"},
    {"id": "Observation.component:sys.code", "path": "Observation.component.code",
     "patternCodeableConcept": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}},
    {"id": "Observation.component:dia", "path": "Observation.component", "sliceName": "dia", "min": 1, "max": "1"},
    {"id": "Observation.component:dia.code", "path": "Observation.component.code",
     "patternCodeableConcept": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]}},
    {"id": "Observation.valueQuantity", "path": "Observation.valueQuantity", "min": 0},
    {"id": "Observation.valueQuantity.value", "path": "Observation.valueQuantity.value", "minValueDecimal": 0},
])


@pytest.fixture(scope="module")
def defs():
    d = Definitions(core_package_dir(Settings().package_cache))
    d.add(copy.deepcopy(PATIENT_PROFILE))
    d.add(copy.deepcopy(OBS_PROFILE))
    return d


def errors(defs, res, **kw):
    return [(i.expression[0] if i.expression else "", i.text) for i in validate_resource(res, defs, **kw)
            if i.is_error]


GOOD = {"resourceType": "Patient", "meta": {"profile": [PROFILE]},
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"}],
        "name": [{"family": "Reid"}], "gender": "female",
        "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                                      "code": "M", "display": "Married"}], "text": "married"}}


def test_snapshot_generated_from_differential(defs):
    snap = generate_snapshot(PATIENT_PROFILE, defs)
    ids = [e["id"] for e in snap]
    assert "Patient.identifier:nhs.system" in ids and "Patient.name.family" in ids
    family = next(e for e in snap if e["id"] == "Patient.name.family")
    assert family["min"] == 1 and family["maxLength"] == 10 and family["type"][0]["code"] == "string"


def test_conforming_instance(defs):
    assert errors(defs, GOOD) == []


def test_profile_violations(defs):
    bad = copy.deepcopy(GOOD)
    bad["identifier"] = [{"system": "http://example.org/mrn", "value": "1"}]
    bad["name"] = [{"family": "Abercrombie-Fitch"}]
    bad["gender"] = "male"
    bad["maritalStatus"] = {"text": "married"}
    paths = {p for p, _ in errors(defs, bad)}
    assert "Patient" in paths  # the nhs slice is required
    assert "Patient.name[0].family" in paths  # maxLength
    assert "Patient.gender" in paths  # pattern
    assert "Patient.maritalStatus" in paths  # pattern


def test_profile_given_explicitly_or_unknown(defs):
    plain = copy.deepcopy(GOOD)
    del plain["meta"]
    plain["name"] = []
    plain.pop("name")
    assert errors(defs, plain) == []
    assert any("Patient.name: minimum required" in t for _, t in errors(defs, plain, profiles=[PROFILE]))
    unknown = {"resourceType": "Patient", "meta": {"profile": ["http://example.org/nope"]}}
    assert errors(defs, unknown) == []
    assert errors(defs, unknown, unknown_profile="error")


def test_slicing_closed_and_ordered(defs):
    def comp(code):
        return {"code": {"coding": [{"system": "http://loinc.org", "code": code}]}, "valueQuantity": {"value": 1}}
    obs = {"resourceType": "Observation", "meta": {"profile": [OBS]}, "status": "final", "code": {"text": "BP"},
           "component": [comp("8480-6"), comp("8462-4")]}
    assert errors(defs, obs) == []
    obs["component"] = [comp("8462-4"), comp("8480-6")]
    assert any("out of order" in t for _, t in errors(defs, obs))
    obs["component"] = [comp("8480-6"), comp("8462-4"), comp("1234-5")]
    assert any(p == "Observation.component[2]" for p, _ in errors(defs, obs))
    obs["component"] = [comp("8480-6")]
    assert any("Observation.component:dia" in t for _, t in errors(defs, obs))


def test_min_value_on_renamed_choice(defs):
    obs = {"resourceType": "Observation", "meta": {"profile": [OBS]}, "status": "final", "code": {"text": "x"},
           "valueQuantity": {"value": -1}, "component": []}
    del obs["component"]
    assert any(p == "Observation.value.ofType(Quantity).value" for p, _ in errors(defs, obs))


def test_must_support_never_fails(defs):
    assert not any("mustSupport" in t or "must support" in t.lower() for _, t in errors(defs, GOOD))


def test_must_support_is_reported_as_information(defs):
    res = copy.deepcopy(GOOD)
    res["name"] = [{"family": "Reid"}]
    got = validate_resource(res, defs)
    assert not any(i.is_error for i in got)
    prof = copy.deepcopy(PATIENT_PROFILE)
    prof["url"] = PROFILE + "-ms"
    prof["differential"]["element"].append({"id": "Patient.birthDate", "path": "Patient.birthDate",
                                            "mustSupport": True})
    defs.add(prof)
    got = validate_resource(res, defs, profiles=[prof["url"]])
    assert any(i.severity == "information" and "Patient.birthDate is marked mustSupport" in i.text for i in got)
    assert not any(i.is_error for i in got)
