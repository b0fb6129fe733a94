"""Structural validation: JSON types, formats, cardinality, choice types, empty values, paths."""
from __future__ import annotations

import pytest

from fhir_service import jsonutil
from fhir_service.definitions import get_definitions
from fhir_service.validation import validate_resource


def issues(text: str, **kw):
    return validate_resource(jsonutil.loads(text), get_definitions(), **kw)


def errors(text: str, **kw):
    return [(i.expression[0] if i.expression else "", i.text) for i in issues(text, **kw) if i.is_error]


def error_paths(text: str, **kw) -> set[str]:
    return {p for p, _ in errors(text, **kw)}


def test_valid_patient_has_no_errors():
    assert errors('{"resourceType":"Patient","id":"p1","active":true,"name":[{"family":"Reid","given":["Anna"]}],'
                  '"birthDate":"1980-02-29","gender":"female"}') == []


def test_unknown_property_is_reported_on_its_parent():
    errs = errors('{"resourceType":"Patient","name":[{"family":"x","nickname":"y"}],"foo":1}')
    assert ("Patient", "Unrecognized property 'foo'") in errs
    assert ("Patient.name[0]", "Unrecognized property 'nickname'") in errs


@pytest.mark.parametrize("body,path", [
    ('"active":"true"', "Patient.active"),  # a string is not a boolean
    ('"multipleBirthInteger":1.5', "Patient.multipleBirth.ofType(integer)"),  # an integer must not be a decimal
    ('"multipleBirthInteger":true', "Patient.multipleBirth.ofType(integer)"),
    ('"name":[{"given":["a",1]}]', "Patient.name[0].given[1]"),
    ('"birthDate":"2020-02-30"', "Patient.birthDate"),
    ('"birthDate":"not a date"', "Patient.birthDate"),
    ('"gender":""', "Patient.gender"),
    ('"gender":"fe male "', "Patient.gender"),
    ('"telecom":[{"value":"x","period":{"start":"2020-01-01T10:00:00"}}]', "Patient.telecom[0].period.start"),
    ('"photo":[{"data":"not base64!"}]', "Patient.photo[0].data"),
])
def test_bad_primitive_values(body, path):
    assert path in error_paths('{"resourceType":"Patient",' + body + '}')


def test_datetime_with_time_needs_a_timezone():
    errs = errors('{"resourceType":"Observation","status":"final","code":{"text":"x"},'
                  '"effectiveDateTime":"2020-01-01T10:00:00"}')
    assert ("Observation.effective.ofType(dateTime)", "If a date has a time, it must have a timezone") in errs


def test_decimals_keep_precision_and_are_accepted():
    assert errors('{"resourceType":"Observation","status":"final","code":{"text":"x"},'
                  '"valueQuantity":{"value":1.50,"unit":"mg"}}') == []


def test_cardinality_min_and_max():
    errs = errors('{"resourceType":"Observation","code":{"text":"x"}}')
    assert any(p == "Observation" and "Observation.status: minimum required = 1" in t for p, t in errs)
    errs = errors('{"resourceType":"Patient","gender":["male","female"]}')
    assert "Patient.gender" in {p for p, _ in errs}


def test_only_one_choice_type():
    errs = errors('{"resourceType":"Patient","deceasedBoolean":true,"deceasedDateTime":"2020"}')
    assert any("Only one value is allowed for the choice element deceased[x]" in t for _, t in errs)


@pytest.mark.parametrize("body,path", [
    ('"name":[]', "Patient.name"),
    ('"contact":[{}]', "Patient.contact[0]"),
    ('"gender":null', "Patient.gender"),
    ('"telecom":[null]', "Patient.telecom[0]"),
    ('"maritalStatus":{}', "Patient.maritalStatus"),
])
def test_empty_objects_arrays_and_nulls(body, path):
    assert path in error_paths('{"resourceType":"Patient",' + body + '}')


def test_primitive_extensions_and_null_alignment():
    ok = ('{"resourceType":"Patient","name":[{"given":["a",null],"_given":[null,{"extension":[{"url":'
          '"http://example.org/x","valueString":"y"}]}]}],"_birthDate":{"extension":[{"url":"http://example.org/b",'
          '"valueCode":"unknown"}]}}')
    assert errors(ok) == []
    assert "Patient.gender" in error_paths('{"resourceType":"Patient","_gender":{"value":"x"}}')


def test_arrays_versus_single_values():
    assert "Patient.name" in error_paths('{"resourceType":"Patient","name":{"family":"x"}}')
    assert "Patient.gender" in error_paths('{"resourceType":"Patient","gender":["male"]}')


def test_resource_type_and_ids():
    assert errors('{"resourceType":"Foo"}')
    assert ("Patient.id", "Invalid Resource id: Invalid Characters ('a_b')") in errors(
        '{"resourceType":"Patient","id":"a_b"}')
    assert any("Too long" in t for _, t in errors('{"resourceType":"Patient","id":"' + "a" * 65 + '"}'))


def test_contained_resources_are_validated_with_hl7_style_paths():
    errs = errors('{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o1","name":["x"]}],'
                  '"managingOrganization":{"reference":"#o1"}}')
    assert any(p == "Patient.contained[0]/*Organization/o1*/.name" for p, _ in errs)


def test_contained_resource_must_be_referenced():
    errs = errors('{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o1","name":"x"}]}')
    assert any("dom-3" in t for _, t in errs)


def test_issue_codes_and_severities_are_fhir_codes():
    got = issues('{"resourceType":"Patient","foo":1,"birthDate":"x"}')
    assert {i.code for i in got} <= {"structure", "invalid", "required", "value", "invariant", "code-invalid",
                                     "business-rule", "not-found", "informational", "too-long"}
    assert {i.severity for i in got} <= {"fatal", "error", "warning", "information"}


def test_malformed_input_never_breaks_the_validator():
    """Client input must never produce a 500: mangle resources at random and validate them."""
    import copy
    import random
    from decimal import Decimal
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent / "examples"
    bundles = [jsonutil.loads(p.read_bytes()) for p in sorted(root.glob("0*.json"))[:3]]
    samples = [e["resource"] for b in bundles for e in b.get("entry", [])]
    junk = [None, [], {}, "", 1, Decimal("1.5"), True, [None], [{}], {"a": 1}, ["x"], {"resourceType": "Patient"},
            {"reference": "#x"}, "urn:uuid:zz"]
    rng = random.Random(4)

    def places(obj, path=()):
        yield path
        if isinstance(obj, dict):
            for k, v in obj.items():
                yield from places(v, path + (k,))
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                yield from places(v, path + (i,))

    for _ in range(300):
        res = copy.deepcopy(rng.choice(samples))
        for _ in range(rng.randint(1, 3)):
            path = rng.choice(list(places(res)))
            if not path:
                continue
            parent = res
            for p in path[:-1]:
                parent = parent[p]
            parent[path[-1]] = copy.deepcopy(rng.choice(junk))
        got = validate_resource(res, get_definitions())
        assert not any(i.code == "exception" for i in got), [i.text for i in got if i.code == "exception"]
