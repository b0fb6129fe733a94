"""Search at the Python level (no HTTP), on SQLite and PostgreSQL: every parameter type,
modifier, prefix and result control against a small crafted data set.

The HTTP-level tests are in test_search_http.py; these are quick and exhaustive."""
from __future__ import annotations

import uuid
from urllib.parse import parse_qsl, urlsplit

import pytest

from conftest import ROOT, drop_database, new_database_url, require_conformance
from fhir_service import jsonutil
from fhir_service.definitions.registry import get_definitions
from fhir_service.outcome import FHIRError
from fhir_service.search import SPECIAL_SUPPORT, capability_search_params, index_resource, match, page, reindex, search
from fhir_service.search import normalize as N
from fhir_service.storage import Row, open_repository

BASE = "http://test/fhir"
UCUM = "http://unitsofmeasure.org"
CLIN = "http://terminology.hl7.org/CodeSystem/condition-clinical"

RESOURCES = [
    {"resourceType": "Patient", "id": "p1", "active": True, "gender": "male", "birthDate": "1974-12-25",
     "identifier": [{"system": "urn:sys", "value": "123"}, {"system": "urn:a|b", "value": "x,y"}],
     "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
     "telecom": [{"system": "email", "value": "peter@example.org"}],
     "address": [{"city": "Edinburgh", "postalCode": "EH1 1AA"}],
     "managingOrganization": {"reference": "Organization/o1"}},
    {"resourceType": "Patient", "id": "p2", "active": False, "gender": "female", "birthDate": "1980",
     "name": [{"family": "Müller", "given": ["Zoë"]}], "generalPractitioner": [{"reference": "Practitioner/gp"}],
     "managingOrganization": {"reference": "Organization/o2"}},
    {"resourceType": "Patient", "id": "p3", "gender": "other", "name": [{"family": "Chalmerson"}],
     "deceasedDateTime": "2020-01-01"},
    {"resourceType": "Organization", "id": "o1", "name": "Leith Practice",
     "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "S1"}]},
    {"resourceType": "Organization", "id": "o2", "name": "Other Practice"},
    {"resourceType": "Practitioner", "id": "gp", "name": [{"family": "Who"}]},
    {"resourceType": "Observation", "id": "o-weight", "status": "final", "subject": {"reference": "Patient/p1"},
     "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body Weight"}],
              "text": "Weight"},
     "effectiveDateTime": "2013-01-14T10:00:00Z",
     "valueQuantity": {"value": 185, "unit": "lbs", "system": UCUM, "code": "[lb_av]"}},
    {"resourceType": "Observation", "id": "o-weight2", "status": "amended", "subject": {"reference": "Patient/p2"},
     "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
     "effectivePeriod": {"start": "2013-01-01", "end": "2013-01-31"},
     "valueQuantity": {"value": 70.0, "unit": "kg", "system": UCUM, "code": "kg"}},
    {"resourceType": "Observation", "id": "o-bp", "status": "final", "subject": {"reference": "Patient/p1"},
     "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
     "effectiveDateTime": "2014-06-01T08:00:00+02:00",
     "component": [
         {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
          "valueQuantity": {"value": 120, "system": UCUM, "code": "mm[Hg]"}},
         {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
          "valueQuantity": {"value": 80, "system": UCUM, "code": "mm[Hg]"}}]},
    {"resourceType": "RiskAssessment", "id": "ra", "status": "final", "subject": {"reference": "Patient/p1"},
     "prediction": [{"probabilityDecimal": 0.4}]},
    {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
     "clinicalStatus": {"coding": [{"system": CLIN, "code": "relapse"}]},
     "code": {"coding": [{"system": "http://snomed.info/sct", "code": "195967001"}]}},
    {"resourceType": "Condition", "id": "c2", "subject": {"reference": "Patient/p2"},
     "clinicalStatus": {"coding": [{"system": CLIN, "code": "resolved"}]}},
    {"resourceType": "CarePlan", "id": "cp1", "status": "active", "intent": "plan",
     "subject": {"reference": "Patient/p1"}, "goal": [{"reference": "Goal/g1"}],
     "instantiatesCanonical": ["https://fhir.imp2art.org/PlanDefinition/saba|1.0.0"],
     "instantiatesUri": ["http://acme.org/fhir/plans/asthma"]},
    {"resourceType": "CarePlan", "id": "cp0", "status": "revoked", "intent": "plan",
     "subject": {"reference": "Patient/p1"}},
    {"resourceType": "Goal", "id": "g1", "lifecycleStatus": "active", "subject": {"reference": "Patient/p1"},
     "description": {"text": "PEF above 80%"}},
    {"resourceType": "Provenance", "id": "prov", "target": [{"reference": "CarePlan/cp1"}],
     "recorded": "2020-01-01T00:00:00Z", "agent": [{"who": {"reference": "Practitioner/gp"}}]},
    {"resourceType": "List", "id": "l1", "status": "current", "mode": "working",
     "entry": [{"item": {"reference": "Patient/p2"}}, {"item": {"reference": "Patient/p3"}}]},
]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def repo(request, tmp_path_factory):
    url = new_database_url(request.param, tmp_path_factory.mktemp("search"))
    repository = open_repository(url)
    repository.create_schema()
    defs = get_definitions()
    with repository.transaction(write=True) as s:
        for i, res in enumerate(RESOURCES):
            stamp = f"2024-01-0{1 + i % 9}T00:00:00.000Z"
            res = dict(res, meta={"versionId": "1", "lastUpdated": stamp})
            s.write(Row(res["resourceType"], res["id"], 1, stamp, False, jsonutil.dumps(res), "PUT"),
                    index_resource(defs, res))
    yield repository
    repository.close()
    drop_database(url)


