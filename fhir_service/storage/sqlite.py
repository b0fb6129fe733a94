"""SQLite backend: the embedded default. One file, WAL mode, one connection per thread."""
from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from .base import Repository, Row, StorageError, WriteConflict
from .schema import ALL_TABLES, ddl
from .sql_session import SQLSession


class SQLiteSession(SQLSession):
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def query(self, sql, params=()):
        return self.conn.execute(sql, tuple(params)).fetchall()

    def execute(self, sql, params=()):
        return self.conn.execute(sql, tuple(params)).rowcount

    def executemany(self, sql, rows: Sequence[Sequence]):
        self.conn.executemany(sql, rows)

    def bool_value(self, value: bool):
        return 1 if value else 0

    def lock(self, key: str) -> None:
        # Write transactions begin IMMEDIATE, holding SQLite's single writer lock already.
        return None

    def _insert_version(self, row: Row) -> int:
        try:
            cur = self.conn.execute(
                "INSERT INTO resource_version (res_type, res_id, version, last_updated, method, deleted, content) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (row.res_type, row.res_id, row.version, row.last_updated, row.method, int(row.deleted), row.content))
        except sqlite3.IntegrityError as exc:
            raise WriteConflict(f"{row.res_type}/{row.res_id} version {row.version} already exists") from exc
        return cur.lastrowid

    def _insert_current(self, row, deleted, seq):
        try:
            super()._insert_current(row, deleted, seq)
        except sqlite3.IntegrityError as exc:
            raise WriteConflict(f"{row.res_type}/{row.res_id} already exists") from exc


class SQLiteRepository(Repository):
    dialect = "sqlite"

    def __init__(self, url: str):
        path = url.split("sqlite:///", 1)[1] if url.startswith("sqlite:///") else url.split("sqlite:", 1)[1]
        self.path = path or ":memory:"
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=60000")
            conn.execute("PRAGMA cache_size=-65536")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def transaction(self, *, write: bool = False) -> Iterator[SQLiteSession]:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.OperationalError as exc:
            raise StorageError(f"could not start a transaction: {exc}") from exc
        try:
            yield SQLiteSession(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def current(self, res_type, res_id):
        return SQLiteSession(self._conn()).current(res_type, res_id)  # one autocommit SELECT

    def query_once(self, sql, params=()):
        # The connection is in autocommit mode: a lone SELECT needs no BEGIN/COMMIT round.
        return self._conn().execute(sql, tuple(params)).fetchall()

    def create_schema(self) -> None:
        conn = self._conn()
        for stmt in ddl("sqlite"):
            conn.execute(stmt)

    def drop_schema(self) -> None:
        conn = self._conn()
        for table in ALL_TABLES:
            conn.execute(f"DROP TABLE IF EXISTS {table}")

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()
