"""The user's cache folder: results worth keeping between runs and never needed for correctness.

It holds the ONNX exports of weights files (an export takes seconds, and ``--backend auto``,
``onnxruntime`` and ``openvino`` need one at every start) and the timings behind ``--backend auto``'s
choice. Everything in it can be deleted at any time; a folder that cannot be written costs speed only:
the work is redone in memory, never an error. Nor is a damaged file in it: an export whose content does not
match the hash in its name, or a JSON file or entry of the wrong shape, is set aside with one warning naming
the file, and the work is redone.

Where: ``$PATCH2IMAGE_CACHE_DIR``, else ``$XDG_CACHE_HOME/patch2image``, else ``~/.cache/patch2image``.
"""

import contextlib
import hashlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

from patch2image.atomic_files import atomic_write
from patch2image.errors import UserError


def cache_dir() -> Path:
    """The folder for cached files (not created here)."""
    if os.environ.get("PATCH2IMAGE_CACHE_DIR"):
        return Path(os.environ["PATCH2IMAGE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "patch2image"


def digest(*parts: bytes | str) -> str:
    """A short stable key of ``parts`` (sha256, 20 hex digits) for a cached file's name."""
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode() if isinstance(part, str) else part)
        hasher.update(b"\0")
    return hasher.hexdigest()[:20]


def cached_bytes(name: str, make: Callable[[], bytes]) -> bytes:
    """The bytes cached under ``name``, else ``make()``'s, cached for next time when the folder allows.

    The file is ``STEM.HASH.SUFFIX`` (``onnx/KEY.HASH.onnx``), ``HASH`` the digest of its content, so that a
    file emptied, cut short or replaced by another is recognised on load: it is removed (when the folder
    allows) with one warning naming it, and ``make()`` runs again.
    """
    wanted = cache_dir() / name
    for path in sorted(wanted.parent.glob(f"{wanted.stem}.*{wanted.suffix}")):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if path.name == _content_name(wanted, data):
            return data
        warn(path, "its content does not match the hash in its name (damaged or replaced)")
        with contextlib.suppress(OSError):
            path.unlink()
    data = make()
    with contextlib.suppress(OSError, UserError):
        with atomic_write(wanted.parent / _content_name(wanted, data)) as tmp:
            Path(tmp).write_bytes(data)
    return data


def is_cached(name: str) -> bool:
    """Whether :func:`cached_bytes` holds something under ``name`` (not yet verified: that happens on load)."""
    wanted = cache_dir() / name
    return any(wanted.parent.glob(f"{wanted.stem}.*{wanted.suffix}"))


def _content_name(wanted: Path, data: bytes) -> str:
    return f"{wanted.stem}.{digest(data)}{wanted.suffix}"


def warn(path: Path, problem: str) -> None:
    """One warning per cache file and process: what is wrong with it, and that it costs nothing but time."""
    if str(path) not in _warned:
        _warned.add(str(path))
        warnings.warn(f"{path}: {problem}; ignored, and made again (the cache folder can be deleted)", stacklevel=3)


_warned: set[str] = set()


def read_cached_json(name: str) -> dict:
    """The JSON object cached under ``name``; empty when it is missing, and when it is damaged (with a warning)."""
    path = cache_dir() / name
    try:
        value = json.loads(path.read_text())
    except OSError:  # none yet, or a folder that cannot be read: the work is done again
        return {}
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        warn(path, f"not readable JSON ({type(exc).__name__})")
        return {}
    if not isinstance(value, dict):
        warn(path, f"holds a {type(value).__name__}, not an object")
        return {}
    return value


def cached_choice(name: str, key: str, timings: str) -> dict | None:
    """The measured choice kept under ``key`` in the JSON file ``name``, when it has the shape that is written:
    ``{"choice": ..., TIMINGS: {candidate: seconds}}``. None when there is none; a damaged entry is also None,
    with one warning naming the file, and is measured again."""
    entry = read_cached_json(name).get(key)
    if entry is None:
        return None
    seconds = entry.get(timings) if isinstance(entry, dict) else None
    if "choice" in (entry if isinstance(entry, dict) else {}) and isinstance(seconds, dict):
        if all(
            isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool) for k, v in seconds.items()
        ):
            return entry
    warn(cache_dir() / name, "an entry is not a measured choice")
    return None


def update_json(name: str, key: str, value) -> bool:
    """Set ``key`` in the JSON object cached under ``name``; False when the folder cannot be written."""
    entries = read_cached_json(name)
    entries[key] = value
    try:
        with atomic_write(cache_dir() / name) as tmp:
            Path(tmp).write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n")
    except (OSError, UserError):
        return False
    return True
