"""The one repository interface that both backends implement.

Storage knows nothing of FHIR rules: it keeps versions of JSON documents keyed by
(type, id), the current version of each, and the search-index rows that the search layer
computes. Everything a write touches is written in one database transaction.

Write transactions are serialised per key where it matters:
- SQLite: ``BEGIN IMMEDIATE`` takes the single writer lock, so a transaction that reads and
  then writes sees no interleaved writer.
- PostgreSQL: ``current(..., for_update=True)`` locks the row, and :meth:`Session.lock` takes a
  transaction-scoped advisory lock (used for conditional create).
"""
from __future__ import annotations

import asyncio
import math
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from .schema import INDEX_TABLE, INDEX_TABLES

T = TypeVar("T")

# table name -> rows (tuples, without the leading res_type/res_id columns)
IndexRows = dict[str, list[tuple]]


class StorageError(Exception):
    """A database problem that is not the client's fault."""


class WriteConflict(StorageError):
    """Another transaction wrote the same resource first (e.g. two creates of one new id)."""


class RedoAlone(WriteConflict):
    """A batch of writes was refused whole, before anything was stored, for a reason that
    running each write again on its own resolves (see group_commit.py). A conflict: a
    write that meets it on its own is tried again from the start, like any lost race."""


@dataclass(frozen=True)
class Row:
    res_type: str
    res_id: str
    version: int
    last_updated: str  # FHIR instant in UTC, millisecond precision: sorts as text
    deleted: bool
    content: str | None  # the stored JSON text (client JSON + meta), None for a tombstone
    method: str = ""  # POST | PUT | PATCH | DELETE: how this version was made
    seq: int = 0  # global write order, for system history


