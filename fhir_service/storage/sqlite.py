"""SQLite backend: the embedded default. One file, WAL mode, one connection per thread."""
from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .base import Repository, Row, Session, StorageError, WriteConflict
from .group_commit import GroupCommitter
from .schema import ALL_TABLES, ddl
from .sql_session import SQLSession


class SQLiteSession(SQLSession):
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    # SQLite plans each statement without looking at parameter values: plan_per_call is moot.
    def query(self, sql, params=(), *, plan_per_call=False):
        return self.conn.execute(sql, tuple(params)).fetchall()

    def execute(self, sql, params=(), *, plan_per_call=False):
        return self.conn.execute(sql, tuple(params)).rowcount

    def executemany(self, sql, rows: Sequence[Sequence]):
        self.conn.executemany(sql, rows)

    def insert_rows(self, table, columns, rows):
        # One multi-row INSERT is one sqlite3_step, so one release of the GIL: executemany
        # steps (and gives up the GIL) once per row, and under load every time it wants the
        # GIL back the writer waits behind the threads doing Python work.
        width = len(columns)
        per_statement = max(1, _MAX_PARAMS // width)
        for start in range(0, len(rows), per_statement):
            chunk = rows[start:start + per_statement]
            values = ", ".join(["(" + ", ".join("?" * width) + ")"] * len(chunk))
            self.conn.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values}",
                              [v for row in chunk for v in row])

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


_MAX_PARAMS = 999  # SQLite's host-parameter limit before 3.32 (newer versions allow 32766)
_BACKSTOP_PAGES = 10000  # ~40 MB of WAL


class _Checkpointer(threading.Thread):
    """Copies the WAL back into the database every half second (PASSIVE: never blocks anyone)."""

    def __init__(self, path: str, interval: float = 0.5):
        super().__init__(name="sqlite-checkpointer", daemon=True)
        self.path, self.interval = path, interval
        self._stopping = threading.Event()

    def run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=5, isolation_level=None, check_same_thread=False)
        try:
            while not self._stopping.wait(self.interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    pass  # busy or closing: the next round, or the backstop, catches up
        finally:
            conn.close()

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=5)


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
        self._checkpointer: _Checkpointer | None = None
        # Writers in this process queue on a Python lock: SQLite's own busy handler waits by
        # sleeping (up to 100 ms at a time), which wrecks throughput under contention.
        # Writers in other processes still meet at SQLite's lock (busy_timeout).
        self._write_lock = threading.RLock()
        self._committer: GroupCommitter | None = None

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=60000")
            conn.execute("PRAGMA cache_size=-65536")
            # Checkpoints (which fsync) run in a background thread, not inside a client's commit;
            # the large automatic limit is only a backstop should that thread fall behind.
            conn.execute(f"PRAGMA wal_autocheckpoint={_BACKSTOP_PAGES}")
            conn.execute("PRAGMA journal_size_limit=67108864")  # shrink the WAL file back after a busy spell
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def transaction(self, *, write: bool = False) -> Iterator[SQLiteSession]:
        if not write:
            yield from self._transaction(False)
            return
        with self._write_lock:
            yield from self._transaction(True)

    def _transaction(self, write: bool) -> Iterator[SQLiteSession]:
        conn = self._conn()
        if conn.in_transaction:
            # Nested (e.g. a lookup made while validating inside a write): part of the outer one.
            yield SQLiteSession(conn)
            return
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.OperationalError as exc:
            raise StorageError(f"could not start a transaction: {exc}") from exc
        try:
            yield SQLiteSession(conn)
        except BaseException:
            if conn.in_transaction:  # (a failed statement may already have ended it)
                conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:  # never leave a half-finished transaction for the next user
                conn.execute("ROLLBACK")
            raise StorageError(f"could not commit: {exc}") from exc

    def run_write(self, work: Callable[[Session], Any]) -> Any:
        conn = self._conn()
        if conn.in_transaction or self.path == ":memory:":
            # Called from inside a transaction (e.g. by work already running): join it.
            with self.transaction(write=True) as s:
                return work(s)
        return self._group_committer().run(work)

    def _group_committer(self) -> GroupCommitter:
        if self._committer is None:
            with self._all_lock:
                if self._committer is None:
                    self._committer = GroupCommitter(lambda: self.transaction(write=True), name="sqlite-writer")
        return self._committer

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

    def start_background_work(self) -> None:
        """Checkpoint the WAL in the background (call once per server process)."""
        if self._checkpointer is None and self.path != ":memory:":
            self._checkpointer = _Checkpointer(self.path)
            self._checkpointer.start()

    def close(self) -> None:
        if self._committer is not None:
            self._committer.stop()
            self._committer = None
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        with self._all_lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()
