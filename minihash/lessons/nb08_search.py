"""Notebook 08: search, the hash table, multi-probe, re-ranking, offset voting and the no-match threshold.

Figures: the bits each probe flips, the best scores of queries in and not in the database with the
threshold, leave-one-track-out, ROC curves of decision scores, the sub-hop refinement of the start time
(bucket sizes are notebook 06's, the votes 00's, accuracy against share scored 07's). Exercises: the negatives
a threshold may let pass (Clopper-Pearson), the multi-probe order and the windows that agree with an alignment.

References: A. Singh, K. Demuynck, V. Arora, ICASSP 2023; Q. Lv et al., VLDB 2007 (multi-probe LSH);
M. Charikar, STOC 2002; S. Chang et al., ICASSP 2021 (sequence search over query windows).
"""
from __future__ import annotations

import numpy as np
from scipy.stats import beta, norm

from ..evaluate.nomatch import plot_roc_curves
from ..search.base import AGREE_HOPS
from ..search.buckets import probe_order
from ..search.threshold import allowed_passes
from .common import ExerciseError, _fig_ax, _ok, checker, exercise_decorator, passed
from .nb00_overview import plot_offset_votes
from .nb06_optimal_transport import plot_bucket_sizes
from .nb07_balanced_hashing import (at_equal_share, compare, paired_difference, plot_search_tradeoff,
                                    wilson_interval)

__all__ = ["plot_bucket_sizes", "plot_offset_votes", "plot_search_tradeoff", "wilson_interval", "paired_difference",
           "compare", "at_equal_share", "plot_probe_sets", "plot_leave_one_out", "plot_roc_curves",
           "plot_score_histograms", "plot_alignment_peak", "check_allowed_passes", "check_probe_order",
           "check_agree", "exercise", "passed", "solution_allowed_passes", "solution_probes", "solution_agree"]

exercise = exercise_decorator(globals())  # `@lesson.exercise` in the notebook: see common


# ---- figures

