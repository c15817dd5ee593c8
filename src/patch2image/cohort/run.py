"""A cohort run on Dask: chunks of photographs streamed to the workers, rows back in atomic batches.

Why this shape:

- Only file names go to the workers and only rows come back (masks are written by the workers into
  ``--out``), so the scheduler never holds an image.
- At most a few chunks per worker thread are submitted at any time (``distributed.as_completed``, one
  new chunk for each that finishes), so the client's and the scheduler's memory stay flat over any
  number of photographs.
- A worker that dies takes its chunks with it; the scheduler gives them to another worker, up to
  ``distributed.scheduler.allowed-failures`` times. A chunk that ran out of tries is split into single
  photographs, and a single photograph that did is the one that kills workers: its row says so.
- Rows are kept until a batch is full (or old), then written in one go (:class:`Store`), so a rerun
  after any stop redoes at most one batch.
"""

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa

from patch2image.cohort.batches import BATCH_ROWS, BATCH_SECONDS, Batches
from patch2image.cohort.inputs import PATH_COLUMN
from patch2image.cohort.keys import file_state
from patch2image.cohort.progress import Progress
from patch2image.cohort.store import Store
from patch2image.cohort.work import Settings, provenance, segment_chunk
from patch2image.errors import UserError
from patch2image.segment import _sigterm_raises_terminated, _stop_if_terminated

CHUNK = 8
"""Photographs per task: enough to make Dask's cost per task (a few ms) small beside a photograph's."""
IN_FLIGHT_PER_THREAD = 4
"""Chunks submitted per worker thread: one running and some waiting, so that no worker waits for the client to
hear of a finished chunk and send the next (several hops through the scheduler on a busy machine)."""
LOST_TRIES = 3
"""How many times a chunk lost otherwise than with its worker (a result gone before it was fetched) is sent again."""
ALLOWED_FAILURES = 3
"""How many workers may die running a chunk before it is given up (Dask's own default)."""


@dataclasses.dataclass
class Summary:
    photographs: int  # rows of the input
    done_before: int  # found done by an earlier run
    done_now: int
    failed: int  # rows of the table whose status is not ok
    seconds: float
    written: list[Path]


def run_cohort(
    inputs: pa.Table,
    out_dir: str | Path,
    settings: Settings,
    client,
    *,
    chunk: int = CHUNK,
    retry_failed: bool = False,
    csv: bool = False,
    show_progress: bool = False,
    batch_rows: int = BATCH_ROWS,
    batch_seconds: float = BATCH_SECONDS,
    work: Callable[[Settings, list[str]], list[dict]] = segment_chunk,
    on_rows: Callable[[int], None] | None = None,
) -> Summary:
    """Segment (and measure) every photograph of ``inputs`` not done yet, then write the results table.

    ``client``: a ``distributed.Client``. ``show_progress``: a bar on a terminal, else a line every few
    minutes (stderr). ``work``: what a worker does with a chunk (the default segments and measures).
    ``on_rows``: called with the number of rows done so far, after each chunk.
    """
    started = time.monotonic()
    store = Store(out_dir)
    store.create()
    files = [os.path.abspath(p) for p in inputs[PATH_COLUMN].to_pylist()]
    unique = list(dict.fromkeys(files))
    states = {file: file_state(file) for file in unique}
    finished = store.finished(settings.key, retry_failed)
    todo = [file for file in unique if (file, *states[file]) not in finished]
    progress = Progress(len(todo), len(unique) - len(todo), quiet=not show_progress)
    batches = Batches(store, batch_rows, batch_seconds)
    try:
        with _sigterm_raises_terminated():  # SIGTERM stops between chunks, after the batch so far is written
            _stream(client, settings, todo, states, chunk, work, batches, progress, on_rows)
    finally:
        batches.flush()
        progress.close()
    table = store.results(inputs, files, settings.key)
    written = store.write_results(table, csv)
    failed = sum(1 for status in table["status"].to_pylist() if status != "ok")
    return Summary(len(files), len(unique) - len(todo), progress.done, failed, time.monotonic() - started, written)


