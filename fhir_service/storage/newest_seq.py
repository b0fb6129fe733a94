"""A writer's memory of Session.newest_seq answers, so that a batch of writes need not ask
the database before it writes (the batches of postgres_batch.py and of SQLite's group commit).

The contract, the same on both backends:
- A batch's answers come from this memory, or are asked of the database outside the batch's
  transaction. Each one is recorded as assumed by the batch, and checked where the batch's
  writes are stored: inside the one statement that stores them, or under the writer lock
  before any of them is sent. If one no longer holds, nothing is stored, the memory is
  cleared, and each write is run again on its own (RedoAlone).
- Only answers about committed versions are remembered (none read inside a transaction that
  has begun, which would see its own writes).
- A batch that writes resources of a type forgets every answer about that type.
"""
from __future__ import annotations

from typing import Callable, Iterable


class NewestSeqMemory:
    def __init__(self) -> None:
        self._seen: dict[tuple, int] = {}  # type set -> newest seq

    def answer(self, key: tuple, ask: Callable[[], int]) -> int:
        """The remembered answer for this type set, or ``ask()``'s (then remembered)."""
        if key not in self._seen:
            self._seen[key] = ask()
        return self._seen[key]

    def forget_types(self, res_types: Iterable[str]) -> None:
        written = set(res_types)
        for key in [k for k in self._seen if not written.isdisjoint(k)]:
            del self._seen[key]

    def clear(self) -> None:
        self._seen.clear()

    def __bool__(self) -> bool:
        return bool(self._seen)
