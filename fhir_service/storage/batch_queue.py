"""The queue a batching thread serves (group_commit.py's writers, read_batch.py's reader)."""
from __future__ import annotations

import queue
from typing import Any

STOP = None  # put on the queue to stop its thread once what is queued before it is served


def take_batch(q: queue.SimpleQueue, limit: int) -> list[Any] | None:
    """Wait for an item, then take every item queued behind it, up to ``limit`` in all.
    None if the thread is to stop now (a STOP met later ends the batch, and is kept)."""
    first = q.get()
    if first is STOP:
        return None
    batch = [first]
    while len(batch) < limit:
        try:
            nxt = q.get_nowait()
        except queue.Empty:
            break
        if nxt is STOP:
            q.put(STOP)  # stop after this batch
            break
        batch.append(nxt)
    return batch
