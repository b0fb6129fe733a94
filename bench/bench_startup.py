"""Start-up times: loading the R4 definitions cold (no derived cache) and warm, and the whole
server until /metadata answers.

    .venv/bin/python bench/bench_startup.py
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fhir_service.config import Settings  # noqa: E402
from fhir_service.definitions.fetch import core_package_dir  # noqa: E402

LOAD = ("import time; t=time.perf_counter(); from fhir_service.definitions import get_definitions; "
        "d=get_definitions(); d.search_params('Patient'); d.structure_definition('Patient'); "
        "print(time.perf_counter()-t)")


def definitions_load_seconds() -> float:
    out = subprocess.run([sys.executable, "-c", LOAD], cwd=ROOT, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    cache = core_package_dir(Settings().package_cache).parent / ".imp2art-derived.pickle"
    cache.unlink(missing_ok=True)
    cold = definitions_load_seconds()
    warm = sorted(definitions_load_seconds() for _ in range(3))[1]
    print(f"definitions: cold {cold:.2f} s (derives and caches the index), warm {warm:.2f} s")

    import socket
    import requests
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = f"sqlite:////tmp/startup-{port}.db"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "fhir_service.cli", "serve", "--port", str(port), "--database", db],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/fhir/metadata", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.05)
        else:
            raise RuntimeError("server did not answer /metadata within 120 s")
        print(f"server: ready (first /metadata answered) {time.perf_counter() - t0:.2f} s after launch")
    finally:
        proc.terminate()
        proc.wait(20)


if __name__ == "__main__":
    main()
