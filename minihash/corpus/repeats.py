"""Repeats in music: how unique a corpus is, and where an excerpt recurs in its own track.

Real music repeats itself (choruses, loops), and a query-by-example score must know
it: an excerpt that recurs sample for sample has several right answers. Two measures
of a corpus, and two of an excerpt:

- `cross_track_duplicates`: windows whose log-mel has a near copy (Pearson r) in
  ANOTHER track: copies across tracks make retrieval look harder (or easier) than it is.
- `self_repeat_share`: windows whose waveform recurs elsewhere in their OWN track, by
  the cosine of the raw samples (normalised cross-correlation without mean removal).
- `ncc` / `repeat_starts`: the Pearson correlation of one excerpt with every window of
  its track, and the starts where it recurs: the evaluation protocol forgives those
  (`TrackNCC` for many excerpts of one track).
- `likeness_elsewhere`: how much the excerpt SOUNDS like the most alike other place of its
  track (log-mel, not waveform): a loop under another melody is no repeat, yet a near copy
  that an embedding trained to ignore noise may take for the excerpt.

Notebook: 00_overview.ipynb
"""
from __future__ import annotations

import numpy as np
import scipy.fft
import torch
from scipy.signal import oaconvolve

from ..audio import SR, segment
from ..spectrogram import MelConfig, log_mel

# ----------------------------------------------------------------------------
# one excerpt: where does it recur?


def ncc(q, x) -> np.ndarray:
    """Normalised cross-correlation (Pearson r) of `q` with every window of `x`, by FFT.

    r[k] = sum_t (q[t] - mean q) (x[k+t] - mean of the window) / (n std q std window); the
    numerator is one FFT convolution, overlap-add (q centred, so the window's mean drops out),
    the window statistics come from cumulative sums: O(T log n) instead of O(T n).

    Args:
        q: (n,) excerpt.
        x: (T,) signal, T >= n.

    Returns:
        (T - n + 1,) correlations in [-1, 1]; 0 where the window (or q) is silent.

    Notebook: 09_benchmark.ipynb
    """
    return TrackNCC(x, len(q)).ncc(q)


