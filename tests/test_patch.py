"""JSON Patch and FHIRPath Patch (fhir_service.core.patch), called directly.

FHIRPath Patch cases follow the examples of https://hl7.org/fhir/R4/fhirpatch.html.
"""
from __future__ import annotations

import copy
from decimal import Decimal

import pytest

from fhir_service.core.patch import apply_fhirpath_patch, apply_json_patch
from fhir_service.outcome import FHIRError


def patient() -> dict:
    return {
        "resourceType": "Patient", "id": "p1",
        "identifier": [{"system": "http://a", "value": "1"}, {"system": "http://b", "value": "2"}],
        "name": [{"family": "Chalmers", "given": ["Peter", "James", "Jim"]}],
        "birthDate": "1974-12-25",
    }


def operation(kind: str, **parts) -> dict:
    """An `operation` parameter. A dict part is given as is (value[x] or nested parts)."""
    out = [{"name": "type", "valueCode": kind}]
    for name, value in parts.items():
        if isinstance(value, dict):
            out.append({"name": name, **value})
        elif isinstance(value, int):
            out.append({"name": name, "valueInteger": value})
        else:
            out.append({"name": name, "valueString": value})
    return {"name": "operation", "part": out}


def fhirpath_patch(resource: dict, *ops: dict) -> dict:
    return apply_fhirpath_patch(resource, {"resourceType": "Parameters", "parameter": list(ops)})


def fails(status: int, fn, *args) -> FHIRError:
    with pytest.raises(FHIRError) as info:
        fn(*args)
    assert info.value.status == status, info.value
    return info.value


# -- JSON Patch ------------------------------------------------------------------------------

def test_json_add_replace_remove():
    res = patient()
    out = apply_json_patch(res, [
        {"op": "add", "path": "/active", "value": True},
        {"op": "add", "path": "/name/0/given/-", "value": "Jimmy"},
        {"op": "replace", "path": "/birthDate", "value": "1974-12-26"},
        {"op": "remove", "path": "/identifier/1"},
    ])
    assert out["active"] is True
    assert out["name"][0]["given"] == ["Peter", "James", "Jim", "Jimmy"]
    assert out["birthDate"] == "1974-12-26"
    assert out["identifier"] == [{"system": "http://a", "value": "1"}]
    assert res == patient()  # the input is untouched


def test_json_move_copy_test():
    out = apply_json_patch(patient(), [
        {"op": "test", "path": "/name/0/family", "value": "Chalmers"},
        {"op": "copy", "from": "/name/0", "path": "/name/-"},
        {"op": "move", "from": "/name/1/given/2", "path": "/name/1/given/0"},
    ])
    assert out["name"][1]["given"] == ["Jim", "Peter", "James"]
    assert out["name"][0]["given"] == ["Peter", "James", "Jim"]


def test_json_keeps_decimals():
    obs = {"resourceType": "Observation", "id": "o", "valueQuantity": {"value": Decimal("1.50")}}
    out = apply_json_patch(obs, [{"op": "replace", "path": "/valueQuantity/value", "value": Decimal("2.50")}])
    assert out["valueQuantity"]["value"] == Decimal("2.50") and str(out["valueQuantity"]["value"]) == "2.50"


def test_json_failed_test_is_422():
    err = fails(422, apply_json_patch, patient(), [{"op": "test", "path": "/birthDate", "value": "2000-01-01"}])
    assert "operation 0" in str(err)


@pytest.mark.parametrize("ops", [
    [{"op": "remove", "path": "/gender"}],
    [{"op": "replace", "path": "/name/5", "value": {}}],
    [{"op": "add", "path": "/contact/0/name", "value": {}}],
    [{"op": "move", "from": "/nothing", "path": "/x"}],
    [{"op": "test", "path": "/nothing", "value": 1}],
])
def test_json_missing_path_is_422(ops):
    fails(422, apply_json_patch, patient(), ops)


@pytest.mark.parametrize("body", [
    {"op": "add", "path": "/active", "value": True},  # not a list
    [{"op": "frobnicate", "path": "/active"}],
    [{"path": "/active"}],
    [{"op": "add", "path": "/active"}],  # no value
    [{"op": "add", "path": "active", "value": True}],  # not a JSON pointer
    [{"op": "move", "from": "nothing", "path": "/x"}],
    ["add"],
])
def test_json_malformed_is_400(body):
    fails(400, apply_json_patch, patient(), body)


