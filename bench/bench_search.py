"""Search benchmark: load a generated asthma population, time the issue's searches (p50/p99)
and show the query plans. Not a test; run by hand:

    python bench/bench_search.py load    --database sqlite:///data/bench-10k.db --patients 10000
    python bench/bench_search.py run     --database sqlite:///data/bench-10k.db [--database <a larger one>]
    python bench/bench_search.py explain --database sqlite:///data/bench-10k.db

(``run`` with two databases interleaves their rounds and prints the growth from one to the other.)

``load`` writes in large transactions through the search indexer (index_resource) with
batched inserts (COPY on PostgreSQL) — the bulk path, not HTTP. ``run`` calls
fhir_service.search.search() directly (no HTTP), so the figures are the search layer's cost.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import parse_qsl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tqdm import tqdm  # noqa: E402

from fhir_service import jsonutil  # noqa: E402
from fhir_service.definitions.registry import get_definitions  # noqa: E402
from fhir_service.search import index_resource, search  # noqa: E402
from fhir_service.storage import open_repository  # noqa: E402
from fhir_service.storage.base import index_rows_by_table  # noqa: E402
from fhir_service.storage.schema import ALL_TABLES, INDEX_TABLES, index_ddl, index_names  # noqa: E402
from generate_population import NHS, patient_bundle, practices  # noqa: E402

STAMP = "2025-06-01T00:00:00.000Z"


def _copy(conn, table: str, cols: tuple[str, ...], rows: list[tuple]) -> None:
    with conn.cursor() as cur:
        with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as cp:
            for r in rows:
                cp.write_row(r)


# -- loading: worker processes generate and index (the real indexer), the parent writes ------------

_DEFS = None


def _init_worker() -> None:
    global _DEFS
    _DEFS = get_definitions()


def _extract(task: tuple[int, int, int, bool]) -> tuple[list[tuple], dict[str, list[tuple]]]:
    """Resources of patients [lo, hi) (and the shared practices if asked), as version rows and
    index rows (res_type, res_id, n, ...), exactly as storage writes them (index_rows_by_table)."""
    lo, hi, seed, with_practices = task
    resources = list(practices(patients_total)) if with_practices else []
    for i in range(lo, hi):
        resources.extend(patient_bundle(i, seed))
    versions = []
    for res in resources:
        res["meta"] = {"versionId": "1", "lastUpdated": STAMP}
        versions.append((res["resourceType"], res["id"], 1, STAMP, "PUT", False, jsonutil.dumps(res)))
    index = {t.name: [] for t in INDEX_TABLES}
    index.update(index_rows_by_table((r["resourceType"], r["id"], index_resource(_DEFS, r)) for r in resources))
    return versions, index


patients_total = 0


def _set_total(n: int) -> None:
    global patients_total
    patients_total = n
    _init_worker()


def _write(repo, versions: list[tuple], index: dict[str, list[tuple]]) -> None:
    with repo.transaction(write=True) as s:
        start = s.query("SELECT COALESCE(MAX(seq), 0) FROM resource_version")[0][0]
        vcols = ("res_type", "res_id", "version", "last_updated", "method", "deleted", "content")
        if s.dialect == "postgresql":
            _copy(s.conn, "resource_version", vcols, versions)
        else:
            s.executemany(f"INSERT INTO resource_version ({', '.join(vcols)}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                          [v[:5] + (int(v[5]),) + v[6:] for v in versions])
        s.execute("INSERT INTO resource (res_type, res_id, version, last_updated, deleted, content, seq) "
                  "SELECT res_type, res_id, version, last_updated, deleted, content, seq FROM resource_version "
                  "WHERE seq > ?", (start,))
        for t in INDEX_TABLES:
            rows = index[t.name]
            if not rows:
                continue
            cols = t.stored_columns
            if s.dialect == "postgresql":
                _copy(s.conn, t.name, cols, rows)
            else:
                rows.sort(key=lambda r: (r[0], r[1], r[3], r[2]))  # clustered key order: fewer page splits
                s.executemany(f"INSERT INTO {t.name} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
                              rows)


def load(args) -> None:
    repo = open_repository(args.database)
    repo.drop_schema()
    repo.create_schema()
    # Bulk load: secondary indexes are built once at the end (then ANALYZE), not row by row.
    with repo.transaction(write=True) as s:
        for t in INDEX_TABLES:
            for name in index_names(s.dialect, t):
                s.execute(f"DROP INDEX IF EXISTS {name}")
    if repo.dialect == "sqlite":
        conn = repo._conn()
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-1000000")
    expected = args.patients * 21 + 2 * (args.patients // 5000 + 1)
    step = max(1, args.batch // 21)
    tasks = [(lo, min(lo + step, args.patients), args.seed, lo == 0) for lo in range(0, args.patients, step)]
    n, t0 = 0, time.perf_counter()
    with mp.get_context("fork").Pool(args.workers, initializer=_set_total, initargs=(args.patients,)) as pool, \
            tqdm(total=expected, unit="res", desc="loading", smoothing=0.05) as bar:
        for versions, index in pool.imap(_extract, tasks):
            _write(repo, versions, index)
            n += len(versions)
            bar.update(len(versions))
    took_rows = time.perf_counter() - t0
    with repo.transaction(write=True) as s:
        for t in INDEX_TABLES:
            for stmt in index_ddl(s.dialect, t):
                s.execute(stmt)
    if repo.dialect == "postgresql":
        with repo.pool.connection() as conn:  # statistics, and the visibility map for index-only scans
            for table in ALL_TABLES:
                conn.execute(f"VACUUM (ANALYZE) {table}")
    else:
        with repo.transaction(write=True) as s:
            s.execute("ANALYZE")
    took = time.perf_counter() - t0
    print(f"loaded {n} resources in {took:.1f} s: {n / took:.0f} resources/s "
          f"(rows {took_rows:.1f} s, secondary indexes + ANALYZE {took - took_rows:.1f} s)")
    if repo.dialect == "sqlite":
        repo.close()
        print(f"file size {Path(repo.path).stat().st_size / 1e9:.2f} GB")
    else:
        print(f"schema size {_pg_size(repo) / 1e9:.2f} GB")
        repo.close()


def _pg_size(repo) -> int:
    with repo.pool.connection() as conn:
        return int(conn.execute("SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                                "JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = %s "
                                "AND c.relkind = 'r'", (repo.schema or "public",)).fetchone()[0])


def _queries(patients: int, seed: int, rng: random.Random) -> dict[str, tuple[str, str]]:
    i = rng.randrange(patients)
    pat = patient_bundle(i, seed)[0]
    nhs = pat["identifier"][0]["value"]
    family = pat["name"][0]["family"]
    return {
        "careplan patient+status": ("CarePlan", f"patient=Patient/pat-{i}&status=active"),
        "obs patient+code+date sort": ("Observation", f"patient=Patient/pat-{i}&code=http://snomed.info/sct|18491006"
                                                      f"&date=ge2024-01-01&_sort=-date"),
        "token (NHS number)": ("Patient", f"identifier={NHS}|{nhs}"),
        "string prefix + birthdate": ("Patient", f"family={family[:3]}&birthdate={pat['birthDate']}"),
        "chained subject:Patient.identifier": ("Observation", f"subject:Patient.identifier={NHS}|{nhs}"
                                                              f"&code=http://loinc.org|82668-5"),
        "_has (patients with active plan)": ("Patient", f"identifier={NHS}|{nhs}&_has:CarePlan:patient:status=active"),
        "_revinclude CarePlan": ("Patient", f"_id=pat-{i}&_revinclude=CarePlan:patient"),
        "_summary=count patient obs": ("Observation", f"patient=Patient/pat-{i}&_summary=count"),
        "string prefix (paged, ~2.5%)": ("Patient", f"family={family[:4]}&_count=20"),
    }


def _patients(repo) -> int:
    with repo.transaction() as s:
        return int(s.query("SELECT COUNT(*) FROM resource WHERE res_type = ?", ["Patient"])[0][0])


def _warm(repo) -> str:
    """Bring the whole database into the OS page cache, the same for every size."""
    if repo.dialect == "sqlite":
        with open(repo.path, "rb") as f:
            while f.read(1 << 24):
                pass
        return "file read once (OS page cache warm)"
    with repo.pool.connection() as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm SCHEMA public")
        rels = conn.execute("SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace "
                            "WHERE s.nspname = %s AND c.relkind IN ('r', 'i')", (repo.schema or "public",)).fetchall()
        for (rel,) in rels:
            conn.execute("SELECT public.pg_prewarm(%s::regclass, 'read')", (rel,))
    return "relations pg_prewarm'ed (OS page cache warm)"


def _time_round(repo, defs, patients: int, seed: int, rng: random.Random, timings: dict) -> None:
    for label, (rtype, qs) in _queries(patients, seed, rng).items():
        t0 = time.perf_counter()
        with repo.transaction(write=True) as s:
            b = search(s, defs, resource_type=rtype, params=parse_qsl(qs), base_url="http://b/fhir", strict=True)
        timings.setdefault(label, []).append((time.perf_counter() - t0) * 1000)
        if label.startswith("token") and b.get("total") != 1:
            raise SystemExit(f"{label}: expected 1 match, got {b.get('total')}")


def _pct(ts: list[float]) -> tuple[float, float]:
    ts = sorted(ts)
    return statistics.median(ts), ts[min(len(ts) - 1, int(len(ts) * 0.99))]


def run(args) -> None:
    """Time the searches on one or more databases, interleaving rounds between them so that
    machine noise hits every size alike; with two, report the growth (second / first)."""
    defs = get_definitions()
    dbs = []
    for url in args.database:
        repo = open_repository(url)
        if repo.dialect == "sqlite" and args.mmap:
            repo._conn().execute(f"PRAGMA mmap_size={args.mmap}")
        n = _patients(repo)
        state = _warm(repo)
        dbs.append((url, repo, n, random.Random(args.seed)))
    for url, repo, n, _ in dbs:  # warm-up rounds, not timed
        warm_rng = random.Random(args.seed + 1)
        for _ in range(args.warmup):
            _time_round(repo, defs, n, args.seed, warm_rng, {})
    timings = [{} for _ in dbs]
    for _ in tqdm(range(args.repeat), desc="searching", unit="round"):
        for (url, repo, n, rng), tm in zip(dbs, timings):
            _time_round(repo, defs, n, args.seed, rng, tm)
    print(f"\n{dbs[0][1].dialect}: {args.repeat} rounds interleaved, a random patient each round; "
          f"cache: {state} + {args.warmup} warm-up rounds each")
    head = f"{'search (ms)':36}" + "".join(f" {f'{n // 1000}k p50':>9} {f'{n // 1000}k p99':>9}" for _, _, n, _ in dbs)
    if len(dbs) == 2:
        head += f" {'p50 x':>7} {'p99 x':>7}"
    print(head)
    for label in timings[0]:
        line = f"{label:36}"
        stats = [_pct(tm[label]) for tm in timings]
        for p50, p99 in stats:
            line += f" {p50:9.2f} {p99:9.2f}"
        if len(dbs) == 2:
            line += f" {stats[1][0] / stats[0][0]:7.2f} {stats[1][1] / stats[0][1]:7.2f}"
        print(line)
    for _, repo, _, _ in dbs:
        repo.close()


class _Recorder:
    """A session proxy that records the statements a search runs."""

    def __init__(self, s):
        self._s, self.statements = s, []

    def __getattr__(self, name):
        return getattr(self._s, name)

    def query(self, sql, params=(), **kw):
        self.statements.append((sql, list(params)))
        return self._s.query(sql, params, **kw)


def explain(args) -> None:
    defs = get_definitions()
    repo = open_repository(args.database[0])
    n = _patients(repo)
    rng = random.Random(args.seed)
    for label, (rtype, qs) in _queries(n, args.seed, rng).items():
        with repo.transaction(write=True) as s:
            rec = _Recorder(s)
            search(rec, defs, resource_type=rtype, params=parse_qsl(qs), base_url="http://b/fhir", strict=True)
            print(f"\n== {label}: {rtype}?{qs}")
            prefix, column = (("EXPLAIN QUERY PLAN ", -1) if s.dialect == "sqlite"
                              else ("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) ", 0))
            for sql, params in rec.statements:
                if not sql.lstrip().upper().startswith("SELECT"):
                    continue
                print("  --", sql[:100] + ("..." if len(sql) > 100 else ""))
                for r in s.query(prefix + sql, params):
                    print("   ", r[column])
    repo.close()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="search benchmark")
    ap.add_argument("command", choices=["load", "run", "explain"])
    ap.add_argument("--database", required=True, action="append",
                    help="load/explain: one; run: one or two (e.g. 10k then 100k: rounds interleave)")
    ap.add_argument("--patients", type=int, default=10000, help="load: how many patients")
    ap.add_argument("--workers", type=int, default=2, help="load: processes extracting index rows")
    ap.add_argument("--warmup", type=int, default=20, help="run: untimed rounds per database first")
    ap.add_argument("--mmap", type=int, default=0, help="run: SQLite PRAGMA mmap_size for the bench connection")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args(argv)
    if args.command == "load":
        if len(args.database) != 1:
            ap.error("load takes one --database")
        args.database = args.database[0]
    {"load": load, "run": run, "explain": explain}[args.command](args)


if __name__ == "__main__":
    main()
