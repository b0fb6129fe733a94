"""Conditional create / update / delete, patch, and their behaviour under concurrency."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from test_rest_crud import patient


def _count(fhir, uid: str) -> int:
    return fhir.get(f"Patient?identifier=urn:test|{uid}&_summary=count").json()["total"]


def test_conditional_create(fhir, uid):
    h = {"If-None-Exist": f"identifier=urn:test|{uid}"}
    first = fhir.post("Patient", json=patient(uid), headers=h)
    assert first.status_code == 201
    again = fhir.post("Patient", json=patient(uid), headers=h)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    fhir.post("Patient", json=patient(uid))  # a second match, made without the condition
    assert fhir.post("Patient", json=patient(uid), headers=h).status_code == 412


def test_concurrent_conditional_creates_make_one_resource(fhir, uid):
    h = {"If-None-Exist": f"identifier=urn:test|{uid}"}
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(lambda _: fhir.post("Patient", json=patient(uid), headers=h).status_code, range(16)))
    assert sorted(codes).count(201) == 1 and set(codes) <= {200, 201}
    assert _count(fhir, uid) == 1


def test_conditional_update(fhir, uid):
    q = f"Patient?identifier=urn:test|{uid}"
    r = fhir.put(q, json=patient(uid))
    assert r.status_code == 201
    pid = r.json()["id"]
    r = fhir.put(q, json=patient(uid, gender="male"))
    assert r.status_code == 200 and r.json()["id"] == pid and r.json()["meta"]["versionId"] == "2"
    r = fhir.put(q, json=patient(uid, id="someone-else"))
    assert r.status_code == 400
    fhir.post("Patient", json=patient(uid))
    assert fhir.put(q, json=patient(uid)).status_code == 412


def test_conditional_delete(fhir, uid):
    q = f"Patient?identifier=urn:test|{uid}"
    assert fhir.delete(q).status_code == 204  # nothing matches
    pid = fhir.post("Patient", json=patient(uid)).json()["id"]
    assert fhir.delete(q).status_code == 200
    assert fhir.get(f"Patient/{pid}").status_code == 410
    fhir.post("Patient", json=patient(uid))
    fhir.post("Patient", json=patient(uid))
    assert fhir.delete(q).status_code == 412


def test_concurrent_if_match_updates_one_wins(fhir, uid):
    pid = fhir.post("Patient", json=patient(uid)).json()["id"]

    def attempt(i: int) -> int:
        return fhir.put(f"Patient/{pid}", json=patient(uid, id=pid, gender=["male", "female", "other", "unknown"][i % 4],
                                                       birthDate=f"19{10 + i}-01-01"),
                        headers={"If-Match": 'W/"1"'}).status_code
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(attempt, range(12)))
    assert codes.count(200) == 1 and codes.count(412) == 11
    assert fhir.get(f"Patient/{pid}").json()["meta"]["versionId"] == "2"


def test_concurrent_updates_lose_no_version(fhir, uid):
    pid = fhir.post("Patient", json=patient(uid)).json()["id"]
    with ThreadPoolExecutor(max_workers=6) as pool:
        codes = list(pool.map(lambda i: fhir.put(f"Patient/{pid}", json=patient(uid, id=pid, birthDate=f"19{20 + i}-01-01")
                                                 ).status_code, range(12)))
    assert codes == [200] * 12
    hist = fhir.get(f"Patient/{pid}/_history?_count=50").json()
    assert hist["total"] == 13
    assert sorted(int(e["resource"]["meta"]["versionId"]) for e in hist["entry"]) == list(range(1, 14))


def test_json_patch(fhir, uid):
    pid = fhir.post("Patient", json=patient(uid)).json()["id"]
    ops = [{"op": "replace", "path": "/gender", "value": "male"}, {"op": "add", "path": "/active", "value": True}]
    r = fhir.request("PATCH", f"Patient/{pid}", data=__import__("json").dumps(ops).encode(),
                     headers={"Content-Type": "application/json-patch+json", "If-Match": 'W/"1"'})
    assert r.status_code == 200, r.text
    assert r.json()["gender"] == "male" and r.json()["active"] is True and r.json()["meta"]["versionId"] == "2"
    stale = fhir.request("PATCH", f"Patient/{pid}", data=b'[{"op":"remove","path":"/active"}]',
                         headers={"Content-Type": "application/json-patch+json", "If-Match": 'W/"1"'})
    assert stale.status_code == 412
    # the patched result is validated like any update
    bad = fhir.request("PATCH", f"Patient/{pid}", data=b'[{"op":"replace","path":"/gender","value":"robot"}]',
                       headers={"Content-Type": "application/json-patch+json"})
    assert bad.status_code == 422
    assert fhir.get(f"Patient/{pid}").json()["gender"] == "male"


def test_fhirpath_patch(fhir, uid):
    pid = fhir.post("Patient", json=patient(uid)).json()["id"]
    params = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "Patient.birthDate"},
        {"name": "value", "valueDate": "1990-05-06"}]}]}
    r = fhir.patch(f"Patient/{pid}", json=params, headers={"If-Match": 'W/"1"'})
    assert r.status_code == 200, r.text
    assert r.json()["birthDate"] == "1990-05-06"
    assert fhir.patch(f"Patient/{pid}", json=params, headers={"If-Match": 'W/"1"'}).status_code == 412


def test_patch_of_a_questionnaire_response_is_validated_against_its_questionnaire(fhir, uid):
    q = {"resourceType": "Questionnaire", "url": f"http://example.org/Questionnaire/q-{uid}", "status": "active",
         "item": [{"linkId": "a", "type": "integer", "text": "How many?"}]}
    assert fhir.post("Questionnaire", json=q).status_code == 201
    qr = {"resourceType": "QuestionnaireResponse", "questionnaire": q["url"], "status": "completed",
          "item": [{"linkId": "a", "answer": [{"valueInteger": 2}]}]}
    rid = fhir.post("QuestionnaireResponse", json=qr).json()["id"]
    bad = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"},
        {"name": "path", "valueString": "QuestionnaireResponse.item[0].linkId"},
        {"name": "value", "valueString": "not-in-the-questionnaire"}]}]}
    r = fhir.patch(f"QuestionnaireResponse/{rid}", json=bad)
    assert r.status_code == 422, r.text  # looked up the Questionnaire inside the write transaction
    assert fhir.get(f"QuestionnaireResponse/{rid}").json()["item"][0]["linkId"] == "a"
