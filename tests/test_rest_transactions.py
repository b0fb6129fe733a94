"""batch and transaction bundles (http.html#transaction)."""
from __future__ import annotations

from test_rest_crud import patient


def _tx(entries, kind="transaction"):
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def test_transaction_resolves_placeholders_everywhere(fhir, uid):
    pat_url, cond_url = "urn:uuid:" + "1" * 8 + "-0000-4000-8000-" + uid, "urn:uuid:" + "2" * 8 + "-0000-4000-8000-" + uid
    condition = {"resourceType": "Condition", "subject": {"reference": pat_url},
                 "code": {"coding": [{"system": "http://snomed.info/sct", "code": "195967001"}]},
                 "extension": [{"url": "http://example.org/ext", "valueReference": {"reference": pat_url}}]}
    careplan = {"resourceType": "CarePlan", "status": "active", "intent": "plan",
                "subject": {"reference": pat_url}, "addresses": [{"reference": cond_url}],
                "contained": [{"resourceType": "Goal", "id": "g1", "lifecycleStatus": "active",
                               "description": {"text": "stay well"}, "subject": {"reference": pat_url}}],
                "goal": [{"reference": "#g1"}],
                "activity": [{"detail": {"status": "scheduled", "performer": [{"reference": pat_url}]}}]}
    r = fhir.post("", json=_tx([
        {"fullUrl": "urn:uuid:cp", "resource": careplan, "request": {"method": "POST", "url": "CarePlan"}},
        {"fullUrl": cond_url, "resource": condition, "request": {"method": "POST", "url": "Condition"}},
        {"fullUrl": pat_url, "resource": patient(uid), "request": {"method": "POST", "url": "Patient"}},
    ]))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in out["entry"]]
    assert statuses == ["201 Created"] * 3
    locations = [e["response"]["location"] for e in out["entry"]]
    assert all(l.endswith("/_history/1") for l in locations)
    assert all(e["response"]["etag"] == 'W/"1"' and e["response"]["lastModified"] for e in out["entry"])
    pid = locations[2].split("/")[1]
    cid = locations[1].split("/")[1]
    cp = fhir.get("/".join(locations[0].split("/")[:2])).json()
    assert cp["subject"]["reference"] == f"Patient/{pid}"
    assert cp["addresses"][0]["reference"] == f"Condition/{cid}"
    assert cp["contained"][0]["subject"]["reference"] == f"Patient/{pid}"
    assert cp["activity"][0]["detail"]["performer"][0]["reference"] == f"Patient/{pid}"
    assert cp["goal"][0]["reference"] == "#g1"
    cond = fhir.get(f"Condition/{cid}").json()
    assert cond["extension"][0]["valueReference"]["reference"] == f"Patient/{pid}"


def test_transaction_is_all_or_nothing(fhir, uid):
    r = fhir.post("", json=_tx([
        {"resource": patient(uid), "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "not-a-status",
                      "code": {"text": "x"}}, "request": {"method": "POST", "url": "Observation"}},
    ]))
    assert r.status_code in (400, 422), r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert any(e.startswith("Bundle.entry[1]") for i in r.json()["issue"] for e in i.get("expression", []))
    assert fhir.get(f"Patient?identifier=urn:test|{uid}").json()["total"] == 0
    # a failure found while processing (a 412) also leaves nothing behind
    r = fhir.post("", json=_tx([
        {"resource": patient(uid), "request": {"method": "POST", "url": "Patient"}},
        {"resource": patient(uid, id="x-" + uid), "request": {"method": "PUT", "url": f"Patient/x-{uid}", "ifMatch": 'W/"9"'}},
    ]))
    assert r.status_code == 412, r.text
    assert fhir.get(f"Patient?identifier=urn:test|{uid}").json()["total"] == 0


def test_conditional_references_and_if_none_exist(fhir, uid):
    fhir.post("Patient", json=patient(uid))
    bundle = _tx([
        {"fullUrl": "urn:uuid:p", "resource": patient(uid),
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier=urn:test|{uid}"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "pef"},
                      "subject": {"reference": f"Patient?identifier=urn:test|{uid}"}},
         "request": {"method": "POST", "url": "Observation"}},
    ])
    out = fhir.post("", json=bundle).json()
    assert out["entry"][0]["response"]["status"] == "200 OK"  # existing patient kept
    pid = out["entry"][0]["response"]["location"].split("/")[1]
    oid = out["entry"][1]["response"]["location"].split("/")[1]
    assert fhir.get(f"Observation/{oid}").json()["subject"]["reference"] == f"Patient/{pid}"
    assert fhir.get(f"Patient?identifier=urn:test|{uid}").json()["total"] == 1
    bad = _tx([{"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                             "subject": {"reference": "Patient?identifier=urn:test|nobody-" + uid}},
                "request": {"method": "POST", "url": "Observation"}}])
    assert fhir.post("", json=bad).status_code == 412


def test_processing_order_and_get(fhir, uid):
    pid = fhir.post("Patient", json=patient(uid)).json()["id"]
    gone = fhir.post("Patient", json=patient(uid)).json()["id"]
    out = fhir.post("", json=_tx([
        {"request": {"method": "GET", "url": f"Patient/{pid}"}},
        {"resource": patient(uid, id=pid, gender="male"), "request": {"method": "PUT", "url": f"Patient/{pid}"}},
        {"request": {"method": "DELETE", "url": f"Patient/{gone}"}},
    ])).json()
    # GET runs after the PUT, so it sees version 2
    assert out["entry"][0]["resource"]["gender"] == "male"
    assert out["entry"][0]["resource"]["meta"]["versionId"] == "2"
    assert fhir.get(f"Patient/{gone}").status_code == 410


def test_duplicate_identity_in_transaction(fhir, uid):
    r = fhir.post("", json=_tx([
        {"resource": patient(uid, id="d-" + uid), "request": {"method": "PUT", "url": f"Patient/d-{uid}"}},
        {"resource": patient(uid, id="d-" + uid), "request": {"method": "PUT", "url": f"Patient/d-{uid}"}},
    ]))
    assert r.status_code == 400


def test_batch_entries_are_independent(fhir, uid):
    out = fhir.post("", json=_tx([
        {"resource": patient(uid), "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "gender": "robot"}, "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": "Patient/does-not-exist-" + uid}},
    ], kind="batch")).json()
    assert out["type"] == "batch-response"
    codes = [e["response"]["status"][:3] for e in out["entry"]]
    assert codes == ["201", "422", "404"]
    assert out["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert fhir.get(f"Patient?identifier=urn:test|{uid}").json()["total"] == 1


def test_patch_in_transaction(fhir, uid):
    import base64
    pid = fhir.post("Patient", json=patient(uid)).json()["id"]
    data = base64.b64encode(b'[{"op":"replace","path":"/gender","value":"male"}]').decode()
    out = fhir.post("", json=_tx([
        {"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": data},
         "request": {"method": "PATCH", "url": f"Patient/{pid}"}},
    ]))
    assert out.status_code == 200, out.text
    assert fhir.get(f"Patient/{pid}").json()["gender"] == "male"
