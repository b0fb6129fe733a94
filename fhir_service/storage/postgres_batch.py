"""PostgreSQL: plain creates from the event loop, several to one statement.

Creates awaited on the event loop (Repository.run_write_async) go to one writer thread with
its own connection (storage/group_commit.py). The creates that queue up while it works are
sent together as ONE statement, outside any transaction: one round trip, one commit and one
wait for the GIL for the lot, instead of each request taking a pooled connection and doing
its own round trip from a worker thread.

The statement is all-or-nothing: if any of its versions already exists it fails whole, and
the group committer runs each create again on its own (then only the loser is refused).
Only creates come this way: they read nothing, so they need no transaction of their own.
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator

import psycopg

from .base import (IndexRows, RedoAlone, Row, Session, StorageError, WriteConflict, index_rows_by_table,
                   newest_seq_sql)
from .newest_seq import NewestSeqMemory
from .postgres_sql import index_document, insert_index_rows, pg


class CreateBatch(Session):
    """The session a batch of plain creates runs in: it takes writes of first versions, and
    nothing else (the work of a plain create: see core/service.py create_async).

    newest_seq (the creates' check that no conformance resource was stored since their
    validation) costs no round trip of its own: it answers from the writer's memory, and the
    batch's statement stores nothing unless those answers still hold (see newest_seq.py)."""

    dialect = "postgresql"

    def __init__(self, connect, memory: NewestSeqMemory) -> None:
        self.rows: list[tuple[Row, IndexRows | None]] = []
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
        if row.version != 1 or row.deleted:
            raise StorageError("a create batch takes only first versions")
        self.rows.append((row, index_rows))
        return row

    def begin_request(self) -> None:
        self._request_start = len(self.rows)

    def end_request(self, failed: bool) -> None:
        if failed:
            del self.rows[self._request_start:]

    def _unsupported(self, *args, **kwargs):
        raise StorageError("a create batch cannot read or run statements")

    current = version = history = count_history = lock = query = execute = executemany = _unsupported


@contextmanager
def create_batch(connect, memory: NewestSeqMemory) -> Iterator[CreateBatch]:
    """A batch on the writer thread's connection (``connect()`` gives it, reconnecting if
    needed); its creates are sent as one statement when the batch ends. ``memory``: the
    writer's, shared by its batches (newest_seq.py)."""
    batch = CreateBatch(connect, memory)
    yield batch
    if not batch.rows:
        return
    per_table = index_rows_by_table((r.res_type, r.res_id, rows) for r, rows in batch.rows)
    versions = list(zip(*[(r.res_type, r.res_id, r.last_updated, r.method, r.content) for r, _ in batch.rows]))
    guards = tuple(batch.assumed)
    guard_params = [p for key in guards for p in (*key, batch.assumed[key])]
    conn = connect()
    try:
        stored = conn.execute(_statement(tuple(sorted(per_table)), tuple(map(len, guards))),
                              [*guard_params, *map(list, versions), index_document(per_table)]).rowcount
    except psycopg.errors.UniqueViolation as exc:
        raise WriteConflict(f"a version written here already exists: {exc}") from exc
    except psycopg.Error as exc:
        raise StorageError(f"the creates were not stored: {exc}") from exc
    if stored == 0:
        memory.clear()
        raise RedoAlone("a conformance resource was stored since the creates were checked")
    memory.forget_types(r.res_type for r, _ in batch.rows)


@lru_cache(maxsize=None)
def _statement(tables: tuple[str, ...], guards: tuple[int, ...] = ()) -> str:
    """The statement of a batch with index rows in ``tables``; ``guards``: for each newest_seq
    the creates were told (CreateBatch.assumed), how many types it covers. Nothing is stored
    unless every one of them is still the newest.

    The arrays go in binary (%b): in text, psycopg quotes every element with a regular-expression
    callback per quote character, and a batch's JSON texts have thousands of them."""
    checks = " AND ".join(f"({pg(newest_seq_sql(n))}) IS NOT DISTINCT FROM NULLIF(%s::bigint, 0)"
                          for n in guards) or "true"
    ctes = [f"ok AS (SELECT {checks} AS ok)",
            "v AS (INSERT INTO resource_version (res_type, res_id, version, last_updated, method, deleted, content) "
            "SELECT res_type, res_id, 1, last_updated, method, false, content "
            "FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[]) "
            "WITH ORDINALITY AS c(res_type, res_id, last_updated, method, content, i) "
            "WHERE (SELECT ok FROM ok) ORDER BY i "
            "RETURNING res_type, res_id, last_updated, content, seq)",
            "doc AS (SELECT %s::jsonb AS d)"]
    ctes += [f"i_{name} AS ({insert_index_rows(name, '(SELECT ok FROM ok)')})" for name in tables]
    return ("WITH " + ", ".join(ctes) +
            " INSERT INTO resource (res_type, res_id, version, last_updated, deleted, content, seq) "
            "SELECT res_type, res_id, 1, last_updated, false, content, seq FROM v")
