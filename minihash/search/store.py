"""An index on disk: a folder of `.npy` arrays under a versioned, checksummed JSON manifest.

The folder is written beside its target and renamed into place, so a half-written index is never
left behind a valid name; on reading, the manifest's format, version and own checksum are checked,
then every array's size, SHA-256, shape and dtype, so a damaged or foreign folder raises a
`FormatError` that says what is wrong instead of returning wrong matches.

Notebook: 08_search.ipynb
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from ..errors import FormatError
from ..files import save_npy, sha256, temp_name

FORMAT = "minihash-index"
VERSION = 1
MANIFEST = "manifest.json"

# ----------------------------------------------------------------------------
# the manifest's own checksum


def _digest(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


# ----------------------------------------------------------------------------
# write and read


def write_index_dir(path, manifest: dict, arrays: dict):
    """Write arrays and manifest into a temporary folder beside `path`, then rename it into place.

    An index already at `path` is renamed away first and deleted last, so at every moment `path`
    holds either the old index or the new one. A folder there that is not an index is refused.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not (path / MANIFEST).exists() and (not path.is_dir() or any(path.iterdir())):
        raise FormatError(path, "exists and is not a minihash index; refusing to replace it")
    tmp = temp_name(path)
    tmp.mkdir(mode=0o700)  # owner-only, as tempfile.mkdtemp made the folders of earlier versions
    old = None
    try:
        files = {}
        for name, a in arrays.items():
            f = tmp / f"{name}.npy"
            save_npy(f, a)
            files[name] = {"file": f.name, "bytes": f.stat().st_size, "sha256": sha256(f),
                           "shape": list(a.shape), "dtype": str(a.dtype)}
        manifest = {**manifest, "arrays": files}
        manifest["manifest_sha256"] = _digest(manifest)
        with open(tmp / MANIFEST, "w") as f:
            json.dump(manifest, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            old = temp_name(path)
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not path.exists():
            os.replace(old, path)  # put the previous index back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_manifest(path) -> dict:
    """The manifest of the index at `path`, checked for format, version and self-consistency."""
    path = Path(path)
    if not (path / MANIFEST).is_file():
        raise FormatError(path, f"not a minihash index (no {MANIFEST})")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(path, f"unreadable manifest: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise FormatError(path, "not a minihash index (the manifest names another format)")
    if manifest.get("version") != VERSION:
        raise FormatError(path, f"index format version {manifest.get('version')}, this minihash reads "
                                f"version {VERSION}: rebuild the index")
    if manifest.get("manifest_sha256") != _digest(manifest):
        raise FormatError(path, "manifest checksum mismatch: the manifest was edited or corrupted")
    return manifest


def read_index_dir(path, expect_model: str | None = None):
    """Manifest and arrays of the index at `path`, every file checked against the manifest."""
    path = Path(path)
    manifest = read_manifest(path)
    if expect_model is not None and manifest.get("model") != expect_model:
        raise FormatError(path, f"built by another model ({manifest.get('model')}), expected {expect_model}: "
                                "re-index with this model")
    arrays = {}
    for name, info in manifest["arrays"].items():
        f = path / Path(info["file"]).name
        if not f.is_file():
            raise FormatError(f, "missing array file")
        size = f.stat().st_size
        if size < info["bytes"]:
            raise FormatError(f, f"truncated: {size} of {info['bytes']} bytes")
        if size != info["bytes"] or sha256(f) != info["sha256"]:
            raise FormatError(f, "checksum mismatch: the file was modified or corrupted")
        try:
            a = np.load(f, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise FormatError(f, f"unreadable array: {e}") from None
        if list(a.shape) != info["shape"] or str(a.dtype) != info["dtype"]:
            raise FormatError(f, f"holds {a.dtype}{list(a.shape)}, the manifest says {info['dtype']}{info['shape']}")
        arrays[name] = a
    return manifest, arrays