class Session(ABC):
    """One database transaction."""

    dialect: str  # "sqlite" | "postgresql"

    @abstractmethod
    def current(self, res_type: str, res_id: str, *, for_update: bool = False) -> Row | None:
        """The latest version (a tombstone if deleted), or None if never written."""

    @abstractmethod
    def version(self, res_type: str, res_id: str, version: int) -> Row | None: ...

    @abstractmethod
    def write(self, row: Row, index_rows: IndexRows | None) -> Row:
        """Append ``row`` as a new version, make it current and replace the index rows.

        Raises WriteConflict if the version already exists (a concurrent writer won)."""

    @abstractmethod
    def history(self, *, res_type: str | None = None, res_id: str | None = None,
                since: str | None = None, at: str | None = None,
                before_seq: int | None = None, limit: int = 50) -> list[Row]:
        """Versions, newest first. ``at`` keeps only the version current at that instant."""

    @abstractmethod
    def count_history(self, *, res_type: str | None = None, res_id: str | None = None,
                      since: str | None = None) -> int: ...

    @abstractmethod
    def lock(self, key: str) -> None:
        """Serialise transactions that use the same key until this one ends."""

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] = (), *, plan_per_call: bool = False) -> list[tuple]:
        """Run SQL written with ``?`` placeholders; all values must be parameters.

        ``plan_per_call``: the same SQL text meets very different values (a search: one
        patient's id, or a code half the table has), so a backend that caches plans must plan
        it afresh for each call's values."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = (), *, plan_per_call: bool = False) -> int: ...

    @abstractmethod
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def newest_seq(self, res_types: Sequence[str]) -> int:
        """The seq of the newest version of any resource of these types (0 if none)."""
        return self.query(newest_seq_sql(len(res_types)), list(res_types))[0][0] or 0

    # A request's share of a transaction that holds several (see group_commit.py): if it fails,
    # only its own writes are taken back. Only the sessions a GroupCommitter runs need these.
    def begin_request(self) -> None:
        raise NotImplementedError

    def end_request(self, failed: bool) -> None:
        raise NotImplementedError

    def replace_index(self, res_type: str, res_id: str, index_rows: IndexRows | None) -> None:
        """Delete the resource's index rows in every index table and insert the new ones.

        Rows are stored as (res_type, res_id, n, *row), ``n`` numbering the resource's rows in
        each table (part of SQLite's clustered primary key; see storage/schema.py)."""
        for table in INDEX_TABLES:
            self.execute(f"DELETE FROM {table.name} WHERE res_type = ? AND res_id = ?", (res_type, res_id))
        for table_name, rows in index_rows_by_table([(res_type, res_id, index_rows)]).items():
            table = INDEX_TABLE[table_name]
            self.insert_rows(table.name, table.stored_columns, rows)

    def insert_rows(self, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
        """INSERT several rows into one table (backends may do it in fewer statements)."""
        marks = ", ".join("?" for _ in columns)
        self.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


class HeldWrites:
    """Writes held back by a session until they are sent: in write order, and by resource."""

    def __init__(self) -> None:
        self.rows: list[tuple[Row, IndexRows | None]] = []
        self.by_key: dict[tuple[str, str], Row] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def holds(self, res_type: str, res_id: str) -> bool:
        return (res_type, res_id) in self.by_key

    def get(self, res_type: str, res_id: str) -> Row | None:
        return self.by_key.get((res_type, res_id))

    def add(self, row: Row, index_rows: IndexRows | None) -> Row:
        """Hold ``row`` back. A resource already held back must be sent first."""
        self.rows.append((row, index_rows))
        self.by_key[(row.res_type, row.res_id)] = row
        return row

    def drop_from(self, start: int) -> None:
        """Forget the writes held back since ``start`` (their request failed)."""
        for row, _ in self.rows[start:]:
            del self.by_key[(row.res_type, row.res_id)]
        del self.rows[start:]


def index_rows_by_table(resources: Iterable[tuple[str, str, IndexRows | None]]) -> dict[str, list[tuple]]:
    """The index rows of several resources, (res_type, res_id, index rows) each, gathered per
    table as stored: (res_type, res_id, n, *row), ``n`` numbering a resource's rows in a table."""
    per_table: dict[str, list[tuple]] = {}
    for res_type, res_id, index_rows in resources:
        for table_name, rows in (index_rows or {}).items():
            if rows:
                per_table.setdefault(table_name, []).extend(
                    (res_type, res_id, n, *values) for n, values in enumerate(rows))
    return per_table


# Where each index table's REAL columns are in a stored row (after res_type, res_id, n).
_REAL_POSITIONS = {t.name: [i + 3 for i, ty in enumerate(t.types) if ty == "REAL"] for t in INDEX_TABLES}


def has_non_finite(per_table: dict[str, list[tuple]]) -> bool:
    """Whether any index row (as gathered by index_rows_by_table) holds an infinite or NaN float,
    which JSON cannot carry. Only REAL columns can: most tables have none, and are not read."""
    for name, rows in per_table.items():
        positions = _REAL_POSITIONS[name]
        if positions and any(not math.isfinite(row[i]) for row in rows for i in positions
                             if type(row[i]) is float):
            return True
    return False


def newest_seq_sql(n_types: int) -> str:
    # One MAX per type: each is a single probe of the (res_type, seq) index, where a MAX over
    # "res_type IN (...)" reads every version of those types.
    return "SELECT MAX(m) FROM (" + " UNION ALL ".join(
        ["SELECT MAX(seq) AS m FROM resource_version WHERE res_type = ?"] * n_types) + ") AS newest"


class Repository(ABC):
    dialect: str

    @abstractmethod
    @contextmanager
    def transaction(self, *, write: bool = False) -> Iterator[Session]:
        """A transaction: committed on normal exit, rolled back on an exception."""

    def run_write(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in a write transaction and return its result once committed.

        If ``work`` raises, none of its writes are kept and the exception propagates. Backends
        may commit several concurrent calls together (see SQLiteRepository).
        """
        with self.transaction(write=True) as s:
            return work(s)

    # Which plain writes ("create", "update") the backend can take from the event loop itself,
    # without a worker thread: run_write_async then awaits them.
    loop_writes: frozenset[str] = frozenset()
    # True: the work given to run_write_async cannot read (PostgreSQL's batches). An update
    # reads the current version first (current_async), and its write of the next version
    # fails with WriteConflict if another writer stored that version meanwhile.
    loop_writes_read_first: bool = False

    async def run_write_async(self, work: Callable[[Session], T]) -> T:
        """run_write, awaited (only for the kinds of write in loop_writes)."""
        raise NotImplementedError

    def current(self, res_type: str, res_id: str) -> Row | None:
        """The current version of one resource, read on its own (no surrounding transaction needed)."""
        with self.transaction() as s:
            return s.current(res_type, res_id)

    # An embedded database answers a read by id in microseconds, in process: such a read can
    # be made right on the event loop. A database across a network cannot be waited for there.
    embedded: bool = False

    async def current_async(self, res_type: str, res_id: str) -> Row | None:
        """current, awaited on the event loop (a backend may do better than _read_async:
        PostgreSQL batches them, read_batch.py)."""
        return await self._read_async(self.current, res_type, res_id)

    def version(self, res_type: str, res_id: str, version: int) -> Row | None:
        """One version of one resource, read on its own."""
        with self.transaction() as s:
            return s.version(res_type, res_id, version)

    async def version_async(self, res_type: str, res_id: str, version: int) -> Row | None:
        return await self._read_async(self.version, res_type, res_id, version)

    async def _read_async(self, read: Callable[..., T], *args) -> T:
        """A lone read awaited on the event loop: right there if ``embedded``, else in a worker thread."""
        if self.embedded:
            return read(*args)
        return await asyncio.to_thread(read, *args)

    def newest_seq(self, res_types: Sequence[str]) -> int:
        """Session.newest_seq, read on its own."""
        return self.query_once(newest_seq_sql(len(res_types)), list(res_types))[0][0] or 0

    def query_once(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """One read-only statement, as cheaply as the backend allows (it is atomic on its own)."""
        with self.transaction() as s:
            return s.query(sql, params)

    def start_background_work(self) -> None:
        """Start any background maintenance the backend wants while serving (default: none)."""

    @abstractmethod
    def create_schema(self) -> None: ...

    @abstractmethod
    def drop_schema(self) -> None:
        """Remove every table (tests and resets)."""

    @abstractmethod
    def close(self) -> None: ...


def open_repository(url: str) -> Repository:
    """``sqlite:///path/to.db`` (the default) or ``postgresql://user@host:port/db[?schema=NAME]``."""
    if url.startswith("sqlite:"):
        from .sqlite import SQLiteRepository
        return SQLiteRepository(url)
    if url.startswith(("postgresql:", "postgres:")):
        from .postgres import PostgresRepository
        return PostgresRepository(url)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://...")
