"""The write path, and reads awaited on the event loop, through the Python API (FHIRService),
on both backends."""
from __future__ import annotations

import asyncio
import json
import os
import uuid

import pytest

from conftest import drop_database, new_database_url, patient_profile
from fhir_service.api.app import build_service
from fhir_service.config import Settings
from fhir_service.outcome import FHIRError
from fhir_service.storage import WriteConflict


@pytest.fixture()
def service(backend, tmp_path):
    url = new_database_url(backend, tmp_path)
    svc = build_service(Settings(database=url))
    yield svc
    svc.repo.close()
    drop_database(url)


def _run(coro):
    """asyncio.run, with a time limit: a read or write never answered fails the test, not CI."""
    return asyncio.run(asyncio.wait_for(coro, 30))


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


def _reply_lost_once_async(real):
    """_reply_lost_once, for run_write_async."""
    state = {"armed": True}

    async def write(work):
        result = await real(work)
        if state.pop("armed", False):
            raise WriteConflict("the reply was lost")
        return result
    return write


def test_a_create_on_the_event_loop_whose_reply_was_lost_is_reported_stored(service, monkeypatch):
    if "create" not in service.repo.loop_writes:
        pytest.skip("this backend takes no creates from the event loop")
    monkeypatch.setattr(service.repo, "run_write_async", _reply_lost_once_async(service.repo.run_write_async))
    result = _run(service.create_async("Patient", {"resourceType": "Patient", "name": [{"family": "Looped"}]}))
    assert result.status == 201
    assert _stored(service, "Looped") == [result.row.res_id]


def _patient(family: str, **extra) -> dict:
    return dict({"resourceType": "Patient", "name": [{"family": family}]}, **extra)


def _read_all(service, keys):
    """service.read_async of every (type, id) at once, on one event loop: the row, or the HTTP
    status of the error raised."""
    async def main():
        return await asyncio.gather(*(service.read_async(t, i) for t, i in keys), return_exceptions=True)
    return [r.status if isinstance(r, FHIRError) else r for r in _run(main())]


def test_reads_awaited_together_each_get_their_own_answer(service):
    # Reads that wait at the same time may be fetched together (PostgreSQL: one statement for
    # the lot); each must still get its own resource, a 404 or a 410.
    ids = [service.create("Patient", _patient(f"Reader{i}")).row.res_id for i in range(30)]
    gone = ids.pop()
    service.delete("Patient", gone)
    keys = [("Patient", ids[i % len(ids)]) for i in range(150)] + [("Patient", gone), ("Patient", "no-such-id"),
                                                                   ("Observation", ids[0])]
    answers = _read_all(service, keys)
    for (_, rid), row in zip(keys[:150], answers):
        assert row.res_id == rid and row.version == 1, (rid, row)
        assert f'"id":"{rid}"' in row.content
    assert answers[150:] == [410, 404, 404]


def test_a_read_sees_the_write_acknowledged_before_it(service):
    async def main():
        seen = []
        for i in range(20):
            created = await service.create_async("Patient", _patient(f"Fresh{i}"))
            seen.append((await service.read_async("Patient", created.row.res_id)).content == created.row.content)
        return seen
    assert _run(main()) == [True] * 20


def test_a_read_after_its_connection_broke_is_answered(service, backend):
    if backend != "postgres":
        pytest.skip("only PostgreSQL reads by id over a connection of their own")
    rid = service.create("Patient", _patient("Broken")).row.res_id
    assert _read_all(service, [("Patient", rid)])[0].res_id == rid
    # The reader's connection is dropped by the server (a restart, an idle timeout, a DBA).
    reader_pid = service.repo._own_conns["reader"].info.backend_pid
    service.repo.query_once("SELECT pg_terminate_backend(?)", (reader_pid,))
    assert _read_all(service, [("Patient", rid)])[0].res_id == rid


