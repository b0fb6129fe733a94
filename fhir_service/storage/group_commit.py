"""Group commit: one thread runs a process's write transactions, several to a commit.

SQLite allows one writer at a time, and most of a small write's cost is the commit itself:
every B-tree page the write touched goes to the WAL as its own frame, two system calls each.
When several requests write at once, running them one after another inside one transaction
writes the pages they share once and pays the commit once, instead of queueing the requests
on a lock to commit one by one.

Each piece of work is a request of its own within the transaction (Session.begin_request), so
a failing request takes back only its own writes, and it sees the writes of the requests
before it (conditional creates stay exclusive).
Nobody is answered before the commit that holds their writes has succeeded.

PostgreSQL uses it too, for the plain creates and updates taken from the event loop: there
``begin`` gives a write batch (postgres_batch.py), whose one statement is its own transaction.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
from typing import Any, Callable, ContextManager

from .base import RedoAlone, Session, StorageError
from .batch_queue import STOP, take_batch

log = logging.getLogger(__name__)
MAX_BATCH = 64  # bounds how long the first request of a batch waits for the others


class _Job:
    __slots__ = ("work", "done", "on_done", "result", "error")

    def __init__(self, work: Callable[[Session], Any], on_done: Callable[["_Job"], None] | None = None):
        self.work = work
        self.on_done = on_done  # called on the writer thread when done, or else:
        # a held lock as a one-shot latch, released when the job is done. Cheaper than
        # threading.Event, whose set() runs Python code under a Condition.
        self.done = None if on_done else threading.Lock()
        if self.done:
            self.done.acquire()
        self.result: Any = None
        self.error: BaseException | None = None

    def finish(self) -> None:
        if self.on_done is not None:
            self.on_done(self)
        else:
            self.done.release()


class GroupCommitter:
    def __init__(self, begin: Callable[[], ContextManager[Session]], name: str = "group-commit"):
        self._begin = begin  # opens a write transaction (or batch) on the writer thread
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def run(self, work: Callable[[Session], Any]) -> Any:
        job = _Job(work)
        self._queue.put(job)
        job.done.acquire()
        if job.error is not None:
            raise job.error
        return job.result

    async def run_async(self, work: Callable[[Session], Any]) -> Any:
        """run, awaited on an asyncio event loop instead of blocking a thread."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def settle(job: _Job) -> None:  # (on the writer thread)
            try:
                loop.call_soon_threadsafe(_settle_future, done, job)
            except RuntimeError:
                pass  # the event loop has closed (shutting down): nobody is waiting any more
        self._queue.put(_Job(work, settle))
        return await done

    def stop(self) -> None:
        self._queue.put(STOP)
        self._thread.join(timeout=10)

    # -- the writer thread ------------------------------------------------------------------
    def _serve(self) -> None:
        while (batch := take_batch(self._queue, MAX_BATCH)) is not None:
            self._commit(batch)

    def _commit(self, batch: list[_Job]) -> None:
        try:
            with self._begin() as session:
                for job in batch:
                    self._run_one(session, job)
        except BaseException as exc:
            # BEGIN or COMMIT failed, or one job broke the shared transaction (e.g. a deadlock
            # with another process): nothing of the batch was kept. Run each job in a
            # transaction of its own, so that each gets its own true outcome.
            if len(batch) == 1 and not isinstance(exc, RedoAlone):
                batch[0].result, batch[0].error = None, _not_committed(exc)
            else:
                for job in batch:
                    self._commit_alone(job)
        finally:
            for job in batch:
                try:
                    job.finish()
                except Exception:  # (a waiter's callback failed: never stop the writer for it)
                    log.exception("could not hand a write's outcome back to its request")

    def _commit_alone(self, job: _Job) -> None:
        job.result, job.error = None, None
        try:
            with self._begin() as session:
                self._run_one(session, job)
        except BaseException as exc:
            job.result, job.error = None, _not_committed(exc)

    @staticmethod
    def _run_one(session: Session, job: _Job) -> None:
        session.begin_request()
        try:
            job.result = job.work(session)
        except BaseException as exc:
            job.error = exc
        # If the database dropped the whole transaction this raises, and _commit runs every
        # job of the batch again on its own: no write is reported as stored unless it is.
        session.end_request(failed=job.error is not None)


def _settle_future(done, job: _Job) -> None:
    """Give a job's outcome to the asyncio future awaiting it (on the future's event loop)."""
    if done.cancelled():
        return
    if job.error is not None:
        done.set_exception(job.error)
    else:
        done.set_result(job.result)


def _not_committed(exc: BaseException) -> StorageError:
    """What a job is told when the transaction around it failed (not the job's own error)."""
    return exc if isinstance(exc, StorageError) else StorageError(f"the write was not committed: {exc}")