def run(repo, rtype, query, strict=True, compartment=None):
    with repo.transaction(write=True) as s:
        return search(s, get_definitions(), resource_type=rtype, params=parse_qsl(query, keep_blank_values=True),
                      base_url=BASE, strict=strict, compartment=compartment)


def ids(repo, rtype, query, **kw):
    b = run(repo, rtype, query, **kw)
    return sorted(e["resource"]["id"] for e in b.get("entry", []) if e["search"]["mode"] == "match")


def bad(repo, rtype, query, status=400):
    with pytest.raises(FHIRError) as exc:
        run(repo, rtype, query)
    assert exc.value.status == status
    return exc.value


# -- normalisation -------------------------------------------------------------------------------

def test_normalise_strings_and_ranges():
    assert N.norm_string("  Müller  Zoë ") == "muller zoe"
    assert N.date_range("2013") == (N.date_range("2013-01-01")[0], N.date_range("2013-12-31")[1])
    lo, hi = N.date_range("2013-01-14T10:00:00+01:00")
    assert lo == N.date_range("2013-01-14T09:00:00Z")[0] and hi - lo == 999
    assert N.number_range("100") == (100.0, 99.5, 100.5)
    assert N.number_range("1.50") == (1.5, 1.495, 1.505)
    assert N.ucum_canonical("mg") == ("g", pytest.approx(1e-3))
    assert N.ucum_canonical("L/min")[0] == "m3/s"
    with pytest.raises(N.BadValue):
        N.date_range("2013-13")


# -- each parameter type ------------------------------------------------------------------------

def test_string(repo):
    assert ids(repo, "Patient", "family=chalmers") == ["p1", "p3"]  # prefix, case-insensitive
    assert ids(repo, "Patient", "family=muller") == ["p2"]  # accent-insensitive
    assert ids(repo, "Patient", "name=zoe") == ["p2"]  # every name part
    assert ids(repo, "Patient", "family:exact=Chalmers") == ["p1"]
    assert ids(repo, "Patient", "family:exact=chalmers") == []
    assert ids(repo, "Patient", "family:contains=alm") == ["p1", "p3"]
    assert ids(repo, "Patient", "address-city=EDIN") == ["p1"]
    assert ids(repo, "Patient", "family=zzz,chalmerson") == ["p3"]  # OR
    assert ids(repo, "Patient", "family=chalmers&given=peter") == ["p1"]  # AND