def test_stored_text_comes_back_exactly(service):
    # Characters that need quoting in some wire formats (PostgreSQL's array text: braces,
    # commas, quotes, backslashes, the word NULL), and text outside the BMP.
    tricky = 'a "quoted" {braced, listed} back\\slash NULL \u00e9 \U0001F600 \\"'
    body = _patient("Tricky", text={"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{tricky}</div>'})
    body["name"][0]["given"] = [tricky, "NULL", "{}", ","]

    async def main():
        created = await service.create_async("Patient", body)
        return created, await service.read_async("Patient", created.row.res_id)
    created, read = _run(main())
    assert read.content == created.row.content
    assert json.loads(read.content)["name"][0]["given"] == body["name"][0]["given"]
    assert json.loads(read.content)["text"] == body["text"]


def test_creates_batched_after_a_conformance_change_are_each_stored_once(service, backend):
    # A create on the event loop is validated against the definitions as this process last
    # saw them; its write stores nothing if a conformance resource was stored since. Here one
    # was (by another process: the repository is written to directly), so a whole batch of
    # creates is refused at once and each must be done again, and stored, exactly once.
    if "create" not in service.repo.loop_writes:
        pytest.skip("this backend takes no creates from the event loop")
    _run(service.create_async("Patient", _patient("Before")))  # (the writer has looked)
    other = build_service(Settings(database=service.settings.database))
    try:
        other.create("ValueSet", {"resourceType": "ValueSet", "status": "active",
                                  "url": f"http://example.org/vs/{uuid.uuid4().hex}"})
    finally:
        other.repo.close()

    async def main():
        return await asyncio.gather(*(service.create_async("Patient", _patient(f"After{i}")) for i in range(8)))
    results = _run(main())
    assert [r.status for r in results] == [201] * 8
    for i, result in enumerate(results):
        assert _stored(service, f"After{i}") == [result.row.res_id]


def test_ids_made_in_a_forked_process_are_not_the_parents():
    # Server ids take their random part from a pool of bytes; a forked worker process must
    # not hand out the same bytes as its parent.
    from fhir_service.core.resource_utils import new_id
    new_id()  # (the pool now holds bytes the child would inherit)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write_end, new_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child, parent = os.read(read_end, 64).decode(), new_id()
    random_part = (1 << 76) - 1  # below the 48-bit time and the version
    assert uuid.UUID(child).int & random_part != uuid.UUID(parent).int & random_part


def test_a_transaction_whose_work_runs_again_keeps_its_references(service, monkeypatch):
    # A write transaction that lost a race, or shared a batch that had to be redone, runs its
    # work again. A transaction bundle's second run must not keep references to the ids the
    # rolled-back run made up.
    real = service.repo.run_write

    class RolledBack(Exception):
        pass

    def twice(work):
        try:
            with service.repo.transaction(write=True) as s:
                work(s)
                raise RolledBack()
        except RolledBack:
            pass
        return real(work)
    monkeypatch.setattr(service.repo, "run_write", twice)
    from fhir_service.core import bundles
    patient_url = f"urn:uuid:{uuid.uuid4()}"
    out = bundles.process(service, {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": patient_url, "resource": _patient("Twice"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "peak flow"},
                      "subject": {"reference": patient_url}}, "request": {"method": "POST", "url": "Observation"}},
    ]}, "http://example.org/fhir")
    patient_id = out["entry"][0]["response"]["location"].split("/")[1]
    observation_id = out["entry"][1]["response"]["location"].split("/")[1]
    assert service.read("Patient", patient_id).version == 1
    observation = json.loads(service.read("Observation", observation_id).content)
    assert observation["subject"]["reference"] == f"Patient/{patient_id}"


