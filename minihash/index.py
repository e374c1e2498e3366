"""The hash-table index: buckets of K-bit codes, multi-probe, re-ranking, offset voting, save/load.

Search by hash codes follows Singh, Demuynck and Arora (ICASSP 2023, arXiv 2211.11060): the K
hash logits of a window give a K-bit code (bit k set where logit k > 0), and the database windows
are grouped by code into buckets. A query window probes its own bucket, then the buckets reached by
flipping its least confident bits, cheapest flip-sets first (the multi-probe order of Lv et al.,
"Multi-probe LSH", VLDB 2007). The candidates found there are re-ranked by the inner product of
their embeddings, and the query's windows vote for a (track, offset) pair: a histogram of time
differences, as in Shazam (Wang 2003). The best few pairs are re-scored over every query window
(the sequence search of Chang et al., ICASSP 2021) and the start time is refined below the hop by
parabolic interpolation.

The buckets are plain sorted arrays, no Python object per bucket: the rows are stored sorted by
code, `bucket_codes` holds the distinct codes and `bucket_start` where each begins, so a probe is
one binary search. An index saves as `.npy` arrays under a versioned, checksummed JSON manifest,
written beside the target and renamed into place, so a half-written index is never left behind.

Notebook: 08_search.ipynb
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .errors import FormatError
from .ot import bucket_stats

FORMAT = "minihash-index"
VERSION = 1
MANIFEST = "manifest.json"

# ----------------------------------------------------------------------------
# results and search settings


@dataclass
class Match:
    """The answer to one query. `track` is None when the best score is under the threshold."""

    track: str | None
    offset_s: float  # where the query starts in the track
    score: float  # mean inner product over the query's windows at that alignment
    n_scored: int  # candidates re-ranked: inner products of query windows with DB windows
    time_ms: float
    frac_scored: float = 0.0  # n_scored / (query windows x DB windows): 1.0 for exhaustive search
    threshold: float = float("nan")  # the no-match threshold this query was held to


@dataclass
class SearchConfig:
    """How hard a query searches. `preset("fast" | "default" | "thorough")`."""

    n_probes: int = 64  # buckets probed per query window (per window and table for LSH)
    max_candidates: int = 4096  # candidates re-ranked per query window, at most
    top_k: int = 5  # best candidates of each window that vote
    n_verify: int = 5  # (track, offset) pairs re-scored over the whole query

    @classmethod
    def preset(cls, name: str) -> "SearchConfig":
        presets = {"fast": dict(n_probes=16, max_candidates=1024), "default": {},
                   "thorough": dict(n_probes=256, max_candidates=16384, top_k=10, n_verify=10)}
        return cls(**presets[name])


# ----------------------------------------------------------------------------
# codes, probes and buckets


def pack_codes(logits: np.ndarray) -> np.ndarray:
    """Sign bits of the logits packed into integers: bit k set where logit k > 0.

    Args:
        logits: (N, K) floats, K <= 64.

    Returns:
        (N,) uint32 codes for K <= 32, uint64 otherwise.

    Notebook: 08_search.ipynb
    """
    logits = np.asarray(logits)
    K = logits.shape[1]
    if K > 64:
        raise ValueError(f"at most 64 bits fit a code, got K={K}")
    dtype = np.uint32 if K <= 32 else np.uint64
    weights = (np.uint64(1) << np.arange(K, dtype=np.uint64)).astype(dtype)  # (K,)
    return ((logits > 0).astype(dtype) * weights).sum(axis=1, dtype=dtype)  # disjoint bits: sum == or


def probe_order(conf: np.ndarray, n_probes: int) -> tuple[np.ndarray, np.ndarray]:
    """The flip-sets of codes, cheapest first: cost = the summed |logit| of the flipped bits.

    Built bit by bit, least confident first, for every window at once: the `n_probes` cheapest
    sets over bits 0..j are among the `n_probes` cheapest over bits 0..j-1, taken without and
    with bit j (a set with bit j is cheap only if it is cheap without it). So each step doubles
    the list, sorts it and keeps the head: K sorts of 2 x n_probes costs, no heap, no Python
    loop over windows. Once bit j alone costs as much as the dearest set kept, no later bit can
    enter and the list is final. (Lv et al.'s shift/expand heap gives the same order, one set
    at a time; notebook 08 checks both against brute force.)

    Args:
        conf: (K,) confidences |logit| of one window's bits, or (M, K) for M windows.
        n_probes: how many flip-sets to return (the empty set, the window's own bucket, first).

    Returns:
        masks uint64 (XOR them into the code) and costs float64: (P,) each for one window,
        (M, P) for many, with P = min(n_probes, 2^K).

    Notebook: 08_search.ipynb
    """
    conf = np.abs(np.asarray(conf, dtype=np.float64))
    one = conf.ndim == 1
    conf = conf.reshape(-1, conf.shape[-1])  # (M, K)
    bits = np.argsort(conf, axis=1, kind="stable")  # least confident first
    c = np.take_along_axis(conf, bits, axis=1)  # (M, K) ascending
    bit = np.left_shift(np.uint64(1), bits.astype(np.uint64))  # (M, K) each bit's XOR mask
    P = max(n_probes, 1)  # the window's own bucket at least
    masks, costs = np.zeros((len(conf), 1), dtype=np.uint64), np.zeros((len(conf), 1))
    for j in range(conf.shape[1]):
        if costs.shape[1] >= P and np.all(c[:, j] >= costs[:, -1]):
            break  # every set holding bit j (or a later one) costs at least c_j: none gets in
        masks = np.concatenate([masks, masks | bit[:, j:j + 1]], axis=1)
        costs = np.concatenate([costs, costs + c[:, j:j + 1]], axis=1)
        keep = np.argsort(costs, axis=1, kind="stable")[:, :P]  # ties: without bit j first
        masks, costs = np.take_along_axis(masks, keep, 1), np.take_along_axis(costs, keep, 1)
    return (masks[0], costs[0]) if one else (masks, costs)


def concat_ranges(lo: np.ndarray, n: np.ndarray) -> np.ndarray:
    """lo[0] .. lo[0]+n[0]-1, lo[1] .. lo[1]+n[1]-1, ... without a Python loop."""
    total = int(n.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    out_start = np.cumsum(n) - n  # where each range begins in the output
    return np.repeat(lo - out_start, n) + np.arange(total)


class BucketTable:
    """Buckets over codes sorted once: `bucket_codes` (B,) distinct codes, `bucket_start` (B+1,)."""

    def __init__(self, codes_sorted: np.ndarray):
        n = len(codes_sorted)
        new = np.ones(n, dtype=bool)
        new[1:] = codes_sorted[1:] != codes_sorted[:-1]
        self.bucket_codes = codes_sorted[new]  # (B,)
        self.bucket_start = np.append(np.flatnonzero(new), n).astype(np.int64)  # (B+1,)

    def probe(self, q_codes, conf, n_probes: int, max_candidates: int):
        """Positions (in sorted order) of the rows in the buckets each query window probes.

        Args:
            q_codes: (M,) the query windows' codes.
            conf: (M, K) their bits' confidences |logit|.
            n_probes: buckets probed per window.
            max_candidates: rows returned per window, at most (the last bucket is cut).

        Returns:
            win (C,) query window of each candidate, pos (C,) its position in the sorted rows.
        """
        M = len(q_codes)
        if len(self.bucket_codes) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        masks = probe_order(conf, n_probes)[0]  # (M, P)
        n_per = np.full(M, masks.shape[1])
        probes = (q_codes[:, None] ^ masks.astype(q_codes.dtype)).ravel()  # (M x P,)
        b = np.minimum(np.searchsorted(self.bucket_codes, probes), len(self.bucket_codes) - 1)
        hit = self.bucket_codes[b] == probes
        lo = self.bucket_start[b]
        n = (self.bucket_start[b + 1] - lo) * hit  # (P,) rows in each probed bucket
        # spend each window's candidate budget in probe order
        before = np.cumsum(n) - n
        used = before - np.repeat(before[np.cumsum(n_per) - n_per], n_per)
        n = np.clip(max_candidates - used, 0, n)
        return np.repeat(np.repeat(np.arange(M), n_per), n), concat_ranges(lo, n)

    def occupancy(self, K: int) -> dict:
        """Bucket occupancy as `ot.bucket_stats` defines it; `entropy` is its `entropy_norm`."""
        counts = np.diff(self.bucket_start)
        if counts.sum() == 0:
            return {"entropy": 0.0, "largest_over_mean": 0.0, "largest_over_uniform": 0.0,
                    "empty_share": 1.0, "n_buckets": 0}
        st = bucket_stats(np.repeat(np.arange(len(counts)), counts), K)  # bucket ranks stand in for codes
        return {"entropy": st["entropy_norm"], "largest_over_mean": st["largest_over_mean"],
                "largest_over_uniform": st["largest_over_uniform"], "empty_share": st["empty_share"],
                "n_buckets": st["n_buckets_used"]}


# ----------------------------------------------------------------------------
# voting and thresholds


def top_per_window(win, rows, sims, k: int):
    """Keep each query window's k most similar candidates; candidates come sorted by window."""
    bounds = np.searchsorted(win, np.arange(win[-1] + 2)) if len(win) else np.zeros(1, dtype=np.int64)
    keep = [a + np.argpartition(-sims[a:b], k - 1)[:k] if b - a > k else np.arange(a, b)
            for a, b in zip(bounds[:-1], bounds[1:])]
    keep = np.concatenate(keep) if keep else np.zeros(0, dtype=np.int64)
    return win[keep], rows[keep], sims[keep]


def vote(win, rows, sims, q_starts, track_ids, starts, hop_s: float, n_best: int = 5):
    """Vote for (track, offset bin) pairs: offset = DB window start - query window start.

    Each query window adds, to every pair it supports, its best similarity there (once: a window
    that found two rows of one track in one bin counts the better). Negative similarities add 0.

    Args:
        win, rows, sims: (C,) candidates: query window, DB row, inner product.
        q_starts: (M,) query window starts, seconds.
        track_ids, starts: (N,) the DB rows' tracks and start times.
        hop_s: bin width, seconds (the DB hop).
        n_best: how many pairs to return.

    Returns:
        tracks (B,), bins (B,) offsets in hops, scores (B,) summed similarities, best first.

    Notebook: 08_search.ipynb
    """
    tr = track_ids[rows].astype(np.int64)
    bins = np.rint((starts[rows] - q_starts[win]) / hop_s).astype(np.int64)
    key = (tr << 32) | (bins + 2**31)  # one integer per (track, offset bin)
    o = np.lexsort((-sims, win, key))
    first = np.ones(len(o), dtype=bool)
    first[1:] = (key[o][1:] != key[o][:-1]) | (win[o][1:] != win[o][:-1])
    o = o[first]
    keys, inv = np.unique(key[o], return_inverse=True)
    score = np.bincount(inv, weights=np.maximum(sims[o], 0.0), minlength=len(keys))
    top = np.argsort(-score, kind="stable")[:n_best]
    return keys[top] >> 32, (keys[top] & 0xFFFFFFFF) - 2**31, score[top]


def parabolic_peak(a: float, m: float, b: float) -> float:
    """Where a parabola through (-1, a), (0, m), (1, b) peaks, within [-0.5, 0.5]."""
    den = a - 2.0 * m + b
    return 0.0 if den >= 0 else float(np.clip(0.5 * (a - b) / den, -0.5, 0.5))


def allowed_passes(n: int, max_false: float, confidence: float | None = None) -> int:
    """How many of n negatives may pass a threshold that promises at most `max_false` false matches.

    Without `confidence`, floor(max_false * n): the share among these very negatives. With it, the
    largest k whose one-sided Clopper-Pearson upper bound at `confidence` stays <= max_false: the
    promise then holds for new negatives too, with that confidence (k = 0 if even none passing
    cannot give it: too few negatives).

    Notebook: 08_search.ipynb
    """
    if confidence is None:
        return int(np.floor(max_false * n + 1e-9))
    from scipy.stats import beta

    k = 0
    while k < n and beta.ppf(confidence, k + 2, n - k - 1) <= max_false:  # the bound for k + 1 passing
        k += 1
    return k


def calibrate_threshold(negatives, max_false: float = 0.05, confidence: float | None = None) -> float:
    """The lowest threshold at which at most `max_false` of queries not in the DB match.

    Args:
        negatives: scores, or `Match`es, of queries whose audio is not in the DB.
        max_false: the share of them allowed to match (score >= threshold).
        confidence: if given, the share is promised for new negatives with this confidence
            (`allowed_passes`), not only for these.

    Returns:
        the threshold.

    Notebook: 08_search.ipynb
    """
    s = np.sort([m.score if isinstance(m, Match) else float(m) for m in negatives])[::-1]
    if len(s) == 0:
        raise ValueError("calibrating a threshold needs at least one negative query")
    allowed = allowed_passes(len(s), max_false, confidence)
    if allowed >= len(s):
        return float(-np.inf)
    return float(np.nextafter(s[allowed], np.inf))  # only scores above s[allowed] pass


# ----------------------------------------------------------------------------
# the index: rows, search, add/remove, persistence (shared with lsh.py)


class BaseIndex:
    """Rows of (float16 embedding, track id, start) plus whatever a method keys them by.

    Subclasses say how rows are coded (`_codes_for`), ordered (`_reindex`) and found
    (`_candidates`); re-ranking, voting, verification, add/remove and save/load are shared.
    """

    method = "base"

    def __init__(self, D: int, hop_s: float = 0.1, meta: dict | None = None, cfg: SearchConfig | None = None):
        self.D, self.hop_s = int(D), float(hop_s)
        self.meta = dict(meta or {})
        self.cfg = cfg or SearchConfig()
        self.names: list[str] = []
        self.emb = np.zeros((0, self.D), dtype=np.float16)  # (N, D)
        self.track_ids = np.zeros(0, dtype=np.int32)  # (N,)
        self.starts = np.zeros(0, dtype=np.float32)  # (N,) seconds
        self.codes = None  # (N,) or (N, L), per method

    @classmethod
    def build(cls, emb, logits, track_ids, starts, names, hop_s: float = 0.1, meta: dict | None = None,
              cfg: SearchConfig | None = None, **params):
        """Index N windows. Rows should come grouped by track, in time order.

        Args:
            emb: (N, D) unit embeddings.
            logits: (N, K) hash logits (ignored by LSH and exhaustive search; may be None there).
            track_ids: (N,) int, indices into `names`.
            starts: (N,) window start times in their tracks, seconds.
            names: the track names.
            hop_s: the hop between DB windows, seconds: the width of an offset bin.
            meta: JSON-able facts to keep, e.g. {"model": "<id or hash of the model>"}.
            cfg: search settings.
            **params: the method's own parameters (LSH: L, K, seed).

        Returns:
            the index.
        """
        index = cls(np.shape(emb)[1], hop_s=hop_s, meta=meta, cfg=cfg, **cls._params_from(logits, params))
        index._append(emb, logits, track_ids, starts, list(names))
        index._reindex()
        return index

    @classmethod
    def _params_from(cls, logits, params: dict) -> dict:
        return params

    # ---- rows
    def __len__(self) -> int:
        return len(self.track_ids)

    @property
    def threshold(self) -> float:
        return float(self.meta.get("threshold", 0.0))

    @threshold.setter
    def threshold(self, value: float):
        self.meta["threshold"] = float(value)

    @property
    def thresholds(self) -> dict[int, float]:
        """Thresholds by the number of query windows (a 1 s query is one window and scores its
        single best similarity; a 5 s query averages nine, so chance scores are lower)."""
        return {int(k): float(v) for k, v in self.meta.get("thresholds", {}).items()}

    def threshold_for(self, n_windows: int) -> float:
        """The threshold for a query of `n_windows` windows: the one calibrated on the longest
        negatives that are not longer than the query; the overall `threshold` if there are none."""
        by_length = self.thresholds  # parsed from the JSON-able meta once per query
        fit = [n for n in by_length if n <= n_windows]
        return by_length[max(fit)] if fit else self.threshold

    def _append(self, emb, logits, track_ids, starts, names):
        emb16 = np.asarray(emb, dtype=np.float16).reshape(-1, self.D)  # (n, D)
        track_ids = np.asarray(track_ids, dtype=np.int64)
        if not (len(emb16) == len(track_ids) == len(starts)):
            raise ValueError(f"emb, track_ids and starts disagree: {len(emb16)}, {len(track_ids)}, {len(starts)}")
        if len(track_ids) and (track_ids.min() < 0 or track_ids.max() >= len(names)):
            raise ValueError(f"track ids must index the {len(names)} names")
        taken = set(self.names)
        if len(set(names)) != len(names) or taken & set(names):
            raise ValueError("track names must be unique: remove a track before adding it again")
        codes = self._codes_for(emb16, logits)
        self.codes = codes if self.codes is None else np.concatenate([self.codes, codes])
        self.emb = np.concatenate([self.emb, emb16])
        self.track_ids = np.concatenate([self.track_ids, (track_ids + len(self.names)).astype(np.int32)])
        self.starts = np.concatenate([self.starts, np.asarray(starts, dtype=np.float32)])
        self.names += names

    def _permute(self, order):
        self.emb, self.track_ids, self.starts = self.emb[order], self.track_ids[order], self.starts[order]
        if self.codes is not None:
            self.codes = self.codes[order]

    def _reindex(self):
        """Derived arrays: every track's rows in time order, for verifying alignments."""
        self._by_time = np.lexsort((self.starts, self.track_ids)).astype(np.int32)  # (N,)
        self._time_off = np.searchsorted(self.track_ids[self._by_time], np.arange(len(self.names) + 1))

    def add(self, emb, logits, starts, name: str):
        """Add one track's windows: emb (n, D), logits (n, K) or None, starts (n,)."""
        self._append(emb, logits, np.zeros(len(starts), dtype=np.int64), starts, [name])
        self._reindex()

    def remove(self, name: str):
        """Drop a track. Later tracks' ids shift down by one; names stay as they were."""
        t = self.names.index(name)
        self._permute(self.track_ids != t)
        self.track_ids = self.track_ids - (self.track_ids > t)
        del self.names[t]
        self._reindex()

    # ---- search
    def _candidates(self, q, q_logits, cfg):
        raise NotImplementedError

    def _rescore(self, q, win, rows):
        """Inner products of candidates (sorted by window) with their query windows, in float32."""
        sims = np.empty(len(rows), dtype=np.float32)
        bounds = np.searchsorted(win, np.arange(len(q) + 1))
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            # one window's block at a time, so it is still in cache when multiplied; np.take gathers
            # rows ~2.5x faster than fancy indexing, torch widens float16 ~8x faster than numpy
            E = torch.from_numpy(np.take(self.emb, rows[a:b], axis=0)).float().numpy()  # (C_i, D)
            sims[a:b] = E @ q[i]
        return sims

    def alignment_scores(self, q, q_starts, track: int, bins) -> np.ndarray:
        """Mean similarity of the query's windows with the track's, at each offset bin.

        Args:
            q: (M, D) query embeddings. q_starts: (M,) seconds.
            track: track id. bins: (B,) offsets in hops.

        Returns:
            (B,) mean inner products; a query window with no DB window there counts 0.
        """
        rows_t = self._by_time[self._time_off[track]:self._time_off[track + 1]]
        S = self.starts[rows_t]  # (T,) sorted
        tau = q_starts[None, :] + np.asarray(bins)[:, None] * self.hop_s  # (B, M) wanted DB starts
        j = np.searchsorted(S, tau)
        jl, jr = np.clip(j - 1, 0, len(S) - 1), np.clip(j, 0, len(S) - 1)
        jn = np.where(np.abs(S[jl] - tau) <= np.abs(S[jr] - tau), jl, jr)
        ok = np.abs(S[jn] - tau) <= 0.5 * self.hop_s + 1e-4
        E = self.emb[rows_t[jn]].astype(np.float32)  # (B, M, D)
        return (np.einsum("bmd,md->bm", E, q) * ok).mean(axis=1)

    def search(self, q_emb, q_logits, q_starts, threshold: float | None = None, **overrides) -> Match:
        """Find the track and start time of one query.

        Args:
            q_emb: (M, D) the query windows' unit embeddings.
            q_logits: (M, K) their hash logits (None for LSH and exhaustive search).
            q_starts: (M,) their start times in the query, seconds.
            threshold: a score under it is no match (default: the index's calibrated one).
            **overrides: SearchConfig fields for this query.

        Returns:
            a Match.

        Notebook: 08_search.ipynb
        """
        t0 = time.perf_counter()
        cfg = replace(self.cfg, **overrides) if overrides else self.cfg
        q = np.ascontiguousarray(q_emb, dtype=np.float32).reshape(-1, self.D)  # (M, D)
        q_starts = np.asarray(q_starts, dtype=np.float64)
        if len(q) == 0 or len(q_starts) != len(q):
            raise ValueError(f"a query needs windows, with one start each: {len(q)} windows, {len(q_starts)} starts")
        if len(self) == 0:
            return Match(None, 0.0, 0.0, 0, 1e3 * (time.perf_counter() - t0))
        win, rows, sims, n_scored = self._candidates(q, q_logits, cfg)
        win, rows, sims = top_per_window(win, rows, sims, cfg.top_k)
        tracks, bins, _ = vote(win, rows, sims, q_starts, self.track_ids, self.starts, self.hop_s, cfg.n_verify)
        best = (-np.inf, None, 0.0)
        d = np.arange(-2, 3)
        for t, b in zip(tracks, bins):  # verify: re-score each voted alignment over all windows
            s = self.alignment_scores(q, q_starts, int(t), b + d)  # (5,)
            i = 1 + int(np.argmax(s[1:-1]))  # a peak with both neighbours measured
            if s[i] > best[0]:
                offset = (b + d[i] + parabolic_peak(s[i - 1], s[i], s[i + 1])) * self.hop_s
                best = (float(s[i]), int(t), float(offset))
        score, t, offset = best
        if t is None:
            score = 0.0
        thr = self.threshold_for(len(q)) if threshold is None else threshold
        name = self.names[t] if t is not None and score >= thr else None
        return Match(name, offset, score, int(n_scored), 1e3 * (time.perf_counter() - t0),
                     n_scored / (len(q) * len(self)), float(thr))

    def search_many(self, queries, **kw) -> list[Match]:
        """`search` over a list of (q_emb, q_logits, q_starts) triples."""
        return [self.search(*query, **kw) for query in queries]

    def calibrate(self, negatives, max_false: float = 0.05, n_windows=None, confidence: float | None = None) -> float:
        """Set (and return) the threshold from negative queries' Matches or scores.

        With `n_windows` (each negative's number of query windows), also one threshold per
        window count that has at least 1 / max_false negatives (fewer cannot resolve the share).
        """
        self.threshold = calibrate_threshold(negatives, max_false, confidence)
        self.meta.pop("thresholds", None)
        if n_windows is not None:
            n_windows = np.asarray(n_windows)
            if len(n_windows) != len(negatives):
                raise ValueError(f"{len(negatives)} negatives but {len(n_windows)} window counts")
            need = int(np.ceil(1.0 / max_false - 1e-9)) if max_false > 0 else 1
            groups = {int(n): [negatives[i] for i in np.flatnonzero(n_windows == n)] for n in np.unique(n_windows)}
            self.meta["thresholds"] = {str(n): calibrate_threshold(g, max_false, confidence)
                                       for n, g in groups.items() if len(g) >= need}
        return self.threshold

    def stats(self) -> dict:
        """Bytes per indexed window, everything held per row and per bucket included."""
        held = [self.emb, self.track_ids, self.starts, self._by_time] + self._held()
        return {"n_windows": len(self), "n_tracks": len(self.names),
                "bytes_per_window": sum(a.nbytes for a in held) / max(len(self), 1)}

    def _held(self) -> list:
        return [] if self.codes is None else [self.codes]

    # ---- persistence
    def _config(self) -> dict:
        return {}

    def _arrays(self) -> dict:
        arrays = {"emb": self.emb, "track_ids": self.track_ids, "starts": self.starts}
        return arrays if self.codes is None else {**arrays, "codes": self.codes}

    def _restore(self, arrays: dict):
        self.emb, self.track_ids, self.starts = arrays["emb"], arrays["track_ids"], arrays["starts"]
        self.codes = arrays.get("codes")

    def save(self, path):
        """Write the index to the folder `path`, replacing an index there atomically."""
        manifest = {"format": FORMAT, "version": VERSION, "method": self.method, "D": self.D,
                    "K": getattr(self, "K", None), "n_windows": len(self), "n_tracks": len(self.names),
                    "model": self.meta.get("model"), "threshold": self.threshold, "hop_s": self.hop_s,
                    "names": self.names, "params": self._config(), "search": asdict(self.cfg), "meta": self.meta}
        write_index_dir(path, manifest, self._arrays())

    @classmethod
    def load(cls, path, expect_model: str | None = None):
        """Read an index saved by `save`; FormatError says what is wrong with a bad one."""
        manifest, arrays = read_index_dir(path, expect_model)
        if manifest["method"] != cls.method:
            raise FormatError(path, f"a {manifest['method']} index, not {cls.method}: use load_index")
        index = cls(manifest["D"], hop_s=manifest["hop_s"], meta=manifest["meta"],
                    cfg=SearchConfig(**manifest["search"]), **manifest["params"])
        index.names = list(manifest["names"])
        index._restore(arrays)
        index._reindex()
        return index


class HashIndex(BaseIndex):
    """Learned hash codes in one table of 2^K buckets; rows stored sorted by code.

    Notebook: 08_search.ipynb
    """

    method = "hash"

    def __init__(self, D: int, K: int = 16, **kw):
        super().__init__(D, **kw)
        self.K = int(K)

    @classmethod
    def _params_from(cls, logits, params):
        return {"K": np.shape(logits)[1], **params}

    def _codes_for(self, emb16, logits):
        logits = np.asarray(logits)
        if logits.shape != (len(emb16), self.K):
            raise ValueError(f"logits should be ({len(emb16)}, {self.K}), got {logits.shape}")
        return pack_codes(logits)

    def _reindex(self):
        self._permute(np.argsort(self.codes, kind="stable"))  # bucket order; stable keeps insertion order
        self.table = BucketTable(self.codes)
        super()._reindex()

    def _candidates(self, q, q_logits, cfg):
        z = np.asarray(q_logits, dtype=np.float32).reshape(len(q), self.K)  # (M, K)
        win, rows = self.table.probe(pack_codes(z), np.abs(z), cfg.n_probes, cfg.max_candidates)
        return win, rows, self._rescore(q, win, rows), len(rows)

    def _held(self):
        return [self.codes, self.table.bucket_codes, self.table.bucket_start]

    def _config(self):
        return {"K": self.K}

    def stats(self) -> dict:
        """Bucket occupancy (normalised entropy, largest / mean, empty share) and bytes per window."""
        return {**self.table.occupancy(self.K), **super().stats()}


# ----------------------------------------------------------------------------
# the folder on disk: manifest + checksummed .npy arrays


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _digest(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def write_index_dir(path, manifest: dict, arrays: dict):
    """Write arrays and manifest into a temporary folder beside `path`, then rename it into place.

    An index already at `path` is renamed away first and deleted last, so at every moment `path`
    holds either the old index or the new one. A folder there that is not an index is refused.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not (path / MANIFEST).exists() and (not path.is_dir() or any(path.iterdir())):
        raise FormatError(path, "exists and is not a minihash index; refusing to replace it")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    old = None
    try:
        files = {}
        for name, a in arrays.items():
            f = tmp / f"{name}.npy"
            np.save(f, np.ascontiguousarray(a), allow_pickle=False)
            files[name] = {"file": f.name, "bytes": f.stat().st_size, "sha256": _sha256(f),
                           "shape": list(a.shape), "dtype": str(a.dtype)}
        manifest = {**manifest, "arrays": files}
        manifest["manifest_sha256"] = _digest(manifest)
        with open(tmp / MANIFEST, "w") as f:
            json.dump(manifest, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
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
        if size != info["bytes"] or _sha256(f) != info["sha256"]:
            raise FormatError(f, "checksum mismatch: the file was modified or corrupted")
        try:
            a = np.load(f, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise FormatError(f, f"unreadable array: {e}") from None
        if list(a.shape) != info["shape"] or str(a.dtype) != info["dtype"]:
            raise FormatError(f, f"holds {a.dtype}{list(a.shape)}, the manifest says {info['dtype']}{info['shape']}")
        arrays[name] = a
    return manifest, arrays


def load_index(path, expect_model: str | None = None) -> BaseIndex:
    """Load any minihash index (hash, lsh, exhaustive, faiss), dispatching on its manifest's method."""
    from . import lsh  # lsh.py builds on this module

    methods = {c.method: c for c in (HashIndex, lsh.LSHIndex, lsh.ExhaustiveIndex, lsh.FaissIndex)}
    method = read_manifest(path).get("method")
    if method not in methods:
        raise FormatError(path, f"unknown index method {method!r}")
    return methods[method].load(path, expect_model)


# ----------------------------------------------------------------------------
# audio in, matches out: the glue between a model and an index


def index_class(method: str):
    """The index class for a method name: "hash", "lsh", "exhaustive" (or "faiss")."""
    from . import lsh

    methods = {c.method: c for c in (HashIndex, lsh.LSHIndex, lsh.ExhaustiveIndex, lsh.FaissIndex)}
    if method not in methods:
        raise ValueError(f"unknown method {method!r}: choose one of {sorted(methods)}")
    return methods[method]


def index_audio(model, tracks, method: str = "hash", hop_s: float = 0.1, meta: dict | None = None,
                progress: bool = True, total: int | None = None, **params) -> BaseIndex:
    """Fingerprint tracks every `hop_s` seconds and index them.

    Args:
        model: an `encoder.Encoder` (its `fingerprint_audio` and `model_id` are used).
        tracks: dict name -> (T,) float32 signal at the model's sample rate, or an iterable of
            (name, signal) pairs (a generator streams a large folder without holding it in memory).
        method: "hash" (the model's K-bit codes), "lsh" or "exhaustive" (on its embeddings).
        hop_s: hop between database windows.
        meta: extra JSON-able facts to keep in the index.
        progress: show a progress bar over the tracks.
        total: number of tracks, for the progress bar when `tracks` is a generator.
        **params: the method's own parameters (LSH: L, K, seed).

    Returns:
        the index, its `meta["model"]` set to the model's id.

    Notebook: 08_search.ipynb
    """
    from tqdm.auto import tqdm

    pairs = tracks.items() if isinstance(tracks, dict) else tracks
    total = len(tracks) if isinstance(tracks, dict) else total
    E, L, T, S, names = [], [], [], [], []
    for name, x in tqdm(pairs, total=total, desc="indexing", unit="track", disable=not progress):
        e, l, s = model.fingerprint_audio(x, hop_s)
        E.append(e), L.append(l), S.append(s), T.append(np.full(len(e), len(names), np.int32))
        names.append(name)
    if not names:
        raise ValueError("nothing to index: no tracks")
    meta = {"model": model.model_id, **(meta or {})}
    return index_class(method).build(np.concatenate(E), np.concatenate(L), np.concatenate(T),
                                     np.concatenate(S), names, hop_s=hop_s, meta=meta, **params)


def query_audio(index: BaseIndex, model, x, hop_s: float = 0.5, **kw) -> Match:
    """Find one query signal: fingerprint it every `hop_s` seconds, then `index.search`.

    Returns:
        a Match whose `time_ms` includes fingerprinting the query.

    Notebook: 08_search.ipynb
    """
    t0 = time.perf_counter()
    e, l, s = model.fingerprint_audio(x, hop_s)
    m = index.search(e, l, s, **kw)
    m.time_ms = 1e3 * (time.perf_counter() - t0)
    return m


def calibrate_on_negatives(index: BaseIndex, model, negatives, max_false: float = 0.05, hop_s: float = 0.5,
                           confidence: float | None = 0.9) -> float:
    """Set the index's no-match threshold from queries of audio that is not in it.

    Short queries score their few windows' best similarities, long ones average many, so chance
    scores fall with length: besides one overall threshold, each query length (number of
    windows) among the negatives gets its own, and `search` holds a query to the one of its length.

    Args:
        negatives: (T,) signals not in the database (excerpts of the lengths users will query).
        max_false: the largest share of queries of audio not in the index allowed to match, per length.
        confidence: promise `max_false` for new such queries with this confidence (a Clopper-Pearson
            bound, `allowed_passes`), not only for these negatives; None: for these only.

    Returns:
        the overall threshold, stored in `index.meta["threshold"]`; the per-length ones are in
        `index.thresholds`.

    Notebook: 08_search.ipynb
    """
    scores, counts = [], []
    for x in negatives:
        e, l, s = model.fingerprint_audio(x, hop_s)
        scores.append(index.search(e, l, s, threshold=np.inf).score)
        counts.append(len(s))
    return index.calibrate(scores, max_false, n_windows=counts, confidence=confidence)