def test_token(repo):
    assert ids(repo, "Patient", "identifier=urn:sys|123") == ["p1"]
    assert ids(repo, "Patient", "identifier=123") == ["p1"]
    assert ids(repo, "Patient", "identifier=urn:sys|") == ["p1"]
    assert ids(repo, "Patient", "identifier=urn:other|123") == []
    assert ids(repo, "Patient", r"identifier=urn:a\|b|x\,y") == ["p1"]  # escaping
    assert ids(repo, "Patient", "gender=male,other") == ["p1", "p3"]
    assert ids(repo, "Patient", "gender:not=male") == ["p2", "p3"]
    assert ids(repo, "Patient", "active=true") == ["p1"]
    assert ids(repo, "Patient", "deceased=true") == ["p3"]
    assert ids(repo, "Patient", "email=peter@example.org") == ["p1"]
    assert ids(repo, "Observation", "code=http://loinc.org|29463-7") == ["o-weight", "o-weight2"]
    assert ids(repo, "Observation", "code:text=weight") == ["o-weight"]
    assert ids(repo, "Observation", "code:text=body wei") == ["o-weight"]
    assert ids(repo, "Observation", "code=|29463-7") == []  # explicitly no system


def test_token_terminology_modifiers(repo):
    assert ids(repo, "Condition", f"clinical-status:below={CLIN}|active") == ["c1"]
    assert ids(repo, "Condition", f"clinical-status:below={CLIN}|inactive") == ["c2"]
    assert ids(repo, "Condition", f"clinical-status:above={CLIN}|relapse") == ["c1"]
    assert ids(repo, "Observation", "status:in=http://hl7.org/fhir/ValueSet/observation-status") == \
        ["o-bp", "o-weight", "o-weight2"]
    assert ids(repo, "Observation", "status:not-in=http://hl7.org/fhir/ValueSet/observation-status") == []
    bad(repo, "Observation", "status:in=http://unknown/vs")


def test_reference(repo):
    assert ids(repo, "Observation", "subject=Patient/p1") == ["o-bp", "o-weight"]
    assert ids(repo, "Observation", "subject=p1") == ["o-bp", "o-weight"]
    assert ids(repo, "Observation", "subject:Patient=p1") == ["o-bp", "o-weight"]
    assert ids(repo, "Observation", "patient=p2") == ["o-weight2"]
    assert ids(repo, "Observation", f"subject={BASE}/Patient/p1") == ["o-bp", "o-weight"]  # own base = relative
    assert ids(repo, "CarePlan", "instantiates-canonical=https://fhir.imp2art.org/PlanDefinition/saba") == ["cp1"]
    assert ids(repo, "CarePlan", "instantiates-canonical=https://fhir.imp2art.org/PlanDefinition/saba|1.0.0") == ["cp1"]
    assert ids(repo, "CarePlan", "instantiates-canonical=https://fhir.imp2art.org/PlanDefinition/saba|2") == []
    bad(repo, "Observation", "subject=Nonsense/1")


