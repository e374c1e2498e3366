"""Files on disk: the cache folder, checksums and writes that never leave half a file.

Every file minihash writes (cached audio, model weights, index arrays, benchmark chunks) is
written under a temporary name and renamed into place, so a crash or a parallel writer never
leaves a half-written file behind a valid name; every file it reads back is checked first.
"""
from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import numpy as np


def cache_dir() -> Path:
    """Where generated and decoded audio is cached: `$MINIHASH_CACHE`, default `~/.cache/minihash`."""
    return Path(os.environ.get("MINIHASH_CACHE", "~/.cache/minihash")).expanduser()


def sha256(path) -> str:
    """The hex SHA-256 of a file (a path, or a file opened in binary mode: read from where it is), in 1 MiB blocks."""
    if hasattr(path, "read"):
        h = hashlib.sha256()
        for block in iter(lambda: path.read(1 << 20), b""):
            h.update(block)
        return h.hexdigest()
    with open(path, "rb") as f:
        return sha256(f)


def temp_name(path: Path) -> Path:
    """A hidden name beside `path`, unique to this process and call."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")


def umask_mode(mode: int = 0o666) -> int:
    """`mode` as the user's umask lets a new file have it (what `open` gives; not mkstemp's 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


def save_npy(path, a: np.ndarray) -> None:
    """Write `a` to `path` as .npy atomically (temporary file + rename); never pickled."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(a), allow_pickle=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def shown(name) -> str:
    """A name as text output shows it: control characters (a newline in a file name) escaped, so
    that one name stays on one line; other names as they are."""
    name = str(name)
    return name if name.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)
