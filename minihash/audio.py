"""Audio in: load any wav/flac/ogg/opus/mp3 (or a whole folder) as mono float32 at 8 kHz, cut it into windows.

Every fingerprinting system starts here. Shazam (Wang 2003) and the Neural Audio
Fingerprint (Chang et al. 2021) both work at 8 kHz mono: the band that survives a
phone microphone and a loudspeaker. Files are decoded by soundfile (libsndfile)
and resampled by torchaudio. Every failure is an `AudioError` that names the file
and the reason, so that one bad file in a folder of ten thousand is skipped and
reported instead of stopping the run: `AudioFolder` loads a folder that way, each
file once (byte-identical copies are listed, not loaded twice), eagerly or one file
at a time.

Notebook: 01_audio_and_spectrograms.ipynb
"""
from __future__ import annotations

import errno
import hashlib
import math
import os
import stat
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from tqdm.auto import tqdm

from .errors import AudioError
from .files import cache_dir, map_npy, save_npy

SR = 8000  # the sample rate of everything downstream
MIN_SECONDS = 0.5  # the shortest query that can be fingerprinted
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aif", ".aiff")
SILENCE_RMS = 1e-5  # below this (-100 dBFS) a file holds no usable sound
PEAK = 0.9  # generated audio (procedural songs, noises, babble) is peak-normalised to this

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


