"""Files written so that a crash never leaves half of one behind, and YAML/JSON read with one-line errors."""

import contextlib
import errno
import json
import os
import stat
from pathlib import Path

from patch2image.errors import UserError

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _descriptor_link(path: Path) -> str | None:
    """The ``/proc/PID/fd/N`` (or ``/dev/fd/N``) that ``path``'s links pass through, if any.

    ``/dev/stdout`` is such a link: redirected to a file, it ends at that file, which a rename would
    replace under the shell's feet (the rest of the output would go to a deleted file).
    """
    current = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on links followed
        current = os.path.join(os.path.realpath(os.path.dirname(current)), os.path.basename(current))
        if current.startswith(("/proc/", "/dev/fd/")):
            return current
        if not os.path.islink(current):
            return None
        current = os.path.join(os.path.dirname(current), os.readlink(current))
    return None


def write_target(path: str | Path) -> tuple[Path, os.stat_result | None]:
    """Where a write to ``path`` lands, and the regular file there now (None if there is none).

    A symbolic link is followed: the write replaces the file it points to, and the link stays. Anything
    at ``path`` (or at the end of its links) that is not a regular file (a folder, a FIFO, a device, a
    socket) is refused: replacing it by a file would destroy it; so is a process's file descriptor
    (``/dev/stdout``, ``/proc/self/fd/1``), whatever it is open on.

    Raises
    ------
    UserError
        One line naming ``path`` and what is there.
    """
    path = Path(path)
    try:
        info = os.stat(path)  # follows links, as a plain open() would
    except FileNotFoundError:
        info = None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UserError(f"{path}: a symbolic link that loops; give the path of a file") from None
        info = None  # no permission to look: the write itself says what is wrong
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise UserError(f"{path}: is {_kind(info.st_mode)}, not a regular file; refusing to replace it")
    descriptor = _descriptor_link(path)
    if descriptor is not None:
        raise UserError(f"{path}: is a file descriptor ({descriptor}), not a file path; refusing to replace it")
    if path.is_symlink():
        path = Path(os.path.realpath(path))  # a dangling link: write the file it names
    return path, info


@contextlib.contextmanager
def atomic_write(path: str | Path):
    """Yield a temporary path beside ``path``; on success flush it to disk and rename it over ``path``.

    A crash, Ctrl-C or a full disk in the middle leaves the previous file intact and no temporary
    file behind (SIGKILL can leave a ``.NAME.PID.tmp``, never a half-written ``NAME``).

    A symbolic link at ``path`` is followed (its target is replaced, atomically, beside the target; the
    link stays); anything else that is not a regular file is refused (see :func:`write_target`). A file
    replaced keeps its permission bits.

    Raises
    ------
    UserError
        ``path`` is not a regular file, or writing, flushing or renaming failed (a full disk, no
        permission): one line naming ``path`` and the reason.
    """
    named = Path(path)
    path, previous = write_target(named)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        try:
            if path == named:
                path.parent.mkdir(parents=True, exist_ok=True)
            yield tmp
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            if previous is not None:
                os.chmod(tmp, stat.S_IMODE(previous.st_mode))
            os.replace(tmp, path)
        except OSError as exc:
            # Any OSError here is a failed write; the user needs the file and the reason, not a traceback.
            kept = "the previous version is unchanged" if previous is not None else "nothing was written"
            raise UserError(f"{named}: could not be written ({exc.strerror or exc}); {kept}") from exc
    finally:
        with contextlib.suppress(OSError):  # the parent may not exist: the error above says why
            tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_write(path) as tmp:
        Path(tmp).write_text(text)


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (links followed), whether or not it exists yet."""
    return Path(os.path.realpath(a)) == Path(os.path.realpath(b))


def read_yaml(path: str | Path):
    """A YAML file's content; a file that is not YAML (or not text) is a one-line :class:`UserError`."""
    import yaml

    try:
        return yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file") from None
    except yaml.YAMLError as exc:
        # "expected ',' or '}' ... at line 3, column 1": the problem and where, on one line.
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"{path}: not valid YAML ({problem}{where})") from None


def read_json(path: str | Path):
    """A JSON file's content, or None when there is no file; a damaged file is a one-line :class:`UserError`."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
