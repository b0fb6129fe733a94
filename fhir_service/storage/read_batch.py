"""Reads by id from the event loop, several to one query.

A read by id on PostgreSQL is one round trip to the server. Made on the event loop it would
hold up every other request for the whole trip; made from a worker thread it costs a thread
hop, and psycopg's work per statement costs more than the rest of the read. So reads awaited
on the event loop go to one reader thread with its own connection, and the reads that queue
up while it waits for the database are fetched together, by ONE statement, on its next trip.

A batch's statement starts after every read in it was asked for, so each read sees at least
every write committed before it was asked (a client reads its own writes).
"""
from __future__ import annotations

import asyncio
import queue
import threading
from typing import Callable

from .base import Row, StorageError
from .batch_queue import STOP, take_batch

MAX_BATCH = 64

Key = tuple[str, str]  # (res_type, res_id)


class ReadBatcher:
    """One reader thread: ``current`` is awaited on any event loop, ``fetch`` runs on the thread."""

    def __init__(self, fetch: Callable[[list[Key]], dict[Key, Row]], name: str = "reader"):
        self._fetch = fetch  # runs on the reader thread: the current rows of these keys
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stopped = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    async def current(self, res_type: str, res_id: str) -> Row | None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        with self._lock:  # (nothing is queued behind the stop, where nobody would answer it)
            if self._stopped:
                raise StorageError("the server is shutting down")
            self._queue.put(((res_type, res_id), loop, done))
        return await done

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._queue.put(STOP)
        self._thread.join(timeout=10)

    def _serve(self) -> None:
        while (batch := take_batch(self._queue, MAX_BATCH)) is not None:
            try:
                rows, failure = self._fetch(list({key: None for key, _, _ in batch})), None
            except Exception as exc:  # every read of the batch is told
                rows, failure = {}, exc
            _answer(batch, rows, failure)


def _answer(batch, rows: dict[Key, Row], failure: Exception | None) -> None:
    # One wake-up per event loop for the whole batch, not one per read.
    per_loop: dict = {}
    for key, loop, done in batch:
        per_loop.setdefault(loop, []).append((done, rows.get(key)))
    for loop, answers in per_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, answers, failure)
        except RuntimeError:
            pass  # that event loop has closed (shutting down): nobody is waiting any more


def _settle(answers, failure: Exception | None) -> None:
    for done, row in answers:
        if done.cancelled():
            continue
        if failure is not None:
            # (an exception of its own for each read: one raised in many tasks would gather
            # all their tracebacks)
            error = StorageError(str(failure))
            error.__cause__ = failure
            done.set_exception(error)
        else:
            done.set_result(row)
