"""Notebook 08: search, the hash table, multi-probe, re-ranking, offset voting and the no-match threshold.

Figures: the bits each probe flips, the best scores of queries in and not in the database with the
threshold, leave-one-track-out, ROC curves of decision scores, the sub-hop refinement of the start time
(bucket sizes are notebook 06's, the votes 00's, accuracy against share scored 07's). Exercises: a bucket
lookup by binary search, the multi-probe order (cheapest flip-sets first) and the (track, offset) vote.

References: A. Singh, K. Demuynck, V. Arora, ICASSP 2023; Q. Lv et al., VLDB 2007 (multi-probe LSH);
M. Charikar, STOC 2002; S. Chang et al., ICASSP 2021 (sequence search over query windows).
"""
from __future__ import annotations

import numpy as np

from ..evaluate.nomatch import plot_roc_curves
from ..search.base import vote
from ..search.buckets import BucketTable, probe_order
from .common import ExerciseError, _fig_ax, _ok, checker, exercise_decorator, passed
from .nb00_overview import plot_offset_votes
from .nb06_optimal_transport import plot_bucket_sizes
from .nb07_balanced_hashing import (at_equal_share, compare, paired_difference, plot_search_tradeoff,
                                    wilson_interval)

__all__ = ["plot_bucket_sizes", "plot_offset_votes", "plot_search_tradeoff", "wilson_interval", "paired_difference",
           "compare", "at_equal_share", "plot_probe_sets", "plot_leave_one_out", "plot_roc_curves",
           "plot_score_histograms", "plot_alignment_peak", "check_bucket_lookup", "check_probe_order", "check_vote",
           "exercise", "passed", "solution_bucket", "solution_probes", "solution_vote"]

exercise = exercise_decorator(globals())  # `@lesson.exercise` in the notebook: see common


# ---- figures

def plot_probe_sets(masks, conf, costs=None, ax=None, figsize=(8, 4), title="multi-probe: bits flipped per probe"):
    """Which bits each probe flips: a (probes x bits) grid, bits ordered from least to most confident.

    Args:
        masks: (P,) integer XOR masks, in probe order (the first, 0, probes the window's own bucket).
        conf: (K,) the window's confidences |logit|.
        costs: (P,) summed |logit| of the flipped bits, written beside each row (None: computed).
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title: the title.

    Returns:
        (fig, ax).

    Notebook: 08_search.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)
    conf = np.abs(np.asarray(conf, dtype=np.float64))
    K = len(conf)
    bits = np.argsort(conf, kind="stable")
    masks = np.asarray(masks, dtype=np.uint64)
    F = ((masks[:, None] >> bits[None, :].astype(np.uint64)) & np.uint64(1)).astype(float)  # (P, K)
    if costs is None:
        costs = F @ conf[bits]
    ax.imshow(F, aspect="auto", cmap="Greys", vmin=0, vmax=1.5, interpolation="nearest")
    ax.set_xticks(range(K))
    ax.set_xticklabels([f"{k}\n{conf[k]:.2f}" for k in bits], fontsize=6)
    ax.set(xlabel="bit (and its |logit|), least confident first", ylabel="probe (cheapest first)", title=title)
    step = max(1, len(masks) // 16)
    ax.set_yticks(range(0, len(masks), step))
    ax.set_yticklabels([f"{i}: cost {costs[i]:.2f}" for i in range(0, len(masks), step)], fontsize=7)
    return fig, ax


def plot_score_histograms(pos, neg, threshold=None, ax=None, figsize=(7, 3.2), bins=30,
                          title="best score: queries in the DB vs not in it"):
    """Histograms of the best scores of positive queries (in the DB) and negative ones, and the threshold.

    Args:
        pos: scores of queries whose audio is in the DB.
        neg: scores of queries whose audio is not.
        threshold: the no-match threshold (a vertical line), or None.
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        bins: number of bins shared by both histograms.
        title: the title.

    Returns:
        (fig, ax).

    Notebook: 08_search.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)
    pos, neg = np.asarray(pos, dtype=float), np.asarray(neg, dtype=float)
    edges = np.histogram_bin_edges(np.concatenate([pos, neg]), bins=bins)
    ax.hist(neg, bins=edges, alpha=0.6, color="C3", label=f"not in the DB ({len(neg)})")
    ax.hist(pos, bins=edges, alpha=0.6, color="C0", label=f"in the DB ({len(pos)})")
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:.3f}")
    ax.set(xlabel="score (mean inner product over the query's windows)", ylabel="queries", title=title)
    ax.legend(fontsize=8)
    return fig, ax


