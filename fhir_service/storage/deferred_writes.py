"""SQLite writes held back, then sent as one multi-row statement per table.

Why: SQLite's single writer is the narrow part of the write path. Python's sqlite3 module
gives up the GIL around every statement, and under load each time the writer wants it back it
waits behind the threads doing Python work (parsing, validating, indexing). A create was about
nine statements, so the writer spent more time waiting for the GIL than writing. Holding
writes back until something could see them lets the group committer send a whole batch of
creates or updates as a handful of statements.

Rules that keep this invisible to callers (see SQLiteSession):
- Anything that could read a held-back write sends them first. ``current()`` of a resource
  that is held back is answered from here; of any other resource it needs nothing sent.
- Versions are inserted in the order they were written, so AUTOINCREMENT numbers them (``seq``)
  in write order. Rows returned by ``write`` do not know their seq yet (it is 0); the current
  row takes it from its version inside the INSERT, with no round trip to Python.
- A duplicate version (a lost race) surfaces as :class:`WriteConflict` when sent.
"""
from __future__ import annotations

import sqlite3
from typing import Callable

import orjson

from .base import (HeldWrites, IndexRows, RedoAlone, Row, StorageError, WriteConflict, has_non_finite,
                   index_rows_by_table)
from .schema import INDEX_TABLE, INDEX_TABLES

MAX_PARAMS = 999  # SQLite's host-parameter limit before 3.32 (newer versions allow 32766)

_VERSION_COLUMNS = ("res_type", "res_id", "version", "last_updated", "method", "deleted", "content")
_CURRENT_COLUMNS = ("res_type", "res_id", "version", "last_updated", "deleted", "content", "seq")
# One current row: its seq is its version's, looked up by the version table's unique key.
_CURRENT_VALUES = "(?, ?, ?, ?, ?, ?, (SELECT seq FROM resource_version WHERE res_type = ? AND res_id = ? AND version = ?))"
# The current row is inserted or replaced in one statement. The version insert just before it
# already refuses a duplicate version, which is how a lost race is detected.
_UPSERT_CURRENT = (" ON CONFLICT (res_type, res_id) DO UPDATE SET version = excluded.version, "
                   "last_updated = excluded.last_updated, deleted = excluded.deleted, "
                   "content = excluded.content, seq = excluded.seq")


class DeferredWrites(HeldWrites):
    """Held-back writes that SQLite sessions send a few statements at a time."""

    def send(self, execute: Callable[[str, list], object], end: int | None = None) -> None:
        """Write the held-back rows up to ``end`` (all by default) and forget them. If a
        statement fails they are not forgotten: the caller rolls back what was sent."""
        end = len(self.rows) if end is None else end
        batch = self.rows[:end]
        if not batch:
            return
        rewritten = [row for row, _ in batch if row.version > 1]  # replace these rows' index rows
        for table in INDEX_TABLES if rewritten else ():
            for res_type in {row.res_type for row in rewritten}:
                ids = [row.res_id for row in rewritten if row.res_type == res_type]
                for chunk in _chunks(ids, MAX_PARAMS - 1):
                    execute(f"DELETE FROM {table.name} WHERE res_type = ? AND res_id IN ({', '.join('?' * len(chunk))})",
                            [res_type, *chunk])
        try:
            insert_rows(execute, "resource_version", _VERSION_COLUMNS, [_version_values(r) for r, _ in batch])
        except sqlite3.IntegrityError as exc:
            raise WriteConflict(f"a version written here already exists: {exc}") from exc
        insert_rows(execute, "resource", _CURRENT_COLUMNS,
                    [(r.res_type, r.res_id, r.version, r.last_updated, int(r.deleted), r.content, r.res_type, r.res_id,
                      r.version) for r, _ in batch], _UPSERT_CURRENT, _CURRENT_VALUES)
        for table_name, rows in _index_rows(batch).items():
            table = INDEX_TABLE[table_name]
            insert_rows(execute, table.name, table.stored_columns, rows)
        del self.rows[:end]
        for row, _ in batch:
            del self.by_key[(row.res_type, row.res_id)]  # (a resource is held back at most once)

    def send_as_one_statement(self, conn: sqlite3.Connection, guards: dict[tuple, int] | None = None) -> bool:
        """Send the held-back first versions of new resources as ONE statement, outside any
        transaction, so SQLite runs it as a transaction of its own. False if this cannot be used
        (a later version, a value JSON cannot carry), and nothing was sent. The connection must
        have install_one_statement_trigger.

        ``guards``: {type set: newest seq} that must still hold (Session.newest_seq answers given
        without asking SQLite); if one does not, nothing is stored and RedoAlone is raised.

        The statement inserts one JSON document into a temporary table whose trigger writes
        every row (_ONE_STATEMENT_DDL). It costs SQLite more work than the multi-row INSERTs
        (each row is read out of JSON), but that work runs without the GIL; what it saves is
        the writer thread's waits to get the GIL back after each statement, which under load
        cost more than the statements themselves.
        """
        if any(row.version != 1 or row.deleted for row, _ in self.rows):
            return False
        document = _index_rows(self.rows)
        if has_non_finite(document):
            return False  # JSON has no Infinity: the multi-row INSERTs bind it as it is
        document["versions"] = [_version_values(r) for r, _ in self.rows]
        if guards:
            document["guards"] = [{"types": list(key), "newest": newest} for key, newest in guards.items()]
        try:
            text = orjson.dumps(document).decode("utf-8")
        except TypeError:  # e.g. an integer past 64 bits: the multi-row INSERTs take it
            return False
        try:
            conn.execute("INSERT INTO pending_writes (document) VALUES (?)", (text,))
        except sqlite3.IntegrityError as exc:
            if str(exc) == _GUARD_FAILED:
                raise RedoAlone("a conformance resource was stored since the writes were checked") from exc
            raise WriteConflict(f"a version written here already exists: {exc}") from exc
        except sqlite3.Error as exc:
            raise StorageError(f"the writes were not stored: {exc}") from exc
        self.rows.clear()
        self.by_key.clear()
        return True