def load(path, sr: int = SR, min_s: float = MIN_SECONDS, cache: bool = True, mmap: bool = False) -> np.ndarray:
    """Load an audio file as mono float32 at `sr`.

    Args:
        path: a wav, flac, ogg, opus or mp3 file (anything libsndfile decodes).
        sr: the target sample rate (8 kHz by default).
        min_s: the shortest duration accepted, in seconds.
        cache: keep the decoded samples under `$MINIHASH_CACHE/decoded` and read them from
            there next time (a second load of a folder takes seconds instead of minutes).
        mmap: return the cached samples as a read-only memory map (a folder's excerpts are then
            read without holding the whole folder in memory); decoded into memory if not cached.

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
    cached = decoded_path(path, sr) if cache else None
    x = _read_decoded(cached, mmap) if cached else None
    if x is None:
        x = _decode(path, sr)
        if cached:
            try:  # a read-only or full cache only costs time
                cached.parent.mkdir(parents=True, exist_ok=True)
                save_npy(cached, x)
            except OSError:
                pass
    return check(x, path, sr, min_s)


def _decode(path: Path, sr: int) -> np.ndarray:
    try:
        x, sr_in = sf.read(str(path), dtype="float32", always_2d=True)  # (T, C)
    except Exception as e:  # libsndfile says why in its message
        raise AudioError(path, f"unreadable or corrupt ({_short(e)})") from None
    if x.shape[0] == 0:
        raise AudioError(path, "empty: the file holds no samples")
    if not np.all(np.isfinite(x)):
        raise AudioError(path, "holds NaN or Inf samples")
    return to_mono_resampled(x, sr_in, sr)


# ----------------------------------------------------------------------------
# the decode cache: each file decoded once (opus and mp3 decoding dominates a training start)


def decoded_path(path, sr: int = SR) -> Path:
    """Where the decoded samples of `path` are cached: keyed by its absolute path, size,
    modification time and the sample rate, so an edited or replaced file is decoded again."""
    st = Path(path).stat()
    key = f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}|{sr}"
    return cache_dir() / "decoded" / f"{hashlib.sha256(key.encode()).hexdigest()[:40]}.npy"


def _read_decoded(f: Path, mmap: bool = False):
    """The cached samples, or None when missing, unreadable or not a float32 vector (never trusted blindly)."""
    try:
        x = map_npy(f) if mmap else np.load(f, allow_pickle=False)
    except (OSError, ValueError, EOFError, RuntimeError):  # RuntimeError: torch could not map it
        return None
    return x if x.dtype == np.float32 and x.ndim == 1 else None


def _short(e: Exception) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return msg[:200]


def scan_audio(root) -> tuple[list[Path], list[tuple[str, str]]]:
    """Every audio file under `root`, and every entry skipped on the way with the reason: nothing
    under `root` is left out in silence. Linked folders are followed, each real folder searched
    once: a link to a folder already searched (a loop, or the same folder twice), a folder that
    cannot be read, a broken link and a loop of links are listed.

    Args:
        root: a folder, or a single file.

    Returns:
        (files, skipped): the sorted paths whose extension is one of `AUDIO_EXTENSIONS`, and
        (name relative to `root`, reason) of each entry skipped (folders named with a final "/").

    Raises:
        AudioError: `root` does not exist or cannot be read.
    """
    root = Path(root)
    if not root.exists():
        raise AudioError(root, "no such file or folder")
    if not root.is_dir():
        return [root], []
    files, skipped, st = [], [], root.stat()
    seen = {(st.st_dev, st.st_ino): "."}  # (device, inode) of each folder searched -> its name
    stack = [root]
    while stack:
        d = stack.pop()
        name = d.relative_to(root).as_posix()
        try:
            entries = sorted(os.scandir(d), key=lambda e: (e.is_symlink(), e.name))  # real folders first
        except OSError as e:
            why = "permission denied" if isinstance(e, PermissionError) else f"unreadable ({e.strerror or e})"
            if d == root:
                raise AudioError(root, f"{why}: the folder cannot be read") from None
            skipped.append((name + "/", f"{why}: the folder cannot be read, its files are not indexed"))
            continue
        subfolders = []
        for e in entries:
            p = Path(e.path)
            rel = p.relative_to(root).as_posix()
            try:
                st = p.stat()  # through links
            except OSError as err:
                skipped.append((rel, _bad_link(p, err)))
                continue
            if stat.S_ISDIR(st.st_mode):
                first = seen.setdefault((st.st_dev, st.st_ino), rel)
                if first == rel:
                    subfolders.append(p)
                elif first == "." or rel.startswith(first + "/"):  # it leads back to a folder above it
                    where = "the top folder" if first == "." else f"{first}/"
                    skipped.append((rel + "/", f"a symlink loop (it leads back to {where}): not searched again"))
                else:
                    skipped.append((rel + "/", f"the same folder as {first}/ (a link): searched once"))
            elif stat.S_ISREG(st.st_mode) and p.suffix.lower() in AUDIO_EXTENSIONS:
                files.append(p)
        stack += sorted(subfolders, reverse=True)
    skipped.sort()
    return sorted(files), skipped


def _bad_link(p: Path, err: OSError) -> str:
    """Why an entry whose stat failed is skipped: a broken link, a loop of links, or unreadable."""
    if not p.is_symlink():
        return f"unreadable ({err.strerror or err})"
    if err.errno == errno.ELOOP:
        return "a symlink loop (the link never reaches a file)"
    return f"a broken link (to {os.readlink(p)}, which does not exist)"


def find_audio(root) -> list[Path]:
    """Every audio file under `root`, recursively, sorted: `scan_audio`'s files (AudioError when missing)."""
    return scan_audio(root)[0]


# ----------------------------------------------------------------------------
# the level of generated audio


def peak_normalise(x: np.ndarray, peak: float = PEAK) -> np.ndarray:
    """`x` scaled so that its largest magnitude is `peak`, as float32 (a silent `x` stays silent)."""
    return (peak * x / (np.abs(x).max() + 1e-12)).astype(np.float32)


# ----------------------------------------------------------------------------
# a folder: every file once, bad files skipped and reported


