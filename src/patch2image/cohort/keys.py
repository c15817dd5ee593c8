"""What makes a result the same result: the photograph's content, the model and the options.

A photograph's key is its content hash joined to the settings key. A file renamed or copied keeps its
content hash; a changed option, threshold or model gives another settings key, so its results are new
results and never mixed with the old ones.
"""

import hashlib
import json
import os
from pathlib import Path

CHUNK_BYTES = 1 << 20
DIGEST_BYTES = 16  # 128 bits: no two photographs of any cohort collide


def content_hash(path: str | Path) -> str:
    """BLAKE2b of the file's bytes, hex: the same for a renamed or copied file, other for any changed byte."""
    digest = hashlib.blake2b(digest_size=DIGEST_BYTES)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def settings_key(settings: dict) -> str:
    """A short digest of everything that changes a result (the models' content hashes included)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def photograph_key(content: str, settings: str) -> str:
    return f"{content}-{settings}"


def file_state(path: str | Path) -> tuple[int | None, int | None]:
    """(size, modification time in ns), or (None, None) for a file that cannot be looked at.

    A rerun takes a file whose state is unchanged for the file its earlier run hashed, without reading it.
    """
    try:
        info = os.stat(path)
    except OSError:
        return None, None
    return info.st_size, info.st_mtime_ns