@pytest.mark.parametrize("ops", [
    [{"op": "replace", "path": "/id", "value": "other"}],
    [{"op": "remove", "path": "/id"}],
    [{"op": "replace", "path": "/resourceType", "value": "Person"}],
    [{"op": "replace", "path": "", "value": {"resourceType": "Patient", "id": "p2"}}],
])
def test_json_cannot_change_identity(ops):
    err = fails(422, apply_json_patch, patient(), ops)
    assert "id" in str(err) or "resourceType" in str(err)


def test_json_same_id_is_fine():
    out = apply_json_patch(patient(), [{"op": "replace", "path": "/id", "value": "p1"}])
    assert out["id"] == "p1"


# -- FHIRPath Patch: the operations ----------------------------------------------------------

def test_add_birthdate():
    res = patient()
    del res["birthDate"]
    out = fhirpath_patch(res, operation("add", path="Patient", name="birthDate", value={"valueDate": "1930-01-01"}))
    assert out["birthDate"] == "1930-01-01"
    assert "birthDate" not in res


def test_add_to_existing_single_element_is_422():
    fails(422, fhirpath_patch, patient(),
          operation("add", path="Patient", name="birthDate", value={"valueDate": "1930-01-01"}))


def test_add_complex_value_from_parts():
    # The spec's example: a contact (an anonymous BackboneElement) given as parts.
    out = fhirpath_patch(patient(), operation(
        "add", path="Patient", name="contact",
        value={"part": [{"name": "name", "valueHumanName": {"text": "a name"}},
                        {"name": "telecom", "valueContactPoint": {"system": "phone", "value": "555"}}]}))
    # contact and contact.telecom repeat, so both are lists; contact.name does not.
    assert out["contact"] == [{"name": {"text": "a name"}, "telecom": [{"system": "phone", "value": "555"}]}]


def test_add_appends_to_repeating_element():
    out = fhirpath_patch(patient(), operation(
        "add", path="Patient", name="identifier", value={"valueIdentifier": {"system": "http://c", "value": "3"}}))
    assert [i["system"] for i in out["identifier"]] == ["http://a", "http://b", "http://c"]
    out = fhirpath_patch(patient(), operation("add", path="Patient.name[0]", name="given", value={"valueString": "J"}))
    assert out["name"][0]["given"] == ["Peter", "James", "Jim", "J"]


def test_add_creates_list_for_absent_repeating_element():
    out = fhirpath_patch(patient(), operation(
        "add", path="Patient", name="telecom", value={"valueContactPoint": {"system": "email", "value": "a@b"}}))
    assert out["telecom"] == [{"system": "email", "value": "a@b"}]


def test_add_extension_from_parts_keeps_decimal_and_choice_name():
    out = fhirpath_patch(patient(), operation(
        "add", path="Patient", name="extension",
        value={"part": [{"name": "url", "valueUri": "http://example.org/weight"},
                        {"name": "value", "valueDecimal": Decimal("70.50")}]}))
    assert out["extension"] == [{"url": "http://example.org/weight", "valueDecimal": Decimal("70.50")}]
    assert str(out["extension"][0]["valueDecimal"]) == "70.50"


def test_add_choice_element_takes_value_type():
    out = fhirpath_patch(patient(), operation("add", path="Patient", name="deceased", value={"valueBoolean": False}))
    assert out["deceasedBoolean"] is False
    res = dict(patient(), deceasedBoolean=False)
    fails(422, fhirpath_patch, res, operation("add", path="Patient", name="deceased", value={"valueDateTime": "2020"}))


def test_add_unknown_element_is_422():
    fails(422, fhirpath_patch, patient(), operation("add", path="Patient", name="colour", value={"valueString": "x"}))


def test_insert_given():
    out = fhirpath_patch(patient(), operation("insert", path="Patient.name[0].given", index=1,
                                              value={"valueString": "Jamie"}))
    assert out["name"][0]["given"] == ["Peter", "Jamie", "James", "Jim"]
    out = fhirpath_patch(patient(), operation("insert", path="Patient.name[0].given", index=3,
                                              value={"valueString": "Last"}))
    assert out["name"][0]["given"][-1] == "Last"


def test_insert_into_absent_list():
    out = fhirpath_patch(patient(), operation("insert", path="Patient.telecom", index=0,
                                              value={"valueContactPoint": {"value": "1"}}))
    assert out["telecom"] == [{"value": "1"}]


def test_insert_index_out_of_range_is_422():
    err = fails(422, fhirpath_patch, patient(), operation("insert", path="Patient.name[0].given", index=4,
                                                          value={"valueString": "x"}))
    assert "Parameters.parameter[0]" in str(err) and "index 4" in str(err)


