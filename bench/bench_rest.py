"""REST throughput against a trivial-FastAPI baseline measured in the same run.

    .venv/bin/python bench/bench_rest.py [--backends sqlite,postgres] [--requests 3000] [--concurrency 16]

Starts the baseline app and the FHIR server (one uvicorn worker each, same settings), then
measures read, create (with validation), update, search-by-id and transaction ingest with
concurrent keep-alive clients. Each interaction is measured in alternating slices with the
baseline (baseline, ours, baseline, ours, ...), and its ratio is the median of the slices'
ratios: load from elsewhere on the machine then hits both sides alike. Prints a table of each
figure as a fraction of the baseline's requests/second, with p50/p99 latency, and writes
bench/results/rest.json.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import LoadResult, build_request, run_load  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PG = "postgresql://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], port: int, probe: str, env: dict | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, **(env or {})), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            if requests.get(f"http://127.0.0.1:{port}{probe}", timeout=2).status_code < 500:
                return proc
        except requests.RequestException:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{cmd} did not start")


def patient_body(i: int, tag: str) -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"},
                                                      {"system": "urn:bench", "value": f"{tag}-{i}"}],
            "name": [{"family": f"Bench{i}", "given": ["Ann", "Marie"]}], "gender": "female",
            "birthDate": f"19{50 + i % 50}-0{1 + i % 9}-1{i % 10}",
            "address": [{"line": [f"{i} High Street"], "city": "Edinburgh", "postalCode": "EH1 1AA"}]}


SLICES = 4  # alternations of baseline and ours per interaction


class Baseline:
    """The trivial FastAPI endpoint, kept running so that every measurement can alternate with it."""

    def __init__(self, concurrency: int, workers: int = 1):
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.concurrency = concurrency
        self.proc = start([sys.executable, "-m", "uvicorn", "baseline_app:app", "--app-dir", "bench", "--port",
                           str(self.port), "--log-level", "warning", "--no-access-log", "--workers", str(workers)], self.port, "/fhir/Patient/baseline")
        self.slices: list[LoadResult] = []
        self._load(500)  # warm-up (not one of the slices)

    def _load(self, n: int) -> LoadResult:
        return run_load("127.0.0.1", self.port, lambda i: build_request("GET", "/fhir/Patient/baseline", self.host), n,
                        self.concurrency)

    def measure(self, n: int) -> LoadResult:
        r = self._load(n)
        self.slices.append(r)
        return r

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def interleaved(baseline: Baseline, port: int, make, n: int, conc: int) -> tuple[LoadResult, float]:
    """Ours and the baseline in alternating slices: (ours merged, median of the slice ratios)."""
    per = max(1, n // SLICES)
    ratios, ours = [], []
    for _ in range(SLICES):
        base = baseline.measure(per)
        mine = run_load("127.0.0.1", port, make, per, conc)
        ours.append(mine)
        ratios.append(mine.rps / base.rps)
    return LoadResult.merge(ours), statistics.median(ratios)


def bench_backend(name: str, database: str, n: int, conc: int, baseline: Baseline, workers: int = 1) -> list[dict]:
    port = free_port()
    host = f"127.0.0.1:{port}"
    proc = start([sys.executable, "-m", "fhir_service.cli", "serve", "--port", str(port), "--database", database,
                  "--workers", str(workers)],
                 port, "/fhir/metadata")
    rows = []
    try:
        tag = uuid.uuid4().hex[:8]
        http = requests.Session()
        ids = [http.post(f"http://{host}/fhir/Patient", json=patient_body(i, tag),
                         headers={"Content-Type": "application/fhir+json"}).json()["id"] for i in range(200)]

        def record(label, measured):
            result, ratio = measured
            rows.append({"backend": name, "interaction": label, "rps": round(result.rps, 1),
                         "ratio": round(ratio, 3), "p50_ms": round(result.p50, 2),
                         "p99_ms": round(result.p99, 2), "errors": result.errors, "requests": result.requests})

        record("read", interleaved(baseline, port, lambda i: build_request("GET", f"/fhir/Patient/{ids[i % 200]}", host), n, conc))
        record("search by _id", interleaved(baseline, port,
                                         lambda i: build_request("GET", f"/fhir/Patient?_id={ids[i % 200]}", host), n, conc))
        bodies = [json.dumps(patient_body(i, tag)).encode() for i in range(100)]
        record("create (validated)", interleaved(baseline, port,
                                              lambda i: build_request("POST", "/fhir/Patient", host, bodies[i % 100]), n // 2, conc))

        def update(i: int) -> bytes:
            pid = ids[i % 200]
            body = dict(patient_body(i, tag), id=pid, birthDate=f"19{10 + i % 80}-01-01")
            return build_request("PUT", f"/fhir/Patient/{pid}", host, json.dumps(body).encode())
        record("update (validated)", interleaved(baseline, port, update, n // 2, conc))

        per_bundle = 50

        def bundle(i: int) -> bytes:
            entries = []
            for j in range(per_bundle // 2):
                full = f"urn:uuid:{uuid.uuid4()}"
                entries.append({"fullUrl": full, "resource": patient_body(i * 100 + j, tag),
                                "request": {"method": "POST", "url": "Patient"}})
                entries.append({"resource": {"resourceType": "Observation", "status": "final",
                                             "code": {"coding": [{"system": "http://snomed.info/sct", "code": "18491006"}]},
                                             "subject": {"reference": full}, "effectiveDateTime": "2024-01-01T10:00:00Z",
                                             "valueQuantity": {"value": 420 + j, "unit": "L/min",
                                                               "system": "http://unitsofmeasure.org", "code": "L/min"}},
                                "request": {"method": "POST", "url": "Observation"}})
            return build_request("POST", "/fhir", host, json.dumps({"resourceType": "Bundle", "type": "transaction",
                                                                     "entry": entries}).encode())
        tx = run_load("127.0.0.1", port, bundle, 40, 4)
        rows.append({"backend": name, "interaction": "transaction ingest", "resources_per_s": round(tx.rps * per_bundle, 1),
                     "p50_ms": round(tx.p50, 1), "p99_ms": round(tx.p99, 1), "errors": tx.errors})
    finally:
        proc.terminate()
        proc.wait(30)
    return rows


def run_backends(a, baseline: Baseline) -> list[dict]:
    rows = []
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-{uuid.uuid4().hex[:6]}"
    for backend in a.backends.split(","):
        if backend == "sqlite":
            rows += bench_backend("sqlite", f"sqlite:///{tmp}/bench.db", a.requests, a.concurrency, baseline, a.workers)
        elif backend == "postgres":
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            url = f"{PG}?schema={schema}"
            try:
                rows += bench_backend("postgres", url, a.requests, a.concurrency, baseline, a.workers)
            finally:
                sys.path.insert(0, str(ROOT))
                from fhir_service.storage import open_repository
                repo = open_repository(url)
                repo.drop_schema()
                repo.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes, for both servers alike")
    a = ap.parse_args()

    baseline = Baseline(a.concurrency, a.workers)
    try:
        rows = run_backends(a, baseline)
    finally:
        baseline.stop()
    slices = baseline.slices
    base_rps = LoadResult.merge(slices).rps
    print(f"baseline (trivial FastAPI endpoint), over all its slices: {base_rps:.0f} req/s "
          f"(slices ranged {min(r.rps for r in slices):.0f}-{max(r.rps for r in slices):.0f})")
    print("\n| backend | interaction | req/s | × baseline | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "resources_per_s" in r:
            print(f"| {r['backend']} | {r['interaction']} | {r['resources_per_s']} resources/s | – | {r['p50_ms']} | {r['p99_ms']} | {r['errors']} |")
        else:
            print(f"| {r['backend']} | {r['interaction']} | {r['rps']} | {r['ratio']:.0%} | {r['p50_ms']} | {r['p99_ms']} | {r['errors']} |")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "rest.json").write_text(json.dumps({"baseline_rps": base_rps, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
