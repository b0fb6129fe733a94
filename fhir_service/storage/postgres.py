"""PostgreSQL backend (psycopg 3 with a connection pool), for sites that outgrow one machine.

A URL may carry ``?schema=NAME``: every connection then uses that schema (tests create and
drop their own).
"""
from __future__ import annotations

import hashlib
import re
import threading
from contextlib import contextmanager
from typing import Iterator, Sequence
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg_pool import ConnectionPool

from .base import IndexRows, Repository, Row, StorageError, WriteConflict, index_rows_by_table
from .group_commit import GroupCommitter
from .newest_seq import NewestSeqMemory
from .postgres_batch import write_batch
from .postgres_sql import INSERT_CURRENT, INSERT_VERSION, UPSERT_CURRENT, index_document, insert_index_rows, pg
from .read_batch import ReadBatcher
from .schema import ALL_TABLES, INDEX_TABLES, ddl
from .sql_session import COLUMNS, SQLSession, current_row

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Errors by which PostgreSQL ends one of two transactions that got in each other's way: the
# loser is tried again from the start, like any write that lost a race.
_LOST_RACE = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
# Several resources' current rows by one statement: (res_type[], res_id[]).
_CURRENT_ROWS_SQL = (f"SELECT {', '.join('r.' + c for c in COLUMNS.split(', '))}, r.seq "
                     "FROM unnest(%b::text[], %b::text[]) AS k(res_type, res_id) "
                     "JOIN resource r ON r.res_type = k.res_type AND r.res_id = k.res_id")


class PostgresSession(SQLSession):
    """One transaction on a pooled autocommit connection.

    A write transaction says BEGIN just before its first read or statement, so everything it
    reads is seen in the transaction (and rows it reads FOR UPDATE stay locked). A transaction
    whose only work is one write that needs no reading (a create) never begins: its write is
    held back and sent at the end as one statement on its own, one round trip in all instead
    of BEGIN, write, COMMIT. The write statement is all-or-nothing by itself (see _send).
    """
    dialect = "postgresql"
    for_update_clause = " FOR UPDATE"

    def __init__(self, conn: psycopg.Connection, *, begun: bool = True):
        self.conn = conn
        self.begun = begun
        self._held: tuple[Row, IndexRows | None] | None = None

    def _begin(self) -> None:
        """Begin (if not yet), and send the write held back: what follows may read it."""
        if not self.begun:
            self.conn.execute("BEGIN")
            self.begun = True
        self.finish()

    def finish(self) -> None:
        """Send the write held back (at the end of the transaction, before any COMMIT)."""
        if self._held is not None:
            held, self._held = self._held, None
            self._send(*held)

    def current(self, res_type, res_id, *, for_update=False):
        held = self._held
        if held is not None and (held[0].res_type, held[0].res_id) == (res_type, res_id):
            return held[0]
        return super().current(res_type, res_id, for_update=for_update)

    # plan_per_call: never prepared. An unnamed statement is planned with its actual values;
    # a prepared one may switch to a generic plan, which for searches can be a scan (seen at
    # 100k patients). Everything else is prepared after a few runs (psycopg's default).
    def query(self, sql, params=(), *, plan_per_call=False):
        self._begin()
        with self.conn.cursor() as cur:
            cur.execute(pg(sql), tuple(params), prepare=False if plan_per_call else None)
            return cur.fetchall()

    def execute(self, sql, params=(), *, plan_per_call=False):
        self._begin()
        with self.conn.cursor() as cur:
            cur.execute(pg(sql), tuple(params), prepare=False if plan_per_call else None)
            return cur.rowcount

    def executemany(self, sql, rows: Sequence[Sequence]):
        self._begin()
        with self.conn.cursor() as cur:
            cur.executemany(pg(sql), rows)

    def lock(self, key: str) -> None:
        h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
        self.query("SELECT pg_advisory_xact_lock(?)", (h,))

    def write(self, row: Row, index_rows: IndexRows | None) -> Row:
        if not self.begun and self._held is None:
            self._held = (row, index_rows)  # perhaps the only work: see the class comment
            return row
        self._begin()
        return self._send(row, index_rows)

    def _send(self, row: Row, index_rows: IndexRows | None) -> Row:
        """The version, the current row and the index rows, all in one statement.

        Data-modifying CTEs insert the version, delete the resource's old index rows and
        insert the new ones (from one JSON document: postgres_sql.py), and the main
        statement upserts the current row. Everything but the version insert happens only if
        the version was inserted: a concurrent writer that got there first makes the statement
        change nothing and return no row (never an aborted transaction), and WriteConflict is
        raised. So the statement is safe on its own, outside any transaction.
        """
        ctes = [f"v AS ({INSERT_VERSION}"
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (res_type, res_id, version) DO NOTHING RETURNING seq)"]
        params = [row.res_type, row.res_id, row.version, row.last_updated, row.method, row.deleted, row.content]
        if row.version != 1:  # a resource's first version has no old index rows
            for table in INDEX_TABLES:
                ctes.append(f"d_{table.name} AS (DELETE FROM {table.name} WHERE res_type = %s AND res_id = %s "
                            "AND EXISTS (SELECT 1 FROM v))")
                params += [row.res_type, row.res_id]
        per_table = index_rows_by_table([(row.res_type, row.res_id, None if row.deleted else index_rows)])
        if per_table:
            ctes.append("doc AS (SELECT %s::jsonb AS d)")
            params.append(index_document(per_table))
        for name in per_table:
            ctes.append(f"i_{name} AS ({insert_index_rows(name, 'EXISTS (SELECT 1 FROM v)')})")
        rows = self.conn.execute(
            "WITH " + ", ".join(ctes) + f" {INSERT_CURRENT}SELECT %s, %s, %s, %s, %s, %s, v.seq FROM v {UPSERT_CURRENT}"
            "RETURNING seq",
            params + [row.res_type, row.res_id, row.version, row.last_updated, row.deleted, row.content]).fetchall()
        if not rows:
            raise WriteConflict(f"{row.res_type}/{row.res_id} version {row.version} was written by another transaction")
        return Row(row.res_type, row.res_id, row.version, row.last_updated, row.deleted, row.content, row.method,
                   rows[0][0])