def test_insert_into_single_element_is_422():
    fails(422, fhirpath_patch, patient(), operation("insert", path="Patient.birthDate", index=0,
                                                    value={"valueDate": "2000-01-01"}))


def test_insert_keeps_primitive_extensions_in_step():
    res = patient()
    res["name"][0]["_given"] = [None, {"extension": [{"url": "http://x", "valueString": "e"}]}, None]
    out = fhirpath_patch(res, operation("insert", path="Patient.name[0].given", index=0, value={"valueString": "A"}))
    assert out["name"][0]["_given"][2]["extension"][0]["valueString"] == "e"
    assert out["name"][0]["given"][2] == "James"


def test_delete_birthdate():
    out = fhirpath_patch(patient(), operation("delete", path="Patient.birthDate"))
    assert "birthDate" not in out


def test_delete_missing_is_noop():
    res = patient()
    assert fhirpath_patch(res, operation("delete", path="Patient.gender")) == res


def test_delete_list_item_and_empty_containers():
    out = fhirpath_patch(patient(), operation("delete", path="Patient.identifier.where(system='http://a')"))
    assert out["identifier"] == [{"system": "http://b", "value": "2"}]
    res = patient()
    res["name"] = [{"given": ["Only"]}]
    out = fhirpath_patch(res, operation("delete", path="Patient.name[0].given[0]"))
    assert "name" not in out  # given, then the name it emptied, then the emptied list


def test_delete_more_than_one_is_422():
    err = fails(422, fhirpath_patch, patient(), operation("delete", path="Patient.identifier"))
    assert "matches 2" in str(err)


def test_replace_birthdate():
    out = fhirpath_patch(patient(), operation("replace", path="Patient.birthDate", value={"valueDate": "1930-01-01"}))
    assert out["birthDate"] == "1930-01-01"


def test_replace_identifier_where_filter():
    out = fhirpath_patch(patient(), operation(
        "replace", path="Patient.identifier.where(system='http://b')",
        value={"valueIdentifier": {"system": "http://b", "value": "22"}}))
    assert out["identifier"][1] == {"system": "http://b", "value": "22"}
    assert out["identifier"][0] == patient()["identifier"][0]


def test_replace_with_parts():
    out = fhirpath_patch(patient(), operation(
        "replace", path="Patient.identifier.where(system='http://a')",
        value={"part": [{"name": "system", "valueUri": "http://z"}, {"name": "value", "valueString": "9"}]}))
    assert out["identifier"][0] == {"system": "http://z", "value": "9"}


@pytest.mark.parametrize("path, index", [
    ("Patient.name.given.first()", 0), ("Patient.name.given.last()", 2), ("Patient.name[0].given[1]", 1),
    ("name.given.where($this = 'James')", 1),
])
def test_replace_primitive_in_list(path, index):
    out = fhirpath_patch(patient(), operation("replace", path=path, value={"valueString": "X"}))
    expected = ["Peter", "James", "Jim"]
    expected[index] = "X"
    assert out["name"][0]["given"] == expected


def test_replace_choice_element_changes_type():
    obs = {"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "t"},
           "valueString": "high"}
    out = fhirpath_patch(obs, operation("replace", path="Observation.value",
                                        value={"valueQuantity": {"value": Decimal("7.10"), "unit": "mmol/L"}}))
    assert "valueString" not in out
    assert out["valueQuantity"] == {"value": Decimal("7.10"), "unit": "mmol/L"}


def test_replace_decimal_inside_quantity():
    obs = {"resourceType": "Observation", "id": "o", "valueQuantity": {"value": Decimal("1.50"), "unit": "mg"}}
    out = fhirpath_patch(obs, operation("replace", path="Observation.value.value", value={"valueDecimal": Decimal("2.500")}))
    assert str(out["valueQuantity"]["value"]) == "2.500"
    assert str(obs["valueQuantity"]["value"]) == "1.50"


def test_replace_missing_is_422():
    fails(422, fhirpath_patch, patient(), operation("replace", path="Patient.gender", value={"valueCode": "male"}))


def test_move_given():
    out = fhirpath_patch(patient(), operation("move", path="Patient.name[0].given", source=0, destination=2))
    assert out["name"][0]["given"] == ["James", "Jim", "Peter"]
    out = fhirpath_patch(patient(), operation("move", path="Patient.identifier", source=1, destination=0))
    assert [i["system"] for i in out["identifier"]] == ["http://b", "http://a"]


def test_move_out_of_range_is_422():
    err = fails(422, fhirpath_patch, patient(), operation("move", path="Patient.name[0].given", source=3, destination=0))
    assert "source 3" in str(err)


