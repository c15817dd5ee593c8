"""Writes that never leave a half-written file behind."""

import contextlib
import os
from pathlib import Path


@contextlib.contextmanager
def atomic_write(path: str | Path):
    """Yield a temporary path beside ``path``; on success flush it to disk and rename it over ``path``.

    A crash or a full disk in the middle leaves the previous file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_write(path) as tmp:
        Path(tmp).write_text(text)
