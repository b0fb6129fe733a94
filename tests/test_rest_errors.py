"""Bad input gets a clear 4xx OperationOutcome, never a 500."""
from __future__ import annotations

import pytest


def assert_outcome(r, status: int, code: str | None = None):
    assert r.status_code == status, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    issue = body["issue"][0]
    assert issue["severity"] in ("error", "fatal")
    if code:
        assert issue["code"] == code, issue
    return body


def test_malformed_json(fhir):
    r = fhir.request("POST", "Patient", data=b'{"resourceType": "Patient",', headers={"Content-Type": "application/fhir+json"})
    assert_outcome(r, 400)


def test_resource_type_mismatch(fhir):
    r = fhir.post("Patient", json={"resourceType": "Observation"})
    body = assert_outcome(r, 400)
    assert body["issue"][0]["expression"] == ["resourceType"]


def test_unknown_type(fhir):
    assert_outcome(fhir.post("Spaceship", json={"resourceType": "Spaceship"}), 404)


def test_unsupported_content_type(fhir):
    r = fhir.request("POST", "Patient", data=b"<Patient/>", headers={"Content-Type": "application/fhir+xml"})
    assert_outcome(r, 415)
    r = fhir.request("POST", "Patient", data=b"x", headers={"Content-Type": "text/plain"})
    assert_outcome(r, 415)


def test_unsatisfiable_accept(fhir):
    assert_outcome(fhir.get("metadata", headers={"Accept": "application/fhir+xml"}), 406)
    assert_outcome(fhir.get("metadata?_format=xml"), 406)
    assert fhir.get("metadata", headers={"Accept": "application/json"}).status_code == 200
    assert fhir.get("metadata?_format=json", headers={"Accept": "application/fhir+xml"}).status_code == 200


def test_body_too_large(fhir):
    big = b'{"resourceType":"Patient","text":"' + b"x" * (17 * 1024 * 1024) + b'"}'
    r = fhir.request("POST", "Patient", data=big, headers={"Content-Type": "application/fhir+json"})
    assert_outcome(r, 413)


def test_json_nested_too_deep(fhir):
    deep = '{"resourceType":"Patient","extension":' + '[{"extension":' * 200 + "[]" + "}]" * 200 + "}"
    assert_outcome(fhir.request("POST", "Patient", data=deep.encode(), headers={"Content-Type": "application/fhir+json"}), 400)


def test_brackets_inside_strings_do_not_count_as_nesting(fhir):
    # Hundreds of brackets, all inside strings (one with an escaped quote): the body is shallow.
    noisy = '{[' * 300 + '\\" {{ [['
    body = '{"resourceType":"Basic","code":{"text":"' + noisy + '"},' \
           '"extension":[{"url":"http://example.org/x","valueString":"]]}}' + '[' * 100 + '"}]}'
    r = fhir.request("POST", "Basic", data=body.encode(), headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 201, r.text
    assert fhir.get(f"Basic/{r.json()['id']}").json()["code"]["text"] == '{[' * 300 + '" {{ [['


def test_half_a_surrogate_pair_is_refused_while_others_create(fhir, uid):
    # "\ud800" alone is not text any store can hold: refused as the body is read (a 400, never
    # a 500), while creates around it go on. (What a store does with such a row in a shared
    # batch: test_group_commit.py.)
    bad = '{"resourceType":"Patient","name":[{"family":"X\\ud800"}]}'.encode()

    def post(i: int):
        if i % 3 == 0:
            return fhir.request("POST", "Patient", data=bad, headers={"Content-Type": "application/fhir+json"})
        return fhir.post("Patient", json={"resourceType": "Patient", "identifier": [{"system": "urn:t", "value": f"{uid}-{i}"}]})
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(post, range(24)))
    for i, r in enumerate(responses):
        if i % 3 == 0:
            assert_outcome(r, 400)
        else:
            assert r.status_code == 201, r.text
            assert fhir.get(f"Patient/{r.json()['id']}").status_code == 200


