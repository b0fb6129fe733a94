"""Table definitions shared by the SQLite and PostgreSQL backends.

Column types are written once in a neutral form and mapped per dialect:
TEXT, INT (64-bit), REAL (double), BOOL. Index tables all start with (res_type, res_id), the
resource whose values they index; their remaining columns are filled by the search layer.
"""
from __future__ import annotations

from dataclasses import dataclass, field

TYPES = {
    "sqlite": {"TEXT": "TEXT", "INT": "INTEGER", "REAL": "REAL", "BOOL": "INTEGER", "SEQ": "INTEGER PRIMARY KEY AUTOINCREMENT",
               "KEY": "TEXT", "INT4": "INTEGER"},
    "postgresql": {"TEXT": "TEXT", "INT": "BIGINT", "REAL": "DOUBLE PRECISION", "BOOL": "BOOLEAN", "SEQ": "BIGSERIAL PRIMARY KEY",
                   "KEY": 'TEXT COLLATE "C"', "INT4": "INTEGER"},
}


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]  # index tables: the columns after res_type, res_id (``n`` is added by storage)
    types: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = field(default=())
    partial: tuple[tuple[int, str], ...] = field(default=())  # (index number, WHERE) for partial indexes

    @property
    def stored_columns(self) -> tuple[str, ...]:
        """An index table's columns as stored: (res_type, res_id, n, *columns)."""
        return ("res_type", "res_id", "n") + self.columns


# Search-index tables (filled by fhir_service.search.indexer, one row per indexed value).
# Owned by the search layer. Every row is (res_type, res_id, n, param, grp, ...): ``n`` numbers
# the rows of one resource in one table (storage fills it: base.index_rows_by_table), ``grp``
# ties together the components of one composite value (0 for ordinary values). KEY columns are
# text compared byte-wise in both dialects (COLLATE "C" on PostgreSQL) so that prefix ranges and
# sort order agree between backends. Dates are epoch milliseconds, [low, high] inclusive.
#
# Layout (issue 3: lookups must not slow down as the population grows):
# - SQLite: each table is WITHOUT ROWID, clustered on (res_type, res_id, param, n): the rows of
#   one resource are stored together, so the correlated probes (EXISTS, _sort keys, includes,
#   replace_index) are one B-tree seek with no separate index. Every secondary index carries
#   the primary key, so "SELECT res_id ... WHERE res_type, param, value" reads the index only.
# - PostgreSQL: heap tables with a (res_type, res_id, param) index for the probes; the value
#   indexes INCLUDE res_id so the id-set lookups can be index-only scans.
INDEX_TABLES: tuple[Table, ...] = (
    Table("idx_string", ("param", "grp", "value_norm", "value_exact"), ("KEY", "INT4", "KEY", "TEXT"),
          (("param", "value_norm"),)),
    Table("idx_token", ("param", "grp", "system", "code", "text_norm"), ("KEY", "INT4", "KEY", "KEY", "KEY"),
          (("param", "code", "system"),)),
    Table("idx_reference", ("param", "grp", "target_type", "target_id", "target_version", "url"),
          ("KEY", "INT4", "TEXT", "TEXT", "TEXT", "KEY"),
          (("param", "target_id", "target_type"), ("param", "url")), ((1, "url IS NOT NULL"),)),
    Table("idx_date", ("param", "grp", "low", "high"), ("KEY", "INT4", "INT", "INT"),
          (("param", "low", "high"), ("param", "high", "low"))),
    Table("idx_number", ("param", "grp", "value", "low", "high"), ("KEY", "INT4", "REAL", "REAL", "REAL"),
          (("param", "value"),)),
    Table("idx_quantity", ("param", "grp", "system", "code", "value", "low", "high", "canon_code", "canon_value"),
          ("KEY", "INT4", "KEY", "KEY", "REAL", "REAL", "REAL", "KEY", "REAL"),
          (("param", "code", "value"), ("param", "canon_code", "canon_value"))),
    Table("idx_uri", ("param", "grp", "value"), ("KEY", "INT4", "KEY"), (("param", "value"),)),
)

INDEX_TABLE = {t.name: t for t in INDEX_TABLES}  # by name, as IndexRows are keyed


