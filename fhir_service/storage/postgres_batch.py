"""PostgreSQL: plain creates and updates from the event loop, several to one statement.

Writes awaited on the event loop (Repository.run_write_async) go to one writer thread with
its own connection (storage/group_commit.py). The writes that queue up while it works are
sent together as ONE statement, outside any transaction: one round trip, one commit and one
wait for the GIL for the lot, instead of each request taking a pooled connection and doing
its own round trips from a worker thread.

A batch reads nothing: an update has read the current version before (see core/service.py
update_async), and its write of the next version is refused if that version exists by then.
The statement is all-or-nothing: if any of its versions already exists it fails whole, and
the group committer runs each write again on its own (then only the loser is refused, and
the service makes it the locking way, in a worker thread).
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator

import psycopg

from .base import (HeldWrites, IndexRows, RedoAlone, Row, Session, StorageError, WriteConflict, index_rows_by_table,
                   newest_seq_sql)
from .newest_seq import NewestSeqMemory
from .postgres_sql import INSERT_CURRENT, INSERT_VERSION, UPSERT_CURRENT, index_document, insert_index_rows, pg
from .schema import INDEX_TABLES


class WriteBatch(Session):
    """The session a batch of plain creates and updates runs in: it takes writes of new
    versions, and nothing else (see core/service.py create_async and update_async).

    newest_seq (the writes' check that no conformance resource was stored since their
    validation) costs no round trip of its own: it answers from the writer's memory, and the
    batch's statement stores nothing unless those answers still hold (see newest_seq.py)."""

    dialect = "postgresql"

    def __init__(self, connect, memory: NewestSeqMemory) -> None:
        self.held = HeldWrites()
        self._request_start = 0
        self._connect = connect
        self._memory = memory
        self.assumed: dict[tuple, int] = {}  # every newest_seq answer this batch gave

    def newest_seq(self, res_types) -> int:
        key = tuple(res_types)
        if key not in self.assumed:
            self.assumed[key] = self._memory.answer(key, lambda: self._ask_newest(key))
        return self.assumed[key]

    def _ask_newest(self, key: tuple) -> int:
        try:
            row = self._connect().execute(pg(newest_seq_sql(len(key))), key).fetchone()
        except psycopg.Error as exc:
            raise StorageError(f"database unavailable: {exc}") from exc
        return row[0] or 0

    def write(self, row: Row, index_rows: IndexRows | None) -> Row:
        if row.deleted:
            raise StorageError("a write batch takes no deletions")
        if self.held.holds(row.res_type, row.res_id):
            # Two writes of one resource read the same version: one of them must lose, and
            # only it (sent together, the statement would fail whole).
            raise WriteConflict(f"{row.res_type}/{row.res_id} is written by an earlier request of this batch")
        return self.held.add(row, index_rows)

    def begin_request(self) -> None:
        self._request_start = len(self.held)

    def end_request(self, failed: bool) -> None:
        if failed:
            self.held.drop_from(self._request_start)

    def _unsupported(self, *args, **kwargs):
        raise StorageError("a write batch cannot read or run statements")

    current = version = history = count_history = lock = query = execute = executemany = _unsupported


@contextmanager
def write_batch(connect, memory: NewestSeqMemory) -> Iterator[WriteBatch]:
    """A batch on the writer thread's connection (``connect()`` gives it, reconnecting if
    needed); its writes are sent as one statement when the batch ends. ``memory``: the
    writer's, shared by its batches (newest_seq.py)."""
    batch = WriteBatch(connect, memory)
    yield batch
    written = batch.held.rows
    if not written:
        return
    per_table = index_rows_by_table((r.res_type, r.res_id, rows) for r, rows in written)
    versions = [[r.res_type for r, _ in written], [r.res_id for r, _ in written], [r.version for r, _ in written],
                [r.last_updated for r, _ in written], [r.method for r, _ in written], [r.content for r, _ in written]]
    guards = tuple(batch.assumed)
    guard_params = [p for key in guards for p in (*key, batch.assumed[key])]
    updates = any(r.version > 1 for r, _ in written)
    conn = connect()
    try:
        stored = conn.execute(_statement(tuple(sorted(per_table)), tuple(map(len, guards)), updates),
                              [*guard_params, *versions, index_document(per_table)]).fetchone()[0]
    except (psycopg.errors.UniqueViolation, psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected) as exc:
        raise WriteConflict(f"a resource written here was being written by another transaction: {exc}") from exc
    except psycopg.Error as exc:
        raise StorageError(f"the writes were not stored: {exc}") from exc
    if stored == 0:
        memory.clear()
        raise RedoAlone("a conformance resource was stored since the writes were checked")
    memory.forget_types(r.res_type for r, _ in written)


