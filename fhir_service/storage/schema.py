"""Table definitions shared by the SQLite and PostgreSQL backends.

Column types are written once in a neutral form and mapped per dialect:
TEXT, INT (64-bit), REAL (double), BOOL. Index tables all start with (res_type, res_id), the
resource whose values they index; their remaining columns are filled by the search layer.
"""
from __future__ import annotations

from dataclasses import dataclass, field

TYPES = {
    "sqlite": {"TEXT": "TEXT", "INT": "INTEGER", "REAL": "REAL", "BOOL": "INTEGER", "SEQ": "INTEGER PRIMARY KEY AUTOINCREMENT",
               "KEY": "TEXT"},
    "postgresql": {"TEXT": "TEXT", "INT": "BIGINT", "REAL": "DOUBLE PRECISION", "BOOL": "BOOLEAN", "SEQ": "BIGSERIAL PRIMARY KEY",
                   "KEY": 'TEXT COLLATE "C"'},
}


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]  # index tables: the columns after res_type, res_id
    types: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = field(default=())


# Search-index tables (filled by fhir_service.search.indexer, one row per indexed value).
# Owned by the search layer. Every row is (res_type, res_id, param, grp, ...): ``grp`` ties
# together the components of one composite value (0 for ordinary values). KEY columns are text
# compared byte-wise in both dialects (COLLATE "C" on PostgreSQL) so that prefix ranges and
# sort order agree between backends. Dates are epoch milliseconds, [low, high] inclusive.
INDEX_TABLES: tuple[Table, ...] = (
    Table("idx_string", ("param", "grp", "value_norm", "value_exact"), ("KEY", "INT", "KEY", "TEXT"),
          (("param", "value_norm"),)),
    Table("idx_token", ("param", "grp", "system", "code", "text_norm"), ("KEY", "INT", "KEY", "KEY", "KEY"),
          (("param", "code", "system"),)),
    Table("idx_reference", ("param", "grp", "target_type", "target_id", "target_version", "url"),
          ("KEY", "INT", "TEXT", "TEXT", "TEXT", "KEY"),
          (("param", "target_id", "target_type"), ("param", "url"))),
    Table("idx_date", ("param", "grp", "low", "high"), ("KEY", "INT", "INT", "INT"),
          (("param", "low"), ("param", "high"))),
    Table("idx_number", ("param", "grp", "value", "low", "high"), ("KEY", "INT", "REAL", "REAL", "REAL"),
          (("param", "value"),)),
    Table("idx_quantity", ("param", "grp", "system", "code", "value", "low", "high", "canon_code", "canon_value"),
          ("KEY", "INT", "KEY", "KEY", "REAL", "REAL", "REAL", "KEY", "REAL"),
          (("param", "code", "value"), ("param", "canon_code", "canon_value"))),
    Table("idx_uri", ("param", "grp", "value"), ("KEY", "INT", "KEY"), (("param", "value"),)),
)


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
        cols = ",\n            ".join(f"{c} {t[ty]}" for c, ty in zip(table.columns, table.types))
        stmts.append(f"""CREATE TABLE IF NOT EXISTS {table.name} (
            res_type TEXT NOT NULL,
            res_id TEXT NOT NULL,
            {cols})""")
        # (res_type, res_id, param): replace_index deletes, includes and _sort keys probe by resource.
        stmts.append(f"CREATE INDEX IF NOT EXISTS {table.name}_resource ON {table.name} (res_type, res_id, param)")
        for i, idx_cols in enumerate(table.indexes):
            stmts.append(f"CREATE INDEX IF NOT EXISTS {table.name}_{i} ON {table.name} (res_type, {', '.join(idx_cols)})")
    return stmts


ALL_TABLES = ("resource_version", "resource", "search_snapshot", "search_snapshot_entry") + tuple(t.name for t in INDEX_TABLES)
