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

from .base import IndexRows, Row, Session, StorageError, WriteConflict, index_rows_by_table, newest_seq_sql
from .postgres_sql import index_document, insert_index_rows, pg


class CreateBatch(Session):
    """The session a batch of plain creates runs in: it takes writes of first versions, and
    nothing else (the work of a plain create: see core/service.py create_async)."""

    dialect = "postgresql"

    def __init__(self, connect) -> None:
        self.rows: list[tuple[Row, IndexRows | None]] = []
        self._request_start = 0
        self._connect = connect
        self._newest: dict[tuple, int] = {}

    def newest_seq(self, res_types) -> int:
        # Once per batch: the answer is about versions already committed, which the batch's
        # own creates come after.
        key = tuple(res_types)
        if key not in self._newest:
            try:
                row = self._connect().execute(pg(newest_seq_sql(len(key))), key).fetchone()
            except psycopg.Error as exc:
                raise StorageError(f"database unavailable: {exc}") from exc
            self._newest[key] = row[0] or 0
        return self._newest[key]

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
def create_batch(connect) -> Iterator[CreateBatch]:
    """A batch on the writer thread's connection (``connect()`` gives it, reconnecting if
    needed); its creates are sent as one statement when the batch ends."""
    batch = CreateBatch(connect)
    yield batch
    if not batch.rows:
        return
    per_table = index_rows_by_table((r.res_type, r.res_id, rows) for r, rows in batch.rows)
    versions = list(zip(*[(r.res_type, r.res_id, r.last_updated, r.method, r.content) for r, _ in batch.rows]))
    conn = connect()
    try:
        conn.execute(_statement(tuple(sorted(per_table))), [*map(list, versions), index_document(per_table)])
    except psycopg.errors.UniqueViolation as exc:
        raise WriteConflict(f"a version written here already exists: {exc}") from exc
    except psycopg.Error as exc:
        raise StorageError(f"the creates were not stored: {exc}") from exc


@lru_cache(maxsize=None)
def _statement(tables: tuple[str, ...]) -> str:
    ctes = ["v AS (INSERT INTO resource_version (res_type, res_id, version, last_updated, method, deleted, content) "
            "SELECT res_type, res_id, 1, last_updated, method, false, content "
            "FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[]) "
            "WITH ORDINALITY AS c(res_type, res_id, last_updated, method, content, i) ORDER BY i "
            "RETURNING res_type, res_id, last_updated, content, seq)",
            "doc AS (SELECT %s::jsonb AS d)"]
    ctes += [f"i_{name} AS ({insert_index_rows(name)})" for name in tables]
    return ("WITH " + ", ".join(ctes) +
            " INSERT INTO resource (res_type, res_id, version, last_updated, deleted, content, seq) "
            "SELECT res_type, res_id, 1, last_updated, false, content, seq FROM v")
