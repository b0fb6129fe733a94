"""A small, low-overhead HTTP/1.1 load generator (asyncio streams, keep-alive).

Python HTTP clients cost more per request than a trivial FastAPI endpoint does, which would
make every ratio look better than it is. This client pre-builds request bytes and parses only
the status line and Content-Length, so the server, not the client, is what gets measured.
"""
from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from typing import Callable


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: int
    statuses: dict

    @classmethod
    def merge(cls, results: list["LoadResult"]) -> "LoadResult":
        """Several runs as one (their requests, time and latencies added up)."""
        statuses: dict = {}
        for r in results:
            for k, v in r.statuses.items():
                statuses[k] = statuses.get(k, 0) + v
        return cls(sum(r.requests for r in results), sum(r.seconds for r in results),
                   [x for r in results for x in r.latencies_ms], sum(r.errors for r in results), statuses)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        s = sorted(self.latencies_ms)
        return s[min(len(s) - 1, int(p / 100 * len(s)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")

    @property
    def p99(self) -> float:
        return self.pct(99)


def build_request(method: str, path: str, host: str, body: bytes = b"", headers: dict | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Accept: application/fhir+json"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append("Content-Type: application/fhir+json")
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:].strip())
    if length:
        await reader.readexactly(length)
    return status


async def _worker(host: str, port: int, make: Callable[[int], bytes], counter: list, total: int,
                  lat: list, statuses: dict) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            i = counter[0]
            if i >= total:
                return
            counter[0] += 1
            t0 = time.perf_counter()
            writer.write(make(i))
            status = await _read_response(reader)
            lat.append((time.perf_counter() - t0) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


def run_load(host: str, port: int, make: Callable[[int], bytes], total: int, concurrency: int) -> LoadResult:
    """Send ``total`` requests over ``concurrency`` keep-alive connections; ``make(i)`` builds request i."""
    async def main() -> LoadResult:
        counter, lat, statuses = [0], [], {}
        t0 = time.perf_counter()
        await asyncio.gather(*[_worker(host, port, make, counter, total, lat, statuses) for _ in range(concurrency)])
        dt = time.perf_counter() - t0
        errors = sum(n for s, n in statuses.items() if s >= 400)
        return LoadResult(len(lat), dt, lat, errors, statuses)
    return asyncio.run(main())
