"""Landmark fingerprints: pairs of spectrogram peaks, hashed, voted by time offset.

The classic baseline the learned fingerprints are measured against. Wang (2003,
"An Industrial-Strength Audio Search Algorithm", the Shazam paper) keeps only
the strongest points of the spectrogram (a "constellation"), pairs each anchor
peak with the first few peaks of a target zone just after it, and hashes each
pair as (f1, f2 - f1, dt). A recording that matches shares many hashes with the
query, all at one time offset: search is a histogram of db_t - q_t per track.
We follow Dan Ellis's audfprint (github.com/dpwe/audfprint): its peak picker (a
Gaussian masking threshold spread in frequency and decaying over time, a forward
then a backward pruning pass), its pairing, its 20-bit hash (8 bits f1, 6 df,
6 dt), its +-1 frame tolerance and its sub-hop query shifts.

Adapted to 8 kHz and to short queries (1-5 s), each change measured on the
procedural corpus (`minihash.data.synth_tracks`), `preset("audfprint")` being
the original:
- n_fft 512 and hop 256 as audfprint, here 64 ms / 32 ms with 15.6 Hz bins:
  256 bins still fit 8 bits, dt <= 63 frames spans 2 s, |df| <= 31 bins 480 Hz.
  Constants audfprint gives per frame (mask decay, high-pass pole) are rescaled
  through seconds.
- the masking threshold lives in log magnitude and falls `decay_db` dB per
  second. audfprint multiplies the mean-removed log magnitude down, so the
  peaks of an excerpt depend on the excerpt's mean: 80 % of a 5 s query's
  hashes were found at the right place in its track (even on the frame grid),
  97 % now, all of them half a second away from the excerpt's edges.
- audfprint's onset emphasis (a high-pass along time) is off by default: its
  long memory makes the peaks of a 5 s excerpt differ from those of the same
  audio inside the track, and it keeps few peaks in noise (5 s queries at 0 dB
  SNR: top-1 0.43 with it, 0.72 without).
- queries are fingerprinted at 8 sub-hop delays (audfprint --shifts) and every
  hit of every copy votes for where the query starts, in samples: the score of
  a place is the same whatever its phase against the 32 ms frame grid, so a
  place that merely repeats most of the query (a chorus) no longer wins by a
  luckier phase, and the start is found to a few samples.
- a match needs `min_ratio` times the score of the best other track as well as
  `min_count` aligned hashes (see `LandmarkIndex.search`).

Notebook: 03_landmarks.ipynb
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import scipy.signal

from .audio import SR
from .index import Match  # the result type every minihash search returns

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

    Notebook: 03_landmarks.ipynb
    """
    h, t, d = [np.zeros(0, np.uint32)], [np.zeros(0, np.int32)], [np.zeros(0, np.int32)]
    for s in range(shifts):
        skip = round(s * cfg.hop / shifts)
        t1, f1, f2, dt = landmarks(find_peaks(x[skip:], cfg), cfg)
        key = np.unique((pack(f1, f2 - f1, dt, cfg).astype(np.int64) << 32) | t1)  # (H_s,) distinct (hash, t)
        h.append((key >> 32).astype(np.uint32))
        t.append((key & 0xFFFFFFFF).astype(np.int32))
        d.append(np.full(len(key), skip, np.int32))
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
    key = np.unique((h.astype(np.int64) << 32) | t)  # (H,) one per distinct (hash, t)
    return (key >> 32).astype(np.uint32), (key & 0xFFFFFFFF).astype(np.int32)


# ----------------------------------------------------------------------------
# the index: an inverted file of sorted arrays


def _vote(track, offset, qi, tol: int):
    """`LandmarkIndex.votes` on hits already looked up: (M,) each -> (track, offset, count) per bin."""
    d = np.arange(-tol, tol + 1)  # (D,)
    key = (track.astype(np.int64)[:, None] << 32) + (offset[:, None] + d + (1 << 31))  # (M, D)
    key, qi = key.ravel(), np.repeat(qi, len(d))
    order = np.lexsort((qi, key))
    key, qi = key[order], qi[order]
    first = np.ones(len(key), dtype=bool)  # first vote of each (bin, query hash)
    first[1:] = (key[1:] != key[:-1]) | (qi[1:] != qi[:-1])
    key, count = np.unique(key[first], return_counts=True)
    return (key >> 32).astype(np.int32), (key & 0xFFFFFFFF) - (1 << 31), count


