"""Group commit on SQLite: concurrent writes share a commit, yet each succeeds or fails alone.

Exercised through the storage API (Repository.run_write) with real threads and a real file.
"""
from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from fhir_service.storage import Row, open_repository
from fhir_service.storage.base import StorageError, WriteConflict


@pytest.fixture()
def repo(tmp_path):
    r = open_repository(f"sqlite:///{tmp_path}/group.db")
    r.create_schema()
    yield r
    r.close()


def _row(i: int) -> Row:
    return Row("Basic", f"b{i}", 1, "2026-01-01T00:00:00.000Z", False, '{"resourceType":"Basic"}', "POST")


class Refused(Exception):
    pass


def _write_concurrently(repo, n: int, work_for) -> dict[int, object]:
    """n threads each run_write(work_for(i)) at once: {i: result or the exception raised}.

    A slow first write keeps the writer busy while the others queue up behind it, so they are
    committed together: successes and failures mixed in one batch."""
    start = threading.Barrier(n + 1)
    outcome: dict[int, object] = {}

    def client(i: int) -> None:
        start.wait()
        try:
            outcome[i] = repo.run_write(work_for(i))
        except Exception as exc:
            outcome[i] = exc

    blocker = threading.Thread(target=repo.run_write, args=(lambda s: start.wait() or time.sleep(0.3),))
    blocker.start()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads + [blocker]:
        t.join()
    return outcome


def _in_one_batch(repo, works) -> dict[int, object]:
    """run_write(works[i]) from threads queued in this order behind a blocked batch, so that
    they share the next one: {i: result or the exception raised}."""
    gate = threading.Event()
    blocker = threading.Thread(target=repo.run_write, args=(lambda s: gate.wait(),))
    blocker.start()
    time.sleep(0.1)
    outcome: dict[int, object] = {}

    def client(i: int) -> None:
        try:
            outcome[i] = repo.run_write(works[i])
        except Exception as exc:
            outcome[i] = exc
    threads = []
    for i in range(len(works)):
        threads.append(threading.Thread(target=client, args=(i,)))
        threads[-1].start()
        time.sleep(0.05)
    gate.set()
    for t in threads + [blocker]:
        t.join()
    return outcome


@pytest.mark.parametrize("own_statement", [False, True], ids=["writes only", "writes, a statement, writes"])
def test_each_request_succeeds_or_fails_alone(repo, own_statement):
    # Every third request fails. With own_statement, each request writes, runs a statement of
    # its own (which sends every held-back write first and gives the request its savepoint),
    # then writes again.
    def work_for(i):
        def work(s):
            s.write(_row(i), None)
            if own_statement:
                (count,) = s.query("SELECT COUNT(*) FROM resource WHERE res_id = ?", (f"b{i}",))[0]
                assert count == 1  # its own held-back write is visible to its statement
                s.write(_row(1000 + i), None)
            if i % 3 == 0:
                raise Refused(i)
            return i
        return work

    outcome = _write_concurrently(repo, 48, work_for)
    for i, result in outcome.items():
        kept = [repo.current("Basic", res_id) for res_id in ([f"b{i}", f"b{1000 + i}"] if own_statement else [f"b{i}"])]
        if i % 3 == 0:
            assert isinstance(result, Refused), (i, result)
            assert kept == [None] * len(kept), f"request {i} failed, yet its writes were kept"
        else:
            assert result == i
            assert all(row is not None and row.version == 1 for row in kept), (i, kept)


def test_later_writes_see_earlier_ones_in_the_same_commit(repo):
    # Two writers race to create the same id: exactly one wins, the other sees a conflict.
    start = threading.Barrier(8)
    results = []

    def client() -> None:
        def work(s):
            if s.current("Basic", "shared") is None:
                s.write(replace(_row(0), res_id="shared"), None)
                return "created"
            return "exists"
        start.wait()
        results.append(repo.run_write(work))

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["created"] + ["exists"] * 7


def test_work_inside_a_transaction_joins_it(repo):
    with repo.transaction(write=True) as outer:
        outer.write(_row(1), None)
        # Nested run_write on the same thread runs inline instead of waiting for the writer.
        repo.run_write(lambda s: s.write(_row(2), None))
    assert repo.current("Basic", "b1") and repo.current("Basic", "b2")


def test_a_write_that_breaks_the_shared_transaction_harms_only_itself(repo):
    # One write ends the transaction it shares with others (as a deadlock abort would): its
    # neighbours in the batch must still be stored, and it alone must fail.
    def work_for(i):
        def work(s):
            s.write(_row(i), None)
            if i == 4:
                s.execute("ROLLBACK")  # the whole transaction is gone, savepoints included
            return i
        return work

    outcome = _write_concurrently(repo, 8, work_for)
    assert isinstance(outcome[4], StorageError), outcome[4]
    assert repo.current("Basic", "b4") is None
    for i in (0, 1, 2, 3, 5, 6, 7):
        assert outcome[i] == i
        assert repo.current("Basic", f"b{i}") is not None
    # And the writer keeps serving afterwards.
    repo.run_write(lambda s: s.write(_row(8), None))
    assert repo.current("Basic", "b8") is not None


# -- writes held back until something could see them (storage/deferred_writes.py) -----------

