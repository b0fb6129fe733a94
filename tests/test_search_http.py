"""Search over HTTP on both backends: parameter types, modifiers, prefixes, result controls,
GET and POST _search, system and compartment searches, strict/lenient handling, stable paging
under concurrent writes, and the official R4 examples findable by their main parameters.

Data is tagged with a per-test ``uid`` so tests sharing a server do not see each other's."""
from __future__ import annotations

import threading
from urllib.parse import parse_qsl, urlsplit

import pytest

from conftest import nhs_number, require_conformance
from fhir_service import jsonutil

UCUM = "http://unitsofmeasure.org"


def _put_all(fhir, resources):
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]}
    r = fhir.post("", json=bundle)
    assert r.status_code == 200, r.text


@pytest.fixture
def data(fhir, uid):
    """A small practice: two patients, observations, plans; ids and names carry ``uid``."""
    u = uid
    res = [
        {"resourceType": "Organization", "id": f"{u}-org", "name": f"{u} Practice",
         "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": f"{u}S1"}]},
        {"resourceType": "Patient", "id": f"{u}-p1", "gender": "male", "birthDate": "1974-12-25",
         "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs_number(u, 1)}],
         "name": [{"family": f"{u}Chalmers", "given": ["Peter"]}], "managingOrganization": {"reference": f"Organization/{u}-org"}},
        {"resourceType": "Patient", "id": f"{u}-p2", "gender": "female", "birthDate": "1980-03",
         "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs_number(u, 2)}],
         "name": [{"family": f"{u}Müller", "given": ["Zoë"]}]},
        {"resourceType": "Observation", "id": f"{u}-o1", "status": "final", "subject": {"reference": f"Patient/{u}-p1"},
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "18491006"}], "text": f"{u} peak flow"},
         "effectiveDateTime": "2024-03-01T09:00:00Z",
         "valueQuantity": {"value": 410, "unit": "L/min", "system": UCUM, "code": "L/min"}},
        {"resourceType": "Observation", "id": f"{u}-o2", "status": "final", "subject": {"reference": f"Patient/{u}-p1"},
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "18491006"}]},
         "effectiveDateTime": "2024-06-01T09:00:00Z",
         "valueQuantity": {"value": 300, "unit": "L/min", "system": UCUM, "code": "L/min"}},
        {"resourceType": "Observation", "id": f"{u}-o3", "status": "final", "subject": {"reference": f"Patient/{u}-p2"},
         "code": {"coding": [{"system": "http://loinc.org", "code": "82668-5"}]},
         "effectiveDateTime": "2024-01-15", "valueQuantity": {"value": 18, "system": UCUM, "code": "{score}"}},
        {"resourceType": "CarePlan", "id": f"{u}-cp1", "status": "active", "intent": "plan",
         "subject": {"reference": f"Patient/{u}-p1"}, "created": "2024-03-01"},
        {"resourceType": "CarePlan", "id": f"{u}-cp0", "status": "revoked", "intent": "plan",
         "subject": {"reference": f"Patient/{u}-p1"}, "created": "2023-03-01"},
    ]
    _put_all(fhir, res)
    return u


def search(fhir, path, params=None, status=200, **kw):
    r = fhir.get(path, params=params, **kw)
    assert r.status_code == status, r.text
    return r.json()


def ids(bundle, mode="match"):
    return sorted(e["resource"].get("id", "") for e in bundle.get("entry", []) if e["search"]["mode"] == mode)