def test_date_prefixes(repo):
    q = lambda v: ids(repo, "Observation", f"date={v}")  # noqa: E731
    assert q("2013-01-14") == ["o-weight", ]
    assert q("2013-01") == ["o-weight", "o-weight2"]  # the search range contains the period
    assert q("2013") == ["o-weight", "o-weight2"]
    assert q("ne2013-01") == ["o-bp"]
    assert q("gt2013-01-20") == ["o-bp", "o-weight2"]  # the period extends beyond
    assert q("lt2013-01-10") == ["o-weight2"]  # the period starts before
    assert q("ge2014-06-01") == ["o-bp"]
    assert q("le2013-01-14") == ["o-weight", "o-weight2"]
    assert q("sa2013-01-31") == ["o-bp"]
    assert q("eb2013-02") == ["o-weight", "o-weight2"]
    assert q("ap2014-06-01") == ["o-bp"]
    assert q("2014-06-01T06:00:00Z") == ["o-bp"]  # +02:00 stored, compared in UTC
    assert q("2014-06-01T06:00Z") == ["o-bp"]  # minute precision
    assert ids(repo, "Patient", "birthdate=1980-05-05") == []
    assert ids(repo, "Patient", "birthdate=1980") == ["p2"]
    assert ids(repo, "Patient", "birthdate=ge1975&birthdate=lt1981") == ["p2"]
    err = bad(repo, "Observation", "date=2013-02-30")
    assert err.issues[0].expression == ["date"]
    bad(repo, "Observation", "date=xx2013")


def test_number_and_quantity(repo):
    assert ids(repo, "RiskAssessment", "probability=0.4") == ["ra"]
    assert ids(repo, "RiskAssessment", "probability=0.40") == ["ra"]
    assert ids(repo, "RiskAssessment", "probability=gt0.3") == ["ra"]
    assert ids(repo, "RiskAssessment", "probability=lt0.3") == []
    assert ids(repo, "RiskAssessment", "probability=ap0.42") == ["ra"]
    assert ids(repo, "RiskAssessment", "probability=ne0.4") == []
    q = lambda v: ids(repo, "Observation", f"value-quantity={v}")  # noqa: E731
    assert q("185") == ["o-weight"]
    assert q("185|http://unitsofmeasure.org|[lb_av]") == ["o-weight"]
    assert q("gt80|http://unitsofmeasure.org|kg") == ["o-weight"]  # 185 lb = 83.9 kg (UCUM canonical)
    assert q("70000|http://unitsofmeasure.org|g") == ["o-weight2"]
    assert q("le70||kg") == ["o-weight2"]
    assert q("ap190") == ["o-weight"]
    assert q("eb100") == ["o-weight2"]
    bad(repo, "Observation", "value-quantity=abc")
    bad(repo, "Observation", "value-quantity=1|2")


def test_uri(repo):
    assert ids(repo, "CarePlan", "instantiates-uri=http://acme.org/fhir/plans/asthma") == ["cp1"]
    assert ids(repo, "CarePlan", "instantiates-uri:below=http://acme.org/fhir/") == ["cp1"]
    assert ids(repo, "CarePlan", "instantiates-uri:above=http://acme.org/fhir/plans/asthma/v2") == ["cp1"]
    assert ids(repo, "CarePlan", "instantiates-uri=http://acme.org/fhir") == []


def test_composite(repo):
    assert ids(repo, "Observation", "code-value-quantity=http://loinc.org|29463-7$gt180") == ["o-weight"]
    assert ids(repo, "Observation", "component-code-value-quantity=http://loinc.org|8480-6$gt100") == ["o-bp"]
    # components must come from the same component: systolic 80 does not exist
    assert ids(repo, "Observation", "component-code-value-quantity=http://loinc.org|8480-6$80") == []
    bad(repo, "Observation", "code-value-quantity=29463-7")


def test_missing(repo):
    assert ids(repo, "Patient", "birthdate:missing=true") == ["p3"]
    assert ids(repo, "Patient", "birthdate:missing=false") == ["p1", "p2"]
    assert ids(repo, "Patient", "organization:missing=true") == ["p3"]
    bad(repo, "Patient", "birthdate:missing=maybe")


def test_special_parameters(repo):
    assert ids(repo, "Patient", "_id=p1,p3") == ["p1", "p3"]
    assert ids(repo, "Patient", "_lastUpdated=2024-01-02") == ["p2"]
    assert ids(repo, "Patient", "_lastUpdated=gt2024-01-02") == ["p3"]
    assert ids(repo, "Patient", "_list=l1") == ["p2", "p3"]
    assert ids(repo, "Patient", "_content=edinburgh") == ["p1"]
    assert SPECIAL_SUPPORT["_content"] and not SPECIAL_SUPPORT["_filter"]


