"""Reads by id awaited on an event loop and fetched several at a time (storage/read_batch.py),
through its Python API with a real thread and real event loops."""
from __future__ import annotations

import asyncio
import threading

import pytest

from fhir_service.storage import Row
from fhir_service.storage.base import StorageError
from fhir_service.storage.read_batch import ReadBatcher


def _row(res_id: str) -> Row:
    return Row("Patient", res_id, 1, "2026-01-01T00:00:00.000Z", False, "{}")


def test_reads_waiting_together_are_fetched_together_and_each_gets_its_own_row():
    calls, gate = [], threading.Event()

    def fetch(keys):
        calls.append(sorted(keys))
        gate.wait(5)  # (the first fetch holds the reader while the other reads queue up)
        return {k: _row(k[1]) for k in keys if k[1] != "missing"}
    reader = ReadBatcher(fetch)
    try:
        async def main():
            first = asyncio.ensure_future(reader.current("Patient", "a"))
            await asyncio.sleep(0.1)
            rest = [asyncio.ensure_future(reader.current("Patient", i)) for i in ("b", "c", "b", "missing")]
            await asyncio.sleep(0.1)
            gate.set()
            return await asyncio.wait_for(first, 5), await asyncio.wait_for(asyncio.gather(*rest), 5)
        first, rest = asyncio.run(main())
    finally:
        reader.stop()
    assert first.res_id == "a"
    assert [r.res_id if r else None for r in rest] == ["b", "c", "b", None]
    assert calls == [[("Patient", "a")], [("Patient", "b"), ("Patient", "c"), ("Patient", "missing")]]


def test_a_failed_fetch_fails_its_reads_and_the_reader_goes_on():
    failures = iter([RuntimeError("connection lost")])

    def fetch(keys):
        failure = next(failures, None)
        if failure:
            raise failure
        return {k: _row(k[1]) for k in keys}
    reader = ReadBatcher(fetch)
    try:
        with pytest.raises(StorageError, match="connection lost"):
            asyncio.run(asyncio.wait_for(reader.current("Patient", "a"), 5))
        assert asyncio.run(asyncio.wait_for(reader.current("Patient", "a"), 5)).res_id == "a"
    finally:
        reader.stop()


def test_a_read_after_stop_fails_at_once_instead_of_waiting_for_ever():
    reader = ReadBatcher(lambda keys: {})
    reader.stop()
    with pytest.raises(StorageError):
        asyncio.run(asyncio.wait_for(reader.current("Patient", "a"), 5))