def _chunks(files: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(files), size):
        yield files[start : start + size]


def _stream(client, settings, todo, states, chunk, work, batches, progress, on_rows) -> None:
    from distributed import KilledWorker, as_completed

    pending = _chunks(todo, chunk)
    again: list[tuple[list[str], int]] = []  # (photographs, earlier tries): split or lost chunks to submit first
    running = as_completed(with_results=True, raise_errors=False)  # results fetched in the background
    submitted: dict[str, tuple[list[str], int]] = {}  # future's key -> (its photographs, earlier tries)
    limit = _in_flight_limit(client)
    checked = time.monotonic()
    total = 0

    def submit_more() -> None:
        while running.count() < limit:
            files, tries = again.pop() if again else (next(pending, None), 0)
            if files is None:
                return
            future = client.submit(work, settings, files, pure=False, retries=0)
            submitted[future.key] = (files, tries)
            running.add(future)

    submit_more()
    for future, result in running:
        _stop_if_terminated()
        if future.key not in submitted:  # heard of twice (its result was lost with a worker, and made again)
            continue
        files, tries = submitted.pop(future.key)
        status = future.status
        future.release()
        error = result[1] if status == "error" else None  # as_completed gives (type, exception, traceback)
        rows = []
        if status == "finished":
            rows = result
        elif isinstance(error, KilledWorker) and len(files) > 1:
            again.extend(([file], 0) for file in files)  # one at a time, to find the photograph that kills
        elif isinstance(error, KilledWorker):
            rows = [_killer_row(files[0], states, settings)]
        elif isinstance(error, UserError):
            raise error  # the models cannot load there: every chunk would fail alike
        elif tries < LOST_TRIES:  # lost on the way (a worker gone while its result was fetched, a cancel)
            again.append((files, tries + 1))
        else:
            reason = f"{type(error).__name__}: {error}" if error is not None else f"the chunk was {status}"
            raise UserError(f"the Dask cluster failed {LOST_TRIES + 1} times on {files[0]} ({reason})")
        batches.add(rows)
        total += len(rows)
        progress.update(len(rows), sum(1 for row in rows if row["status"] != "ok"))
        if on_rows is not None and rows:
            on_rows(total)
        if time.monotonic() - checked > 10:  # a cluster that grows or shrinks changes how many can run
            limit, checked = _in_flight_limit(client), time.monotonic()
        submit_more()


def _in_flight_limit(client) -> int:
    threads = sum(client.nthreads().values())
    return max(2, IN_FLIGHT_PER_THREAD * threads)


def _killer_row(file: str, states: dict, settings: Settings) -> dict:
    size, mtime_ns = states[file]
    reason = (
        f"{file}: every worker that segmented it died (out of memory, or a crash while reading it); "
        "rerun with --retry-failed to try again"
    )
    row = {"file": file, "size": size, "mtime_ns": mtime_ns, "settings": settings.key, "content_hash": None}
    return row | {"status": reason, "seconds": None} | provenance(settings)


# --------------------------------------------------------------------------- where the workers are


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None, threads: int | None = None):
    """A ``distributed.Client``: of the cluster at ``scheduler``, or of a ``LocalCluster`` of ``workers`` processes.

    Each local worker runs one photograph at a time, with ``threads`` threads for the network.
    """
    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError) as exc:
            raise UserError(f"--scheduler {scheduler}: cannot connect ({' '.join(str(exc).split())})") from None
        with client:
            yield client
        return
    # Saturation 1: a worker holds only the chunks it is running, so that when it dies only those are
    # suspected (and, one photograph at a time, only the photograph that killed it is marked failed).
    with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
                          "distributed.scheduler.worker-saturation": 1.0}):  # fmt: skip
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
            silence_logs=logging.ERROR,
        )  # fmt: skip
        with cluster, Client(cluster) as client:
            yield client