def _version_values(r: Row) -> tuple:
    return r.res_type, r.res_id, r.version, r.last_updated, r.method, int(r.deleted), r.content


def _index_rows(writes: list[tuple[Row, IndexRows | None]]) -> dict[str, list[tuple]]:
    return index_rows_by_table((r.res_type, r.res_id, None if r.deleted else rows) for r, rows in writes)


_GUARD_FAILED = "newest seq changed"


def _one_statement_ddl() -> list[str]:
    def columns(n: int) -> str:
        return ", ".join(f"json_extract(value, '$[{i}]')" for i in range(n))
    body = [
        # Nothing is stored if a newest seq the writes were told is no longer the newest.
        f"SELECT RAISE(ABORT, '{_GUARD_FAILED}') FROM json_each(NEW.document, '$.guards') AS g "
        "WHERE IFNULL((SELECT MAX((SELECT MAX(seq) FROM resource_version WHERE res_type = t.value)) "
        "FROM json_each(g.value, '$.types') AS t), 0) IS NOT json_extract(g.value, '$.newest');",
        # In array order, so AUTOINCREMENT numbers the versions in write order.
        f"INSERT INTO resource_version ({', '.join(_VERSION_COLUMNS)}) "
        f"SELECT {columns(len(_VERSION_COLUMNS))} FROM json_each(NEW.document, '$.versions') ORDER BY key;",
        f"INSERT INTO resource ({', '.join(_CURRENT_COLUMNS)}) "
        "SELECT " + ", ".join(f"json_extract(value, '$[{_VERSION_COLUMNS.index(c)}]')" for c in _CURRENT_COLUMNS[:-1]) +
        ", (SELECT seq FROM resource_version AS v WHERE v.res_type = json_extract(value, '$[0]') "
        "AND v.res_id = json_extract(value, '$[1]') AND v.version = json_extract(value, '$[2]')) "
        "FROM json_each(NEW.document, '$.versions');",
    ]
    for table in INDEX_TABLES:
        names = table.stored_columns
        body.append(f"INSERT INTO {table.name} ({', '.join(names)}) "
                    f"SELECT {columns(len(names))} FROM json_each(NEW.document, '$.{table.name}');")
    body.append("DELETE FROM pending_writes;")
    return ["CREATE TEMP TABLE IF NOT EXISTS pending_writes (document TEXT NOT NULL)",
            "CREATE TEMP TRIGGER IF NOT EXISTS write_pending AFTER INSERT ON pending_writes BEGIN "
            + " ".join(body) + " END"]


_ONE_STATEMENT_DDL = _one_statement_ddl()


def install_one_statement_trigger(conn: sqlite3.Connection) -> bool:
    """The temporary table and trigger that send_as_one_statement needs, on this connection.
    False if SQLite here has no JSON functions: the multi-row INSERTs are used instead."""
    try:
        for statement in _ONE_STATEMENT_DDL:
            conn.execute(statement)
        conn.execute("SELECT json_extract('[1]', '$[0]')")
    except sqlite3.Error:
        return False
    return True


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def insert_rows(execute, table: str, columns: tuple[str, ...], rows: list[tuple], suffix: str = "",
                one: str | None = None) -> None:
    """Multi-row INSERTs: one statement is one sqlite3_step, one release of the GIL.
    ``one`` is the VALUES tuple of one row when it is not just a placeholder per column."""
    width = len(rows[0]) if rows else len(columns)
    one = one or "(" + ", ".join("?" * width) + ")"
    for chunk in _chunks(rows, max(1, MAX_PARAMS // width)):
        execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([one] * len(chunk))}{suffix}",
                [v for row in chunk for v in row])
