"""Training data: endless (clean window, distorted replica) pairs, and the noise and rooms that distort them.

A fingerprinter learns from pairs (clean window, distorted replica of the same
window) cut from music and degraded by the noise and rooms it will be heard
through (Chang et al. 2021, arXiv 2010.11910; Singh et al. 2023, arXiv
2211.11060). `PairDataset` cuts the windows at random continuous positions and
hands them to a distorter (`distort.Distorter`); `training_noise` and `load_rirs`
give that distorter real recordings, with training and evaluation files kept apart.

Notebook: 02_distortions.ipynb
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from .audio import SR, AudioFolder, peak_normalise
from .corpus.noise import noise_bank
from .errors import AudioError

# ----------------------------------------------------------------------------
# training pairs: (clean window, distorted replica), generated on the fly


class PairDataset(torch.utils.data.IterableDataset):
    """Endless batches of (clean, distorted) windows from random places in random tracks.

    A track is picked with probability proportional to its number of start
    positions (its length), the start is uniform over samples (not on a grid), and
    nearly silent windows are drawn again. The distorter (noise, reverb, time
    offset: `minihash.distort.Distorter`) is applied to the window, or to a crop
    `context_s` longer at the front so that reverb carries over from earlier audio.
    Each DataLoader worker draws its own stream, seeded by (seed, worker id).

    With `per_track` n > 1 a batch holds n windows of each track it draws, at independent
    positions: the other sections of the same recording become negatives of each window, so the
    embedding must tell where in a track it is, not only which track (of random windows, two from
    one track are rare, and in noise a search then finds the right track at the wrong place).

    Args:
        tracks: sequence of (T,) float arrays (an `AudioFolder` or `synth_tracks(...)`).
        distorter: callable `(x (B, T) tensor, generator=torch.Generator) -> (B, T)`.
        win_s: window length in seconds.
        sr: sample rate.
        batch_size: B.
        seed: seed of the stream.
        min_rms: windows quieter than this (-60 dBFS) are resampled.
        context_s: extra audio before the window handed to the distorter.
        per_track: windows drawn from each chosen track (1: every window from a track of its own draw).

    Yields:
        (clean (B, W), distorted (B, W)) float32 tensors, W = win_s * sr.
    """

    def __init__(self, tracks, distorter, win_s: float = 1.0, sr: int = SR, batch_size: int = 64, seed: int = 0,
                 min_rms: float = 1e-3, context_s: float = 0.0, per_track: int = 1):
        super().__init__()
        if not 1 <= per_track <= batch_size:
            raise ValueError(f"per_track is windows per track in a batch, 1 to the batch size ({batch_size}), "
                             f"got {per_track}")
        self.distorter, self.batch_size, self.seed, self.min_rms = distorter, batch_size, seed, min_rms
        self.per_track = per_track
        self.W, self.C = int(round(win_s * sr)), int(round(context_s * sr))
        L = self.W + self.C
        arrays = [np.asarray(x, dtype=np.float32).ravel() for x in tracks]
        arrays = [np.pad(x, (L - x.size, 0)) if x.size < L else x for x in arrays]
        if not arrays:
            raise ValueError("PairDataset needs at least one track")
        self.tracks = arrays  # as given: maps of the decode cache stay maps, shared by forked workers
        self.n_starts = np.array([x.size for x in arrays]) - L + 1
        self.p = self.n_starts / self.n_starts.sum()

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info is not None else 0])
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        while True:
            yield self.batch(rng, gen)

    def windows(self, rng: np.random.Generator, B: int) -> torch.Tensor:
        """B non-silent crops (context + window) at random continuous positions, drawn with `rng`."""
        L = self.W + self.C
        found, n = [], 0
        for _ in range(100):
            k = rng.choice(self.p.size, size=-(-B // self.per_track), p=self.p).repeat(self.per_track)[:B]
            start = (rng.random(B) * self.n_starts[k]).astype(np.int64)
            crops = torch.from_numpy(np.stack([self.tracks[i][s:s + L] for i, s in zip(k, start)]))  # (B, L)
            crops = crops[crops[:, self.C:].pow(2).mean(1).sqrt() >= self.min_rms]
            found.append(crops)
            n += crops.shape[0]
            if n >= B:
                return torch.cat(found)[:B]  # (B, L)
        raise RuntimeError(f"no window louder than {self.min_rms} RMS found: are the tracks silent?")

    def batch(self, rng: np.random.Generator, gen: torch.Generator):
        """One batch drawn with `rng` (positions) and `gen` (the distorter's randomness)."""
        crops = self.windows(rng, self.batch_size)  # (B, C + W)
        distorted = self.distorter(crops, generator=gen)[:, self.C:]  # (B, W)
        return crops[:, self.C:].contiguous(), distorted.float().contiguous()


def make_loader(tracks, distorter, batch_size: int, num_workers: int = 0, seed: int = 0, **kw):
    """A DataLoader over `PairDataset` (which batches itself, hence batch_size=None).

    Args:
        tracks, distorter, batch_size, seed: as `PairDataset`; **kw: its other arguments.
        num_workers: worker processes generating batches in parallel.

    Returns:
        torch DataLoader yielding (clean (B, W), distorted (B, W)) forever.

    Notebook: 05_contrastive_learning.ipynb
    """
    ds = PairDataset(tracks, distorter, batch_size=batch_size, seed=seed, **kw)
    return torch.utils.data.DataLoader(ds, batch_size=None, num_workers=num_workers,
                                       persistent_workers=num_workers > 0)


def random_windows(tracks, n: int, win_s: float = 1.0, sr: int = SR, seed: int = 0) -> torch.Tensor:
    """A fixed set of clean windows at random continuous positions (for validation), as `PairDataset` draws them.

    Args:
        tracks: sequence of (T,) arrays.
        n: number of windows.
        win_s, sr: window length and sample rate.
        seed: which set.

    Returns:
        (n, W) float32 tensor.
    """
    return PairDataset(tracks, None, win_s, sr, batch_size=n, seed=seed).windows(np.random.default_rng([seed]), n)


# ----------------------------------------------------------------------------
# real noise and rooms for the distorter, kept apart between training and evaluation


def _in_split(name: str, split: str) -> bool:
    """One file in five (by a hash of its name, so stable as a folder grows) is for evaluation."""
    return (int(hashlib.sha1(name.encode()).hexdigest(), 16) % 5 == 0) == (split == "eval")


def training_noise(noise_dirs=(), speech_dirs=(), split: str = "train", seconds: float = 20.0,
                   sr: int = SR) -> list[np.ndarray]:
    """Noise for `distort.Distorter`: recordings from folders, else the procedural bank.

    Files are split by a hash of their relative path: four in five for "train", one
    in five for "eval", so evaluation noise is never heard in training (a folder too
    small to give its split any file falls back on the procedural bank of that split).
    Speech files are summed 4 to 8 at a time into babble.

    Args:
        noise_dirs: folders of noise recordings (none: `noise_bank(seed=0 or 1)`).
        speech_dirs: folders of speech, for babble.
        split: "train" or "eval".
        seconds: length of the procedural noises and of each babble mix.
        sr: sample rate.

    Returns:
        list of (T,) float32 arrays.

    Notebook: 02_distortions.ipynb
    """
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    folders = [AudioFolder(d, sr, progress=False) for d in noise_dirs]
    noise = [x for f in folders for name, x in zip(f.names, f.tracks) if _in_split(name, split)]
    if not noise:
        noise = list(noise_bank(seconds, seed=0 if split == "train" else 1, sr=sr).values())
    folders = [AudioFolder(d, sr, progress=False) for d in speech_dirs]
    speech = [x for f in folders for name, x in zip(f.names, f.tracks) if _in_split(name, split)]
    rng, n = np.random.default_rng([0x6261, split == "eval"]), int(round(seconds * sr))
    for _ in range(max(1, len(speech) // 4) if speech else 0):
        mix = np.zeros(n)
        for i in rng.choice(len(speech), size=int(rng.integers(4, 9))):
            talker = np.resize(speech[i], n + speech[i].size)  # looped to length, then a random start
            start = int(rng.integers(speech[i].size))
            mix += talker[start:start + n] / (np.sqrt(np.mean(speech[i] ** 2)) + 1e-9)
        noise.append(peak_normalise(mix))
    return noise


def load_rirs(rir_dirs, sr: int = SR) -> list[np.ndarray]:
    """Room impulse responses from folders (any length from 5 ms), for `distort.Distorter`.

    Args:
        rir_dirs: folders (or one folder) of impulse responses, one per file.
        sr: sample rate.

    Returns:
        list of (L,) float32 arrays.

    Raises:
        AudioError: no usable impulse response in the folders.
    """
    rir_dirs = [rir_dirs] if isinstance(rir_dirs, (str, Path)) else list(rir_dirs)
    rirs = [x for d in rir_dirs for x in AudioFolder(d, sr, min_s=0.005, progress=False).tracks]
    if not rirs:
        raise AudioError(", ".join(map(str, rir_dirs)), "no usable impulse response found")
    return rirs