def plot_alignment_peak(bins, scores, hop_s, peak_s=None, truth_s=None, ax=None, figsize=(6, 3),
                        title="sub-hop refinement"):
    """Alignment scores at a few offset bins, the parabola through the best three and its peak.

    Args:
        bins: (B,) consecutive offset bins (in hops), B >= 3.
        scores: (B,) mean similarity of the query at each.
        hop_s: bin width, seconds.
        peak_s: the refined start time (None: computed from the parabola through the best bin and its neighbours).
        truth_s: the true start time (None: not drawn).
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title: the title.

    Returns:
        (fig, ax).

    Notebook: 08_search.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)
    bins, scores = np.asarray(bins, dtype=float), np.asarray(scores, dtype=float)
    i = 1 + int(np.argmax(scores[1:-1]))
    a, m, b = scores[i - 1:i + 2]
    c2, c1 = (a - 2 * m + b) / 2, (b - a) / 2  # y = m + c1 u + c2 u^2, u in hops from bins[i]
    u = np.linspace(-1, 1, 50)
    ax.plot(bins * hop_s, scores, "o", color="C0", label="alignment score per bin")
    ax.plot((bins[i] + u) * hop_s, m + c1 * u + c2 * u ** 2, color="C0", lw=1, label="parabola through 3 bins")
    if peak_s is None and c2 < 0:
        peak_s = (bins[i] + np.clip(-c1 / (2 * c2), -0.5, 0.5)) * hop_s
    if peak_s is not None:
        ax.axvline(peak_s, color="k", ls=":", lw=1, label=f"refined {peak_s:.3f} s")
    if truth_s is not None:
        ax.axvline(truth_s, color="C3", ls="--", lw=1, label=f"true {truth_s:.3f} s")
    ax.set(xlabel="start time in the track (s)", ylabel="mean similarity", title=title)
    ax.legend(fontsize=8)
    return fig, ax


def plot_leave_one_out(names, own: int, match: int | None = None, length_s: float = 2.0, at_s: float = 10.0,
                       match_s: float = 20.0, track_s: float = 30.0, ax=None, figsize=(6, 2.8)):
    """The leave-one-track-out idea: an excerpt of an indexed track, searched as if the index did not
    hold that track, is a query of music that is not in the index; whatever it matches is a chance match.

    `names`: the tracks drawn; `own`: the excerpt's track (left out), the excerpt `length_s` long at `at_s`;
    `match`: the track it matched instead, at `match_s` (None: not drawn); `track_s`: the tracks' drawn
    length. Returns (fig, ax).

    Notebook: 08_search.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)
    for i, name in enumerate(names):
        left_out = i == own
        ax.barh(i, track_s, color="0.85" if left_out else "C0", alpha=0.35 if left_out else 0.6, hatch="//" * left_out)
        ax.text(track_s + 0.5, i, f"{name}{'  (left out)' if left_out else ''}", va="center", fontsize=8)
    ax.barh(own, length_s, left=at_s, color="C1", label="the excerpt: a query of music the index 'does not hold'")
    if match is not None:
        ax.barh(match, length_s, left=match_s, color="C3", label="its best match: a chance score, a negative")
        ax.annotate("", xy=(match_s + length_s / 2, match), xytext=(at_s + length_s / 2, own),
                    arrowprops=dict(arrowstyle="->", color="C3"))
    ax.set(yticks=[], xlim=(0, 1.6 * track_s), ylim=(len(names) - 0.5, -0.5), xlabel="seconds",
           title="leave one track out")
    ax.legend(fontsize=7, loc="lower right")
    return fig, ax


# ---- exercises

@checker
def check_bucket_lookup(your_fn) -> None:
    """Check `your_fn(codes_sorted, code) -> (lo, hi)`: the rows of one bucket, `codes_sorted[lo:hi]`.

    Compared with `search.buckets.BucketTable` (its `bucket_codes`, `bucket_start`) on codes with repeats, on
    the first and last buckets, on a bucket of one row, and on codes that are in no bucket (below,
    between and above the stored ones), where the range must be empty (lo == hi).

    Notebook: 08_search.ipynb
    """
    rng = np.random.default_rng(8)
    codes = np.sort(rng.choice(np.arange(10, 200, 3), size=120).astype(np.uint32))  # repeats, gaps
    codes = np.sort(np.append(codes, np.uint32(5)))  # a bucket of exactly one row, at the start
    table = BucketTable(codes)
    present = table.bucket_codes
    absent = np.setdiff1d(np.arange(0, 260, dtype=np.uint32), present)
    sizes = np.diff(table.bucket_start)
    probes = [present[np.argmax(sizes)], present[0], present[-1], absent[0], absent[len(absent) // 2], np.uint32(259)]
    probes += list(rng.choice(present, 6)) + list(rng.choice(absent, 4))
    for code in probes:
        b = int(np.searchsorted(table.bucket_codes, code))
        there = b < len(table.bucket_codes) and table.bucket_codes[b] == code
        want = (int(table.bucket_start[b]), int(table.bucket_start[b + 1])) if there else None
        try:
            got = your_fn(codes, code)
        except IndexError as e:
            where = "larger than every stored code" if code > codes[-1] else "in no bucket"
            raise ExerciseError(f"code {int(code)} ({where}) raised IndexError ({e}): np.searchsorted can return "
                                "len(bucket_codes); check the bucket index before reading bucket_codes[b]") from None
        try:
            lo, hi = (int(v) for v in got)
        except (TypeError, ValueError):
            raise ExerciseError(f"return two integers (lo, hi), got {got!r}") from None
        if want is None:
            if hi > lo:
                raise ExerciseError(f"code {int(code)} is in no bucket, but your range [{lo}, {hi}) holds rows of "
                                    f"code {int(codes[lo]) if lo < len(codes) else '?'}: check that the bucket "
                                    "searchsorted lands on really holds the code")
            continue
        wlo, whi = want
        if (lo, hi) == want:
            continue
        if lo == wlo and hi == whi - 1:
            raise ExerciseError(f"code {int(code)}: you return [{lo}, {hi}), the bucket is [{wlo}, {whi}): hi is the "
                                "last row, not one past it (off by one; codes_sorted[lo:hi] must hold every row)")
        if lo == wlo and hi == whi + 1:
            raise ExerciseError(f"code {int(code)}: you return [{lo}, {hi}), the bucket is [{wlo}, {whi}): one row "
                                "too many at the end (off by one: hi is one past the last row already)")
        if hi == whi and abs(lo - wlo) == 1:
            raise ExerciseError(f"code {int(code)}: you return [{lo}, {hi}), the bucket is [{wlo}, {whi}): lo is off "
                                "by one (the bucket begins at bucket_start[b], or searchsorted(..., side='left'))")
        if lo == hi:
            raise ExerciseError(f"code {int(code)} has {whi - wlo} rows [{wlo}, {whi}), your range is empty: "
                                "the end of a bucket is where the next one starts (bucket_start[b + 1]), or "
                                "searchsorted(..., side='right')")
        raise ExerciseError(f"code {int(code)}: you return [{lo}, {hi}), the bucket is [{wlo}, {whi})")
    _ok("check_bucket_lookup")


def _subset_costs(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every subset of K bits as a mask, with its cost sum(w[bits]) (K <= 16)."""
    K = len(w)
    masks = np.arange(2 ** K, dtype=np.uint64)
    bits = (masks[:, None] >> np.arange(K, dtype=np.uint64)) & np.uint64(1)  # (2^K, K)
    return masks, bits.astype(np.float64) @ w


@checker
def check_probe_order(your_fn) -> None:
    """Check `your_fn(logits, n_probes) -> masks`: the multi-probe flip-sets, cheapest first.

    A flip-set costs the summed |logit| of its bits; mask 0 (the window's own bucket) comes first.
    Compared with `search.buckets.probe_order` and a brute-force sort of every subset; ties in cost may come
    in any order.

    Notebook: 08_search.ipynb
    """
    rng = np.random.default_rng(3)
    cases = [(rng.normal(0, 2, 8), 20), (rng.normal(0, 2, 16), 64), (rng.normal(0, 1, 4), 16),
             (rng.normal(0, 3, 12), 40), (rng.normal(0, 1, 6), 1)]
    for logits, P in cases:
        K = len(logits)
        conf = np.abs(logits)
        ref_masks, ref_costs = probe_order(conf, P)
        got = your_fn(logits.copy(), P)
        try:
            masks = np.array([int(v) for v in got], dtype=np.uint64)
        except (TypeError, ValueError):
            raise ExerciseError(f"return a sequence of integer masks, got {got!r}") from None
        where = f"(K={K}, n_probes={P})"
        single = max(bin(int(v)).count("1") for v in ref_masks) > 1 >= max(bin(int(v)).count("1") for v in masks)
        if single:
            raise ExerciseError(f"{where}: you only flip one bit at a time; flipping two unsure bits together "
                                "can cost less than flipping one confident bit, and K bits give 2^K flip-sets")
        if len(masks) != len(ref_masks):
            raise ExerciseError(f"{where}: expected {len(ref_masks)} masks, got {len(masks)}")
        if masks[0] != 0:
            raise ExerciseError(f"{where}: the first probe must be the window's own bucket, the empty flip-set "
                                f"(mask 0); got {int(masks[0])}")
        if len(np.unique(masks)) != len(masks):
            raise ExerciseError(f"{where}: a mask comes twice: each flip-set should be probed once")
        if masks.max() >= 2 ** K:
            raise ExerciseError(f"{where}: mask {int(masks.max())} flips a bit beyond the K={K} bits")
        all_masks, cost_abs = _subset_costs(conf)
        costs = cost_abs[masks.astype(np.int64)]
        if np.allclose(costs, ref_costs, rtol=0, atol=1e-9):
            continue
        signed = _subset_costs(logits)[1][masks.astype(np.int64)]
        negative = sum(1 << k for k in range(K) if logits[k] < 0)
        if (np.all(np.diff(signed) >= -1e-9) or int(masks[1]) in (1 << int(np.argmin(logits)), negative)
                or int(masks[1]) == 1 << int(np.argmax(logits)) != int(ref_masks[1])):
            raise ExerciseError(f"{where}: your probes follow the signed logits; a bit is unsure when its logit "
                                "is near 0 from either side: the cost of flipping it is |logit|")
        if np.all(np.diff(costs[1:]) <= 1e-9):
            raise ExerciseError(f"{where}: your probes come most expensive first: flip the LEAST confident bits "
                                "(smallest |logit|) first")
        if set(masks.tolist()) == set(ref_masks.tolist()):
            raise ExerciseError(f"{where}: the right flip-sets in the wrong order: pop them cheapest first "
                                "(a heap keyed by the summed |logit|)")
        i = int(np.flatnonzero(~np.isclose(costs, ref_costs, rtol=0, atol=1e-9))[0])
        raise ExerciseError(f"{where}: probe {i} flips bits {[k for k in range(K) if int(masks[i]) >> k & 1]} at "
                            f"cost {costs[i]:.4f}; the cheapest flip-set not yet probed costs {ref_costs[i]:.4f} "
                            f"(bits {[k for k in range(K) if int(ref_masks[i]) >> k & 1]})")
    _ok("check_probe_order")


def _vote_case(kind: str, rng):
    """Synthetic candidates for `check_vote`: a true (track, bin) and a decoy that one mistake prefers."""
    hop, n_tracks, n_rows = 0.1, 3, 300
    track_ids = np.repeat(np.arange(n_tracks), n_rows).astype(np.int32)
    starts = np.tile(np.arange(n_rows) * hop, n_tracks).astype(np.float32)
    M = 10 if kind == "negative" else 6
    q_starts = np.arange(M) * 0.5 + (0.003 if kind == "floor" else 0.0)  # windows a little off the DB grid
    win, rows, sims = [], [], []

    def add(w, track, bin_, s):
        j = int(round((q_starts[w] + bin_ * hop) / hop))
        win.append(w), rows.append(track * n_rows + j), sims.append(s)

    true_t, true_b = 2, 57
    found_by = range(4) if kind == "count" else range(6)
    for w in found_by:
        add(w, true_t, true_b, 0.75 + 0.03 * w)
    for w in range(M):
        for k in rng.choice(n_tracks * 40, 3, replace=False):  # background: weak candidates, distinct pairs
            add(w, int(k) // 40, int(k) % 40, float(rng.uniform(0.0, 0.2)))
    if kind == "count":  # a pair found by more windows, each weakly: counting votes prefers it
        for w in range(M):
            add(w, 0, 120, 0.3)
    if kind == "negative":  # more windows see the true pair, dissimilar: they count 0, not minus
        for w in range(6, M):
            add(w, true_t, true_b, -0.6)
        for w in range(1, M):
            add(w, 0, 120, 0.45)
    o = np.argsort(win, kind="stable")  # candidates come grouped by query window, as the index gives them
    return (np.array(win)[o], np.array(rows)[o], np.array(sims, dtype=np.float32)[o], q_starts, track_ids, starts, hop)


@checker
def check_vote(your_fn) -> None:
    """Check `your_fn(win, rows, sims, q_starts, track_ids, starts, hop_s) -> (track, offset_bin)`.

    The best (track, offset bin) by summed similarity, offset = DB window start - query window start,
    rounded to the nearest hop; negative similarities count 0. Compared with `search.base.vote`, and
    recognises the flipped sign, truncation instead of rounding, counting instead of summing and
    summing negative similarities.

    Notebook: 08_search.ipynb
    """
    def variant(args, sign=1.0, rnd=np.rint, weight="sum"):
        win, rows, sims, q_starts, track_ids, starts, hop = args
        tr = track_ids[rows].astype(np.int64)
        b = rnd(sign * (starts[rows] - q_starts[win]) / hop).astype(np.int64)
        w = {"sum": np.maximum(sims, 0), "count": np.ones_like(sims), "raw": sims}[weight]
        keys, inv = np.unique(tr * 100000 + b + 50000, return_inverse=True)
        s = np.bincount(inv, weights=w)
        k = keys[np.argmax(s)]
        return int(k // 100000), int(k % 100000 - 50000)

    rng = np.random.default_rng(5)
    for kind in ("basic", "floor", "count", "negative"):
        args = _vote_case(kind, rng)
        t, b, _ = vote(*args, n_best=1)
        want = (int(t[0]), int(b[0]))
        got = your_fn(*args)
        try:
            got = tuple(int(v) for v in got)
            assert len(got) == 2
        except (TypeError, ValueError, AssertionError):
            raise ExerciseError(f"return (track, offset_bin), two integers; got {got!r}") from None
        if got == want:
            continue
        if got == (want[0], -want[1]) or got == variant(args, sign=-1.0):
            raise ExerciseError(f"you found offset bin {got[1]}, the answer is {want[1]}: the offset is the DB "
                                "window's start minus the query window's start (where the query begins in the "
                                "track), not q_start - db_start")
        if got == variant(args, rnd=np.floor) or got == variant(args, rnd=np.trunc):
            raise ExerciseError(f"you found offset bin {got[1]}, the answer is {want[1]}: round the offset to the "
                                "nearest hop (np.rint); int() and floor() turn 56.97 hops into 56, not 57")
        if got == variant(args, weight="count"):
            raise ExerciseError(f"you found {got}, the answer is {want}: you count votes; sum their similarities, "
                                "so that many weak candidates do not outvote a few strong ones")
        if got == variant(args, weight="raw"):
            raise ExerciseError(f"you found {got}, the answer is {want}: negative similarities should count 0 "
                                "(np.maximum(sims, 0)), not subtract from a pair's votes")
        raise ExerciseError(f"case {kind!r}: you found (track, bin) {got}, the answer is {want}")
    _ok("check_vote")


# ---- solutions: the notebook's exercises answered (`make test` runs it with them)

def solution_bucket(codes_sorted, code):
    """Exercise 1: the run of rows with that code, by binary search."""
    return int(np.searchsorted(codes_sorted, code, "left")), int(np.searchsorted(codes_sorted, code, "right"))


def solution_probes(logits, n_probes):
    """Exercise 2: the cheapest flip-sets without a heap, one bit at a time (least confident first)."""
    conf = np.abs(np.asarray(logits, dtype=np.float64))
    masks, costs = np.zeros(1, dtype=np.uint64), np.zeros(1)
    for k in np.argsort(conf, kind="stable"):
        masks = np.concatenate([masks, masks | np.uint64(1 << int(k))])  # every set so far, without and with bit k
        costs = np.concatenate([costs, costs + conf[k]])
        keep = np.argsort(costs, kind="stable")[:n_probes]  # the cheapest n_probes survive
        masks, costs = masks[keep], costs[keep]
    return masks


def solution_vote(win, rows, sims, q_starts, track_ids, starts, hop_s):
    """Exercise 3: the (track, offset bin) with the largest summed positive similarity."""
    tr = track_ids[rows]
    b = np.rint((starts[rows] - q_starts[win]) / hop_s).astype(int)
    H = np.zeros((tr.max() + 1, b.max() - b.min() + 1))
    np.add.at(H, (tr, b - b.min()), np.maximum(sims, 0.0))
    t, j = np.unravel_index(np.argmax(H), H.shape)
    return int(t), int(j + b.min())
