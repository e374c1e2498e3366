"""An index on disk: a folder of versions and a pointer to the current one, replaced in one rename.

The folder `music.idx/` holds
    CURRENT       the name of the current version, one line
    v-<id>/       a version: `manifest.json` (versioned, checksummed, `manifest.py`) and one `.npy` per array
    .lock         held by the process writing, so that two writers never remove each other's work
A new index is written into a temporary folder inside, renamed to a version of its own, and made
current by replacing CURRENT: one `os.replace`, atomic on POSIX file systems. So a reader,
or a run killed at any step, finds the old index or the new one, complete, never none and never half
of one; the old version is removed once CURRENT names the new one, and whatever a killed run left
is removed by the next run that writes there. Folders and files get the default modes, so they
follow the user's umask. An index of minihash 0.1 (manifest and arrays in the folder itself, no
CURRENT) is read as before and replaced in this layout.

Reading checks the manifest (format, version, checksum, every field) and every array (size,
SHA-256, shape, dtype), so a damaged, edited, foreign or unreadable folder raises a `FormatError`
that names the file and what to do, instead of returning wrong matches or a traceback.

Notebook: 08_search.ipynb
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import FormatError
from ..files import sha256, temp_name
from .manifest import MANIFEST, check_manifest, invalid, load_manifest, seal, write_manifest

try:  # a writer's lock; Windows has none, and there two writers to one index at once are not supported
    import fcntl
except ImportError:
    fcntl = None

POINTER = "CURRENT"
LOCK = ".lock"
_VERSION = re.compile(r"v-[0-9a-f]{32}")
_TEMP = re.compile(r"\.tmp-[0-9]+-[0-9a-f]{32}|\.CURRENT\.[0-9]+\.[0-9a-f]{32}\.tmp")
_OLD_TEMP = r"\.{name}\.([0-9]+)\.[0-9a-f]{{32}}\.tmp"  # beside the index: minihash 0.1's temporary folders

# the steps of a replacement, in order: the kill test stops a writer after each (`_step`)
STEPS = ("locked", "cleaned", "temp-created", "arrays-written", "manifest-written", "version-renamed",
         "pointer-written", "pointer-replaced", "old-removed")


def _step(name: str) -> None:
    """Called after each step of a write (STEPS), and in a read after the pointer and after the
    manifest: a hook for the tests, which kill a writer there or replace the index under a reader."""


# ----------------------------------------------------------------------------
# where the current version is


def current_dir(path) -> Path:
    """The folder holding the current version of the index at `path` (`path` itself for an index of
    minihash 0.1). Raises FormatError when there is no index there."""
    path = Path(path)
    if not path.exists():
        raise FormatError(path, "no such index: build one with `minihash index MUSIC_DIR -o INDEX_DIR`")
    if not path.is_dir():
        raise FormatError(path, "not a minihash index (a file, not an index folder)")
    pointer = path / POINTER
    if pointer.is_file():
        try:
            name = pointer.read_text(encoding="ascii").strip()
        except UnicodeDecodeError:
            raise invalid(pointer, "the pointer to the current version is not text") from None
        if not _VERSION.fullmatch(name):
            raise invalid(pointer, f"it names {name[:40]!r}, not a version folder")
        _step("pointer-read")
        if not (path / name).is_dir():
            raise invalid(pointer, f"its current version {name} is missing")
        return path / name
    if (path / MANIFEST).is_file():
        return path
    raise FormatError(path, f"not a minihash index (no {POINTER} or {MANIFEST} in it)")


def _current_or_none(path: Path):
    try:
        return current_dir(path)
    except (FormatError, OSError):
        return None


def _os_error(path: Path, e: OSError) -> FormatError:
    where = e.filename or path
    if isinstance(e, PermissionError):
        return FormatError(where, f"permission denied: ask the owner to make the index readable "
                                  f"(chmod -R a+rX {path})")
    return FormatError(where, f"unreadable ({e.strerror or e})")


# ----------------------------------------------------------------------------
# reading


def read_manifest(path) -> dict:
    """The manifest of the index at `path`, checked for format, version, checksum and fields."""
    path = Path(path)
    try:
        d = current_dir(path)
        return check_manifest(d / MANIFEST, load_manifest(d / MANIFEST))
    except OSError as e:
        raise _os_error(path, e) from None


def read_index_dir(path, expect_model: str | None = None):
    """Manifest and arrays of the index at `path`, every file checked against the manifest.

    A writer may replace the index while it is read (and then remove the old version): when
    CURRENT has changed by the time a read fails, the read starts again on the new version, so a
    reader always gets one complete index.
    """
    path = Path(path)
    for _ in range(5):
        before = _pointer(path)
        try:
            d = current_dir(path)
            manifest = check_manifest(d / MANIFEST, load_manifest(d / MANIFEST))
            check_model(path, manifest["model"], expect_model)
            _step("manifest-read")
            return manifest, {name: _read_array(d, info) for name, info in manifest["arrays"].items()}
        except (FormatError, OSError) as e:
            if _pointer(path) != before:
                continue  # replaced while read: read the new one
            raise _os_error(path, e) if isinstance(e, OSError) else e from None
    raise FormatError(path, "replaced again and again while being read: try again")


def _pointer(path: Path):
    """The bytes of CURRENT, or None where there is none (or it cannot be read)."""
    try:
        return (path / POINTER).read_bytes()
    except OSError:
        return None


def check_model(path, recorded, expected) -> None:
    """Refuse an index built by another model than the one it is queried with."""
    if expected is not None and recorded != expected:
        raise FormatError(path, f"built by another model ({recorded}), not this one ({expected}): pass the model it "
                                "was built with (--model), or re-index with this one")


def _read_array(d: Path, info: dict) -> np.ndarray:
    f = d / info["file"]  # a plain file name: `check_manifest` refuses any other
    try:
        with open(f, "rb") as fh:  # one open: the bytes checked are the bytes loaded
            size = os.fstat(fh.fileno()).st_size
            if size < info["bytes"]:
                raise FormatError(f, f"truncated: {size} of {info['bytes']} bytes")
            if size != info["bytes"] or sha256(fh) != info["sha256"]:
                raise FormatError(f, "checksum mismatch: the file was modified or corrupted")
            fh.seek(0)
            a = np.load(fh, allow_pickle=False)
    except FileNotFoundError:
        raise FormatError(f, "missing array file") from None
    except (ValueError, EOFError) as e:
        raise FormatError(f, f"unreadable array: {e}") from None
    if list(a.shape) != info["shape"] or str(a.dtype) != info["dtype"]:
        raise FormatError(f, f"holds {a.dtype}{list(a.shape)}, the manifest says {info['dtype']}{info['shape']}")
    return a


# ----------------------------------------------------------------------------
# writing


def check_target(path) -> None:
    """Refuse, before any work, to write an index at `path` where it cannot go: over a file, over a
    folder holding anything but an index, or where nothing can be written."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise FormatError(path, "exists and is not a minihash index (a file): choose another -o")
        try:
            names = os.listdir(path)
        except OSError as e:
            raise _os_error(path, e) from None
        ours = all(n == LOCK or _VERSION.fullmatch(n) or _TEMP.fullmatch(n) for n in names)
        if not (ours or POINTER in names or MANIFEST in names):
            raise FormatError(path, "exists and is not a minihash index: refusing to replace it, choose another -o")
    here = path if path.is_dir() else next(p for p in path.parents if p.exists())
    if not os.access(here, os.W_OK | os.X_OK):
        raise FormatError(here, "not writable: the index cannot be written here, choose another -o")


