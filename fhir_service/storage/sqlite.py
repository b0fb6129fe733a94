"""SQLite backend: the embedded default. One file, WAL mode, one connection per thread."""
from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .base import IndexRows, RedoAlone, Repository, Row, Session, StorageError, newest_seq_sql
from .deferred_writes import DeferredWrites, insert_rows, install_one_statement_trigger
from .group_commit import GroupCommitter
from .newest_seq import NewestSeqMemory
from .schema import ALL_TABLES, ddl
from .sql_session import CURRENT_SQL, SQLSession, current_row


class SQLiteSession(SQLSession):
    """A transaction on one connection. Writes of resources are held back (deferred_writes.py)
    and sent as a few multi-row statements before anything that could read them, and at commit.

    Under group commit the transaction holds several requests. Each gets its own SAVEPOINT,
    but only once it runs a statement of its own: a request that only writes resources (a
    create, or an update whose current version is read directly) just has its held-back writes
    forgotten if it fails.
    """
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection, *, begun: bool = True, one_statement: bool = False,
                 memory: NewestSeqMemory | None = None):
        self.conn = conn
        self.one_statement = one_statement  # the connection has the trigger for send_as_one_statement
        self.deferred = DeferredWrites()
        # A write transaction begins (BEGIN IMMEDIATE, taking the writer lock) just before its
        # first read or statement, so everything it reads is seen under the lock. One that only
        # writes new resources never needs to: see finish().
        self.begun = begun
        self._request_start: int | None = None  # where the running request's held-back writes begin
        self._request_savepoint = False
        self.broken: BaseException | None = None  # see send_deferred
        self._newest: dict[tuple, int] = {}  # see newest_seq
        self._memory = memory  # the group committer's (newest_seq.py)
        self._assumed: dict[tuple, int] = {}  # newest_seq answers given before BEGIN: checked
        self._stale = False  # one of them did not hold when checked under the writer lock

    def _raw(self, sql: str, params=()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def _begin(self) -> None:
        if not self.begun:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StorageError(f"could not start a transaction: {exc}") from exc
            self.begun = True
            # Answers given before the writer lock was taken are checked now, while nothing of
            # this transaction has been sent (later, its own writes would show). finish() acts.
            self._stale = any(self._query_newest(key) != newest for key, newest in self._assumed.items())

    def finish(self) -> None:
        """Send what is held back, before COMMIT. A transaction that never began holds only new
        resources' first versions (it read nothing): those go as one statement, which SQLite runs
        as a transaction of its own: one trip into SQLite, so one wait for the GIL after it,
        for a whole batch of creates (see deferred_writes.send_as_one_statement)."""
        self._check_not_broken()
        try:
            if not self.begun and self.one_statement and self.deferred and \
                    self.deferred.send_as_one_statement(self.conn, self._assumed):
                return  # (the statement checked the answers given: RedoAlone if one did not hold)
            self.send_deferred()  # (this begins, if not yet, and checks them: _begin)
            if self._stale:
                raise RedoAlone("a conformance resource was stored since the writes were checked")
        except RedoAlone:
            if self._memory is not None:
                self._memory.clear()  # (each request is run again, and asks SQLite)
            raise

    def send_deferred(self) -> None:
        """Before a statement of the caller's own: held-back writes go first, since it may read
        them, and the running request gets its savepoint."""
        self._check_not_broken()
        self._begin()
        if self._request_start is not None and not self._request_savepoint:
            # Earlier requests' writes go before this request's savepoint: its failure keeps them.
            try:
                self.deferred.send(self._raw, self._request_start)
                self._raw("SAVEPOINT request")
            except BaseException as exc:
                # Not this request's failure, and the transaction now holds part of a send:
                # the whole batch is run again, each request alone (GroupCommitter._commit).
                self.broken = exc
                raise StorageError(f"the writes of a shared transaction could not be sent: {exc}") from exc
            self._request_savepoint = True
        self.deferred.send(self._raw)

    def _check_not_broken(self) -> None:
        if self.broken is not None:
            raise StorageError(f"the shared transaction failed: {self.broken}") from self.broken

    def begin_request(self) -> None:
        self._request_start = len(self.deferred)
        self._request_savepoint = False

    def end_request(self, failed: bool) -> None:
        self._check_not_broken()  # (raised out of the batch: see send_deferred)
        savepoint, start = self._request_savepoint, self._request_start
        self._request_start, self._request_savepoint = None, False
        if failed:
            self.deferred.drop_from(0 if savepoint else start or 0)
            if savepoint:
                self._raw("ROLLBACK TO request")
        if savepoint:
            self._raw("RELEASE request")

    # SQLite plans each statement without looking at parameter values: plan_per_call is moot.
    def query(self, sql, params=(), *, plan_per_call=False):
        self.send_deferred()
        return self.conn.execute(sql, tuple(params)).fetchall()

    def execute(self, sql, params=(), *, plan_per_call=False):
        self.send_deferred()
        return self.conn.execute(sql, tuple(params)).rowcount

    def executemany(self, sql, rows: Sequence[Sequence]):
        self.send_deferred()
        self.conn.executemany(sql, rows)

    def insert_rows(self, table, columns, rows):
        self.send_deferred()
        insert_rows(self._raw, table, tuple(columns), rows)

    def current(self, res_type, res_id, *, for_update=False):
        held = self.deferred.get(res_type, res_id)
        if held is not None:
            return held
        self._begin()
        # What is held back is other resources' writes: it cannot change this answer.
        rows = self.conn.execute(CURRENT_SQL, (res_type, res_id)).fetchall()
        return current_row(rows[0]) if rows else None

    def newest_seq(self, res_types):
        # Once per transaction (a batch of requests shares it). Under group commit, before the
        # transaction begins, the answer comes from the committer's memory (a trip into SQLite
        # costs a wait for the GIL after it) and is checked when the writes are stored (see
        # newest_seq.py). Once begun, SQLite is asked, under the writer lock.
        key = tuple(res_types)
        if key not in self._newest:
            if self._memory is not None and not self.begun:
                self._newest[key] = self._assumed[key] = self._memory.answer(key, lambda: self._query_newest(key))
            else:
                self._newest[key] = self._query_newest(key)
        return self._newest[key]

    def _query_newest(self, key: tuple) -> int:
        return self.conn.execute(newest_seq_sql(len(key)), key).fetchone()[0] or 0

    def write(self, row: Row, index_rows: IndexRows | None) -> Row:
        if self._memory:
            self._memory.forget_types([row.res_type])
        if self.deferred.holds(row.res_type, row.res_id):
            self.send_deferred()  # one held-back version per resource: send the earlier one
        return self.deferred.add(row, index_rows)

    def lock(self, key: str) -> None:
        # Write transactions begin IMMEDIATE, holding SQLite's single writer lock.
        self._begin()


# A commit that finds the WAL longer than this checkpoints it inline, stalling its batch for
# tens of milliseconds: the background checkpointer (every 0.1 s) should get there first.
_BACKSTOP_PAGES = 50000  # ~200 MB of WAL


class _Checkpointer(threading.Thread):
    """Copies the WAL back into the database every 0.1 s (PASSIVE: never blocks anyone). Short
    rounds keep the WAL, and each round's copying, small under a steady stream of writes
    (measured: more creates per second and a lower p99 than every 0.5 s)."""

    def __init__(self, path: str, interval: float = 0.1):
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
    embedded = True

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
        self._newest_memory = NewestSeqMemory()  # the group committer's (see SQLiteSession.newest_seq)

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
            conn.execute("PRAGMA temp_store=MEMORY")
            self._local.one_statement = install_one_statement_trigger(conn)
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

    @contextmanager
    def _batch_transaction(self) -> Iterator[SQLiteSession]:
        """A write transaction of the group committer, whose sessions share its memory."""
        with self._write_lock:
            yield from self._transaction(True, self._newest_memory)

    def _transaction(self, write: bool, memory: NewestSeqMemory | None = None) -> Iterator[SQLiteSession]:
        conn = self._conn()
        active = self._open_session()
        if active is not None:
            # Nested (e.g. a lookup made while validating inside a write): part of the outer one,
            # and the same session, so that it sees the writes held back there.
            yield active
            return
        if not write:
            try:
                conn.execute("BEGIN")
            except sqlite3.OperationalError as exc:
                raise StorageError(f"could not start a transaction: {exc}") from exc
        session = self._local.session = SQLiteSession(conn, begun=not write, one_statement=self._local.one_statement,
                                                      memory=memory)
        try:
            yield session
            session.finish()
        except BaseException:
            if conn.in_transaction:  # (a failed statement may already have ended it)
                conn.execute("ROLLBACK")
            raise
        finally:
            self._local.session = None
        if not conn.in_transaction:
            if session.begun:  # SQLite ended it on its own (e.g. disk full): nothing was kept
                raise StorageError("the database rolled the transaction back")
            return  # nothing began, or the writes went as one statement (committed with it)
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:  # never leave a half-finished transaction for the next user
                conn.execute("ROLLBACK")
            raise StorageError(f"could not commit: {exc}") from exc

    def run_write(self, work: Callable[[Session], Any]) -> Any:
        if self._open_session() is not None or self.path == ":memory:":
            # Called from inside a transaction (e.g. by work already running): join it.
            with self.transaction(write=True) as s:
                return work(s)
        return self._group_committer().run(work)

    @property
    def loop_writes(self) -> frozenset[str]:
        return frozenset() if self.path == ":memory:" else frozenset({"create", "update"})

    async def run_write_async(self, work: Callable[[Session], Any]) -> Any:
        return await self._group_committer().run_async(work)

    def _group_committer(self) -> GroupCommitter:
        if self._committer is None:
            with self._all_lock:
                if self._committer is None:
                    self._committer = GroupCommitter(self._batch_transaction, name="sqlite-writer")
        return self._committer

    def _open_session(self) -> SQLiteSession | None:
        """This thread's open transaction, if any."""
        return getattr(self._local, "session", None)

    def _session_or_autocommit(self) -> SQLiteSession:
        """This thread's open transaction (its reads see the writes it holds back), or else a
        session on the connection in autocommit mode: a lone SELECT needs no BEGIN/COMMIT round."""
        return self._open_session() or SQLiteSession(self._conn())

    def current(self, res_type, res_id):
        return self._session_or_autocommit().current(res_type, res_id)

    def version(self, res_type, res_id, version):
        return self._session_or_autocommit().version(res_type, res_id, version)

    def newest_seq(self, res_types):
        return self._session_or_autocommit().newest_seq(res_types)

    def query_once(self, sql, params=()):
        return self._session_or_autocommit().query(sql, params)

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
