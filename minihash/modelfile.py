"""Model files: which class a config builds, and the file that holds it (safetensors weights + JSON config).

A model file is two files side by side: the weights as safetensors (read without
unpickling anything, so a model file cannot run code) and a JSON file with the
config (how to hear: the front end; which network: `arch`), the format version, the
minihash version and the SHA-256 and size of the weights. Loading checks all of them
and says what is wrong with a file that is truncated, tampered with, foreign or of
another version (`errors.FormatError`).

Notebook: 05_contrastive_learning.ipynb
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ._version import __version__
from .encoder import Encoder, Fingerprinter, ModelConfig, count_parameters, stored_weights
from .errors import FormatError
from .files import sha256, temp_name, umask_mode
from .nafp import ConvEncoder

FORMAT = "minihash-model"
FORMAT_VERSION = 1
SHIPPED = Path(__file__).parent / "models" / "small.safetensors"


def build_model(cfg: ModelConfig) -> Encoder:
    """The encoder that `cfg.arch` names: `Fingerprinter` or `ConvEncoder`."""
    return Fingerprinter(cfg) if cfg.arch == "transformer" else ConvEncoder(cfg)


# ----------------------------------------------------------------------------
# writing


def save_model(model: Encoder, path, extra: dict | None = None) -> Path:
    """Write a model file: weights as safetensors, and the JSON beside it.

    Args:
        model: a `Fingerprinter` or `ConvEncoder`.
        path: the weights file (`.safetensors`); the config goes to `path.with_suffix('.json')`
            with the format version, the sha256 and size of the weights and the minihash version.
        extra: anything JSON-serialisable to keep with it (training settings, validation scores).

    Returns:
        The weights path. Each file is written under a temporary name and renamed into place,
        so a crash never leaves a half-written file behind a valid name.
    """
    path = Path(path)
    if path.suffix == ".json":
        raise ValueError(f"{path}: give the weights path (.safetensors); the .json is written beside it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_w, tmp_j = temp_name(path), temp_name(path.with_suffix(".json"))
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in stored_weights(model).items()}, str(tmp_w))
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "minihash_version": __version__,
                "config": model.cfg.to_dict(), "sha256": sha256(tmp_w), "size": os.path.getsize(tmp_w),
                "parameters": count_parameters(model), **({"extra": extra} if extra else {})}
        tmp_j.write_text(json.dumps(meta, indent=2))
        os.chmod(tmp_w, umask_mode())  # safetensors writes 0600: a model file is for every user the umask allows
        os.replace(tmp_w, path)  # weights first: a crash in between leaves a detectable checksum mismatch
        os.replace(tmp_j, path.with_suffix(".json"))
    finally:
        for tmp in (tmp_w, tmp_j):
            tmp.unlink(missing_ok=True)
    return path


# ----------------------------------------------------------------------------
# reading, every field checked


def _read_meta(path: Path) -> dict:
    """The JSON beside the weights, checked against the weights file's size and checksum."""
    if not path.is_file():
        raise FormatError(path, "no such model file")
    jpath = path.with_suffix(".json")
    try:
        meta = json.loads(jpath.read_text())
    except FileNotFoundError:
        raise FormatError(path, f"its config file {jpath.name} is missing (save_model writes both)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(jpath, f"config file is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise FormatError(jpath, f"not a minihash model config (format tag is not {FORMAT!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise FormatError(jpath, f"model format version {meta.get('format_version')!r}, this minihash reads "
                                 f"version {FORMAT_VERSION}: retrain or re-save the model with this version")
    size, saved = path.stat().st_size, meta.get("size")
    if isinstance(saved, int) and size < saved:
        raise FormatError(path, f"truncated: {size} of {saved} bytes")
    if meta.get("sha256") != sha256(path):
        raise FormatError(path, "checksum mismatch: the weights were modified or corrupted after saving")
    return meta


def load_model(path=None, map_location="cpu") -> Encoder:
    """Load a model saved by `save_model`.

    Args:
        path: the `.safetensors` file (its `.json` beside it); None loads the shipped
            `minihash/models/small.safetensors`.
        map_location: device to load onto.

    Returns:
        The model, in eval mode.

    Raises:
        FormatError: missing, truncated, tampered (checksum), foreign (not safetensors, a pickle,
            wrong keys or shapes) or of another format version, with the reason. Weights are read
            with safetensors only: a file is never unpickled.

    Notebook: 08_search.ipynb
    """
    if path is None and not SHIPPED.is_file():
        raise FormatError(SHIPPED, "the shipped model is missing: train it with `minihash train --preset small "
                                   "-o minihash/models/small.safetensors`, or pass the path of a model file")
    path = Path(SHIPPED if path is None else path)
    meta = _read_meta(path)
    try:
        W = load_file(str(path), device=str(map_location))
    except Exception as e:  # safetensors raises its own error type for every malformed header
        with open(path, "rb") as f:
            head = f.read(2)
        if head == b"PK" or head[:1] == b"\x80":  # torch.save's zip, or a bare pickle
            raise FormatError(path, "a pickled PyTorch checkpoint, not safetensors: minihash never unpickles "
                                    "files (unsafe); convert it with save_model") from None
        raise FormatError(path, f"not a safetensors file ({e})") from None
    try:
        model = build_model(ModelConfig.from_dict(meta["config"]))
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise FormatError(path.with_suffix(".json"), f"invalid model config ({e})") from None
    want = stored_weights(model)
    missing, unexpected = sorted(want.keys() - W.keys()), sorted(W.keys() - want.keys())
    if missing or unexpected:
        raise FormatError(path, f"wrong keys for a {model.cfg.arch} model: missing {missing[:3]}, unexpected "
                                f"{unexpected[:3]} ({len(missing)} and {len(unexpected)} in all)")
    for k, v in W.items():
        if v.shape != want[k].shape or v.dtype != want[k].dtype:
            raise FormatError(path, f"wrong shape for {k}: {tuple(v.shape)} {v.dtype} in the file, the config "
                                    f"needs {tuple(want[k].shape)} {want[k].dtype}")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise FormatError(path, f"non-finite values in {k}")
    model.load_state_dict(W, strict=False)  # strict on everything but the rebuilt front end, checked above
    return model.to(map_location).eval()