# -- chains, _has, compartments, system search --------------------------------------------------

def test_chains(repo):
    assert ids(repo, "Observation", "subject:Patient.name=chalmers") == ["o-bp", "o-weight"]
    assert ids(repo, "Observation", "patient.identifier=urn:sys|123") == ["o-bp", "o-weight"]
    assert ids(repo, "Observation",
               "subject:Patient.organization.identifier=https://fhir.nhs.uk/Id/ods-organization-code|S1") == \
        ["o-bp", "o-weight"]
    assert ids(repo, "Observation", "subject:Patient.organization.name=other") == ["o-weight2"]
    bad(repo, "Observation", "subject:Patient.nonsense=1")
    bad(repo, "Observation", "status.name=x")


def test_has(repo):
    assert ids(repo, "Patient", "_has:Observation:patient:code=29463-7") == ["p1", "p2"]
    assert ids(repo, "Patient", "_has:Observation:patient:code=85354-9") == ["p1"]
    assert ids(repo, "Patient", "_has:CarePlan:subject:_has:Provenance:target:agent=Practitioner/gp") == ["p1"]
    assert ids(repo, "Patient", "gender=female&_has:Observation:patient:code=29463-7") == ["p2"]
    bad(repo, "Patient", "_has:Observation:nonsense:code=1")
    bad(repo, "Patient", "_has:Observation=1")


def test_compartment(repo):
    assert ids(repo, "Observation", "", compartment=("Patient", "p1")) == ["o-bp", "o-weight"]
    assert ids(repo, "CarePlan", "status=active", compartment=("Patient", "p1")) == ["cp1"]
    b = run(repo, None, "", compartment=("Patient", "p1"))
    found = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in b["entry"]}
    assert {("Patient", "p1"), ("Observation", "o-bp"), ("Goal", "g1"), ("Condition", "c1")} <= found
    assert ("Patient", "p2") not in found
    assert ids(repo, "Organization", "", compartment=("Patient", "p1")) == []


def test_system_search(repo):
    b = run(repo, None, "_type=Patient,Practitioner&name=who,zoe")
    assert sorted(e["resource"]["id"] for e in b["entry"]) == ["gp", "p2"]
    assert ids(repo, None, "_id=gp") == ["gp"]
    bad(repo, None, "_type=Nonsense")


# -- result controls ----------------------------------------------------------------------------

def test_sort_count_total(repo):
    b = run(repo, "Observation", "_sort=-date")
    assert [e["resource"]["id"] for e in b["entry"]] == ["o-bp", "o-weight2", "o-weight"]
    b = run(repo, "Observation", "_sort=date")
    assert [e["resource"]["id"] for e in b["entry"]] == ["o-weight2", "o-weight", "o-bp"]
    b = run(repo, "Patient", "_sort=family,-birthdate")
    assert [e["resource"]["id"] for e in b["entry"]] == ["p1", "p3", "p2"]
    b = run(repo, "Patient", "_sort=-birthdate")  # missing values last, tie broken by id
    assert [e["resource"]["id"] for e in b["entry"]] == ["p2", "p1", "p3"]
    b = run(repo, "Patient", "_sort=_id&_count=2&_total=accurate")
    assert b["total"] == 3 and len(b["entry"]) == 2
    assert "total" not in run(repo, "Patient", "_total=none")
    b = run(repo, "Patient", "_summary=count")
    assert b["total"] == 3 and "entry" not in b
    assert run(repo, "Patient", "_count=0")["total"] == 3
    bad(repo, "Patient", "_count=x")
    bad(repo, "Patient", "_total=maybe")
    bad(repo, "Patient", "_summary=maybe")
    bad(repo, "Patient", "_sort=nonsense")