class TrackNCC:
    """`ncc` of many excerpts of length n against one track: the track's half of the work is done once,
    here (centring, every window's standard deviation, and the spectra of the track's overlapping blocks),
    and each excerpt costs one FFT of its own and one inverse FFT per block: overlap-save, where a
    fresh FFT convolution would transform the whole track again for every excerpt (how `draw_queries`
    finds the repeats of hundreds of excerpts, track by track).

    Args:
        x: (T,) signal.
        n: excerpt length, <= T.
    """

    def __init__(self, x, n: int):
        x = np.asarray(x, np.float64)
        if not 0 < n <= len(x):
            raise ValueError(f"excerpts of {n} samples do not fit a track of {len(x)}")
        self.n, self.x = n, x - x.mean()  # smaller cumulative sums, the same correlations
        c1, c2 = (np.concatenate([[0.0], np.cumsum(v)]) for v in (self.x, self.x * self.x))
        s1, s2 = c1[n:] - c1[:-n], c2[n:] - c2[:-n]  # window sums of x and x^2
        var = np.maximum(s2 - s1 * s1 / n, 0.0)  # n times each window's variance
        self.ok = var > n * 1e-12
        self.norm = np.sqrt(np.where(self.ok, var, 1.0))  # (T - n + 1,)
        # overlap-save: block b holds x[b S : b S + L] and gives the S correlations starting there
        M = len(x) - n + 1
        self.L = min(scipy.fft.next_fast_len(8 * n, real=True), scipy.fft.next_fast_len(len(x), real=True))
        S = self.L - n + 1  # valid outputs per block
        B = -(-M // S)
        xp = np.zeros((B - 1) * S + self.L)
        xp[:len(x)] = self.x
        blocks = np.lib.stride_tricks.sliding_window_view(xp, self.L)[::S]  # (B, L), views
        self.X = scipy.fft.rfft(blocks, axis=1)  # (B, L // 2 + 1)

    def ncc(self, q) -> np.ndarray:
        """(T - n + 1,) Pearson r of the (n,) excerpt `q` with every window of the track, as `ncc`."""
        q = np.asarray(q, np.float64)
        if len(q) != self.n:
            raise ValueError(f"this correlator takes excerpts of {self.n} samples, got {len(q)}")
        qc = q - q.mean()
        if qc @ qc <= self.n * 1e-12:
            return np.zeros(len(self.norm))
        Q = scipy.fft.rfft(qc[::-1], self.L)  # correlation = convolution with the reversed excerpt
        y = scipy.fft.irfft(self.X * Q, self.L, axis=1)[:, self.n - 1:]  # (B, S): the circular part dropped
        num = y.reshape(-1)[:len(self.norm)]  # (T - n + 1,) sum_t qc[t] x[k + t]
        return np.where(self.ok, num / (self.norm * np.sqrt(qc @ qc)), 0.0).clip(-1.0, 1.0)

    def repeat_starts(self, start: int, threshold: float = 0.9) -> np.ndarray:
        """As `repeat_starts(x, start, n, threshold)`, for this track and length."""
        return np.flatnonzero(self.ncc(self.x[start:start + self.n]) >= threshold)


def repeat_starts(x, start: int, n: int, threshold: float = 0.9) -> np.ndarray:
    """Starts (samples) at which x[start:start+n] recurs in x: NCC >= threshold; `start` is among them."""
    return np.flatnonzero(ncc(x[start:start + n], x) >= threshold)


LIKENESS_MEL = MelConfig(hop=320, log="db")  # how likeness hears: 64 bands, dB, a frame every 40 ms (at 8 kHz)


def track_log_mel(x, sr: int = SR) -> np.ndarray:
    """(n_mels, frames) float64 log-mel of a whole track, as `likeness_elsewhere` compares excerpts
    (`LIKENESS_MEL`: 40 ms frames are fine enough for places at least 2 s apart, and 16x cheaper to
    correlate than the model's 10 ms)."""
    cfg = MelConfig(sr=sr, hop=LIKENESS_MEL.hop * sr // LIKENESS_MEL.sr, log=LIKENESS_MEL.log)
    return log_mel(torch.tensor(np.asarray(x, np.float32)), cfg).double().numpy()  # a copy: x may be read-only


def likeness_elsewhere(S: np.ndarray, start: int, n: int, min_gap: int) -> float:
    """The highest Pearson r between the log-mel of the excerpt `S[:, start:start + n]` and that of any
    other excerpt of its track as long, starting at least `min_gap` frames away; -1 when there is none.

    r >= 0.95 is a near copy: the same sound at another place (a loop, a held pad), which need not
    repeat sample for sample. Every offset at once: the numerator is one overlap-add correlation per
    mel band, summed over the bands; the windows' statistics come from cumulative sums.

    Args:
        S: (n_mels, F) log-mel of the whole track (`track_log_mel`).
        start, n: the excerpt's first frame and length in frames.
        min_gap: frames between the excerpt's start and another's, at least.

    Returns:
        r in [-1, 1].

    Notebook: 09_benchmark.ipynb
    """
    M, F = S.shape
    q = S[:, start:start + n]
    qc = q - q.mean()
    qq = float(np.sum(qc * qc))
    if n > F or qq <= 1e-12 * q.size:
        return -1.0
    num = oaconvolve(S, qc[:, ::-1], mode="valid", axes=1).sum(0)  # (F - n + 1,) sum_m,t qc * S at each offset
    c1, c2 = (np.concatenate([[0.0], np.cumsum(v)]) for v in (S.sum(0), (S * S).sum(0)))
    s1, s2 = c1[n:] - c1[:-n], c2[n:] - c2[:-n]  # each window's sum and sum of squares, over bands and frames
    var = np.maximum(s2 - s1 * s1 / (M * n), 0.0)  # M n times each window's variance
    r = np.where(var > 1e-12 * M * n, num / np.sqrt(np.maximum(var, 1e-300) * qq), -1.0)
    far = np.abs(np.arange(len(r)) - start) >= min_gap
    return float(np.clip(r[far].max(), -1.0, 1.0)) if far.any() else -1.0


# ----------------------------------------------------------------------------
# a corpus: near-duplicate windows across tracks, repeats inside them


def window_features(x, sr: int = SR, win_s: float = 1.0, hop_s: float = 0.5) -> torch.Tensor:
    """Flattened log-mel of each window, z-normalised to unit length: dot products are Pearson r.

    Args:
        x: (T,) samples.
        sr, win_s, hop_s: the windowing (only whole windows are kept).

    Returns:
        (N, n_mels * frames) float32.
    """
    w, _ = segment(np.asarray(x, dtype=np.float32), sr, win_s, hop_s, pad=False)  # (N, W)
    if len(w) == 0:
        return torch.zeros(0, 0)
    F = log_mel(torch.from_numpy(w), MelConfig(sr=sr)).flatten(1)  # (N, n_mels * frames)
    F = F - F.mean(1, keepdim=True)
    return F / F.norm(dim=1, keepdim=True).clamp_min(1e-12)


def cross_track_duplicates(tracks, sr: int = SR, threshold: float = 0.95, win_s: float = 1.0, hop_s: float = 0.5,
                           block: int = 2048) -> float:
    """Share of windows whose best match in ANOTHER track has Pearson r above `threshold`.

    Repeats inside a track are expected (choruses); across tracks they mean the
    corpus has copies, which would make retrieval look harder (or easier) than it is.
    Exact: every pair of windows, by blocks of a matrix product, each block pair once.

    Args:
        tracks: sequence of (T,) arrays.
        sr, win_s, hop_s: windowing (1 s windows, 0.5 s hop by default).
        threshold: Pearson correlation of z-normalised log-mel above which two windows are duplicates.
        block: rows per block (memory is block**2 floats).

    Returns:
        the share in [0, 1].
    """
    feats = [window_features(x, sr, win_s, hop_s) for x in tracks]
    owner = torch.cat([torch.full((len(f),), i) for i, f in enumerate(feats)])  # (M,)
    F = torch.cat([f for f in feats if len(f)])  # (M, D)
    best = torch.full((len(F),), -2.0)
    with torch.no_grad():
        for i in range(0, len(F), block):
            for j in range(i, len(F), block):
                S = F[i:i + block] @ F[j:j + block].T  # (b, b') Pearson r
                S[owner[i:i + block, None] == owner[None, j:j + block]] = -2.0  # same track: not a duplicate
                best[i:i + block] = torch.maximum(best[i:i + block], S.amax(1))
                best[j:j + block] = torch.maximum(best[j:j + block], S.amax(0))
    return float((best > threshold).float().mean()) if len(F) else 0.0


def self_repeat_share(tracks, sr: int = SR, threshold: float = 0.9, min_gap_s: float = 2.0, win_s: float = 1.0,
                      hop_s: float = 0.5) -> float:
    """Share of windows whose waveform recurs elsewhere in their OWN track (normalised cross-correlation).

    The repeat-aware score of the evaluation protocol forgives a start time where
    the excerpt recurs (NCC >= 0.9); this says how often that can happen. In game
    soundtracks 15-30 % of excerpts recur in their own track. Each window is
    correlated with every position of its track at once, by FFT, and divided by
    the sliding norm of the track; positions closer than `min_gap_s` (the window
    overlapping itself) do not count. Near-silent windows (RMS < 1e-3) are left out.

    Args:
        tracks: sequence of (T,) arrays.
        sr, win_s, hop_s: windowing (1 s windows, 0.5 s hop by default; only whole windows).
        threshold: NCC <w, x[l:l+W]> / (|w| |x[l:l+W]|) at or above which a window recurs.
        min_gap_s: the least distance between a window and its repeat.

    Returns:
        the share in [0, 1].
    """
    W, H, G = int(round(win_s * sr)), int(round(hop_s * sr)), int(round(min_gap_s * sr))
    found = total = 0
    for x in tracks:
        x = np.asarray(x, dtype=np.float32).ravel()
        if x.size < W:
            continue
        L = x.size - W + 1  # lags
        n = scipy.fft.next_fast_len(x.size + W)
        X = scipy.fft.rfft(x, n)
        e = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
        quiet = 1e-3 * np.sqrt(W)  # the norm of a window at -60 dBFS RMS
        norm = np.sqrt(np.maximum(e[W:] - e[:-W], quiet ** 2))  # (L,) |x[l:l+W]|, silence floored: no 0/0
        for block in np.array_split(np.arange(0, L, H), max(1, L // (16 * H))):  # 16 windows at a time
            w = x[block[:, None] + np.arange(W)]  # (b, W)
            wn = np.linalg.norm(w, axis=1)  # (b,)
            C = scipy.fft.irfft(X * np.conj(scipy.fft.rfft(w, n, axis=1)), n, axis=1)[:, :L]  # (b, L) <w, x[l:l+W]>
            ncc = C / (np.maximum(wn, quiet)[:, None] * norm[None, :])
            ncc[np.abs(np.arange(L)[None, :] - block[:, None]) < G] = -1.0  # itself and its neighbours
            loud = wn >= quiet
            found += int(((ncc.max(1) >= threshold) & loud).sum())
            total += int(loud.sum())
    return found / total if total else 0.0
