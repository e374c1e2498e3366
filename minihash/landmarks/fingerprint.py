"""A signal's landmark fingerprint: spectrogram peaks, pairs of peaks, and their hashes.

Wang (2003, the Shazam paper) keeps the strongest points of the spectrogram (the constellation),
pairs each anchor peak with the first few peaks of a target zone after it, and hashes each pair
as (f1, f2 - f1, dt). The peak picker, the pairing and the 20-bit hash follow Dan Ellis's
audfprint (github.com/dpwe/audfprint); `LandmarkConfig` holds every parameter, and the package
docstring (`minihash.landmarks`) lists what changed for 8 kHz audio and short queries.

Notebook: 03_landmarks.ipynb
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import scipy.signal

from ..audio import SR

# ----------------------------------------------------------------------------
# configuration


@dataclass
class LandmarkConfig:
    """Fingerprint and search parameters. `preset("default" | "audfprint" | "sparse")`."""

    sr: int = SR
    n_fft: int = 512  # 64 ms at 8 kHz
    hop: int = 256  # 32 ms: the time unit of every hash and offset
    decay_db: float | None = 140.0  # dB per second the mask falls (log magnitude); None: audfprint's decay
    density: float = 50.0  # audfprint's --density: its mask decay, used when decay_db is None
    fanout: int = 5  # pairs per anchor peak (audfprint's maxpairsperpeak)
    max_peaks_per_frame: int = 5
    f_sd: float = 30.0  # width (bins) of the Gaussian mask a peak spreads over its neighbours
    min_dt: int = 2  # target zone, in frames: min_dt <= dt <= max_dt
    max_dt: int = 63
    max_df: int = 31  # target zone, in bins: |f2 - f1| <= max_df
    hpf_pole: float | None = None  # audfprint's onset emphasis (0.98 at its 23.2 ms hop); None: off
    f_bits: int = 8
    df_bits: int = 6
    dt_bits: int = 6
    shifts: int = 8  # queries are fingerprinted at this many sub-hop delays (audfprint --shifts)
    tolerance: int = 0  # hits within (1 + 2 tolerance) hops vote for one place (+-tolerance frames in `votes`)
    min_count: float = 4.0  # aligned hashes (per delayed copy) needed to call a match (audfprint's threshcount)...
    min_ratio: float = 2.5  # ...and this many times the best score in any other track

    def __post_init__(self):
        if self.n_fft // 2 > 1 << self.f_bits:
            raise ValueError(f"{self.n_fft // 2} bins do not fit f_bits={self.f_bits}")
        if self.max_df > (1 << (self.df_bits - 1)) - 1 or self.max_dt > (1 << self.dt_bits) - 1:
            raise ValueError("the target zone does not fit df_bits / dt_bits")
        if self.f_bits + self.df_bits + self.dt_bits > 32 or not 1 <= self.min_dt <= self.max_dt:
            raise ValueError("need f_bits + df_bits + dt_bits <= 32 and 1 <= min_dt <= max_dt")

    @property
    def hop_s(self) -> float:
        return self.hop / self.sr

    @property
    def decay(self) -> float:
        """Per-frame factor of audfprint's masking threshold (decay_db None): its rule, in seconds of hop."""
        return 1.0 - 0.01 * self.density * np.sqrt(self.hop_s / 0.032) / 35.0

    @property
    def decay_step(self) -> float:
        """Per-frame fall of the log-magnitude mask, in nepers (natural log units): decay_db per second."""
        return self.decay_db * self.hop_s * np.log(10.0) / 20.0

    @classmethod
    def preset(cls, name: str) -> LandmarkConfig:
        """`default`: tuned for short 8 kHz queries; `audfprint`: Ellis's defaults; `sparse`: a smaller index."""
        presets = {
            "default": {},
            "audfprint": dict(decay_db=None, density=20.0, fanout=3, hpf_pole=0.98, shifts=1, tolerance=1,
                              min_count=5.0, min_ratio=0.0),
            "sparse": dict(decay_db=70.0, fanout=3),
        }
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}, choose from {sorted(presets)}")
        return cls(**presets[name])

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------
# peaks: the constellation map