def test_a_transaction_the_database_ends_to_break_a_deadlock_is_a_lost_race(service, backend):
    # Two transactions that lock the same two keys in opposite orders: PostgreSQL ends one of
    # them. That one must be told it lost a race (WriteConflict: it is tried again), not fail.
    if backend != "postgres":
        pytest.skip("SQLite has one writer at a time: its transactions cannot deadlock")
    import threading
    both_hold_one = threading.Barrier(2)
    outcomes = []

    def lock_both(first, second):
        try:
            with service.repo.transaction(write=True) as s:
                s.lock(first)
                both_hold_one.wait(5)
                s.lock(second)
            outcomes.append("committed")
        except Exception as exc:
            outcomes.append(exc)
    threads = [threading.Thread(target=lock_both, args=keys) for keys in (("a", "b"), ("b", "a"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(map(type, outcomes), key=str) == sorted([str, WriteConflict], key=str), outcomes


def test_an_update_whose_reply_was_lost_is_reported_stored(service, monkeypatch):
    # Where an update's write may be sent again after it was stored (PostgreSQL's batches: the
    # commit went through, the reply was lost, the writer ran it again), it meets its own
    # version: it succeeded, and must be answered so, not refused by its own If-Match.
    if not service.repo.loop_writes_read_first:
        pytest.skip("this backend's loop writes read in their own transaction")
    pid = service.create("Patient", _patient("Lost")).row.res_id
    monkeypatch.setattr(service.repo, "run_write_async", _reply_lost_once_async(service.repo.run_write_async))
    body = _patient("Lost", id=pid, gender="female")
    result = _run(service.update_async("Patient", pid, body, if_match='W/"1"'))
    assert (result.status, result.row.version) == (200, 2)
    assert service.read("Patient", pid).version == 2


def test_two_updates_of_one_resource_at_once_both_land(service):
    pid = service.create("Patient", _patient("Twice")).row.res_id

    async def main():
        return await asyncio.gather(*(service.update_async("Patient", pid, _patient("Twice", id=pid, gender=g))
                                      for g in ("male", "female")))
    results = _run(main())
    assert sorted((r.status, r.row.version) for r in results) == [(200, 2), (200, 3)]
    assert service.read("Patient", pid).version == 3


def test_a_locked_resource_holds_up_only_its_own_update(service, backend):
    # Another transaction holds one resource's row lock for a while (a long bundle, an admin's
    # session). An update of that resource waits for it; a create of another must not.
    if backend != "postgres":
        pytest.skip("SQLite has one writer at a time")
    import threading
    import time
    pid = service.create("Patient", _patient("Locked")).row.res_id
    locked, release = threading.Event(), threading.Event()

    def hold_the_lock():
        with service.repo.transaction(write=True) as s:
            s.current("Patient", pid, for_update=True)
            locked.set()
            release.wait(10)
    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert locked.wait(5)

    async def main():
        update = asyncio.ensure_future(service.update_async("Patient", pid, _patient("Locked", id=pid, gender="male")))
        await asyncio.sleep(0.2)  # (the update is in the writer's hands, or waiting)
        started = time.monotonic()
        created = await service.create_async("Patient", _patient("Unrelated"))
        create_took = time.monotonic() - started
        release.set()
        return created, create_took, await update
    try:
        created, create_took, updated = _run(main())
    finally:
        release.set()
        holder.join()
    assert created.status == 201
    assert create_took < 5  # (the lock is held for 10 s: a create queued behind it would wait that long)
    assert (updated.status, updated.row.version) == (200, 2)


def test_a_profile_update_refused_by_if_match_is_not_used_to_validate(service, monkeypatch):
    # Another writer stores a profile's next version just as this request starts to update it
    # with If-Match on the version before. This update is refused (412), and what this process
    # validates with must be the stored profile, not the refused one.
    url = f"http://example.org/fhir/StructureDefinition/raced-{uuid.uuid4().hex[:8]}"

    def profile(required: str) -> dict:
        return dict(patient_profile(url, required), id="raced")
    assert service.update("StructureDefinition", "raced", profile("gender")).status == 201
    armed = {"on": True}

    def race() -> None:  # (once: at the first of the repository calls below this request makes)
        if armed.pop("on", False):
            service.update("StructureDefinition", "raced", profile("birthDate"))
            service.sync_conformance()
    real_write, real_read, real_write_async = service.repo.run_write, service.repo.current_async, service.repo.run_write_async

    def race_then_write(work):
        race()
        return real_write(work)

    async def read_then_race(*args):
        row = await real_read(*args)
        race()
        return row

    async def race_then_write_async(work):
        race()
        return await real_write_async(work)
    monkeypatch.setattr(service.repo, "run_write", race_then_write)
    monkeypatch.setattr(service.repo, "current_async", read_then_race)
    monkeypatch.setattr(service.repo, "run_write_async", race_then_write_async)
    with pytest.raises(FHIRError) as refused:
        _run(service.update_async("StructureDefinition", "raced", profile("telecom"), if_match='W/"1"'))
    assert refused.value.status == 412
    monkeypatch.undo()
    patient = {"resourceType": "Patient", "meta": {"profile": [url]}, "gender": "male", "telecom": [{"system": "phone", "value": "1"}]}
    with pytest.raises(FHIRError) as invalid:  # (the stored profile requires birthDate)
        _run(service.create_async("Patient", patient))
    assert invalid.value.status == 422 and "Patient.birthDate" in str(invalid.value.outcome)
