"""Rows gathered on the client and written in batches: how many a stop can lose."""

import time

BATCH_ROWS = 500
BATCH_SECONDS = 60.0
"""A batch is written when it holds this many rows, or when its first row is this old."""


class Batches:
    """Rows gathered until a batch is full or old, then written as one file."""

    def __init__(self, store, rows: int, seconds: float):
        self.store, self.rows, self.seconds = store, rows, seconds
        self.pending: list[dict] = []
        self.since = time.monotonic()

    def add(self, rows: list[dict]) -> None:
        if not self.pending:
            self.since = time.monotonic()
        self.pending.extend(rows)
        if len(self.pending) >= self.rows or time.monotonic() - self.since >= self.seconds:
            self.flush()

    def flush(self) -> None:
        rows, self.pending = self.pending, []
        self.store.write_batch(rows)
