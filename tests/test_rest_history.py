"""history at instance, type and system level: _count, _since, _at and paging links."""
from __future__ import annotations

import time

from test_rest_crud import patient


def test_instance_history_paging(fhir, uid):
    pid = fhir.post("Patient", json=patient(uid)).json()["id"]
    for year in range(1990, 1995):
        fhir.put(f"Patient/{pid}", json=patient(uid, id=pid, birthDate=f"{year}-01-01"))
    seen, url = [], f"Patient/{pid}/_history?_count=2"
    while url:
        page = fhir.get(url).json()
        assert page["total"] == 6
        seen += [e["resource"]["meta"]["versionId"] for e in page["entry"]]
        url = next((l["url"] for l in page["link"] if l["relation"] == "next"), None)
    assert seen == ["6", "5", "4", "3", "2", "1"]
    first = fhir.get(f"Patient/{pid}/_history?_count=2").json()
    entry = first["entry"][0]
    assert entry["request"] == {"method": "PUT", "url": f"Patient/{pid}"}
    assert entry["response"]["etag"] == 'W/"6"' and entry["response"]["status"].startswith("200")


def test_since_and_at(fhir, uid):
    pid = fhir.post("Patient", json=patient(uid)).json()["id"]
    time.sleep(0.05)
    v2 = fhir.put(f"Patient/{pid}", json=patient(uid, id=pid, gender="male")).json()
    since = v2["meta"]["lastUpdated"]
    time.sleep(0.05)
    fhir.put(f"Patient/{pid}", json=patient(uid, id=pid, gender="other"))
    page = fhir.get(f"Patient/{pid}/_history", params={"_since": since}).json()
    assert [e["resource"]["meta"]["versionId"] for e in page["entry"]] == ["3", "2"]
    at = fhir.get(f"Patient/{pid}/_history", params={"_at": since}).json()
    assert [e["resource"]["meta"]["versionId"] for e in at["entry"]] == ["2"]
    assert fhir.get(f"Patient/{pid}/_history", params={"_since": "not a date"}).status_code == 400


def test_type_and_system_history_include_deletes(fhir, uid):
    before = fhir.get("Patient?_count=1").json()  # any call, to have a clock reading from the server
    assert before["resourceType"] == "Bundle"
    pid = fhir.post("Patient", json=patient(uid)).json()["id"]
    since = fhir.get(f"Patient/{pid}").json()["meta"]["lastUpdated"]
    fhir.delete(f"Patient/{pid}")
    typed = fhir.get("Patient/_history", params={"_since": since, "_count": 100}).json()
    mine = [e for e in typed["entry"] if e["fullUrl"].endswith(f"/Patient/{pid}")]
    assert [e["request"]["method"] for e in mine] == ["DELETE", "POST"]
    system = fhir.get("_history", params={"_since": since, "_count": 100}).json()
    assert any(e["fullUrl"].endswith(f"/Patient/{pid}") and e["request"]["method"] == "DELETE" for e in system["entry"])
    assert fhir.get("Patient/never-was-here/_history").status_code == 404