def test_nested_backbone_and_content_reference():
    q = {"resourceType": "Questionnaire", "id": "q", "status": "draft",
         "item": [{"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "string"}]}]}
    out = fhirpath_patch(q, operation(
        "add", path="Questionnaire.item.item.where(linkId='1.1')", name="item",
        value={"part": [{"name": "linkId", "valueString": "1.1.1"}, {"name": "type", "valueCode": "display"}]}))
    assert out["item"][0]["item"][0]["item"] == [{"linkId": "1.1.1", "type": "display"}]


def test_operations_apply_in_order_and_input_is_untouched():
    res = patient()
    before = copy.deepcopy(res)
    out = fhirpath_patch(res,
                         operation("insert", path="Patient.name[0].given", index=0, value={"valueString": "A"}),
                         operation("delete", path="Patient.name[0].given[3]"),
                         operation("replace", path="Patient.birthDate", value={"valueDate": "2000-01-01"}))
    assert out["name"][0]["given"] == ["A", "Peter", "James"]
    assert res == before


# -- FHIRPath Patch: errors ------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    {"resourceType": "Patient"},
    [],
    {"resourceType": "Parameters", "parameter": {"name": "operation"}},
])
def test_not_parameters_is_400(body):
    fails(400, apply_fhirpath_patch, patient(), body)


@pytest.mark.parametrize("op, text", [
    (operation("upsert", path="Patient"), "type must be one of"),
    ({"name": "operation", "part": [{"name": "path", "valueString": "Patient"}]}, "type must be one of"),
    ({"name": "op", "part": []}, "named 'operation'"),
    (operation("add", path="Patient", value={"valueDate": "1930-01-01"}), "missing part name"),
    (operation("add", path="Patient", name="birthDate"), "missing part value"),
    (operation("insert", path="Patient.name[0].given", value={"valueString": "x"}), "missing part index"),
    (operation("delete"), "missing part path"),
    (operation("move", path="Patient.identifier", source=0), "missing part destination"),
    (operation("insert", path="Patient.name[0].given", value={"valueString": "x"}, index="1"), "integer"),
    (operation("delete", path="Patient", colour="red"), "unknown or repeated part"),
    (operation("replace", path="Patient.birthDate", value={"part": []}), "no value"),
    (operation("insert", path="Patient.identifier.first()", index=0, value={"valueString": "x"}), "must end with"),
    (operation("delete", path="Patient.name.where("), "cannot evaluate"),
])
def test_malformed_operation_is_400(op, text):
    err = fails(400, fhirpath_patch, patient(), operation("delete", path="Patient.gender"), op)
    assert "Parameters.parameter[1]" in str(err) and text in str(err)
    assert err.issues[0].expression == ["Parameters.parameter[1]"]


def test_malformed_operation_is_refused_before_any_is_applied():
    fails(400, fhirpath_patch, patient(), operation("delete", path="Patient.birthDate"), operation("nope"))


@pytest.mark.parametrize("op", [
    operation("add", path="Patient.name", name="text", value={"valueString": "x"}),  # path matches 0
    operation("add", path="Patient.identifier", name="use", value={"valueCode": "usual"}),  # matches 2
    operation("add", path="Patient.birthDate", name="x", value={"valueString": "x"}),  # not complex
    operation("replace", path="Patient.identifier", value={"valueIdentifier": {}}),
    operation("replace", path="Patient", value={"valueString": "x"}),
    operation("delete", path="Patient"),
    operation("insert", path="Patient.contact[0].telecom", index=0, value={"valueContactPoint": {}}),
    operation("replace", path="'literal'", value={"valueString": "x"}),
    operation("replace", path="Patient.id", value={"valueId": "other"}),
])
def test_cannot_apply_is_422(op):
    res = patient()
    res["name"].append({"family": "Other"})  # two names: Patient.name matches 2
    fails(422, fhirpath_patch, res, op)


def test_without_definitions_cardinality_follows_the_data(monkeypatch):
    import fhir_service.core.patch as patch_module
    monkeypatch.setattr(patch_module, "_elements", lambda type_name: None)
    out = fhirpath_patch(patient(), operation(
        "add", path="Patient", name="contact",
        value={"part": [{"name": "telecom", "valueContactPoint": {"value": "1"}},
                        {"name": "telecom", "valueContactPoint": {"value": "2"}}]}))
    assert out["contact"] == {"telecom": [{"value": "1"}, {"value": "2"}]}  # unknown: single
    out = fhirpath_patch(patient(), operation("add", path="Patient.name[0]", name="given", value={"valueString": "J"}))
    assert out["name"][0]["given"][-1] == "J"  # an existing list is still appended to