class AudioFolder:
    """Every audio file under a folder (recursive), loaded as mono 8 kHz float32.

    Order is deterministic (sorted relative paths). A file with the same bytes as
    an earlier one is listed once (`.duplicates` holds (duplicate, original)); a
    file that cannot be used is skipped (`.errors` holds (name, reason)). With
    `lazy=True` nothing is read at creation: `stream()` yields one file at a time,
    so a large folder is never held in memory. With `mmap=True` each track is a read-only
    map of its decoded samples in the cache (`load(..., mmap=True)`): hours of audio then cost
    page cache, which the system reclaims, instead of this process's memory.

    Args:
        path: a folder (or one file).
        sr: target sample rate.
        min_s: shortest duration accepted.
        progress: show a tqdm bar.
        lazy: read the files in `stream()` only, not now.
        mmap: tracks mapped from the decode cache (read-only) instead of read into memory.

    Attributes:
        files: sorted (name, path) of every audio file found; names are posix paths relative to the folder.
        names, tracks: the loaded files (eager only): name and (T,) float32 signal, in the order of `files`.
        errors: (name, reason) of each file or folder skipped (unreadable folders and broken links
            first, as `scan_audio` found them); duplicates: (name, name of the original).

    Notebook: 10_your_own_audio.ipynb
    """

    def __init__(self, path, sr: int = SR, min_s: float = MIN_SECONDS, progress: bool = True, lazy: bool = False,
                 mmap: bool = False):
        self.root, self.sr, self.min_s, self.progress, self.mmap = Path(path), sr, min_s, progress, mmap
        self.names, self.tracks, self.duplicates = [], [], []
        files, self.skipped = scan_audio(self.root)  # raises AudioError when the folder does not exist
        self.errors = list(self.skipped)
        self.files = sorted((p.relative_to(self.root).as_posix() if self.root.is_dir() else p.name, p) for p in files)
        if not lazy:
            for name, x in self.stream():
                self.names.append(name)
                self.tracks.append(x)

    def stream(self):
        """Yield (name, signal) one file at a time, so that a large folder is never held in memory;
        `.errors` and `.duplicates` fill up as it goes (a lazy folder is read here, not at creation)."""
        self.errors[:], self.duplicates[:] = self.skipped, []  # what the search skipped, then the files
        originals = {}  # sha1 of the bytes -> name of the first good file with them
        desc = f"loading {self.root.name or self.root}"
        for name, p in tqdm(self.files, desc=desc, unit="file", disable=not self.progress):
            try:
                digest = hashlib.sha1(p.read_bytes()).hexdigest()
            except OSError as e:
                self.errors.append((name, f"unreadable ({e.strerror or e})"))
                continue
            if digest in originals:
                self.duplicates.append((name, originals[digest]))
                continue
            try:
                x = load(p, self.sr, self.min_s, mmap=self.mmap)
            except AudioError as e:
                self.errors.append((name, e.reason))
                continue
            originals[digest] = name
            yield name, x

    def __len__(self) -> int:
        return len(self.tracks)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.tracks[i]

    @property
    def hours(self) -> float:
        return sum(x.size for x in self.tracks) / self.sr / 3600

    def summary(self) -> str:
        """Tracks, hours, duplicates and skipped files with their reasons, as text."""
        def count(k, what):
            return f"{k} {what}{'s' if k != 1 else ''}"

        lines = [f"{count(len(self), 'track')}, {self.hours:.2f} h ({self.hours * 60:.1f} min) from {self.root}"]
        if self.duplicates:
            lines.append(f"{count(len(self.duplicates), 'duplicate file')} listed once:")
            lines += [f"  {d} (same bytes as {o})" for d, o in self.duplicates]
        if self.errors:
            lines.append(f"{count(len(self.errors), 'file')} skipped:")
            lines += [f"  {name}: {reason}" for name, reason in self.errors]
        return "\n".join(lines)


def load_folder(root, sr: int = SR, min_s: float = MIN_SECONDS, progress: bool = True):
    """Load every audio file under `root`; skip and report the bad ones (`AudioFolder`, as a dict).

    Args:
        root: a folder (searched recursively).
        sr: the target sample rate.
        min_s: the shortest duration accepted.
        progress: show a tqdm progress bar.

    Returns:
        (tracks, errors): `tracks` maps the path relative to `root` (posix) to (T,)
        float32 samples; `errors` lists (relative path, reason) of the skipped files,
        a copy of an earlier file among them ("same bytes as ...").

    Notebook: 01_audio_and_spectrograms.ipynb
    """
    folder = AudioFolder(root, sr, min_s, progress)
    copies = [(name, f"same bytes as {original}") for name, original in folder.duplicates]
    return dict(zip(folder.names, folder.tracks)), folder.errors + copies


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