def test_summary_and_elements(repo):
    res = run(repo, "Patient", "_id=p1&_summary=true")["entry"][0]["resource"]
    assert "name" in res and "telecom" in res and "text" not in res
    assert any(t["code"] == "SUBSETTED" for t in res["meta"]["tag"])
    res = run(repo, "Patient", "_id=p1&_elements=gender")["entry"][0]["resource"]
    assert set(res) == {"resourceType", "id", "meta", "gender"}
    assert any(t["code"] == "SUBSETTED" for t in res["meta"]["tag"])
    res = run(repo, "Observation", "_id=o-weight&_elements=Observation.value[x]")["entry"][0]["resource"]
    assert "valueQuantity" in res and "code" in res  # code is mandatory
    res = run(repo, "Patient", "_id=p1&_summary=data")["entry"][0]["resource"]
    assert "name" in res and "text" not in res


def test_include_revinclude(repo):
    b = run(repo, "Observation", "code=85354-9&_include=Observation:subject")
    modes = sorted((e["search"]["mode"], e["resource"]["id"]) for e in b["entry"])
    assert modes == [("include", "p1"), ("match", "o-bp")]
    assert b["total"] == 1
    b = run(repo, "Observation", "subject=p1&_include=Observation:subject")
    assert [e["resource"]["id"] for e in b["entry"]].count("p1") == 1  # each included once
    b = run(repo, "Patient", "_id=p1&_revinclude=CarePlan:subject&_revinclude:iterate=Provenance:target")
    assert sorted(e["resource"]["id"] for e in b["entry"] if e["search"]["mode"] == "include") == \
        ["cp0", "cp1", "prov"]
    b = run(repo, "CarePlan", "_id=cp1&_include=*")
    assert sorted(e["resource"]["id"] for e in b["entry"]) == ["cp1", "g1", "p1"]
    b = run(repo, "CarePlan", "_id=cp1&_include=CarePlan:subject&_include:iterate=Patient:organization")
    assert sorted(e["resource"]["id"] for e in b["entry"]) == ["cp1", "o1", "p1"]
    b = run(repo, "CarePlan", "_id=cp1&_include=CarePlan:subject:Group")
    assert [e["resource"]["id"] for e in b["entry"]] == ["cp1"]


def test_lenient_and_strict(repo):
    b = run(repo, "Patient", "nonsense=1&family=chalmers", strict=False)
    assert sorted(e["resource"]["id"] for e in b["entry"] if e["search"]["mode"] == "match") == ["p1", "p3"]
    outcome = [e for e in b["entry"] if e["search"]["mode"] == "outcome"]
    assert len(outcome) == 1 and "nonsense" in outcome[0]["resource"]["issue"][0]["details"]["text"]
    self_link = next(link["url"] for link in b["link"] if link["relation"] == "self")
    assert "nonsense" not in self_link and "family=chalmers" in self_link
    err = bad(repo, "Patient", "nonsense=1")
    assert err.issues[0].expression == ["nonsense"]
    bad(repo, "Patient", "family:fuzzy=x")  # unknown modifier: always an error
    bad(repo, "Patient", "birthdate=notadate")  # invalid value: always an error


