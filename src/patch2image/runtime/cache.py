"""The user's cache folder: results worth keeping between runs and never needed for correctness.

It holds the ONNX exports of weights files (an export takes seconds, and ``--backend auto``,
``onnxruntime`` and ``openvino`` need one at every start) and the timings behind ``--backend auto``'s
choice. Everything in it can be deleted at any time; a folder that cannot be written costs speed only:
the work is redone in memory, never an error.

Where: ``$PATCH2IMAGE_CACHE_DIR``, else ``$XDG_CACHE_HOME/patch2image``, else ``~/.cache/patch2image``.
"""

import contextlib
import hashlib
import json
import os
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
    """The bytes cached under ``name``, else ``make()``'s, cached for next time when the folder allows."""
    path = cache_dir() / name
    with contextlib.suppress(OSError):
        return path.read_bytes()
    data = make()
    with contextlib.suppress(OSError, UserError):
        with atomic_write(path) as tmp:
            Path(tmp).write_bytes(data)
    return data


def read_cached_json(name: str) -> dict:
    """The JSON object cached under ``name``; empty when it is missing or unreadable."""
    try:
        value = json.loads((cache_dir() / name).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


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
