"""create / read / vread / update / delete over HTTP (http.html), on every backend."""
from __future__ import annotations

import time
import uuid
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone


def patient(uid: str, **extra) -> dict:
    res = {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": uid}],
           "name": [{"family": "Test" + uid, "given": ["Ann"]}], "gender": "female", "birthDate": "1980-02-03"}
    res.update(extra)
    return res


def test_create_assigns_id_and_sets_headers(fhir, uid):
    r = fhir.post("Patient", json=patient(uid, id="client-chosen"))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["id"] != "client-chosen"
    assert body["meta"]["versionId"] == "1"
    assert r.headers["Location"].endswith(f"/fhir/Patient/{body['id']}/_history/1")
    assert r.headers["ETag"] == 'W/"1"'
    assert "GMT" in r.headers["Last-Modified"]
    assert r.headers["Content-Type"].startswith("application/fhir+json")


def test_server_ids_are_time_ordered_uuids(fhir, uid):
    # Version-7 UUIDs: valid FHIR ids that sort in creation order (kind to B-tree indexes).
    ids = []
    for i in range(3):
        ids.append(fhir.post("Patient", json=patient(f"{uid}-{i}")).json()["id"])
        time.sleep(0.002)  # distinct milliseconds: ids made within one are ordered only by chance
    assert ids == sorted(ids)
    for rid in ids:
        u = uuid.UUID(rid)
        assert u.version == 7 and str(u) == rid
        assert abs((u.int >> 80) - time.time() * 1000) < 600_000  # the leading 48 bits are the time in ms


def test_create_prefer_return(fhir, uid):
    r = fhir.post("Patient", json=patient(uid), headers={"Prefer": "return=minimal"})
    assert r.status_code == 201 and r.content == b""
    assert "/Patient/" in r.headers["Location"]
    r = fhir.post("Patient", json=patient(uid), headers={"Prefer": "return=OperationOutcome"})
    assert r.status_code == 201 and r.json()["resourceType"] == "OperationOutcome"
    r = fhir.post("Patient", json=patient(uid), headers={"Prefer": "return=representation"})
    assert r.json()["resourceType"] == "Patient"


def test_read_vread_and_conditional_read(fhir, uid):
    created = fhir.post("Patient", json=patient(uid)).json()
    pid = created["id"]
    r = fhir.get(f"Patient/{pid}")
    assert r.status_code == 200 and r.json() == created
    assert r.headers["ETag"] == 'W/"1"'
    assert fhir.get(f"Patient/{pid}", headers={"If-None-Match": 'W/"1"'}).status_code == 304
    assert fhir.get(f"Patient/{pid}", headers={"If-None-Match": 'W/"7"'}).status_code == 200
    later = format_datetime(datetime.now(timezone.utc) + timedelta(minutes=5), usegmt=True)
    earlier = format_datetime(datetime.now(timezone.utc) - timedelta(days=1), usegmt=True)
    assert fhir.get(f"Patient/{pid}", headers={"If-Modified-Since": later}).status_code == 304
    assert fhir.get(f"Patient/{pid}", headers={"If-Modified-Since": earlier}).status_code == 200
    r = fhir.get(f"Patient/{pid}/_history/1")
    assert r.status_code == 200 and r.json()["meta"]["versionId"] == "1"
    assert fhir.get(f"Patient/{pid}/_history/2").status_code == 404


def test_unknown_and_invalid_ids(fhir):
    r = fhir.get("Patient/does-not-exist-123")
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"
    r = fhir.get("Patient/bad$id")
    assert r.status_code == 400 and r.json()["issue"][0]["code"] == "value"
    r = fhir.get("NotAType/1")
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"


def test_update_rules(fhir, uid):
    pid = fhir.post("Patient", json=patient(uid)).json()["id"]
    # id must be present and match the URL
    r = fhir.put(f"Patient/{pid}", json=patient(uid))
    assert r.status_code == 400 and "id" in r.json()["issue"][0]["expression"][0]
    r = fhir.put(f"Patient/{pid}", json=patient(uid, id="other"))
    assert r.status_code == 400
    # a real change makes version 2
    r = fhir.put(f"Patient/{pid}", json=patient(uid, id=pid, gender="other"))
    assert r.status_code == 200 and r.headers["ETag"] == 'W/"2"'
    assert r.json()["meta"]["versionId"] == "2"
    # the same content again makes no new version
    r = fhir.put(f"Patient/{pid}", json=patient(uid, id=pid, gender="other"))
    assert r.status_code == 200 and r.headers["ETag"] == 'W/"2"'


def test_update_as_create(fhir, uid):
    r = fhir.put(f"Patient/pat-{uid}", json=patient(uid, id=f"pat-{uid}"))
    assert r.status_code == 201, r.text
    assert r.headers["Location"].endswith(f"/Patient/pat-{uid}/_history/1")
    assert fhir.get(f"Patient/pat-{uid}").json()["id"] == f"pat-{uid}"