def spectrogram(x: np.ndarray, cfg: LandmarkConfig) -> np.ndarray:
    """audfprint's spectrogram: log magnitude, mean removed, high-passed along time if `hpf_pole`.

    Args:
        x: (T,) mono samples at `cfg.sr`.
        cfg: the parameters.

    Returns:
        (n_fft // 2, frames) float array; frame t is centred on sample t * hop (the
        Nyquist bin is dropped so that bins fit `f_bits`).

    Notebook: 03_landmarks.ipynb
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    pad = cfg.n_fft // 2
    xp = np.pad(x, pad, mode="reflect" if x.size > pad else "constant")
    frames = np.lib.stride_tricks.sliding_window_view(xp, cfg.n_fft)[:: cfg.hop]  # (frames, n_fft)
    win = np.hanning(cfg.n_fft + 2)[1:-1]
    S = np.abs(np.fft.rfft(frames * win, axis=1)).T[:-1]  # (F, frames)
    if S.max() <= 0:
        return np.zeros_like(S)
    S = np.log(np.maximum(S, S.max() / 1e6))
    S -= S.mean()
    if cfg.hpf_pole is None:
        return S
    # onset emphasis; the pole keeps audfprint's time constant in seconds
    pole = cfg.hpf_pole ** (cfg.hop_s / (256 / 11025))
    return scipy.signal.lfilter([1.0, -1.0], [1.0, -pole], S, axis=1)


def _locmax(S: np.ndarray) -> np.ndarray:
    """Local maxima along axis 0 (audfprint's locmax): >= the lower neighbour, > the upper one."""
    up = np.ones(S.shape, dtype=bool)
    up[1:] = S[1:] >= S[:-1]  # up[f]: S rises (or stays) into f
    down = np.ones(S.shape, dtype=bool)
    down[:-1] = ~up[1:]  # down[f]: S falls after f; the last bin has no upper neighbour
    return up & down


def find_peaks(x: np.ndarray, cfg: LandmarkConfig):
    """Pick the constellation: spectral peaks that rise above a decaying masking threshold.

    Each kept peak raises the threshold around it by a Gaussian in frequency
    (width `f_sd` bins) and the threshold decays with time, so a strong peak
    masks its neighbours for a while. A backward pass with the same mask drops
    small peaks soon followed by a larger one. The mask falls `decay_db` dB per
    second in log magnitude, so a gain, or the mean of an excerpt, changes
    nothing and an excerpt gets the peaks of the same audio inside the track.
    audfprint's mask (`decay_db=None`) is the mean-removed log magnitude
    multiplied by `decay` per frame: the peaks of an excerpt then depend on its
    mean, and 80 % of a 5 s query's hashes are found again at the right place
    in the track (97 % with the log mask).

    Args:
        x: (T,) mono samples.
        cfg: the parameters.

    Returns:
        (t_frames (P,) int32, f_bins (P,) int32), sorted by time then frequency.

    Notebook: 03_landmarks.ipynb
    """
    S = spectrogram(x, cfg)  # (F, T)
    F, T = S.shape
    if T == 0 or not np.any(S):
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    bins = np.arange(F)
    G = -0.5 * ((bins[None, :] - bins[:, None]) / cfg.f_sd) ** 2  # (F, F): row f, the log of a peak's bump at f
    log = cfg.decay_db is not None
    if not log:
        G = np.exp(G)
    step, factor = (cfg.decay_step, 1.0) if log else (0.0, cfg.decay)  # the mask falls, or shrinks, per frame

    def bump(v, f):  # the mask a peak of value v at bin f raises over every bin: (F,)
        return v + G[f] if log else v * G[f]

    def spread(col):  # the mask of all the local maxima of one column: where a pass starts
        p = np.flatnonzero(_locmax(col[:, None])[:, 0])
        if not p.size:
            return np.full(F, -np.inf) if log else np.zeros(F)
        thr = bump(col[p, None], p).max(0)
        return thr if log else np.maximum(0.0, thr)

    is_max = _locmax(S)  # (F, T)
    found = []  # per frame, the bins the forward pass accepts, largest first
    thr = spread(S[:, :10].max(1))  # (F,)
    for t in range(T):  # forward: accept the largest maxima above the threshold, then mask
        col = S[:, t]
        cand = np.flatnonzero(is_max[:, t] & (col > thr))
        cand = cand[np.argsort(-col[cand], kind="stable")[: cfg.max_peaks_per_frame]]
        if cand.size:
            thr = np.maximum(thr, bump(col[cand, None], cand).max(0))
        found.append(cand)
        thr = thr * factor - step
    peaks = np.zeros((F, T), dtype=bool)
    thr = spread(S[:, -1])
    for t in range(T - 1, -1, -1):  # backward: a peak must also clear the mask of what follows
        col = S[:, t]
        for f in found[t]:
            if col[f] >= thr[f]:
                thr = np.maximum(thr, bump(col[f], f))
                peaks[f, t] = True
                if t + 1 < T:
                    peaks[f, t + 1] = False  # the same bin in the next frame is the same note
        thr = thr * factor - step
    t_frames, f_bins = np.nonzero(peaks.T)  # row-major over (T, F): sorted by time, then bin
    return t_frames.astype(np.int32), f_bins.astype(np.int32)


# ----------------------------------------------------------------------------
# landmarks and hashes


def landmarks(peaks, cfg: LandmarkConfig):
    """Pair every anchor peak with the first `fanout` peaks of its target zone.

    The target zone of an anchor (t1, f1) is min_dt <= t2 - t1 <= max_dt and
    |f2 - f1| <= max_df; its peaks are taken in time order, then bin order.

    Args:
        peaks: (t_frames (P,), f_bins (P,)) sorted by time then bin, as `find_peaks` returns.
        cfg: the parameters.

    Returns:
        (t1, f1, f2, dt), each (L,) int32, ordered by anchor then target.

    Notebook: 03_landmarks.ipynb
    """
    t, f = (np.asarray(a, dtype=np.int64) for a in peaks)
    lo = np.searchsorted(t, t + cfg.min_dt, "left")  # (P,) first peak of each zone
    hi = np.searchsorted(t, t + cfg.max_dt, "right")  # (P,) one past its last
    W = int((hi - lo).max(initial=0))
    out = []
    for s in range(0, len(t), 4096):  # blocks of anchors bound the (P, W) candidate matrix
        a = np.arange(s, min(s + 4096, len(t)))  # (A,)
        j = lo[a, None] + np.arange(W)  # (A, W) candidate targets
        ok = j < hi[a, None]
        j = np.minimum(j, len(t) - 1)
        ok &= np.abs(f[j] - f[a, None]) <= cfg.max_df
        ok &= np.cumsum(ok, axis=1) <= cfg.fanout  # the first `fanout` in zone order
        ai, wi = np.nonzero(ok)
        out.append((a[ai], j[ai, wi]))
    if not out:
        return tuple(np.zeros(0, np.int32) for _ in range(4))
    i1 = np.concatenate([o[0] for o in out])
    i2 = np.concatenate([o[1] for o in out])
    return tuple(v.astype(np.int32) for v in (t[i1], f[i1], f[i2], t[i2] - t[i1]))


def pack(f1, df, dt, cfg: LandmarkConfig) -> np.ndarray:
    """(L,) each -> (L,) uint32 hashes: the bits of f1 | df (two's complement) | dt."""
    f1, df, dt = (np.asarray(v, dtype=np.int64) for v in (f1, df, dt))
    h = (f1 & ((1 << cfg.f_bits) - 1)) << (cfg.df_bits + cfg.dt_bits)
    h |= (df & ((1 << cfg.df_bits) - 1)) << cfg.dt_bits
    h |= dt & ((1 << cfg.dt_bits) - 1)
    return h.astype(np.uint32)


def unpack(h, cfg: LandmarkConfig):
    """Invert `pack`: (L,) hashes -> (f1, df, dt), each (L,) int32, df sign-extended."""
    h = np.asarray(h, dtype=np.int64)
    dt = h & ((1 << cfg.dt_bits) - 1)
    df = (h >> cfg.dt_bits) & ((1 << cfg.df_bits) - 1)
    df = np.where(df >= 1 << (cfg.df_bits - 1), df - (1 << cfg.df_bits), df)
    f1 = (h >> (cfg.df_bits + cfg.dt_bits)) & ((1 << cfg.f_bits) - 1)
    return f1.astype(np.int32), df.astype(np.int32), dt.astype(np.int32)


def _distinct(h, t):
    """(H,) hashes and their anchor frames -> the distinct (hash, t) pairs, by hash then frame."""
    key = np.unique((np.asarray(h).astype(np.int64) << 32) | t)  # one int64 per (hash, t)
    return (key >> 32).astype(np.uint32), (key & 0xFFFFFFFF).astype(np.int32)


def shifted_hashes(x: np.ndarray, cfg: LandmarkConfig, shifts: int = 1):
    """Fingerprint `x` and its copies delayed by 1/shifts, 2/shifts... of a hop (audfprint's --shifts).

    A query starts anywhere, not on the frame grid of the database: one of the
    copies meets that grid within hop / (2 shifts).

    Args:
        x: (T,) mono samples.
        cfg: the parameters.
        shifts: copies, the first `x` itself.

    Returns:
        (hash (H,) uint32, t (H,) int32 anchor frames in its copy, d (H,) int32 samples its copy
        skipped), distinct (hash, t) pairs within each copy.
    """
    h, t, d = [np.zeros(0, np.uint32)], [np.zeros(0, np.int32)], [np.zeros(0, np.int32)]
    for s in range(shifts):
        skip = round(s * cfg.hop / shifts)
        t1, f1, f2, dt = landmarks(find_peaks(x[skip:], cfg), cfg)
        h_s, t_s = _distinct(pack(f1, f2 - f1, dt, cfg), t1)  # (H_s,) each
        h.append(h_s)
        t.append(t_s)
        d.append(np.full(len(h_s), skip, np.int32))
    return np.concatenate(h), np.concatenate(t), np.concatenate(d)


def hashes(x: np.ndarray, cfg: LandmarkConfig, shifts: int = 1):
    """Fingerprint a signal: its landmark hashes and the frame of each anchor.

    Args:
        x: (T,) mono samples.
        cfg: the parameters.
        shifts: also fingerprint the delayed copies of `shifted_hashes` and keep the union.

    Returns:
        (hash (H,) uint32, t (H,) int32 anchor frames), distinct (hash, t) pairs.

    Notebook: 03_landmarks.ipynb
    """
    h, t, _ = shifted_hashes(x, cfg, shifts)
    return _distinct(h, t)