def test_parameter_types(fhir, data):
    u = data
    assert ids(search(fhir, "Patient", {"family": f"{u}chal"})) == [f"{u}-p1"]  # string prefix
    assert ids(search(fhir, "Patient", {"name": f"{u}muller"})) == [f"{u}-p2"]  # accents
    assert ids(search(fhir, "Patient", {"identifier": f"https://fhir.nhs.uk/Id/nhs-number|{nhs_number(u, 2)}"})) == [f"{u}-p2"]
    assert ids(search(fhir, "Observation", {"subject": f"Patient/{u}-p1"})) == [f"{u}-o1", f"{u}-o2"]
    assert ids(search(fhir, "Observation", {"patient": f"{u}-p2", "date": "2024-01"})) == [f"{u}-o3"]
    assert ids(search(fhir, "Observation", {"subject": f"Patient/{u}-p1", "value-quantity": "gt400"})) == [f"{u}-o1"]
    assert ids(search(fhir, "Observation", {"subject": f"Patient/{u}-p1",
                                            "code-value-quantity": "http://snomed.info/sct|18491006$lt350"})) == [f"{u}-o2"]
    assert ids(search(fhir, "Patient", {"birthdate": "1980", "family": f"{u}"})) == [f"{u}-p2"]


def test_modifiers_and_prefixes(fhir, data):
    u = data
    p1 = f"Patient/{u}-p1"
    assert ids(search(fhir, "Patient", {"family:exact": f"{u}Chalmers"})) == [f"{u}-p1"]
    assert ids(search(fhir, "Patient", {"family:contains": "halmer", "identifier": nhs_number(u, 1)})) == [f"{u}-p1"]
    assert ids(search(fhir, "Patient", {"family": u, "gender:not": "male"})) == [f"{u}-p2"]
    assert ids(search(fhir, "Patient", {"family": u, "organization:missing": "true"})) == [f"{u}-p2"]
    assert ids(search(fhir, "Observation", {"code:text": f"{u} peak"})) == [f"{u}-o1"]
    assert ids(search(fhir, "Observation", {"subject:Patient": f"{u}-p2"})) == [f"{u}-o3"]
    for prefix, expected in [("eq2024-03-01", ["o1"]), ("ne2024-03-01", ["o2"]), ("gt2024-03-01", ["o2"]),
                             ("lt2024-06", ["o1"]), ("ge2024-03-01", ["o1", "o2"]), ("le2024-03-01", ["o1"]),
                             ("sa2024-03-31", ["o2"]), ("eb2024-06-01", ["o1"]), ("ap2024-06-01", ["o2"])]:
        got = ids(search(fhir, "Observation", {"subject": p1, "date": prefix}))
        assert got == [f"{u}-{x}" for x in expected], prefix
    assert ids(search(fhir, "Observation", {"subject": p1, "value-quantity": "410|http://unitsofmeasure.org|L/min"})) \
        == [f"{u}-o1"]
    assert ids(search(fhir, "Observation", {"subject": p1, "value-quantity": "ge6.8|http://unitsofmeasure.org|L/s"})) \
        == [f"{u}-o1"]  # 410 L/min = 6.83 L/s: compared in UCUM canonical units


def test_chain_has_include(fhir, data):
    u = data
    ods = f"https://fhir.nhs.uk/Id/ods-organization-code|{u}S1"
    assert ids(search(fhir, "Observation", {"subject:Patient.organization.identifier": ods})) == [f"{u}-o1", f"{u}-o2"]
    assert ids(search(fhir, "Patient", {"family": u, "_has:Observation:patient:code": "82668-5"})) == [f"{u}-p2"]
    assert ids(search(fhir, "Patient", {"family": u, "_has:CarePlan:subject:status": "active"})) == [f"{u}-p1"]
    b = search(fhir, "CarePlan", {"subject": f"{u}-p1", "_include": "CarePlan:subject"})
    assert ids(b) == [f"{u}-cp0", f"{u}-cp1"] and ids(b, "include") == [f"{u}-p1"]
    b = search(fhir, "Patient", {"_id": f"{u}-p1", "_revinclude": "CarePlan:subject",
                                 "_include:iterate": "Patient:organization"})
    assert ids(b, "include") == [f"{u}-cp0", f"{u}-cp1", f"{u}-org"]


