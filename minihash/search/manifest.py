"""The manifest of an index: a JSON file with a format tag, a version, a checksum of itself, and fields
that are all checked before anything is built from them.

The checksum catches damage; the field checks catch a manifest edited by hand and given a valid
checksum again (or written by a buggy tool): every field has a kind and a range, the names a
count, each array a plain file name, a size, a SHA-256, a shape and a dtype. What they cannot tell
apart is an edit into another valid value (a threshold, a track's name): that is another index.
Anything refused raises a `FormatError` saying "not a valid index", what is wrong, and what to do.

Notebook: 08_search.ipynb
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path

import numpy as np

from ..errors import FormatError

FORMAT = "minihash-index"
VERSION = 1
MANIFEST = "manifest.json"
_ARRAY_FILE = re.compile(r"[A-Za-z0-9_]+\.npy")

# ----------------------------------------------------------------------------
# the checksum, writing and reading


def manifest_digest(manifest: dict) -> str:
    """The SHA-256 of the manifest without its own checksum field (keys sorted)."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def seal(manifest: dict) -> dict:
    """The manifest with its checksum."""
    return {**manifest, "manifest_sha256": manifest_digest(manifest)}


def write_manifest(f: Path, manifest: dict) -> None:
    with open(f, "w") as fh:
        json.dump(manifest, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())


def invalid(path, what: str) -> FormatError:
    """The error for a manifest whose fields do not make an index."""
    return FormatError(path, f"not a valid index: {what}; rebuild it with `minihash index`")