def test_paging_is_a_stable_snapshot(repo):
    defs = get_definitions()
    b = run(repo, "Patient", "_count=1&_sort=_id")
    assert [e["resource"]["id"] for e in b["entry"]] == ["p1"]
    nxt = next(link["url"] for link in b["link"] if link["relation"] == "next")
    # A write after the search: the snapshot still gives the versions it saw, every match once.
    with repo.transaction(write=True) as s:
        new = {"resourceType": "Patient", "id": "p0", "meta": {"versionId": "1"}}
        s.write(Row("Patient", "p0", 1, "2024-02-01T00:00:00.000Z", False, jsonutil.dumps(new), "PUT"),
                index_resource(defs, new))
    seen = ["p1"]
    while nxt:
        with repo.transaction(write=True) as s:
            b = page(s, defs, parse_qsl(urlsplit(nxt).query), BASE)
        seen += [e["resource"]["id"] for e in b["entry"]]
        nxt = next((link["url"] for link in b["link"] if link["relation"] == "next"), None)
        assert any(link["relation"] == "previous" for link in b["link"])
    assert seen == ["p1", "p2", "p3"]
    with repo.transaction(write=True) as s:
        s.write(Row("Patient", "p0", 2, "2024-02-01T00:00:01.000Z", True, None, "DELETE"), None)
    with repo.transaction() as s:
        with pytest.raises(FHIRError) as exc:
            page(s, defs, [("_getpages", "nonexistent"), ("_offset", "0")], BASE)
    assert exc.value.status == 410


def test_match_for_conditional_operations(repo):
    with repo.transaction() as s:
        defs = get_definitions()
        assert match(s, defs, "Patient", "identifier=urn:sys|123") == [("Patient", "p1")]
        assert sorted(match(s, defs, "Patient", "family=chalmers")) == [("Patient", "p1"), ("Patient", "p3")]
        assert match(s, defs, "Patient", "identifier=urn:sys|999") == []
        for q in ("nonsense=1", "birthdate=bad", ""):
            with pytest.raises(FHIRError) as exc:
                match(s, defs, "Patient", q)
            assert exc.value.status == 400


def test_capability_and_reindex(repo):
    defs = get_definitions()
    params = {p["name"]: p for p in capability_search_params(defs, "Observation")}
    assert params["code"]["type"] == "token" and params["code"]["definition"].startswith("http://hl7.org/fhir/")
    assert "_filter" not in params and "_text" not in params
    assert {p["name"] for p in capability_search_params(defs, None)} >= {"_id", "_lastUpdated", "_tag"}
    # A SearchParameter added at runtime is indexed after $reindex.
    sp = {"resourceType": "SearchParameter", "id": f"goal-desc-{uuid.uuid4().hex[:6]}", "status": "active",
          "url": f"http://test/SearchParameter/goal-desc-{uuid.uuid4().hex[:6]}", "name": "description",
          "code": "description-text", "base": ["Goal"], "type": "string", "expression": "Goal.description.text"}
    defs.add(sp)
    progress = []
    assert reindex(repo, defs, progress=lambda done, total: progress.append((done, total))) >= len(RESOURCES) - 1
    assert progress and progress[-1][0] == progress[-1][1]
    assert ids(repo, "Goal", "description-text=pef") == ["g1"]


def test_skipping_parameters_whose_elements_are_absent_changes_no_index_row(monkeypatch):
    # The indexer skips a parameter when the resource has none of the top-level elements its
    # expression starts from (search/paths.root_keys). Over every official R4 example and our
    # own, that must give exactly the rows that walking every expression gives.
    import dataclasses

    from fhir_service.search import indexer
    files = sorted(require_conformance("r4-examples").glob("*.json")) + sorted((ROOT / "examples").rglob("*.json"))
    defs = get_definitions()
    # (else the comparison below would hold trivially: nothing skipped)
    assert sum(p.keys is not None for p in indexer.plans(defs, "Patient")) > 20
    resources = []
    for f in files:
        doc = jsonutil.loads(f.read_bytes())
        resources.append(doc)
        if doc.get("resourceType") == "Bundle":
            resources += [e["resource"] for e in doc.get("entry", []) if isinstance(e.get("resource"), dict)]
    skipping = [index_resource(defs, r) for r in resources]
    every_plan = indexer.plans
    monkeypatch.setattr(indexer, "plans", lambda d, rt: [dataclasses.replace(p, keys=None) for p in every_plan(d, rt)])
    walking = [index_resource(defs, r) for r in resources]
    assert len(resources) > 400
    assert sum(1 for rows in skipping if rows) > 400  # (it did index them)
    assert skipping == walking
