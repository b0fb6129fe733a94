"""Search benchmark: load a generated asthma population, time the issue's searches (p50/p99)
and show the query plans. Not a test; run by hand:

    python bench/bench_search.py load --database sqlite:///data/bench-10k.db --patients 10000
    python bench/bench_search.py run  --database sqlite:///data/bench-10k.db --patients 10000
    python bench/bench_search.py explain --database ... --patients 10000

``load`` writes in large transactions through the search indexer (index_resource) with
batched inserts (COPY on PostgreSQL) — the bulk path, not HTTP. ``run`` calls
fhir_service.search.search() directly (no HTTP), so the figures are the search layer's cost.
"""
from __future__ import annotations

import argparse
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
from fhir_service.search import compiler as C  # noqa: E402
from fhir_service.search import index_resource, search  # noqa: E402
from fhir_service.search.plan import make_plan  # noqa: E402
from fhir_service.storage import open_repository  # noqa: E402
from fhir_service.storage.schema import INDEX_TABLES  # noqa: E402
from generate_population import NHS, patient_bundle, population  # noqa: E402

STAMP = "2025-06-01T00:00:00.000Z"


def _copy(conn, table: str, cols: tuple[str, ...], rows: list[tuple]) -> None:
    with conn.cursor() as cur:
        with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as cp:
            for r in rows:
                cp.write_row(r)


def _flush(repo, batch: list[dict], defs) -> None:
    versions, index = [], {t.name: [] for t in INDEX_TABLES}
    for res in batch:
        res["meta"] = {"versionId": "1", "lastUpdated": STAMP}
        versions.append((res["resourceType"], res["id"], 1, STAMP, "PUT", False, jsonutil.dumps(res)))
        for table, rows in index_resource(defs, res).items():
            index[table].extend((res["resourceType"], res["id"], *r) for r in rows)
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
            cols = ("res_type", "res_id") + t.columns
            if s.dialect == "postgresql":
                _copy(s.conn, t.name, cols, rows)
            else:
                s.executemany(f"INSERT INTO {t.name} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
                              rows)


def load(args) -> None:
    defs = get_definitions()
    repo = open_repository(args.database)
    repo.drop_schema()
    repo.create_schema()
    expected = args.patients * 21 + 2 * (args.patients // 5000 + 1)
    batch, n, t0 = [], 0, time.perf_counter()
    with tqdm(total=expected, unit="res", desc="loading", smoothing=0.05) as bar:
        for res in population(args.patients, args.seed):
            batch.append(res)
            if len(batch) >= args.batch:
                _flush(repo, batch, defs)
                n += len(batch)
                bar.update(len(batch))
                batch = []
        if batch:
            _flush(repo, batch, defs)
            n += len(batch)
            bar.update(len(batch))
    took = time.perf_counter() - t0
    if repo.dialect == "postgresql":
        with repo.pool.connection() as conn:
            conn.execute("ANALYZE")
    else:
        with repo.transaction(write=True) as s:
            s.execute("ANALYZE")
    print(f"loaded {n} resources in {took:.1f} s: {n / took:.0f} resources/s")
    repo.close()


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


def run(args) -> None:
    defs = get_definitions()
    repo = open_repository(args.database)
    rng = random.Random(args.seed)
    timings: dict[str, list[float]] = {}
    for _ in tqdm(range(args.repeat), desc="searching", unit="round"):
        for label, (rtype, qs) in _queries(args.patients, args.seed, rng).items():
            t0 = time.perf_counter()
            with repo.transaction(write=True) as s:
                b = search(s, defs, resource_type=rtype, params=parse_qsl(qs), base_url="http://b/fhir", strict=True)
            timings.setdefault(label, []).append((time.perf_counter() - t0) * 1000)
            if label.startswith("token") and b.get("total") != 1:
                raise SystemExit(f"{label}: expected 1 match, got {b.get('total')}")
    print(f"\n{repo.dialect} {args.patients} patients, {args.repeat} rounds (ms)")
    print(f"{'search':40} {'p50':>8} {'p99':>8}")
    for label, ts in timings.items():
        ts.sort()
        p99 = ts[min(len(ts) - 1, int(len(ts) * 0.99))]
        print(f"{label:40} {statistics.median(ts):8.2f} {p99:8.2f}")
    repo.close()


def explain(args) -> None:
    defs = get_definitions()
    repo = open_repository(args.database)
    rng = random.Random(args.seed)
    for label, (rtype, qs) in _queries(args.patients, args.seed, rng).items():
        with repo.transaction() as s:
            ctx = C.Ctx(defs, s.dialect)
            plan = make_plan(ctx, rtype, parse_qsl(qs), strict=True, conditional=True)
            where, params = C.where_all(ctx, plan.tqs)
            sql = f"SELECT r.res_id FROM resource r WHERE {where}"
            prefix = "EXPLAIN QUERY PLAN " if s.dialect == "sqlite" else "EXPLAIN "
            rows = s.query(prefix + sql, params)
        print(f"\n== {label}: {rtype}?{qs}")
        for r in rows:
            print("   ", r[-1])
    repo.close()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="search benchmark")
    ap.add_argument("command", choices=["load", "run", "explain"])
    ap.add_argument("--database", required=True)
    ap.add_argument("--patients", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args(argv)
    {"load": load, "run": run, "explain": explain}[args.command](args)


if __name__ == "__main__":
    main()
