"""The server's temporary folder, named after the process that owns it, so that a later server can tell
a folder left behind by one killed outright (SIGKILL, a power cut) from one in use, and remove it."""

import os
import re
import shutil
import tempfile
from pathlib import Path

from patch2image.segment import _alive, _started

PREFIX = "patch2image-serve-"
_OWNED = re.compile(re.escape(PREFIX) + r"(\d+)-(\d+)-[A-Za-z0-9_]+")


def make_root() -> Path:
    """A new temporary folder ``patch2image-serve-PID-START-XXXXXXXX``, after removing the stale ones."""
    remove_stale_roots()
    started = _started(os.getpid()) or 0
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-{started}-"))


def remove_stale_roots(parent: str | Path | None = None) -> list[Path]:
    """Remove this user's server folders in ``parent`` (the system's temporary folder) whose server is gone."""
    removed = []
    parent = Path(parent or tempfile.gettempdir())
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        match = _OWNED.fullmatch(entry.name)
        if match is None or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
        except OSError:
            continue
        pid, started = int(match[1]), int(match[2]) or None
        if pid != os.getpid() and not _alive(pid, started):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed
