"""Buckets of K-bit codes and the multi-probe order in which a query visits them.

A window's K-bit code (bit k set where hash logit k > 0, `ot.pack_codes`) names its bucket
(Singh, Demuynck and Arora, ICASSP 2023, arXiv 2211.11060). A query window probes its own
bucket, then the buckets reached by flipping its least confident bits, cheapest flip-sets first:
the multi-probe order of Lv et al., "Multi-probe LSH", VLDB 2007.

The buckets are plain sorted arrays, no Python object per bucket: the rows are stored sorted by
code, `bucket_codes` holds the distinct codes and `bucket_start` where each begins, so a probe is
one binary search.

Notebook: 08_search.ipynb
"""
from __future__ import annotations

import numpy as np

from ..ot import bucket_stats

# ----------------------------------------------------------------------------
# the probe order


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


# ----------------------------------------------------------------------------
# buckets as sorted arrays


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

    def probe(self, q_codes, conf, n_probes: int, max_candidates: int, keep=None):
        """Positions (in sorted order) of the rows in the buckets each query window probes.

        Args:
            q_codes: (M,) the query windows' codes.
            conf: (M, K) their bits' confidences |logit|.
            n_probes: buckets probed per window.
            max_candidates: rows returned per window, at most (the last bucket is cut).
            keep: (N,) bool over the sorted rows, or None: only these rows are returned, and only
                they count against the budget (the probe of a table that never held the others).

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
        size = (self.bucket_start[b + 1] - lo) * hit  # (M x P,) rows in each probed bucket
        if keep is not None:
            kept_before = np.concatenate([[0], np.cumsum(keep)])  # (N + 1,) kept rows before each position
            n = kept_before[lo + size] - kept_before[lo]  # kept rows in each probed bucket
        else:
            n = size
        # spend each window's candidate budget in probe order
        before = np.cumsum(n) - n
        used = before - np.repeat(before[np.cumsum(n_per) - n_per], n_per)
        n = np.clip(max_candidates - used, 0, n)
        win = np.repeat(np.arange(M), n_per)  # (M x P,) the window of each probe
        if keep is None:
            return np.repeat(win, n), concat_ranges(lo, n)
        pos = concat_ranges(lo, size)  # every row of the probed buckets, then the budget's share of the kept
        probe = np.repeat(np.arange(len(lo)), size)
        take = keep[pos] & (kept_before[pos] - kept_before[lo[probe]] < n[probe])
        return win[probe[take]], pos[take]

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