def test_held_back_writes_are_seen_by_reads_and_keep_their_order(repo):
    index_rows = {"idx_token": [("identifier", 0, "urn:x", "a-1", None)]}
    with repo.transaction(write=True) as s:
        s.write(_row(1), index_rows)
        s.write(_row(2), None)
        s.write(replace(_row(1), version=2, content='{"resourceType":"Basic","id":"b1"}'), None)
        assert s.current("Basic", "b1").version == 2  # answered from what is held back
        # A search in the same transaction sees the index rows of the first version... until
        # the second version replaced them.
        assert s.query("SELECT res_id FROM idx_token WHERE code = 'a-1'") == []
    with repo.transaction() as s:
        history = s.history(res_type="Basic")
        current_seqs = dict(s.query("SELECT res_id, seq FROM resource"))
    # Versions are numbered in the order they were written, and each current row carries the
    # number of its own version.
    assert [(r.res_id, r.version) for r in history] == [("b1", 2), ("b2", 1), ("b1", 1)]
    assert history[0].seq > history[1].seq > history[2].seq > 0
    assert current_seqs == {"b1": history[0].seq, "b2": history[1].seq}
    assert repo.current("Basic", "b1").version == 2


def test_index_rows_held_back_reach_the_index(repo):
    index_rows = {"idx_token": [("identifier", 0, "urn:x", "a-1", None), ("identifier", 1, "urn:x", "a-2", None)]}
    repo.run_write(lambda s: s.write(_row(1), index_rows))
    with repo.transaction() as s:
        assert s.query("SELECT res_id, code FROM idx_token ORDER BY n") == [("b1", "a-1"), ("b1", "a-2")]


def test_a_lost_race_in_a_batch_of_creates_fails_only_that_create(repo):
    # A batch of plain creates goes to SQLite as one statement; if one of them collides with a
    # version already stored, the statement fails as a whole, and each create is retried alone.
    repo.run_write(lambda s: s.write(_row(3), None))
    outcome = _write_concurrently(repo, 12, lambda i: (lambda s: s.write(_row(i), None) and i))
    assert isinstance(outcome[3], WriteConflict), outcome[3]
    for i in set(range(12)) - {3}:
        assert outcome[i] == i, (i, outcome[i])
        assert repo.current("Basic", f"b{i}") is not None
    assert repo.current("Basic", "b3").version == 1


def test_a_failure_sending_earlier_requests_writes_is_not_charged_to_a_later_request(repo):
    # J1 holds back a row SQLite cannot take (a lone surrogate cannot be encoded), J2 a valid
    # create; J3 then runs a statement, which sends J1's and J2's rows first. That failure is
    # the batch's, not J3's: every request must get its own true outcome, and nothing may be
    # reported stored that is not.
    bad = replace(_row(1), content='{"resourceType":"Basic","x":"\ud800"}')
    outcome = _in_one_batch(repo, [lambda s: s.write(bad, None) and "J1", lambda s: s.write(_row(2), None) and "J2",
                                    lambda s: s.query("SELECT 1") and "J3"])
    assert isinstance(outcome[0], Exception), outcome
    assert outcome[1] == "J2" and outcome[2] == "J3", outcome
    assert repo.current("Basic", "b1") is None
    assert repo.current("Basic", "b2") is not None


@pytest.mark.parametrize("reads_first", [False, True], ids=["creates only (one statement)", "reads, then creates"])
@pytest.mark.parametrize("remembered", [True, False], ids=["answer remembered", "answer asked"])
def test_a_newest_seq_answer_is_checked_before_anything_is_stored(repo, tmp_path, reads_first, remembered):
    # Under group commit, Session.newest_seq answers what the last batch saw, or asks SQLite
    # before the writer lock is taken; either way the batch must store nothing if the answer
    # is stale by the time it writes, and run its work again.
    types = ("ValueSet",)
    other = open_repository(f"sqlite:///{tmp_path}/group.db")  # another process, say

    def another_process_stores_a_valueset():
        other.run_write(lambda s: s.write(replace(_row(0), res_type="ValueSet", res_id="vs"), None))
    if remembered:
        assert repo.run_write(lambda s: s.newest_seq(types)) == 0  # (the writer now remembers 0)
        another_process_stores_a_valueset()
    calls = []

    def work(s):
        newest = s.newest_seq(types)
        calls.append(newest)
        if not remembered and len(calls) == 1:
            another_process_stores_a_valueset()  # (after the answer, before the write)
        if reads_first:
            s.current("Basic", "nothing-here")  # (the transaction begins)
        s.write(_row(7), None)
        return newest
    try:
        result = repo.run_write(work)
        stored_seq = other.current("ValueSet", "vs").seq
    finally:
        other.close()
    assert calls == [0, stored_seq]  # the stale answer's attempt stored nothing, and was run again
    assert result == stored_seq
    assert repo.current("Basic", "b7").version == 1
    assert len(repo.query_once("SELECT seq FROM resource_version WHERE res_id = 'b7'")) == 1


def test_a_batch_that_stores_a_conformance_resource_is_not_redone_for_it(repo):
    # The check of remembered answers must not count the batch's own writes: a create that
    # used one, batched with a request that stores a ValueSet and then reads, runs once.
    types = ("StructureDefinition", "ValueSet")
    repo.run_write(lambda s: s.newest_seq(types))  # (the writer now remembers 0)
    runs = {"create": 0, "valueset": 0}

    def create(s):
        runs["create"] += 1
        s.newest_seq(types)
        return s.write(_row(1), None)

    def store_valueset(s):
        runs["valueset"] += 1
        s.write(replace(_row(2), res_type="ValueSet"), None)
        return s.query("SELECT 1")
    outcome = _in_one_batch(repo, [create, store_valueset])
    assert not any(isinstance(o, Exception) for o in outcome.values()), outcome
    assert runs == {"create": 1, "valueset": 1}
    assert repo.current("Basic", "b1") is not None and repo.current("ValueSet", "b2") is not None
