"""Shared fixtures: a real server process per storage backend, and an HTTP client for it.

- SQLite always runs.
- PostgreSQL runs when 127.0.0.1:5432 answers (CI sets FHIR_TEST_POSTGRES=1, which turns a
  missing PostgreSQL into a failure instead of a skip). Each run makes its own schema and drops it.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
CONFORMANCE = SHARED / "conformance"
PG_BASE = os.environ.get("FHIR_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_available() -> bool:
    try:
        import psycopg
        with psycopg.connect(PG_BASE, connect_timeout=3):
            return True
    except Exception:
        return False


def require_postgres() -> None:
    if not postgres_available():
        if os.environ.get("FHIR_TEST_POSTGRES") == "1":
            pytest.fail(f"FHIR_TEST_POSTGRES=1 but PostgreSQL is not reachable at {PG_BASE}")
        pytest.skip(f"PostgreSQL not reachable at {PG_BASE} (set FHIR_TEST_POSTGRES=1 to require it)")


def require_conformance(sub: str = "") -> Path:
    path = CONFORMANCE / sub
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared conformance material only exists beside the project in CI")
    return path


def new_database_url(backend: str, tmp_dir: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_dir / ('fhir-' + uuid.uuid4().hex[:8] + '.db')}"
    require_postgres()
    return f"{PG_BASE}?schema=t_{uuid.uuid4().hex[:12]}"


def drop_database(url: str) -> None:
    if url.startswith("postgresql"):
        from fhir_service.storage import open_repository
        repo = open_repository(url)
        repo.drop_schema()
        repo.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `fhir-service serve` subprocess on a free port."""

    def __init__(self, database: str, workers: int = 1, env: dict | None = None):
        self.database = database
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        full_env = dict(os.environ, FHIR_DATABASE=database, PYTHONUNBUFFERED="1", **(env or {}))
        self.log = open(ROOT / ".pytest_cache" / f"server-{self.port}.log", "w") if (ROOT / ".pytest_cache").is_dir() \
            else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fhir_service.cli", "serve", "--port", str(self.port), "--database", database,
             "--workers", str(workers)],
            cwd=ROOT, env=full_env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                if requests.get(self.base + "/metadata", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("server did not start within 120 s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class FHIRClient:
    """requests with the base URL and FHIR JSON headers filled in."""

    def __init__(self, base: str):
        self.base = base
        self.http = requests.Session()
        self.http.headers.update({"Accept": "application/fhir+json"})

    def url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.base}/{path.lstrip('/')}" if path else self.base

    def request(self, method: str, path: str, json=None, headers=None, **kw) -> requests.Response:
        h = {"Content-Type": "application/fhir+json"} if json is not None else {}
        h.update(headers or {})
        data = kw.pop("data", None)
        if json is not None:
            from fhir_service import jsonutil
            data = jsonutil.dumps_bytes(json)
        return self.http.request(method, self.url(path), data=data, headers=h, timeout=120, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, json=None, **kw):
        return self.request("POST", path, json=json, **kw)

    def put(self, path, json=None, **kw):
        return self.request("PUT", path, json=json, **kw)

    def patch(self, path, json=None, **kw):
        return self.request("PATCH", path, json=json, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def backend(request) -> str:
    if request.param == "postgres":
        require_postgres()
    return request.param


@pytest.fixture(scope="session")
def server(backend, tmp_path_factory):
    url = new_database_url(backend, tmp_path_factory.mktemp(backend))
    srv = Server(url)
    yield srv
    srv.stop()
    drop_database(url)


@pytest.fixture
def fhir(server) -> FHIRClient:
    return FHIRClient(server.base)


@pytest.fixture
def uid() -> str:
    """A unique token for test data, so tests sharing a server do not see each other's data."""
    return uuid.uuid4().hex[:12]


def patient_profile(url: str, *required: str) -> dict:
    """A Patient profile that makes each named element required."""
    return {"resourceType": "StructureDefinition", "url": url, "name": "TestProfile", "status": "active",
            "fhirVersion": "4.0.1", "kind": "resource", "abstract": False, "type": "Patient",
            "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient", "derivation": "constraint",
            "differential": {"element": [{"id": f"Patient.{e}", "path": f"Patient.{e}", "min": 1} for e in required]}}


def nhs_number(seed: str, n: int = 0) -> str:
    """A valid (Modulus 11) NHS number derived from ``seed``: unique test data that passes the UK rule."""
    base = (int(seed, 16) % 10**7) * 100 + n % 100  # the last two digits keep n's numbers apart
    while True:
        digits = f"{base:09d}"
        check = 11 - sum(int(d) * w for d, w in zip(digits, range(10, 1, -1))) % 11
        if check != 10:
            return digits + str(0 if check == 11 else check)
        base = (base + 100) % 10**9