def plot_probe_sets(masks, conf, costs=None, ax=None, figsize=(8, 4), title="multi-probe: bits flipped per probe"):
    """Which bits each probe flips: a (probes x bits) grid, bits ordered from least to most confident.

    `masks`: (P,) integer XOR masks in probe order (the first, 0, probes the window's own bucket); `conf`: (K,)
    the window's |logit|; `costs`: (P,) summed |logit| of the flipped bits, written beside each row (None:
    computed). Draws on `ax` (a new figure of `figsize` if None); returns (fig, ax).

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

    `pos`, `neg`: scores of queries whose audio is, and is not, in the DB; `threshold`: a vertical line (None:
    none); `bins`: shared by both histograms. Draws on `ax` (a new figure of `figsize` if None); returns (fig, ax).

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

    `bins`: (B,) consecutive offset bins (in hops), B >= 3; `scores`: (B,) the query's mean similarity at each;
    `hop_s`: bin width, seconds; `peak_s`: the refined start (None: from the parabola through the best bin and its
    neighbours); `truth_s`: the true start (None: not drawn). Draws on `ax` (a new figure of `figsize` if None);
    returns (fig, ax).

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
    ax.set_xticks(np.arange(0, track_s + 1e-9, 10))  # the tracks' time axis; the names sit to the right
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)  # under the axes: hides no name
    return fig, ax


# ---- exercises

def _largest_k(n: int, ok) -> int:
    """The largest k <= n with ok(1) ... ok(k) all true (0 if ok(1) is not): as `allowed_passes` counts."""
    good = np.append(np.asarray(ok(np.arange(1, n + 1)), dtype=bool), False)
    return int(np.argmin(good))


def _passes_variants(n, mf, conf) -> dict:
    """`allowed_passes` with a classic mistake, by name."""
    up = lambda c: lambda k: np.where(k < n, beta.ppf(c, k + 1, np.maximum(n - k, 1)), 1.0) <= mf  # noqa: E731
    want = allowed_passes(n, mf, conf)
    return {"plain": int(np.floor(mf * n + 1e-9)), "one more": min(want + 1, n) if up(conf)(want) else want,
            "two-sided": _largest_k(n, up((1 + conf) / 2)),
            "lower": _largest_k(n, lambda k: beta.ppf(1 - conf, k, n - k + 1) <= mf),
            "normal": _largest_k(n, lambda k: k / n + norm.ppf(conf) * np.sqrt(k / n * (1 - k / n) / n) <= mf)}


_PASSES_WHY = {
    "plain": "you allow floor(max_false * n), the share among these very negatives: k passes out of n can come from "
             "a true rate above max_false. Allow only as many as keep the one-sided Clopper-Pearson UPPER bound of "
             "the rate, beta.ppf(confidence, k + 1, n - k), at most max_false",
    "one more": "one too many: you return the first k whose bound exceeds max_false; the answer is the last one whose "
                "bound beta.ppf(confidence, k + 1, n - k) stays at most max_false",
    "two-sided": "you use the two-sided interval (its upper end at (1 + confidence) / 2): the promise is one-sided, "
                 "only the upper bound counts, at `confidence` itself",
    "lower": "you hold the LOWER bound under max_false: the true rate may be as high as the UPPER bound, "
             "beta.ppf(confidence, k + 1, n - k), and that is what must stay at most max_false",
    "normal": "you use the normal approximation k/n + z sqrt(p (1 - p) / n): with few passes it is far too "
              "optimistic (at k = 0 its width is 0); use the exact Clopper-Pearson bound, beta.ppf(confidence, k + 1, "
              "n - k)"}


@checker
def check_allowed_passes(your_fn) -> None:
    """Check `your_fn(n, max_false, confidence) -> k`: how many of n calibration negatives may pass.

    k is the largest number of passes whose one-sided Clopper-Pearson upper bound at `confidence` stays at
    most `max_false` (0 if even none passing cannot promise it). Compared with `search.threshold.allowed_passes`
    and scipy's beta quantiles; recognises the plain share floor(max_false n), one too many, the two-sided
    interval, the lower bound and the normal approximation.

    Notebook: 08_search.ipynb
    """
    cases = [(100, 0.05, 0.9), (20, 0.05, 0.9), (200, 0.05, 0.9), (1000, 0.01, 0.95), (60, 0.1, 0.5),
             (500, 0.02, 0.99), (10, 0.3, 0.9), (2000, 0.05, 0.9), (80, 0.05, 0.99)]
    got, want = [], []
    for n, mf, conf in cases:
        k = allowed_passes(n, mf, conf)
        bound = lambda j: beta.ppf(conf, j + 1, n - j) if j < n else 1.0  # noqa: E731
        assert k == 0 or bound(k) <= mf and (k == n or bound(k + 1) > mf)  # the package, against scipy
        g = your_fn(n, mf, conf)
        if not np.isscalar(g) or not float(g).is_integer():
            raise ExerciseError(f"(n={n}, max_false={mf}, confidence={conf}): return a whole number of negatives, "
                                f"got {g!r}")
        got.append(int(g)), want.append(k)
    if got == want:
        return _ok("check_allowed_passes")
    for name, why in _PASSES_WHY.items():
        if got == [_passes_variants(*c)[name] for c in cases]:
            raise ExerciseError(why)
    i = next(i for i in range(len(cases)) if got[i] != want[i])
    n, mf, conf = cases[i]
    raise ExerciseError(f"(n={n}, max_false={mf}, confidence={conf}): you allow {got[i]} passes, the answer is "
                        f"{want[i]}: the bound for k passes is beta.ppf(confidence, k + 1, n - k)")


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



def _agree(win, rows, sims, q_starts, track_ids, starts, hop_s, track, offset_s, pick="best", sign=1.0,
           tol=AGREE_HOPS, any_track=False):
    """How many query windows' best candidate lies at (track, offset_s), or a classic mistake."""
    win, rows, sims = np.asarray(win), np.asarray(rows), np.asarray(sims)
    o = np.lexsort((-sims, win)) if pick == "best" else np.arange(len(win))  # the index gives them by window
    first = np.ones(len(o), dtype=bool)
    first[1:] = win[o][1:] != win[o][:-1]
    if pick == "all":
        first[:] = True
    w, r = win[o][first], rows[o][first]
    near = np.abs(sign * (starts[r] - q_starts[w]) - offset_s) <= tol * hop_s
    return int(np.sum(near & ((track_ids[r] == track) | any_track)))


