"""The write path through the Python API (FHIRService), on both backends."""
from __future__ import annotations

import asyncio

import pytest

from conftest import drop_database, new_database_url
from fhir_service.api.app import build_service
from fhir_service.config import Settings
from fhir_service.storage import WriteConflict


@pytest.fixture()
def service(backend, tmp_path):
    url = new_database_url(backend, tmp_path)
    svc = build_service(Settings(database=url))
    yield svc
    svc.repo.close()
    drop_database(url)


def _reply_lost_once(real):
    """The write is stored, but its caller is told of a conflict, once: as when a commit went
    through and the connection dropped before the reply, and the write was run again."""
    state = {"armed": True}

    def write(work):
        result = real(work)
        if state.pop("armed", False):
            raise WriteConflict("the reply was lost")
        return result
    return write


def _stored(service, family: str) -> list:
    rows = service.repo.query_once("SELECT res_id, content FROM resource WHERE res_type = 'Patient'")
    return [res_id for res_id, content in rows if f'"family":"{family}"' in content]


def test_a_create_whose_reply_was_lost_is_reported_stored_and_stored_once(service, monkeypatch):
    monkeypatch.setattr(service.repo, "run_write", _reply_lost_once(service.repo.run_write))
    result = service.create("Patient", {"resourceType": "Patient", "name": [{"family": "Lost"}]})
    assert result.status == 201
    assert _stored(service, "Lost") == [result.row.res_id]


def test_the_same_on_the_event_loop(service, monkeypatch):
    if "create" not in service.repo.loop_writes:
        pytest.skip("this backend takes no creates from the event loop")
    real = service.repo.run_write_async
    state = {"armed": True}

    async def write(work):
        result = await real(work)
        if state.pop("armed", False):
            raise WriteConflict("the reply was lost")
        return result
    monkeypatch.setattr(service.repo, "run_write_async", write)
    result = asyncio.run(service.create_async("Patient", {"resourceType": "Patient", "name": [{"family": "Looped"}]}))
    assert result.status == 201
    assert _stored(service, "Looped") == [result.row.res_id]
