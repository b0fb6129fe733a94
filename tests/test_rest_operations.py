"""Operations routed through the registry: $validate, and $reindex after a new SearchParameter."""
from __future__ import annotations

from test_rest_crud import patient


def test_validate_type_and_instance(fhir, uid):
    ok = fhir.post("Patient/$validate", json=patient(uid))
    assert ok.status_code == 200 and ok.json()["resourceType"] == "OperationOutcome"
    assert not [i for i in ok.json()["issue"] if i["severity"] in ("error", "fatal")]
    bad = fhir.post("Patient/$validate", json={"resourceType": "Patient", "gender": "robot"}).json()
    assert any(i["severity"] == "error" and "Patient.gender" in i.get("expression", [""])[0] for i in bad["issue"])
    params = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {"resourceType": "Patient", "active": "yes"}},
                                                          {"name": "mode", "valueCode": "create"}]}
    out = fhir.post("Patient/$validate", json=params).json()
    assert any(i["severity"] == "error" for i in out["issue"])
    pid = fhir.post("Patient", json=patient(uid)).json()["id"]
    assert fhir.post(f"Patient/{pid}/$validate", json=patient(uid, id=pid)).status_code == 200
    mismatch = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": patient(uid, id="other")},
                                                            {"name": "mode", "valueCode": "update"}]}
    assert any(i["severity"] == "error" for i in fhir.post(f"Patient/{pid}/$validate", json=mismatch).json()["issue"])
    assert fhir.post("Patient/$nonsense", json=patient(uid)).status_code in (400, 404)


def test_reindex_after_new_search_parameter(fhir, uid):
    code = "nick" + uid[:6]
    pid = fhir.post("Patient", json=patient(uid, name=[{"family": "Smith", "given": ["Robert"], "text": "Bob" + uid}])).json()["id"]
    sp = {"resourceType": "SearchParameter", "url": f"http://example.org/SearchParameter/{code}", "name": code,
          "status": "active", "description": "Patient name text", "code": code, "base": ["Patient"],
          "type": "string", "expression": "Patient.name.text"}
    assert fhir.post("SearchParameter", json=sp).status_code == 201
    out = fhir.post("$reindex", json={"resourceType": "Parameters"})
    assert out.status_code == 200, out.text
    assert out.json()["parameter"][0]["valueInteger"] >= 1
    found = fhir.get(f"Patient?{code}=bob{uid}", headers={"Prefer": "handling=strict"}).json()
    assert [e["resource"]["id"] for e in found["entry"] if e["search"]["mode"] == "match"] == [pid]


def test_unknown_profile_on_write_is_a_warning_by_default(fhir, uid):
    res = patient(uid, meta={"profile": ["http://example.org/StructureDefinition/nobody-knows-" + uid]})
    r = fhir.post("Patient", json=res, headers={"Prefer": "return=OperationOutcome"})
    assert r.status_code == 201, r.text
    assert any(i["severity"] == "warning" and "nobody-knows" in i["details"]["text"] for i in r.json()["issue"])


def test_unknown_profile_can_be_rejected(backend, tmp_path, uid):
    from conftest import FHIRClient, Server, drop_database, new_database_url
    url = new_database_url(backend, tmp_path)
    srv = Server(url, env={"FHIR_UNKNOWN_PROFILE": "error"})
    try:
        client = FHIRClient(srv.base)
        res = patient(uid, meta={"profile": ["http://example.org/StructureDefinition/nobody-knows-" + uid]})
        r = client.post("Patient", json=res)
        assert r.status_code == 422
        assert any("nobody-knows" in i["details"]["text"] for i in r.json()["issue"] if i["severity"] == "error")
        assert client.post("Patient", json=patient(uid)).status_code == 201
    finally:
        srv.stop()
        drop_database(url)