class LandmarkIndex:
    """hash -> (track, time) as three parallel arrays sorted by hash, looked up by binary search.

    Args:
        cfg: the fingerprint parameters (queries must use the same).

    Notebook: 03_landmarks.ipynb
    """

    def __init__(self, cfg: LandmarkConfig | None = None):
        self.cfg = cfg or LandmarkConfig()
        self.names: list[str] = []
        self.seconds = 0.0
        self._pending = []  # (hash, track, time) blocks added since the last sort
        self._hash = np.zeros(0, np.uint32)  # (N,) sorted
        self._track = np.zeros(0, np.int32)  # (N,)
        self._time = np.zeros(0, np.int32)  # (N,) anchor frame in the track

    def add(self, x: np.ndarray, name: str) -> int:
        """Fingerprint one track and add it; returns its number of hashes."""
        h, t = hashes(x, self.cfg)
        self._pending.append((h, np.full(len(h), len(self.names), np.int32), t))
        self.names.append(str(name))
        self.seconds += len(x) / self.cfg.sr
        return len(h)

    def build(self, tracks) -> LandmarkIndex:
        """Add every track of a dict (name -> samples) or a list (named by position)."""
        items = tracks.items() if isinstance(tracks, dict) else ((str(i), x) for i, x in enumerate(tracks))
        for name, x in items:
            self.add(x, name)
        self._sort()
        return self

    def _sort(self):
        if self._pending:
            parts = [(self._hash, self._track, self._time)] + self._pending
            h, tr, t = (np.concatenate(p) for p in zip(*parts))
            order = np.argsort(h, kind="stable")
            self._hash, self._track, self._time = h[order], tr[order], t[order]
            self._pending = []

    def __len__(self) -> int:
        self._sort()
        return len(self._hash)

    def hits(self, q_hash, q_t):
        """Every index entry sharing a hash with the query: (track, db_t - q_t, query index), (M,) each."""
        self._sort()
        q_hash, q_t = np.asarray(q_hash, np.uint32), np.asarray(q_t, np.int64)
        lo = np.searchsorted(self._hash, q_hash, "left")  # (Q,)
        n = np.searchsorted(self._hash, q_hash, "right") - lo  # (Q,) entries per query hash
        qi = np.repeat(np.arange(len(q_hash)), n)  # (M,)
        idx = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + np.repeat(lo, n)  # (M,)
        return self._track[idx], self._time[idx] - q_t[qi], qi

    def votes(self, q_hash, q_t, tolerance: int | None = None):
        """The offset histogram: for each (track, offset), how many query hashes align there.

        A query hash votes once for every offset within +-`tolerance` frames of
        one of its hits, however many hits it has there (audfprint's filtered
        count), so a peak found one frame early or late still counts. This is
        the histogram of one copy of the query, in frames; `search` votes in
        samples with all its delayed copies.

        Args:
            q_hash, q_t: (Q,) query hashes and their anchor frames.
            tolerance: frames; `cfg.tolerance` if None (0: the plain histogram).

        Returns:
            (track (K,), offset (K,) frames, count (K,)) over the bins that got a
            vote, sorted by track then offset.
        """
        tol = self.cfg.tolerance if tolerance is None else tolerance
        return _vote(*self.hits(q_hash, q_t), tol)

    def search(self, x: np.ndarray) -> Match:
        """Find the track and start time of a query.

        The query is fingerprinted at `cfg.shifts` sub-hop delays. Each hit of a
        delayed copy says where the query starts in a track, in samples:
        (db_t - q_t) * hop - delay. Over all copies the hits of the right place
        fall within one hop, whatever its phase against the frame grid, so the
        score of a place is the count of hits in a sliding window of one hop
        (1 + 2 `tolerance` hops), per copy: the average of the aligned hashes
        over the sub-hop phases. A place that repeats most of the query (a
        chorus pasted again) thus scores less than the query's own place, not
        more by a luckier phase.
        The best place is a match when its score reaches `min_count` and
        `min_ratio` times the best score in any other track: music shares
        pitches and drum sounds, so unrelated audio collects a few aligned
        hashes everywhere, and a ratio to the runner-up rejects it at any query
        length better than a count alone (a track indexed twice can then never
        match). The start is the mean of the hits in the window: finer than a hop.

        Args:
            x: (T,) query samples.

        Returns:
            Match(track or None, offset_s, score = aligned hashes per copy (also without a
            match), n_scored = index entries hit, time_ms, frac_scored = their share).

        Notebook: 03_landmarks.ipynb
        """
        t0 = time.perf_counter()
        cfg = self.cfg
        q_hash, q_t, q_d = shifted_hashes(x, cfg, cfg.shifts)
        track, off, qi = self.hits(q_hash, q_t)  # (M,) each
        start = off.astype(np.int64) * cfg.hop - q_d[qi]  # (M,) samples: where the query starts
        score, name, offset_s = 0.0, None, 0.0
        if len(track):
            key = np.sort((track.astype(np.int64) << 40) + start + (1 << 39))  # by track, then start
            width = (1 + 2 * cfg.tolerance) * cfg.hop
            n = np.searchsorted(key, key + width, "left") - np.arange(len(key))  # (M,) hits in [start, start + width)
            k = int(np.argmax(n))
            best = key[k] >> 40
            score = n[k] / cfg.shifts
            runner_up = n[(key >> 40) != best].max(initial=0) / cfg.shifts
            if score >= cfg.min_count and score >= cfg.min_ratio * runner_up:
                starts = (key[k: k + n[k]] & ((1 << 40) - 1)) - (1 << 39)
                name, offset_s = self.names[best], float(starts.mean()) / cfg.sr
        ms = (time.perf_counter() - t0) * 1e3
        return Match(name, offset_s, float(score), len(track), ms, len(track) / max(len(self._hash), 1))

    def stats(self) -> dict:
        """Size of the index: tracks, hashes, hashes per second of audio, bytes per hash."""
        n, per_hash = len(self), self._hash.itemsize + self._track.itemsize + self._time.itemsize
        return dict(n_tracks=len(self.names), n_hashes=n, seconds=self.seconds, bytes_per_hash=per_hash,
                    hashes_per_s=n / self.seconds if self.seconds else 0.0, bytes=n * per_hash)
