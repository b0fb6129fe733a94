"""The parts of a Session that are plain SQL, shared by both backends."""
from __future__ import annotations

from .base import Row, Session

COLUMNS = "res_type, res_id, version, last_updated, deleted, content"
CURRENT_SQL = f"SELECT {COLUMNS}, seq FROM resource WHERE res_type = ? AND res_id = ?"


def _row(r: tuple, method: str = "", seq: int = 0) -> Row:
    return Row(r[0], r[1], int(r[2]), r[3], bool(r[4]), r[5], method, seq)


def current_row(r: tuple) -> Row:
    return _row(r, seq=r[6])


class SQLSession(Session):
    for_update_clause = ""

    def current(self, res_type: str, res_id: str, *, for_update: bool = False) -> Row | None:
        rows = self.query(CURRENT_SQL + (self.for_update_clause if for_update else ""), (res_type, res_id))
        return current_row(rows[0]) if rows else None

    def version(self, res_type: str, res_id: str, version: int) -> Row | None:
        rows = self.query(
            f"SELECT {COLUMNS}, method, seq FROM resource_version WHERE res_type = ? AND res_id = ? AND version = ?",
            (res_type, res_id, version))
        return _row(rows[0], rows[0][6], rows[0][7]) if rows else None

    def _history_where(self, res_type, res_id, since) -> tuple[list[str], list]:
        where, params = [], []
        if res_type:
            where.append("res_type = ?")
            params.append(res_type)
        if res_id:
            where.append("res_id = ?")
            params.append(res_id)
        if since:
            where.append("last_updated >= ?")
            params.append(since)
        return where, params

    def history(self, *, res_type=None, res_id=None, since=None, at=None, before_seq=None, limit=50) -> list[Row]:
        where, params = self._history_where(res_type, res_id, since)
        if before_seq is not None:
            where.append("seq < ?")
            params.append(before_seq)
        if at:
            # Only the version that was current at the instant: the newest one not after it.
            where.append("last_updated <= ?")
            params.append(at)
            where.append("NOT EXISTS (SELECT 1 FROM resource_version n WHERE n.res_type = v.res_type "
                         "AND n.res_id = v.res_id AND n.version > v.version AND n.last_updated <= ?)")
            params.append(at)
        sql = f"SELECT {COLUMNS}, method, seq FROM resource_version v"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        params.append(limit)
        return [_row(r, r[6], r[7]) for r in self.query(sql, params)]

    def count_history(self, *, res_type=None, res_id=None, since=None) -> int:
        where, params = self._history_where(res_type, res_id, since)
        sql = "SELECT COUNT(*) FROM resource_version"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return int(self.query(sql, params)[0][0])
