"""SQL shared by the PostgreSQL session (postgres.py) and its write batches (postgres_batch.py)."""
from __future__ import annotations

import math
from functools import lru_cache

from .. import jsonutil
from .base import has_non_finite
from .schema import INDEX_TABLE

INSERT_VERSION = "INSERT INTO resource_version (res_type, res_id, version, last_updated, method, deleted, content) "
INSERT_CURRENT = "INSERT INTO resource (res_type, res_id, version, last_updated, deleted, content, seq) "
# A new current row, or the next version of one: never over a version other than the one before.
UPSERT_CURRENT = ("ON CONFLICT (res_type, res_id) DO UPDATE SET version = EXCLUDED.version, "
                  "last_updated = EXCLUDED.last_updated, deleted = EXCLUDED.deleted, content = EXCLUDED.content, "
                  "seq = EXCLUDED.seq WHERE resource.version = EXCLUDED.version - 1 ")

# Neutral column type -> the PostgreSQL type a JSON value is cast to.
_CASTS = {"TEXT": "text", "KEY": "text", "INT": "bigint", "INT4": "integer", "REAL": "float8", "BOOL": "boolean"}


def pg(sql: str) -> str:
    """Our SQL uses ``?`` placeholders; psycopg wants ``%s`` (and literal % doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


def index_document(per_table: dict[str, list[tuple]]) -> str:
    """Index rows (storage.base.index_rows_by_table) as one JSON text for insert_index_rows.
    Sending the rows as one JSON text costs psycopg one string; typed arrays cost it Python work
    for every value."""
    if has_non_finite(per_table):
        per_table = {name: [tuple(map(_json_safe, r)) for r in rows] for name, rows in per_table.items()}
    return jsonutil.dumps(per_table)


def _json_safe(value):
    """JSON has no Infinity or NaN (orjson would write null); PostgreSQL reads them as text."""
    if type(value) is float and not math.isfinite(value):
        return "NaN" if value != value else "Infinity" if value > 0 else "-Infinity"
    return value


@lru_cache(maxsize=None)
def insert_index_rows(table_name: str, condition: str = "true") -> str:
    """INSERT into an index table of its rows in the JSON document ``doc.d`` (a CTE of the same
    statement holding index_document), each row (res_type, res_id, n, *values)."""
    table = INDEX_TABLE[table_name]
    values = ", ".join(f"(r ->> {i + 3})::{_CASTS[ty]}" for i, ty in enumerate(table.types))
    cols = ", ".join(table.stored_columns)
    return (f"INSERT INTO {table_name} ({cols}) SELECT r ->> 0, r ->> 1, (r ->> 2)::integer, {values} "
            f"FROM doc, jsonb_array_elements(doc.d -> '{table_name}') AS e(r) WHERE {condition}")