def test_if_match(fhir, uid):
    pid = fhir.post("Patient", json=patient(uid)).json()["id"]
    fhir.put(f"Patient/{pid}", json=patient(uid, id=pid, gender="male"))
    stale = fhir.put(f"Patient/{pid}", json=patient(uid, id=pid, gender="unknown"), headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    current = fhir.get(f"Patient/{pid}").json()
    assert current["gender"] == "male" and current["meta"]["versionId"] == "2"
    ok = fhir.put(f"Patient/{pid}", json=patient(uid, id=pid, gender="unknown"), headers={"If-Match": 'W/"2"'})
    assert ok.status_code == 200 and ok.json()["meta"]["versionId"] == "3"
    bad = fhir.put(f"Patient/{pid}", json=patient(uid, id=pid), headers={"If-Match": "not-an-etag"})
    assert bad.status_code == 400


def test_delete_keeps_tombstone_and_history(fhir, uid):
    pid = fhir.post("Patient", json=patient(uid)).json()["id"]
    fhir.put(f"Patient/{pid}", json=patient(uid, id=pid, gender="male"))
    r = fhir.delete(f"Patient/{pid}")
    assert r.status_code == 200 and r.headers["ETag"] == 'W/"3"'
    assert fhir.get(f"Patient/{pid}").status_code == 410
    assert fhir.get(f"Patient/{pid}/_history/3").status_code == 410
    assert fhir.get(f"Patient/{pid}/_history/1").status_code == 200
    hist = fhir.get(f"Patient/{pid}/_history").json()
    assert hist["type"] == "history" and hist["total"] == 3
    assert [e["request"]["method"] for e in hist["entry"]] == ["DELETE", "PUT", "POST"]
    assert "resource" not in hist["entry"][0]
    # deleting again is harmless; an update brings it back as a new version
    assert fhir.delete(f"Patient/{pid}").status_code == 200
    r = fhir.put(f"Patient/{pid}", json=patient(uid, id=pid))
    assert r.status_code == 201 and r.json()["meta"]["versionId"] == "4"
    assert fhir.delete("Patient/never-existed-" + uid).status_code == 404


def test_decimal_precision_is_kept(fhir, uid):
    obs = {"resourceType": "Observation", "status": "final",
           "code": {"coding": [{"system": "http://snomed.info/sct", "code": "18491006"}]},
           "valueQuantity": {"value": 1.50, "unit": "L/min", "system": "http://unitsofmeasure.org", "code": "L/min"}}
    # requests would turn 1.50 into 1.5, so send the text ourselves
    raw = ('{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://snomed.info/sct",'
           '"code":"18491006"}]},"valueQuantity":{"value":1.50,"unit":"L/min","system":"http://unitsofmeasure.org",'
           '"code":"L/min"},"note":[{"text":"' + uid + '"}]}')
    r = fhir.request("POST", "Observation", data=raw.encode(), headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 201, r.text
    assert '"value":1.50' in r.text
    assert '"value":1.50' in fhir.get(f"Observation/{r.json()['id']}").text
    assert obs["valueQuantity"]["value"] == 1.5  # (the dict above is only documentation)


def test_capability_statement(fhir):
    r = fhir.get("metadata")
    assert r.status_code == 200
    cs = r.json()
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"
    assert "application/fhir+json" in cs["format"]
    rest = cs["rest"][0]
    types = {r["type"]: r for r in rest["resource"]}
    assert len(types) == 146 and "CarePlan" in types and "QuestionnaireResponse" in types
    codes = {i["code"] for i in types["Patient"]["interaction"]}
    assert {"read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create",
            "search-type"} <= codes
    assert {i["code"] for i in rest["interaction"]} >= {"transaction", "batch", "history-system", "search-system"}
    assert any(p["name"] == "identifier" for p in types["Patient"]["searchParam"])
    assert any(o["name"] == "validate" for o in types["Patient"].get("operation", []))


def test_large_and_small_writes_are_stored_alike(fhir, uid):
    # Small creates and updates run on the event loop, large ones (over 64 KB) in a worker
    # thread (api/routes.py LOOP_WRITE_MAX_BYTES): the outcome must not depend on which.
    for size in (10, 100_000):
        narrative = "<div xmlns=\"http://www.w3.org/1999/xhtml\">" + "x" * size + "</div>"
        body = {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": uid}],
                "text": {"status": "generated", "div": narrative}, "gender": "female"}
        created = fhir.post("Patient", json=body)
        assert created.status_code == 201, created.text
        pid = created.json()["id"]
        assert created.headers["ETag"] == 'W/"1"'
        assert created.headers["Location"].endswith(f"/Patient/{pid}/_history/1")
        assert fhir.get(f"Patient/{pid}").json()["text"]["div"] == narrative
        updated = fhir.put(f"Patient/{pid}", json=dict(body, id=pid, gender="male"), headers={"If-Match": 'W/"1"'})
        assert updated.status_code == 200 and updated.headers["ETag"] == 'W/"2"', updated.text
        stale = fhir.put(f"Patient/{pid}", json=dict(body, id=pid, gender="other"), headers={"If-Match": 'W/"1"'})
        assert stale.status_code == 412
        invalid = fhir.post("Patient", json=dict(body, gender=7))
        assert invalid.status_code == 422 and "Patient.gender" in invalid.text
        assert fhir.get(f"Patient?identifier=urn:test|{uid}&gender=male&_summary=count").json()["total"] == (1 if size == 10 else 2)