def test_post_search_system_and_compartment(fhir, data):
    u = data
    r = fhir.post("Patient/_search", data=f"family={u}chal".encode(),
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200, r.text
    assert ids(r.json()) == [f"{u}-p1"]
    b = search(fhir, "", {"_type": "Patient,Observation", "_id": f"{u}-p2,{u}-o3"})
    assert ids(b) == [f"{u}-o3", f"{u}-p2"]
    b = search(fhir, f"Patient/{u}-p1/CarePlan", {"status": "active"})
    assert ids(b) == [f"{u}-cp1"]
    b = search(fhir, f"Patient/{u}-p1/*")
    assert ids(b) == sorted([f"{u}-cp0", f"{u}-cp1", f"{u}-o1", f"{u}-o2", f"{u}-p1"])


def test_result_controls(fhir, data):
    u = data
    p1 = f"Patient/{u}-p1"
    b = search(fhir, "Observation", {"subject": p1, "_sort": "-date"})
    assert [e["resource"]["id"] for e in b["entry"]] == [f"{u}-o2", f"{u}-o1"]
    b = search(fhir, "Observation", {"subject": p1, "_sort": "date", "_count": "1"})
    assert [e["resource"]["id"] for e in b["entry"]] == [f"{u}-o1"] and b["total"] == 2
    assert {link["relation"] for link in b["link"]} >= {"self", "first", "next"}
    assert "total" not in search(fhir, "Observation", {"subject": p1, "_total": "none"})
    b = search(fhir, "Observation", {"subject": p1, "_summary": "count"})
    assert b["total"] == 2 and "entry" not in b
    res = search(fhir, "Patient", {"_id": f"{u}-p1", "_elements": "birthDate"})["entry"][0]["resource"]
    assert set(res) == {"resourceType", "id", "meta", "birthDate"}
    assert any(t["code"] == "SUBSETTED" for t in res["meta"]["tag"])
    res = search(fhir, "Patient", {"_id": f"{u}-p1", "_summary": "true"})["entry"][0]["resource"]
    assert "name" in res and any(t["code"] == "SUBSETTED" for t in res["meta"]["tag"])


def test_strict_and_lenient(fhir, data):
    u = data
    b = search(fhir, "Patient", {"family": f"{u}chal", "unknown-param": "1"})
    assert ids(b) == [f"{u}-p1"]
    assert ids(b, "outcome") and "unknown-param" not in next(x["url"] for x in b["link"] if x["relation"] == "self")
    r = fhir.get("Patient", params={"family": f"{u}chal", "unknown-param": "1"}, headers={"Prefer": "handling=strict"})
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    assert "unknown-param" in r.text
    for params in ({"birthdate": "2024-13"}, {"birthdate": "zz2024"}, {"_count": "many"}, {"family:sounds": "x"}):
        r = fhir.get("Patient", params=params)
        assert r.status_code == 400, params
        assert r.json()["resourceType"] == "OperationOutcome"


def test_injection_attempts_are_values(fhir, data):
    for value in ["x' OR '1'='1", "x\"; DROP TABLE resource; --", "%", "_", "\\", "?"]:
        r = fhir.get("Patient", params={"family": value})
        assert r.status_code == 200, (value, r.text)
        assert ids(r.json()) == []
    assert fhir.get("Patient", params={"_count": "1"}).status_code == 200


def test_paging_stable_under_concurrent_writes(fhir, uid):
    n = 23
    _put_all(fhir, [{"resourceType": "Patient", "id": f"{uid}-{i:02d}", "name": [{"family": f"{uid}pager"}]}
                    for i in range(n)])
    b = search(fhir, "Patient", {"family": f"{uid}pager", "_count": "5", "_sort": "_id"})
    assert b["total"] == n
    stop = threading.Event()
    errors: list = []

    def writer():  # creates new matches and changes existing ones while the client pages
        i = 0
        while not stop.is_set() and i < 200:
            r1 = fhir.put(f"Patient/{uid}-new{i}", json={"resourceType": "Patient", "id": f"{uid}-new{i}",
                                                            "name": [{"family": f"{uid}pager"}]})
            r2 = fhir.put(f"Patient/{uid}-{i % n:02d}", json={"resourceType": "Patient", "id": f"{uid}-{i % n:02d}",
                                                               "name": [{"family": f"{uid}pager"}], "gender": "other"})
            if r1.status_code not in (200, 201) or r2.status_code not in (200, 201):
                errors.append((r1.status_code, r2.status_code))
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        seen = [e["resource"]["id"] for e in b["entry"]]
        nxt = next((x["url"] for x in b["link"] if x["relation"] == "next"), None)
        while nxt:
            page = search(fhir, nxt)
            seen += [e["resource"]["id"] for e in page["entry"]]
            nxt = next((x["url"] for x in page["link"] if x["relation"] == "next"), None)
    finally:
        stop.set()
        t.join()
    assert not errors
    assert seen == [f"{uid}-{i:02d}" for i in range(n)]  # every match exactly once, in order
    # Paging links are stateless URLs on the base: a previous page can be fetched again.
    q = dict(parse_qsl(urlsplit(next(x["url"] for x in b["link"] if x["relation"] == "next")).query))
    again = search(fhir, "", q)
    assert len(again["entry"]) == 5
    assert fhir.get("", params={"_getpages": "no-such-snapshot"}).status_code == 410


# Main search parameters per type, checked against the values the examples really hold.
MAIN = {"identifier", "code", "status", "name", "family", "subject", "patient", "date", "url", "type",
        "category", "_tag", "_profile", "title", "birthdate"}


def test_r4_examples_findable(fhir):
    folder = require_conformance("r4-examples")
    from fhir_service.definitions.registry import get_definitions
    from fhir_service.search import index_resource
    defs = get_definitions()
    stored, checked, missed = 0, 0, []
    for path in sorted(folder.glob("*.json")):
        res = jsonutil.loads(path.read_bytes())
        rtype, rid = res.get("resourceType"), res.get("id")
        if not rid or rtype == "Bundle" and res.get("type") in ("transaction", "batch"):
            continue
        r = fhir.put(f"{rtype}/{rid}", json=res)
        if r.status_code not in (200, 201):
            continue  # examples the validator rejects are covered by the validation tests
        stored += 1
        rows = index_resource(defs, res)
        queries = [{"_id": rid}]
        for table, key in (("idx_token", 3), ("idx_string", 2), ("idx_reference", 3), ("idx_date", None)):
            for row in rows.get(table, []):
                code = row[0]
                if code not in MAIN:
                    continue
                if table == "idx_token" and row[key]:
                    queries.append({code: f"{row[2]}|{row[3]}" if row[2] else row[3]})
                elif table == "idx_string" and row[key]:
                    queries.append({code: row[3][:20]})
                elif table == "idx_reference" and row[2] and row[3]:
                    queries.append({code: f"{row[2]}/{row[3]}"})
                elif table == "idx_date":
                    queries.append({code: f"ge{_iso(row[2])}"})
                break
        for q in queries:
            q = {k: v.replace("\\", "\\\\").replace(",", "\\,").replace("$", "\\$") if k != "_id" else v
                 for k, v in q.items()}
            if any("|" in v and v.count("|") > 1 for v in q.values()):
                continue
            b = fhir.get(rtype, params={**q, "_count": "1000", "_elements": "id"})
            checked += 1
            if b.status_code != 200 or rid not in ids(b.json()):
                missed.append((rtype, rid, q, b.status_code))
    assert stored > 300
    assert checked > stored
    assert not missed, missed[:10]


def _iso(ms: int) -> str:
    import time
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms // 1000)) if ms > -62135596800000 else "0001-01-01"