def _agree_case(rng, offset_s: float):
    """Candidates for `check_agree`: windows whose best candidate agrees or, in one of several ways, does not."""
    hop, n_tracks, n_rows, M, t = 0.1, 4, 400, 18, 2
    track_ids = np.repeat(np.arange(n_tracks), n_rows).astype(np.int32)
    starts = np.tile(np.arange(n_rows) * hop, n_tracks).astype(np.float32)
    q_starts = np.arange(M) * 0.5
    win, rows, sims = [], [], []

    def add(w, track, at_s, s):  # window w's candidate: the row of `track` starting nearest at_s
        win.append(w), rows.append(track * n_rows + int(np.clip(np.rint(at_s / hop), 0, n_rows - 1))), sims.append(s)

    for w in rng.permutation(M):
        at, role = q_starts[w] + offset_s, int(rng.integers(6))
        far = float(rng.uniform(5, 35))  # somewhere else
        if role == 0:  # agrees; a weaker candidate elsewhere comes first, another near the alignment
            add(w, int(rng.integers(n_tracks)), far, 0.2), add(w, t, at + hop * rng.integers(-1, 2), 0.8)
            add(w, t, at + 0.1, 0.5)
        elif role == 1:  # agrees, 1.3 hops away
            add(w, t, at + 0.13 * rng.choice([-1, 1]), 0.7)
        elif role == 2:  # another track at the same offset: does not agree
            add(w, (t + 1) % n_tracks, at, 0.75), add(w, t, far, 0.3)
        elif role == 3:  # a weaker candidate at the alignment, listed first; the best elsewhere
            add(w, t, at, 0.4), add(w, 0, far, 0.9)
        elif role == 4:  # the right track, 2 hops off: too far
            add(w, t, at + 0.2, 0.85)
        elif role == 5 and q_starts[w] >= offset_s:  # at DB start = query start - offset (the sign flipped)
            add(w, t, q_starts[w] - offset_s, 0.8)
    o = np.argsort(win, kind="stable")
    return (np.array(win)[o], np.array(rows)[o], np.array(sims, dtype=np.float32)[o], q_starts, track_ids, starts,
            hop, t, offset_s)


_AGREE_MISTAKES = [  # (what the variant does differently, the explanation)
    ({"pick": "all"}, "you count candidates, not windows: only each window's single most similar candidate counts"),
    ({"pick": "first"}, "you take each window's first candidate: a window's candidates come in bucket order, not by "
                        "similarity; take the one with the highest sim"),
    ({"any_track": True}, "a window whose best candidate is in another track at that offset does not agree: check "
                          "track_ids[row] == track"),
    ({"sign": -1.0}, "the offset is the DB window's start minus the query window's start, starts[row] - "
                     "q_starts[w], as in the vote"),
    ({"tol": 0.5}, "you only count windows in the alignment's own 0.1 s bin: a window agrees within "
                   f"{AGREE_HOPS} hops of offset_s (the refined offset lies between bins)"),
]


@checker
def check_agree(your_fn) -> None:
    """Check `your_fn(win, rows, sims, q_starts, track_ids, starts, hop_s, track, offset_s) -> count`.

    The number of query windows whose own most similar candidate lies in `track` within `AGREE_HOPS` hops of
    the alignment (DB start - query window start = offset_s): `Match.agree`, what `search` computes for the
    decision score. Recognises every candidate counted, each window's first candidate instead of its best, the
    track ignored, the offset's sign flipped and the alignment's own bin only.

    Notebook: 08_search.ipynb
    """
    rng = np.random.default_rng(11)
    cases = [_agree_case(rng, off) for off in (3.27, 6.0, 2.44, 4.91)]
    got = []
    for args in cases:
        g = your_fn(*args)
        if not np.isscalar(g) or not float(g).is_integer():
            raise ExerciseError(f"return the number of agreeing windows, a whole number; got {g!r}")
        got.append(int(g))
    want = [_agree(*args) for args in cases]
    if got == want:
        return _ok("check_agree")
    for how, why in _AGREE_MISTAKES:
        if got == [_agree(*args, **how) for args in cases]:
            raise ExerciseError(f"{why} (you count {got}, the answers are {want})")
    raise ExerciseError(f"you count {got} agreeing windows, the answers are {want}")


# ---- solutions: the notebook's exercises answered (`make test` runs it with them)

def solution_allowed_passes(n, max_false, confidence):
    """Exercise 1: the most passes whose one-sided Clopper-Pearson upper bound stays at most max_false."""
    k = 0
    while k < n and beta.ppf(confidence, k + 2, n - k - 1) <= max_false:  # the bound if k + 1 passed
        k += 1
    return k


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


def solution_agree(win, rows, sims, q_starts, track_ids, starts, hop_s, track, offset_s):
    """Exercise 3: the windows whose most similar candidate lies at the alignment, within 1.5 hops."""
    best = {}
    for w, r, s in zip(win, rows, sims):  # each window's most similar candidate
        if w not in best or s > best[w][1]:
            best[w] = (r, s)
    return sum(int(track_ids[r] == track and abs(starts[r] - q_starts[w] - offset_s) <= AGREE_HOPS * hop_s)
               for w, (r, _) in best.items())
