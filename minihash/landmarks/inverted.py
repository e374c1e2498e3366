"""The landmark index: hash -> (track, time) in sorted arrays, searched by voting for an offset.

A recording that matches the query shares many hashes with it, all at one time offset, so search
is a histogram of db_t - q_t per track (Wang 2003). As audfprint does, a query is fingerprinted at
several sub-hop delays (its --shifts) and a hit one frame off may still count (its filtered
count); a match needs enough aligned hashes and a clear lead over the best other track.

Notebook: 03_landmarks.ipynb
"""
from __future__ import annotations

import time

import numpy as np

from ..search.base import Match  # the result type every minihash search returns
from .fingerprint import LandmarkConfig, hashes, shifted_hashes

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
