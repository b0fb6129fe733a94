"""Several server processes over one database must stay correct (no per-process resource state)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import FHIRClient, Server, drop_database, new_database_url, patient_profile
from test_rest_crud import patient


@pytest.fixture(scope="module")
def two_servers(backend, tmp_path_factory):
    """Two independent server processes (plus uvicorn workers) sharing one database."""
    url = new_database_url(backend, tmp_path_factory.mktemp("multi"))
    a = Server(url, workers=2)
    b = Server(url)
    yield FHIRClient(a.base), FHIRClient(b.base)
    a.stop()
    b.stop()
    drop_database(url)


def test_conditional_create_across_processes(two_servers, uid):
    a, b = two_servers
    h = {"If-None-Exist": f"identifier=urn:test|{uid}"}
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(lambda i: (a if i % 2 else b).post("Patient", json=patient(uid), headers=h).status_code,
                              range(16)))
    assert codes.count(201) == 1, codes
    assert a.get(f"Patient?identifier=urn:test|{uid}").json()["total"] == 1


def test_writes_seen_by_every_process(two_servers, uid):
    a, b = two_servers
    pid = a.post("Patient", json=patient(uid)).json()["id"]
    assert b.put(f"Patient/{pid}", json=patient(uid, id=pid, gender="male"), headers={"If-Match": 'W/"1"'}).status_code == 200
    assert a.put(f"Patient/{pid}", json=patient(uid, id=pid, gender="other"), headers={"If-Match": 'W/"1"'}).status_code == 412
    assert a.get(f"Patient/{pid}").json()["gender"] == "male"
    assert b.get(f"Patient/{pid}/_history").json()["total"] == 2


def test_profile_stored_through_one_process_is_enforced_by_the_other(two_servers, uid):
    a, b = two_servers
    url = f"http://example.org/fhir/StructureDefinition/needs-birthdate-{uid}"
    assert a.post("StructureDefinition", json=patient_profile(url, "birthDate")).status_code == 201
    claims = dict(patient(uid), meta={"profile": [url]})
    claims.pop("birthDate")
    # b has never seen the profile: it must pick it up from the database, not call it unknown.
    r = b.post("Patient", json=claims)
    assert r.status_code == 422, r.text
    assert "Patient.birthDate" in r.text


def _tighten_a_profile_b_knows(a, b, uid: str) -> tuple[dict, str]:
    """b stores a Patient under a profile's first version (so b holds that version); then a
    makes birthDate required too. The Patient (without birthDate) and its id."""
    url = f"http://example.org/fhir/StructureDefinition/tightened-{uid}"
    sd_id = a.post("StructureDefinition", json=patient_profile(url, "gender")).json()["id"]
    claims = dict(patient(uid), meta={"profile": [url]})
    claims.pop("birthDate")
    r = b.post("Patient", json=claims)
    assert r.status_code == 201, r.text
    tightened = dict(patient_profile(url, "gender", "birthDate"), id=sd_id)
    assert a.put(f"StructureDefinition/{sd_id}", json=tightened).status_code == 200
    return claims, r.json()["id"]


def test_a_profile_changed_through_one_process_is_enforced_by_the_other(two_servers, uid):
    # b's next create must be checked against the new version (a create on the event loop
    # validates against what the process last saw, and its write checks that nothing newer
    # has been stored since).
    a, b = two_servers
    claims, _ = _tighten_a_profile_b_knows(a, b, uid)
    r = b.post("Patient", json=claims)
    assert r.status_code == 422, r.text
    assert "Patient.birthDate" in r.text


def test_an_update_after_a_profile_changed_elsewhere_is_checked_against_the_new_version(two_servers, uid):
    # The same for an update (on PostgreSQL it, too, validates on the event loop).
    a, b = two_servers
    claims, pid = _tighten_a_profile_b_knows(a, b, uid)
    r = b.put(f"Patient/{pid}", json=dict(claims, id=pid, gender="male"))
    assert r.status_code == 422, r.text
    assert "Patient.birthDate" in r.text
    assert b.get(f"Patient/{pid}").json()["meta"]["versionId"] == "1"
