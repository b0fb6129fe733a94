"""Run every benchmark once (`make bench`). Scale runs are long: search uses 10,000 patients
here; pass --patients 100000 to bench_search.py yourself for the full-size run."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DB = f"sqlite:///{ROOT / 'data' / 'bench-10k.db'}"

STEPS = [
    [sys.executable, str(HERE / "bench_startup.py")],
    [sys.executable, str(HERE / "bench_rest.py")],
    [sys.executable, str(HERE / "bench_validation.py")],
    [sys.executable, str(HERE / "bench_search.py"), "load", "--database", DB, "--patients", "10000"],
    [sys.executable, str(HERE / "bench_search.py"), "run", "--database", DB],
]

if __name__ == "__main__":
    for step in STEPS:
        print("\n$ " + " ".join(Path(a).name if a.startswith("/") else a for a in step), flush=True)
        subprocess.run(step, cwd=ROOT, check=True)
