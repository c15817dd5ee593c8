"""What a cohort run segments: a folder tree, a glob pattern, or a manifest (CSV or Parquet).

Every form becomes one table with a ``path`` column, one row per photograph, in a stable order (a
manifest's own order; sorted paths otherwise). A manifest's other columns (participant, eye, visit...)
are carried through to the results untouched: a CSV's as text, so that an id such as ``0012`` keeps its
zeros; a Parquet file's with their types.
"""

import csv
import glob
import os
from pathlib import Path

import pyarrow as pa

from patch2image.data.pairing import is_image_file
from patch2image.errors import UserError

PATH_COLUMN = "path"
MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")
RESERVED = ("status", "content_hash")
"""Result columns a manifest may not carry under the same name (the table could not hold both)."""


def read_inputs(spec: str | Path, out_dir: str | Path | None = None) -> pa.Table:
    """The photographs ``spec`` names: a manifest file, a folder (searched recursively) or a glob pattern.

    A folder or pattern never gives the files inside ``out_dir`` (a run's own masks are not photographs).
    """
    path = Path(spec)
    out = Path(out_dir).resolve() if out_dir is not None else None
    if path.is_file():
        if not path.name.lower().endswith(MANIFEST_SUFFIXES):
            raise UserError(f"{spec}: a manifest must be a .csv or .parquet file with a '{PATH_COLUMN}' column")
        return read_manifest(path)
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if _wanted(p, out, path))
        if not found:
            raise UserError(f"{spec}: folder holds no image files (searched with its subfolders)")
    elif glob.has_magic(str(spec)):
        found = sorted(Path(p) for p in glob.glob(str(spec), recursive=True) if _wanted(Path(p), out))
        if not found:
            raise UserError(f"{spec}: pattern matches no image file")
    else:
        raise UserError(f"{spec}: no such file or folder")
    return pa.table({PATH_COLUMN: pa.array([str(p) for p in found], pa.string())})


def _wanted(path: Path, out: Path | None, root: Path | None = None) -> bool:
    hidden = root is not None and any(part.startswith(".") for part in path.relative_to(root).parts)
    if hidden or not is_image_file(path) or not path.is_file():
        return False
    return out is None or not path.resolve().is_relative_to(out)


def read_manifest(path: Path) -> pa.Table:
    table = _read_csv(path) if path.name.lower().endswith(".csv") else _read_parquet(path)
    if PATH_COLUMN not in table.column_names:
        raise UserError(f"{path}: no '{PATH_COLUMN}' column (it has: {', '.join(table.column_names) or 'none'})")
    for name in RESERVED:
        if name in table.column_names:
            raise UserError(f"{path}: column '{name}' is one the results table writes; rename it")
    if table.num_rows == 0:
        raise UserError(f"{path}: the manifest lists no photograph")
    paths = table[PATH_COLUMN].cast(pa.string()).to_pylist()
    seen: dict[str, int] = {}
    for row, value in enumerate(paths, start=1):
        if not value:
            raise UserError(f"{path}: row {row} has an empty '{PATH_COLUMN}'")
        if value in seen:
            raise UserError(f"{path}: row {row} repeats the path of row {seen[value]} ({value})")
        seen[value] = row
    # Relative paths are relative to the manifest, so that the manifest works from any folder.
    base = path.resolve().parent
    resolved = [value if os.path.isabs(value) else str(base / value) for value in paths]
    index = table.column_names.index(PATH_COLUMN)
    return table.set_column(index, PATH_COLUMN, pa.array(resolved, pa.string()))


def _read_csv(path: Path) -> pa.Table:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: not a readable CSV manifest ({exc})") from None
    if not rows:
        raise UserError(f"{path}: empty manifest")
    header, body = rows[0], [row for row in rows[1:] if any(cell.strip() for cell in row)]
    if len(set(header)) != len(header):
        raise UserError(f"{path}: the header repeats a column name ({', '.join(header)})")
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise UserError(f"{path}: line {number} has {len(row)} fields, the header {len(header)}")
    return pa.table({name: pa.array([row[i] for row in body], pa.string()) for i, name in enumerate(header)})


def _read_parquet(path: Path) -> pa.Table:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise UserError(f"{path}: not a readable Parquet manifest ({' '.join(str(exc).split())})") from None