def load_manifest(f: Path) -> dict:
    """The manifest in the file `f`, checked for format, version and its own checksum."""
    try:
        manifest = json.loads(f.read_bytes())
    except FileNotFoundError:
        raise invalid(f, "the manifest is missing") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise invalid(f, f"unreadable manifest ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise FormatError(f, "not a minihash index (the manifest names another format)")
    v = manifest.get("version")
    if type(v) is not int:
        raise invalid(f, f"its format version is {v!r}, not a whole number (this minihash writes version {VERSION})")
    if v != VERSION:
        raise FormatError(f, f"index format version {v}, this minihash reads version {VERSION}: rebuild the index "
                             "with `minihash index`")
    if manifest.get("manifest_sha256") != manifest_digest(manifest):
        raise invalid(f, "manifest checksum mismatch: the manifest was edited or corrupted")
    return manifest


# ----------------------------------------------------------------------------
# the fields


def _int(v, lo=0, hi=math.inf) -> bool:
    return type(v) is int and lo <= v <= hi  # not bool: True is an int to Python, not to a manifest


def _number(v) -> bool:
    return type(v) in (int, float) and not math.isnan(v)


def _need(ok: bool, f, what: str) -> None:
    if not ok:
        raise invalid(f, what)


def check_manifest(f: Path, m: dict) -> dict:
    """Check every field of a manifest (`f` names its file in errors); returns `m` unchanged.

    The arrays' shapes are checked against these fields by the index class that loads them
    (`base.BaseIndex.from_stored`), which knows which arrays its method keeps.
    """
    need = ("method", "D", "K", "n_windows", "n_tracks", "model", "threshold", "hop_s", "names", "params",
            "search", "meta", "arrays")
    missing = [k for k in need if k not in m]
    _need(not missing, f, f"fields missing: {', '.join(missing)}")
    _need(isinstance(m["method"], str), f, f"method {m['method']!r} is not a name")
    _need(_int(m["D"], 1), f, f"D = {m['D']!r} is not a positive whole number")
    _need(m["K"] is None or _int(m["K"], 1, 64), f, f"K = {m['K']!r} is not a number of bits (1 to 64)")
    _need(_int(m["n_windows"]) and _int(m["n_tracks"]), f, "n_windows and n_tracks must be whole numbers")
    _need(m["model"] is None or isinstance(m["model"], str), f, "model is not an id")
    _need(_number(m["threshold"]), f, f"threshold {m['threshold']!r} is not a number")
    hop = m["hop_s"]
    _need(_number(hop) and 0 < hop < math.inf, f, f"hop_s = {hop!r} is not a positive number of seconds")
    names = m["names"]
    _need(isinstance(names, list) and all(isinstance(n, str) for n in names), f, "names is not a list of names")
    _need(len(names) == m["n_tracks"], f, f"{len(names)} names for {m['n_tracks']} tracks")
    _need(len(set(names)) == len(names), f, "a track name appears twice")
    _need(isinstance(m["params"], dict), f, "params is not a dict")
    search = m["search"]
    _need(isinstance(search, dict) and all(_int(v, 1) for v in search.values()), f,
          "search settings must be positive whole numbers")
    _check_meta(f, m)
    _check_arrays(f, m["arrays"])
    return m


def _check_meta(f: Path, m: dict) -> None:
    meta = m["meta"]
    _need(isinstance(meta, dict), f, "meta is not a dict")
    _need(meta.get("model") == m["model"], f, f"meta names model {meta.get('model')!r}, the manifest {m['model']!r}")
    _need(_number(meta.get("threshold", 0.0)), f, f"meta threshold {meta.get('threshold')!r} is not a number")
    by_length = meta.get("thresholds", {})
    _need(isinstance(by_length, dict) and all(k.isdigit() and _number(v) for k, v in by_length.items()), f,
          "meta thresholds must map window counts to numbers")
    _need(isinstance(meta.get("model_path", ""), str), f, "meta model_path is not a path")
    mf = meta.get("max_false", 0.0)
    _need(_number(mf) and 0.0 <= mf < 1.0, f, f"meta max_false {mf!r} is not a share from 0 to 1")
    _check_decision(f, meta.get("decision", {}))
    _check_calibration(f, meta.get("calibration"))


def _numbers(v, n=None) -> bool:
    return isinstance(v, list) and all(_number(x) for x in v) and (n is None or len(v) == n)


def _check_decision(f: Path, decision) -> None:
    """meta["decision"]: {window count: {"kind": a feature} or a logistic fit of the three features}."""
    _need(isinstance(decision, dict) and all(isinstance(d, dict) and k.isdigit() for k, d in decision.items()), f,
          "meta decision must map window counts to decisions")
    for k, d in decision.items():
        kind = d.get("kind")
        _need(kind in ("similarity", "margin", "agree", "logistic"), f, f"meta decision {k}: unknown kind {kind!r}")
        if kind == "logistic":
            _need(_numbers(d.get("mean"), 3) and _numbers(d.get("std"), 3) and _numbers(d.get("w"), 3)
                  and _number(d.get("b")) and all(s > 0 for s in d["std"]), f,
                  f"meta decision {k}: a logistic decision needs mean, std (> 0) and w of 3 numbers, and b")


def _check_calibration(f: Path, cal) -> None:
    """meta["calibration"]: the negatives' scores, the share of the index each searched, what each is worth,
    their window counts."""
    if cal is None:
        return
    _need(isinstance(cal, dict) and _numbers(cal.get("scores")), f, "meta calibration holds no list of scores")
    n = len(cal["scores"])
    _need(cal.get("searched") is None or (_numbers(cal["searched"], n) and all(0 < x <= 1 for x in cal["searched"])),
          f, f"meta calibration: searched must be {n} shares in (0, 1]")
    _need(cal.get("worth") is None or (_numbers(cal["worth"], n) and all(0 < x <= 1 for x in cal["worth"])),
          f, f"meta calibration: worth must be {n} numbers in (0, 1]")
    nw = cal.get("n_windows")
    _need(nw is None or (isinstance(nw, list) and len(nw) == n and all(_int(x, 1) for x in nw)), f,
          f"meta calibration: n_windows must be {n} window counts")
    c = cal.get("confidence")
    _need(c is None or (_number(c) and 0 < c < 1), f, f"meta calibration confidence {c!r} is not in (0, 1)")


def _check_arrays(f: Path, arrays) -> None:
    _need(isinstance(arrays, dict), f, "arrays is not a dict")
    for name, info in arrays.items():
        _need(isinstance(info, dict) and {"file", "bytes", "sha256", "shape", "dtype"} <= set(info), f,
              f"array {name} has no file, bytes, sha256, shape and dtype")
        _need(isinstance(info["file"], str) and _ARRAY_FILE.fullmatch(info["file"]) is not None, f,
              f"array {name}'s file {info['file']!r} is not a plain .npy name")
        _need(_int(info["bytes"]) and isinstance(info["sha256"], str) and isinstance(info["dtype"], str), f,
              f"array {name}'s bytes, sha256 or dtype is of the wrong kind")
        shape = info["shape"]
        _need(isinstance(shape, list) and all(_int(n) for n in shape), f, f"array {name}'s shape is not a list of sizes")


def check_stored(path, m: dict, arrays: dict, expected: dict, K) -> None:
    """Check loaded arrays against their manifest `m` and the method that loads them.

    Args:
        path: the index, for errors.
        m: its checked manifest.
        arrays: name -> array, as read (each already matches its manifest entry).
        expected: name -> (shape, dtype) of every array the method keeps (`BaseIndex._expected`).
        K: the method's bits, or None.
    """
    got = {k: (a.shape, str(a.dtype)) for k, a in arrays.items()}
    if got != expected:
        def show(d):
            return ", ".join(f"{k} {t}{list(s)}" for k, (s, t) in sorted(d.items()))
        raise invalid(path, f"it holds {show(got)}; a {m['method']} index of {m['n_windows']} windows holds "
                            f"{show(expected)}")
    _need(m["K"] == K, path, f"K = {m['K']} but its {m['method']} parameters say {K}")
    ids = arrays["track_ids"]
    _need(len(ids) == 0 or (ids.min() >= 0 and ids.max() < len(m["names"])), path,
          f"track ids beyond its {len(m['names'])} names")
    _need(bool(np.isfinite(arrays["starts"]).all()), path, "window start times that are not numbers")
