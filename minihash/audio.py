"""Audio in: load any wav/flac/ogg/opus/mp3 as mono float32 at 8 kHz, and cut it into windows.

Every fingerprinting system starts here. Shazam (Wang 2003) and the Neural Audio
Fingerprint (Chang et al. 2021) both work at 8 kHz mono: the band that survives a
phone microphone and a loudspeaker. Files are decoded by soundfile (libsndfile)
and resampled by torchaudio. Every failure is an `AudioError` that names the file
and the reason, so that one bad file in a folder of ten thousand is skipped and
reported instead of stopping the run.

Notebook: 01_audio_and_spectrograms.ipynb
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from .errors import AudioError

SR = 8000  # the sample rate of everything downstream
MIN_SECONDS = 0.5  # the shortest query that can be fingerprinted
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aif", ".aiff")
SILENCE_RMS = 1e-5  # below this (-100 dBFS) a file holds no usable sound

# ----------------------------------------------------------------------------
# loading


def to_mono_resampled(x: np.ndarray, sr_in: int, sr: int = SR) -> np.ndarray:
    """Down-mix to mono and resample.

    Args:
        x: (T,) or (T, C) samples.
        sr_in: their sample rate.
        sr: the target rate.

    Returns:
        (T',) float32 at `sr`.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)  # (T,)
    if sr_in != sr:
        g = math.gcd(int(sr_in), int(sr))
        x = AF.resample(torch.from_numpy(x), sr_in // g, sr // g).numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def check(x: np.ndarray, path="<array>", sr: int = SR, min_s: float = MIN_SECONDS) -> np.ndarray:
    """Refuse audio that cannot be fingerprinted, with the reason.

    Args:
        x: (T,) mono samples.
        path: the name to put in the error.
        sr: sample rate of `x`.
        min_s: the shortest duration accepted, in seconds.

    Returns:
        `x` unchanged.

    Raises:
        AudioError: empty, NaN/Inf, all-silent, or shorter than `min_s`.
    """
    if x.size == 0:
        raise AudioError(path, "empty: the file holds no samples")
    if not np.all(np.isfinite(x)):
        raise AudioError(path, "holds NaN or Inf samples")
    if x.size < min_s * sr:
        raise AudioError(path, f"too short: {x.size / sr:.2f} s, the minimum is {min_s:.2f} s")
    if float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) < SILENCE_RMS:
        raise AudioError(path, "all silent (RMS below -100 dBFS)")
    return x


def load(path, sr: int = SR, min_s: float = MIN_SECONDS) -> np.ndarray:
    """Load an audio file as mono float32 at `sr`.

    Args:
        path: a wav, flac, ogg, opus or mp3 file (anything libsndfile decodes).
        sr: the target sample rate (8 kHz by default).
        min_s: the shortest duration accepted, in seconds.

    Returns:
        (T,) float32 samples in [-1, 1].

    Raises:
        AudioError: missing, unreadable or corrupt, empty, all-silent, NaN/Inf or too short.

    Notebook: 01_audio_and_spectrograms.ipynb
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "no such file")
    if path.is_dir():
        raise AudioError(path, "is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty: the file has 0 bytes")
    try:
        x, sr_in = sf.read(str(path), dtype="float32", always_2d=True)  # (T, C)
    except Exception as e:  # libsndfile says why in its message
        raise AudioError(path, f"unreadable or corrupt ({_short(e)})") from None
    if x.shape[0] == 0:
        raise AudioError(path, "empty: the file holds no samples")
    if not np.all(np.isfinite(x)):
        raise AudioError(path, "holds NaN or Inf samples")
    return check(to_mono_resampled(x, sr_in, sr), path, sr, min_s)


def _short(e: Exception) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return msg[:200]


def find_audio(root) -> list[Path]:
    """Every audio file under `root`, recursively, in a deterministic (sorted) order.

    Args:
        root: a folder, or a single file.

    Returns:
        sorted list of paths whose extension is one of `AUDIO_EXTENSIONS`.

    Raises:
        AudioError: `root` does not exist.
    """
    root = Path(root)
    if not root.exists():
        raise AudioError(root, "no such file or folder")
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


def load_folder(root, sr: int = SR, min_s: float = MIN_SECONDS, progress: bool = True):
    """Load every audio file under `root`; skip and report the bad ones.

    Args:
        root: a folder (searched recursively).
        sr: the target sample rate.
        min_s: the shortest duration accepted.
        progress: show a tqdm progress bar.

    Returns:
        (tracks, errors): `tracks` maps the path relative to `root` (posix) to (T,)
        float32 samples; `errors` lists (relative path, reason) of the skipped files.
    """
    from tqdm.auto import tqdm

    root = Path(root)
    tracks, errors = {}, []
    for p in tqdm(find_audio(root), desc=f"loading {root.name or root}", unit="file", disable=not progress):
        name = p.relative_to(root).as_posix() if root.is_dir() else p.name
        try:
            tracks[name] = load(p, sr, min_s)
        except AudioError as e:
            errors.append((name, e.reason))
    return tracks, errors


# ----------------------------------------------------------------------------
# windows


def segment(x, sr: int = SR, win_s: float = 1.0, hop_s: float = 0.5, pad: bool = True):
    """Cut a signal into overlapping windows, with the start time of each.

    The database is fingerprinted with a 0.1 s hop, queries with a coarser one.
    A signal shorter than one window gives one zero-padded window when `pad`.

    Args:
        x: (T,) numpy array or torch tensor.
        sr: sample rate.
        win_s: window length in seconds.
        hop_s: hop between window starts in seconds.
        pad: zero-pad a signal shorter than one window instead of returning none.

    Returns:
        (windows (N, W), starts (N,) float64 seconds), windows of the same type as `x`.

    Notebook: 01_audio_and_spectrograms.ipynb
    """
    W, H = int(round(win_s * sr)), int(round(hop_s * sr))
    if H <= 0 or W <= 0:
        raise ValueError(f"win_s and hop_s must be positive, got {win_s}, {hop_s}")
    is_torch = isinstance(x, torch.Tensor)
    t = x if is_torch else torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if t.ndim != 1:
        raise ValueError(f"segment expects a 1-d signal, got shape {tuple(t.shape)}")
    if t.numel() < W:
        if not pad:
            empty = t.new_zeros((0, W))
            return (empty if is_torch else empty.numpy()), np.zeros(0)
        t = torch.nn.functional.pad(t, (0, W - t.numel()))
    frames = t.unfold(0, W, H)  # (N, W)
    starts = np.arange(frames.shape[0]) * H / sr
    return (frames if is_torch else frames.numpy().copy()), starts