def write_index_dir(path, manifest: dict, arrays: dict) -> None:
    """Write arrays and manifest as a new version of the index at `path` and make it current.

    At every moment `path` holds the old index or the new one (STEPS lists the moments); a folder
    there that is not an index is refused.
    """
    path = Path(path)
    check_target(path)
    path.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        _step("locked")
        old = _current_or_none(path)
        _clean(path, keep=old.name if old is not None and old != path else None)
        _step("cleaned")
        tmp, version = path / f".tmp-{os.getpid()}-{uuid.uuid4().hex}", path / f"v-{uuid.uuid4().hex}"
        try:
            tmp.mkdir()
            _step("temp-created")
            _write_version(tmp, manifest, arrays)
            os.replace(tmp, version)
            _step("version-renamed")
            _replace_pointer(path, version.name)
        except BaseException:
            if _current_or_none(path) != version:
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.rmtree(version, ignore_errors=True)
            raise
        _clean(path, keep=version.name)  # the old version, or the files of a minihash 0.1 index
        _step("old-removed")


def _write_version(d: Path, manifest: dict, arrays: dict) -> None:
    files = {}
    for name, a in arrays.items():
        f = d / f"{name}.npy"
        with open(f, "wb") as fh:
            np.save(fh, np.ascontiguousarray(a), allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        files[name] = {"file": f.name, "bytes": f.stat().st_size, "sha256": sha256(f),
                       "shape": list(a.shape), "dtype": str(a.dtype)}
    _step("arrays-written")
    write_manifest(d / MANIFEST, seal({**manifest, "arrays": files}))
    _fsync_dir(d)
    _step("manifest-written")


def _replace_pointer(path: Path, name: str) -> None:
    tmp = temp_name(path / POINTER)
    try:
        with open(tmp, "w", encoding="ascii") as f:
            f.write(name + "\n")
            f.flush()
            os.fsync(f.fileno())
        _step("pointer-written")
        os.replace(tmp, path / POINTER)  # the one atomic switch from the old index to the new
        _fsync_dir(path)
        _step("pointer-replaced")
    finally:
        tmp.unlink(missing_ok=True)


def _clean(path: Path, keep: str | None) -> None:
    """Remove what killed runs left: temporaries, versions that are not `keep` (the current one),
    and, once CURRENT exists, the files of a minihash 0.1 index; beside `path`, the temporary
    folders of minihash 0.1's killed runs. Only while holding the lock."""
    legacy = (path / POINTER).is_file()
    for n in os.listdir(path):
        if _TEMP.fullmatch(n) or (_VERSION.fullmatch(n) and n != keep) or \
                (legacy and (n == MANIFEST or n.endswith(".npy"))):
            _remove(path / n)
    try:
        beside = os.listdir(path.parent)
    except OSError:  # a parent we may not list: nothing of ours to find there
        beside = []
    for n in beside:
        m = re.fullmatch(_OLD_TEMP.format(name=re.escape(path.name)), n)
        if m and not _alive(int(m.group(1))):
            _remove(path.parent / n)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    """Whether a process `pid` runs (on Windows, where os.kill would end it, always assumed)."""
    if os.name == "nt" or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno != errno.ESRCH
    return True


@contextmanager
def _locked(path: Path):
    if fcntl is None:
        yield
        return
    with open(path / LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file is closed, or the process dies
        yield


def _fsync_dir(d: Path) -> None:
    """Make a rename in `d` durable (a power cut after it keeps it); Windows cannot open a folder."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
