"""Shared by the SDC and asthma tests (there are no tests in this module).

- ``practice``: one server per storage backend with the example practice (examples/) loaded,
  shared by every module that imports it;
- :class:`ReviewForm`: completes the asthma review the way a clinician's system would:
  $populate, answer the rest, work out the calculated items, hide disabled items.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import FHIRClient, Server, drop_database, new_database_url
from fhir_service import jsonutil
from fhir_service.sdc.calculate import prune_disabled, recalculate
from fhir_service.sdc.expressions import Scope, bind_variables
from fhir_service.sdc.response import set_answers, set_repeats

ROOT = Path(__file__).resolve().parent.parent
REVIEW = "https://fhir.imp2art.org/Questionnaire/asthma-review"
CLINICIAN = "Practitioner/morag-fraser"
_SERVERS: dict[str, FHIRClient] = {}


@pytest.fixture(scope="session")
def practice(backend, tmp_path_factory, request) -> FHIRClient:
    """A server holding the example practice (loaded once per backend)."""
    if backend not in _SERVERS:
        url = new_database_url(backend, tmp_path_factory.mktemp(f"sdc-{backend}"))
        server = Server(url)
        client = FHIRClient(server.base)
        for path in sorted((ROOT / "examples").glob("*.json")):
            r = client.post("", json=jsonutil.loads(path.read_bytes()))
            assert r.status_code == 200, f"{path.name}: {r.text[:3000]}"

        def stop() -> None:
            server.stop()
            drop_database(url)
            _SERVERS.pop(backend, None)
        request.addfinalizer(stop)
        _SERVERS[backend] = client
    return _SERVERS[backend]


def parameters(**named) -> dict:
    """A Parameters resource: resources go in ``resource``, other values in the given value[x]."""
    out = []
    for name, value in named.items():
        if isinstance(value, dict) and "resourceType" in value:
            out.append({"name": name, "resource": value})
        elif isinstance(value, dict):
            out.append({"name": name, **value})
        elif isinstance(value, list):
            out.extend({"name": name, **v} for v in value)
        else:
            out.append({"name": name, "valueString": value})
    return {"resourceType": "Parameters", "parameter": out}


def out_param(body: dict, name: str):
    assert body.get("resourceType") == "Parameters", body
    return next((p.get("resource") for p in body.get("parameter", []) if p["name"] == name), None)


def json_of(response) -> dict:
    return jsonutil.loads(response.content)


class HTTPSearch:
    """What a form filler runs a Questionnaire's x-fhir-query variables with: the server's search."""

    def __init__(self, client: FHIRClient):
        self.client = client

    def search(self, resource_type: str, params: list, base_url: str) -> dict:
        r = self.client.get(resource_type, params=params)
        assert r.status_code == 200, r.text
        return json_of(r)


class ReviewForm:
    """The assembled asthma review and what a form filler does with it."""

    def __init__(self, client: FHIRClient):
        self.client = client
        found = json_of(client.get(f"Questionnaire?url={REVIEW}"))
        self.root = found["entry"][0]["resource"]
        r = client.post(f"Questionnaire/{self.root['id']}/$assemble")
        assert r.status_code == 200, r.text
        self.questionnaire = out_param(json_of(r), "return")
        self.scope = Scope(questionnaire=self.questionnaire)

    def populate(self, patient: str, user: str = CLINICIAN) -> tuple[dict, dict | None]:
        context = {"part": [{"name": "name", "valueString": "user"}, {"name": "content", "valueReference": {"reference": user}}]}
        r = self.client.post("Questionnaire/$populate", json=parameters(
            canonical={"valueCanonical": f"{REVIEW}|{self.root['version']}"},
            subject={"valueReference": {"reference": patient}}, context=context))
        assert r.status_code == 200, r.text
        body = json_of(r)
        return out_param(body, "response"), out_param(body, "issues")

    def variables(self, response: dict) -> Scope:
        """The form's variables (x-fhir-query against the server) for the response's patient."""
        patient = json_of(self.client.get(response["subject"]["reference"]))
        failed = []
        scope = bind_variables(self.questionnaire, response,
                               self.scope.bind(patient=[patient], questionnaire=self.questionnaire, resource=response),
                               HTTPSearch(self.client), self.client.base, on_error=lambda exc, name: failed.append(name))
        assert not failed, failed
        return scope

    def complete(self, response: dict, answers: dict[str, list], medicines: list[dict] | None = None) -> dict:
        for link_id, values in answers.items():
            set_answers(self.questionnaire, response, link_id, values)
        if medicines is not None:
            set_repeats(self.questionnaire, response, "plan-medicines", medicines)
        scope = self.variables(response)
        assert recalculate(self.questionnaire, response, scope) == []
        prune_disabled(self.questionnaire, response, scope)
        response["status"] = "completed"
        return response
