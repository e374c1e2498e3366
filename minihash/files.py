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
import torch


def cache_dir() -> Path:
    """Where generated and decoded audio is cached: `$MINIHASH_CACHE`, default `~/.cache/minihash`."""
    return Path(os.environ.get("MINIHASH_CACHE", "~/.cache/minihash")).expanduser()


def map_npy(path) -> np.ndarray:
    """A float32 vector saved as .npy, mapped from disk read-only: pages are read when used and
    stay in the page cache, shared between processes, not in this process's own memory.

    Unlike `np.load(mmap_mode="r")`, the map holds no open file: `torch.from_file` closes the
    descriptor once mapped, so thousands of mapped tracks do not run out of descriptors (often
    1024 a process). Raises ValueError (numpy's) for a file that is not a float32 vector or is
    shorter than its header says.
    """
    head = np.load(path, mmap_mode="r", allow_pickle=False)  # checks the header and the length
    dtype, shape, offset = head.dtype, head.shape, head.offset
    del head  # closes numpy's map and its descriptor
    if dtype != np.float32 or len(shape) != 1 or offset % 4:
        raise ValueError(f"{path}: not a float32 vector (dtype {dtype}, shape {shape})")
    mapped = torch.from_file(str(path), shared=False, size=offset // 4 + shape[0], dtype=torch.float32)
    x = mapped[offset // 4:].numpy()  # private (copy-on-write) map: the file is never written
    x.flags.writeable = False
    return x


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
