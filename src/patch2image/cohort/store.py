"""``--out``: the batches of rows written so far, and the results table made from them.

Rows arrive in batches, each one Parquet file written beside its final name and renamed in
(``parts/part-*.parquet``): a crash, a kill or a reboot loses at most the batch being gathered, never
leaves half a file, and a rerun reads what the batches hold to do only the rest. ``results.parquet``
(and ``results.csv`` on request) is the table of the photographs asked for, in their order, made from
the batches at the end of a run.
"""

import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from patch2image.atomic_files import atomic_write
from patch2image.cohort.inputs import PATH_COLUMN
from patch2image.errors import UserError

PARTS = "parts"
RESULTS = "results.parquet"
RESULTS_CSV = "results.csv"
INTERNAL = ("file", "size", "mtime_ns", "settings", "written")
"""Columns of the batches that say which file state and settings a row is for; not in the results table."""
LOOKUP = ("file", "size", "mtime_ns", "settings", "status")
FIRST = (
    "status", "fundus_warning", "content_hash", "model", "disc_model", "software_version", "seconds", "height", "width",
    "working_height", "working_width", "scale", "fov_pixels", "vessel_pixels",
    "optic_disc_centre_x", "optic_disc_centre_y", "optic_disc_diameter",
    "vessels_prob", "vessels_mask", "disc_prob", "disc_mask",
)  # fmt: skip
"""The results table's columns after the input's, in this order; the measurements follow, in theirs."""


class Store:
    def __init__(self, out_dir: str | Path):
        self.out = Path(out_dir)
        self.parts = self.out / PARTS

    def create(self) -> None:
        try:
            self.parts.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{self.out}: cannot create the output folder ({exc.strerror or exc})") from None

    def write_batch(self, rows: list[dict]) -> Path | None:
        """One batch of rows as one new Parquet file, all or nothing."""
        if not rows:
            return None
        written = time.time_ns()
        longest = max(rows, key=len)  # a failed photograph's row has fewer columns than a segmented one's
        names = list(dict.fromkeys([*longest, *(name for row in rows for name in row)]))
        table = pa.table({name: [row.get(name) for row in rows] for name in names} | {"written": [written] * len(rows)})
        path = self.parts / f"part-{written:020d}-{uuid.uuid4().hex[:8]}.parquet"
        with atomic_write(path) as tmp:
            pq.write_table(table, tmp)
        return path

    def part_files(self) -> list[Path]:
        return sorted(self.parts.glob("part-*.parquet")) if self.parts.is_dir() else []

    def read_batches(self, columns: tuple[str, ...] | None = None) -> pa.Table | None:
        """Every row written so far (``columns`` only, where given), oldest first; None before the first batch."""
        tables = []
        for path in self.part_files():
            try:
                schema = pq.read_schema(path)
                wanted = [c for c in columns if c in schema.names] if columns else None
                tables.append(pq.read_table(path, columns=wanted))
            except (OSError, pa.ArrowException) as exc:
                raise UserError(
                    f"{path}: a damaged batch of results ({' '.join(str(exc).split())}); delete it, and rerun to "
                    "redo its photographs"
                ) from None
        return pa.concat_tables(tables, promote_options="permissive") if tables else None

    def finished(self, settings: str, retry_failed: bool = False) -> dict[tuple, str]:
        """(file, size, mtime_ns) -> status of the photographs already done with these settings."""
        table = self.read_batches(LOOKUP)
        if table is None:
            return {}
        done = {}
        for file, size, mtime, key, status in zip(*(table[c].to_pylist() for c in LOOKUP), strict=True):
            if key == settings and (status == "ok" or not retry_failed):
                done[(file, size, mtime)] = status
        return done

    def results(self, inputs: pa.Table, files: list[str], settings: str) -> pa.Table:
        """The results table: ``inputs``' columns, then each photograph's latest row with these settings.

        ``files`` are the absolute paths of ``inputs``' rows. A photograph without a row yet has only its
        input columns (and a null status).
        """
        batches = self.read_batches()
        if batches is None:
            return inputs.append_column("status", pa.nulls(inputs.num_rows, pa.string()))
        batches = batches.filter(pc.equal(batches["settings"], settings))
        latest = {file: i for i, file in enumerate(batches["file"].to_pylist())}  # later batches win
        order = pa.array([latest.get(file) for file in files], pa.int64())
        rows = batches.take(order)  # a null index gives a row of nulls
        columns = [c for c in rows.column_names if c not in INTERNAL and c not in inputs.column_names]
        front = [c for c in FIRST if c in columns]
        table = inputs
        for name in front + [c for c in columns if c not in front]:
            table = table.append_column(name, rows[name])
        return table

    def write_results(self, table: pa.Table, csv: bool = False) -> list[Path]:
        written = [self.out / RESULTS]
        with atomic_write(written[0]) as tmp:
            pq.write_table(table, tmp)
        if csv:
            import pyarrow.csv as pacsv

            written.append(self.out / RESULTS_CSV)
            with atomic_write(written[1]) as tmp:
                pacsv.write_csv(table, tmp)
        return written


def check_inputs_are_not_outputs(inputs: pa.Table, out_dir: Path) -> None:
    """A manifest's path column must not name the files this command writes."""
    own = {(out_dir / RESULTS).resolve(), (out_dir / RESULTS_CSV).resolve()}
    for value in inputs[PATH_COLUMN].to_pylist():
        if Path(value).resolve() in own:
            raise UserError(f"{value}: is one of the results this command writes into {out_dir}; choose another --out")