@lru_cache(maxsize=None)
def _statement(tables: tuple[str, ...], guards: tuple[int, ...] = (), updates: bool = False) -> str:
    """The statement of a batch with index rows in ``tables``; ``guards``: for each newest_seq
    the batch's requests were told (WriteBatch.assumed), how many types it covers. Nothing is
    stored unless every one of them is still the newest. ``updates``: some versions are not
    first versions, so the resources' old index rows go and their current rows are replaced.
    It returns how many resources it stored.

    The arrays go in binary (%b): in text, psycopg quotes every element with a regular-expression
    callback per quote character, and a batch's JSON texts have thousands of them."""
    checks = " AND ".join(f"({pg(newest_seq_sql(n))}) IS NOT DISTINCT FROM NULLIF(%s::bigint, 0)"
                          for n in guards) or "true"
    ctes = [f"ok AS (SELECT {checks} AS ok)",
            "c AS (SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::text[], %b::text[], %b::text[]) "
            "AS c(res_type, res_id, version, last_updated, method, content))"]
    ready = "(SELECT ok FROM ok)"
    if updates:
        # The current rows are locked first, as a transaction that updates locks them (SELECT
        # ... FOR UPDATE) before it writes: taken in another order, the two would each wait for
        # the other. NOWAIT: should one be locked already, the batch must not wait for it, and
        # everything queued behind the batch with it; the batch fails at once (LockNotAvailable,
        # a WriteConflict), its writes are sent again each alone, and that update then takes
        # the locking way, in a worker thread, where waiting holds up nobody else.
        ctes.append("locked AS (SELECT 1 FROM resource AS r JOIN c ON r.res_type = c.res_type AND r.res_id = c.res_id "
                    "ORDER BY r.res_type, r.res_id FOR UPDATE OF r NOWAIT)")
        ready += " AND (SELECT count(*) FROM locked) >= 0"  # (the locks are taken before any insert)
    ctes += [f"v AS ({INSERT_VERSION}"
             f"SELECT res_type, res_id, version, last_updated, method, false, content FROM c WHERE {ready} "
             "ORDER BY res_type, res_id "  # (key order here too: two batches meet in the same order)
             "RETURNING res_type, res_id, version, last_updated, content, seq)",
             "doc AS (SELECT %s::jsonb AS d)"]
    if updates:
        # (one snapshot for the whole statement: these see the old rows only, not the new ones)
        ctes += [f"d_{table.name} AS (DELETE FROM {table.name} AS t USING v "
                 f"WHERE v.version > 1 AND t.res_type = v.res_type AND t.res_id = v.res_id)" for table in INDEX_TABLES]
    ctes += [f"i_{name} AS ({insert_index_rows(name, '(SELECT ok FROM ok)')})" for name in tables]
    # A version stored means the current row was the one before it (they are always written
    # together), so every current row is written; were one not, the statement fails whole
    # (division by zero) rather than leave a version without its current row.
    ctes.append(f"u AS ({INSERT_CURRENT}SELECT res_type, res_id, version, last_updated, false, content, seq FROM v "
                f"{UPSERT_CURRENT}RETURNING 1)")
    return ("WITH " + ", ".join(ctes) +
            " SELECT n / (n = (SELECT count(*) FROM v))::int FROM (SELECT count(*) AS n FROM u) AS stored")
