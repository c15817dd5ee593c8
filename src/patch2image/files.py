"""Writes that never leave a half-written file behind."""

import contextlib
import os
from pathlib import Path

from patch2image.errors import UserError


@contextlib.contextmanager
def atomic_write(path: str | Path):
    """Yield a temporary path beside ``path``; on success flush it to disk and rename it over ``path``.

    A crash, Ctrl-C or a full disk in the middle leaves the previous file intact and no temporary
    file behind (SIGKILL can leave a ``.NAME.PID.tmp``, never a half-written ``NAME``).

    Raises
    ------
    UserError
        Writing, flushing or renaming failed (a full disk, no permission): one line naming ``path``
        and the reason.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    existed = path.exists()
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            yield tmp
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            # Any OSError here is a failed write; the user needs the file and the reason, not a traceback.
            kept = "the previous version is unchanged" if existed else "nothing was written"
            raise UserError(f"{path}: could not be written ({exc.strerror or exc}); {kept}") from exc
    finally:
        with contextlib.suppress(OSError):  # the parent may not exist: the error above says why
            tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_write(path) as tmp:
        Path(tmp).write_text(text)