class PostgresRepository(Repository):
    dialect = "postgresql"

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10):
        parts = urlsplit(url.replace("postgres://", "postgresql://", 1))
        query = parse_qs(parts.query)
        self.schema = (query.pop("schema", [None])[0] or None)
        if self.schema and not _SCHEMA_NAME.match(self.schema):
            raise ValueError(f"invalid schema name {self.schema!r}")
        conninfo = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
        # Autocommit connections: a lone read is one round trip; transactions say BEGIN themselves.
        kwargs = {"autocommit": True}
        if self.schema:
            kwargs["options"] = f"-c search_path={self.schema}"
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        self.pool = ConnectionPool(conninfo, min_size=min_size, max_size=max_size, kwargs=kwargs, open=True)
        self._conninfo, self._conn_kwargs = conninfo, kwargs
        self._committer: GroupCommitter | None = None
        self._reader: ReadBatcher | None = None
        self._own_conns: dict[str, psycopg.Connection] = {}  # the writer's and the reader's
        self._lazy_lock = threading.Lock()
        self._closed = False

    # -- plain creates and updates from the event loop, batched (see postgres_batch.py) ----------
    loop_writes = frozenset({"create", "update"})
    loop_writes_read_first = True

    async def run_write_async(self, work):
        return await self._write_committer().run_async(work)

    def _write_committer(self) -> GroupCommitter:
        def start() -> GroupCommitter:
            memory = NewestSeqMemory()
            return GroupCommitter(lambda: write_batch(lambda: self._own_connection("writer"), memory),
                                  name="postgres-writer")
        return self._committer or self._started("_committer", start)

    # -- reads by id from the event loop, batched (see read_batch.py) ----------------------------
    async def current_async(self, res_type, res_id):
        reader = self._reader or self._started("_reader", lambda: ReadBatcher(self._current_rows, name="postgres-reader"))
        return await reader.current(res_type, res_id)

    def _started(self, attribute: str, start):
        """The writer's or the reader's thread, started on first use (never after close)."""
        with self._lazy_lock:
            if self._closed:
                raise StorageError("the repository is closed")
            if getattr(self, attribute) is None:
                setattr(self, attribute, start())
            return getattr(self, attribute)

    def _current_rows(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Row]:
        """The current rows of several resources, by one statement (on the reader thread)."""
        params = ([t for t, _ in keys], [i for _, i in keys])
        for attempt in range(2):
            conn = self._own_connection("reader")
            try:
                found = conn.execute(_CURRENT_ROWS_SQL, params).fetchall()
                return {(r[0], r[1]): current_row(r) for r in found}
            except psycopg.Error as exc:
                if not conn.broken or attempt:  # (a read is safe to make again, on a new connection)
                    raise StorageError(f"database unavailable: {exc}") from exc
        raise AssertionError("unreachable")

    def _own_connection(self, role: str) -> psycopg.Connection:
        """A connection of the writer's or the reader's own (one thread each), made again if it broke."""
        conn = self._own_conns.get(role)
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                conn.close()
            try:
                self._own_conns[role] = conn = psycopg.connect(self._conninfo, connect_timeout=10, **self._conn_kwargs)
            except psycopg.Error as exc:
                raise StorageError(f"database unavailable: {exc}") from exc
        return conn

    @contextmanager
    def transaction(self, *, write: bool = False) -> Iterator[PostgresSession]:
        conn = self._getconn()
        session = PostgresSession(conn, begun=not write)
        try:
            if not write:
                conn.execute("BEGIN")
            yield session
            session.finish()
            if session.begun:
                conn.execute("COMMIT")
        except BaseException as exc:
            try:
                if session.begun:
                    conn.execute("ROLLBACK")
            except psycopg.Error:
                pass  # (the connection is broken: the pool will notice and replace it)
            self.pool.putconn(conn)
            if isinstance(exc, _LOST_RACE):  # (the database chose this transaction to give way)
                raise WriteConflict(f"the transaction gave way to another: {exc}") from exc
            raise
        self.pool.putconn(conn)

    # A lone statement on an autocommit connection needs no transaction handling: taking the
    # connection from the pool directly skips the pool's commit-on-exit work.
    @contextmanager
    def _lone_statement(self) -> Iterator[PostgresSession]:
        conn = self._getconn()
        try:
            yield PostgresSession(conn)
        finally:
            self.pool.putconn(conn)

    def query_once(self, sql, params=()):
        with self._lone_statement() as s:
            return s.query(sql, params)

    def current(self, res_type, res_id):
        with self._lone_statement() as s:
            return s.current(res_type, res_id)

    def version(self, res_type, res_id, version):
        with self._lone_statement() as s:
            return s.version(res_type, res_id, version)

    def _getconn(self) -> psycopg.Connection:
        try:
            return self.pool.getconn()
        except psycopg.Error as exc:
            raise StorageError(f"database unavailable: {exc}") from exc

    def create_schema(self) -> None:
        with self.pool.connection() as conn, conn.transaction():
            # Serialise concurrent start-ups of several server processes.
            conn.execute("SELECT pg_advisory_xact_lock(7345201)")
            if self.schema:
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            for stmt in ddl("postgresql"):
                conn.execute(stmt)

    def drop_schema(self) -> None:
        with self.pool.connection() as conn:
            if self.schema:
                conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            else:
                for table in ALL_TABLES:
                    conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")

    def close(self) -> None:
        with self._lazy_lock:
            self._closed = True
            committer, self._committer = self._committer, None
            reader, self._reader = self._reader, None
        if committer is not None:
            committer.stop()
        if reader is not None:
            reader.stop()
        for conn in list(self._own_conns.values()):
            conn.close()
        self._own_conns.clear()
        self.pool.close()