def index_table_ddl(dialect: str, table: Table) -> str:
    t = TYPES[dialect]
    cols = ",\n            ".join(f"{c} {t[ty]}" + (" NOT NULL" if c in ("param", "grp") else "")
                                  for c, ty in zip(table.columns, table.types))
    # SQLite: clustered on the resource's rows (see the layout note above); PostgreSQL: a heap.
    end = ",\n            PRIMARY KEY (res_type, res_id, param, n)) WITHOUT ROWID" if dialect == "sqlite" else ")"
    return f"""CREATE TABLE IF NOT EXISTS {table.name} (
            res_type TEXT NOT NULL,
            res_id TEXT NOT NULL,
            n {t['INT4']} NOT NULL,
            {cols}{end}"""


def _indexes(dialect: str, table: Table) -> list[tuple[str, str]]:
    """(name, CREATE INDEX) of the secondary indexes of one index table."""
    out = []
    if dialect != "sqlite":  # SQLite: the clustered primary key is this index
        # (res_type, res_id, param): replace_index deletes, includes and _sort keys probe by resource.
        name = f"{table.name}_resource"
        out.append((name, f"CREATE INDEX IF NOT EXISTS {name} ON {table.name} (res_type, res_id, param)"))
    partial = dict(table.partial)
    for i, idx_cols in enumerate(table.indexes):
        name = f"{table.name}_{i}"
        sql = f"CREATE INDEX IF NOT EXISTS {name} ON {table.name} (res_type, {', '.join(idx_cols)})"
        if dialect != "sqlite":
            sql += " INCLUDE (res_id)"
        if i in partial:
            sql += f" WHERE {partial[i]}"
        out.append((name, sql))
    return out


def index_ddl(dialect: str, table: Table) -> list[str]:
    """The secondary indexes of one index table (the bulk loader creates them after loading)."""
    return [sql for _, sql in _indexes(dialect, table)]


def index_names(dialect: str, table: Table) -> list[str]:
    return [name for name, _ in _indexes(dialect, table)]


def ddl(dialect: str) -> list[str]:
    t = TYPES[dialect]
    stmts = [
        f"""CREATE TABLE IF NOT EXISTS resource_version (
            seq {t['SEQ']},
            res_type TEXT NOT NULL,
            res_id TEXT NOT NULL,
            version {t['INT']} NOT NULL,
            last_updated TEXT NOT NULL,
            method TEXT NOT NULL,
            deleted {t['BOOL']} NOT NULL,
            content TEXT,
            UNIQUE (res_type, res_id, version))""",
        "CREATE INDEX IF NOT EXISTS resource_version_type_seq ON resource_version (res_type, seq)",
        "CREATE INDEX IF NOT EXISTS resource_version_updated ON resource_version (last_updated)",
        f"""CREATE TABLE IF NOT EXISTS resource (
            res_type TEXT NOT NULL,
            res_id TEXT NOT NULL,
            version {t['INT']} NOT NULL,
            last_updated TEXT NOT NULL,
            deleted {t['BOOL']} NOT NULL,
            content TEXT,
            seq {t['INT']} NOT NULL,
            PRIMARY KEY (res_type, res_id))""",
        "CREATE INDEX IF NOT EXISTS resource_type_updated ON resource (res_type, last_updated)",
        # Materialised search results, so paging is stable while others write.
        f"""CREATE TABLE IF NOT EXISTS search_snapshot (
            id TEXT PRIMARY KEY,
            created TEXT NOT NULL,
            expires TEXT NOT NULL,
            query TEXT NOT NULL,
            total {t['INT']})""",
        f"""CREATE TABLE IF NOT EXISTS search_snapshot_entry (
            snapshot_id TEXT NOT NULL,
            pos {t['INT']} NOT NULL,
            res_type TEXT NOT NULL,
            res_id TEXT NOT NULL,
            version {t['INT']} NOT NULL,
            mode TEXT NOT NULL,
            PRIMARY KEY (snapshot_id, pos))""",
    ]
    for table in INDEX_TABLES:
        stmts.append(index_table_ddl(dialect, table))
        stmts += index_ddl(dialect, table)
    return stmts


ALL_TABLES = ("resource_version", "resource", "search_snapshot", "search_snapshot_entry") + tuple(t.name for t in INDEX_TABLES)