def test_a_nul_character_is_refused(fhir, uid):
    # U+0000 is valid JSON but no PostgreSQL text can hold it: a 400 on every backend, not a 500.
    body = ('{"resourceType":"Patient","identifier":[{"system":"urn:t","value":"%s"}],'
            '"name":[{"family":"a\\u0000b"}]}' % uid).encode()
    assert_outcome(fhir.request("POST", "Patient", data=body, headers={"Content-Type": "application/fhir+json"}), 400)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {
        "resourceType": "Patient", "name": [{"family": "x\u0000"}]}, "request": {"method": "POST", "url": "Patient"}}]}
    assert_outcome(fhir.post("", json=bundle), 400)
    assert fhir.get(f"Patient?identifier=urn:t|{uid}").json()["total"] == 0


def test_invalid_resource_is_rejected_with_location(fhir):
    r = fhir.post("Patient", json={"resourceType": "Patient", "active": "true"})
    body = assert_outcome(r, 422)
    assert any("Patient.active" in e for i in body["issue"] for e in i.get("expression", []))
    r = fhir.post("Patient", json={"resourceType": "Patient", "nickname": "Al"})
    body = assert_outcome(r, 422)
    assert any("nickname" in e or "nickname" in i["details"]["text"] for i in body["issue"]
               for e in i.get("expression", []))


def test_method_not_allowed(fhir):
    assert fhir.request("DELETE", "metadata").status_code == 405


@pytest.mark.parametrize("path,method,body", [
    ("Patient", "POST", b"null"),
    ("Patient", "POST", b"[]"),
    ("Patient", "POST", b'"text"'),
    ("Patient", "POST", b'{"resourceType": 12}'),
    ("Patient", "POST", b'{"resourceType":"Patient","name":[{}]}'),
    ("Patient", "POST", b'{"resourceType":"Patient","name":null}'),
    ("Patient", "POST", b'{"resourceType":"Patient","birthDate":"31/12/2000"}'),
    ("Patient", "POST", b'{"resourceType":"Patient","meta":"x"}'),
    ("Patient/x", "PUT", b'{"resourceType":"Patient","id":{"a":1}}'),
    ("", "POST", b'{"resourceType":"Bundle","type":"transaction","entry":[{}]}'),
    ("", "POST", b'{"resourceType":"Bundle","type":"transaction","entry":"x"}'),
    ("", "POST", b'{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"PUT","url":"Patient"}}]}'),
    ("", "POST", b'{"resourceType":"Bundle","type":"collection"}'),
    ("Patient/x", "PUT", b'{"resourceType":"Patient","id":"x","gender":5}'),
    ("Patient/x", "PATCH", b'[{"op":"nonsense"}]'),
    ("Patient?identifier=a", "PUT", b'{"resourceType":"Observation"}'),
    ("Patient/x/$validate", "POST", b'{"resourceType":"Parameters","parameter":[{"name":"mode","valueCode":"bad"}]}'),
    ("Patient?_lastUpdated=notadate", "GET", b""),
    ("Patient/x/_history/abc", "GET", b""),
    ("_history?_since=yesterday", "GET", b""),
    ("Patient?_count=-1", "GET", b""),
])
def test_garbage_never_causes_500(fhir, path, method, body):
    ctype = "application/json-patch+json" if method == "PATCH" else "application/fhir+json"
    r = fhir.request(method, path, data=body or None, headers={"Content-Type": ctype})
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert r.json()["resourceType"] == "OperationOutcome"


def test_paths_outside_the_fhir_base_get_an_outcome(fhir):
    outside = fhir.base.rsplit("/fhir", 1)[0] + "/elsewhere"
    assert_outcome(fhir.get(outside), 404, "not-found")
    assert_outcome(fhir.get(fhir.base + "x/metadata"), 404, "not-found")  # /fhirx is not the base
