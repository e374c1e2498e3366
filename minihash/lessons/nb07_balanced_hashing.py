"""Notebook 07: balanced hashing, what the optimal-transport loss buys at search time.

Two models trained with the same budget, with and without the OT hash loss, against random-hyperplane LSH:
bucket balance and the share of the database a lookup scores. Figures: top-1 against the share scored
(bucket sizes are notebook 06's, training curves notebook 05's). Exercises: the normalised entropy of the
bucket occupancy, packing sign bits into codes, and the expected candidates of a probe, sum_b n_b^2 / N.

References: A. Singh, K. Demuynck, V. Arora, ICASSP 2023; M. Charikar, STOC 2002 (random-hyperplane LSH);
Q. Lv et al., VLDB 2007 (multi-probe LSH).
"""
from __future__ import annotations

import numpy as np
from scipy.stats import norm

from ..ot import bucket_stats, pack_codes
from .common import ExerciseError, _fig_ax, _ok, checker, exercise_decorator, passed
from .nb05_contrastive_learning import plot_training_curves
from .nb06_optimal_transport import plot_bucket_sizes

__all__ = ["plot_training_curves", "plot_bucket_sizes", "plot_search_tradeoff", "wilson_interval",
           "paired_difference", "compare", "at_equal_share", "check_bucket_entropy",
           "check_pack_codes", "check_expected_candidates",
           "exercise", "passed", "solution_bucket_entropy", "solution_pack_codes", "solution_expected_candidates"]

exercise = exercise_decorator(globals())  # `@lesson.exercise` in the notebook: see common


# ---- figures

def plot_search_tradeoff(results, ax=None, figsize=(7, 3.5), title="top-1 against the share of the database scored",
                         n_queries=None, level=0.95):
    """Top-1 against the fraction of the database scored, one curve per method (e.g. an n_probes sweep).

    Args:
        results: dict name -> list of (fraction scored, top-1) points, in sweep order.
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title: axes title.
        n_queries: the queries behind each top-1: draws its Wilson interval at `level` as an error bar.
        level: the intervals' confidence.

    Returns:
        (fig, ax).

    Notebook: 07_balanced_hashing.ipynb, 08_search.ipynb, 09_benchmark.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)
    for i, (name, pts) in enumerate(results.items()):
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        # markers of decreasing size and hollow, so that methods landing on the same point all show
        line, = ax.plot(pts[:, 0], pts[:, 1], "-" if len(pts) > 1 else "", marker="osD^v*"[i % 6],
                        ms=max(4, 12 - 2 * i), fillstyle="none", mew=1.5, label=name)
        if n_queries:
            lo, hi = wilson_interval(np.rint(pts[:, 1] * n_queries), n_queries, level)
            ax.errorbar(pts[:, 0], pts[:, 1], yerr=[pts[:, 1] - lo, hi - pts[:, 1]], fmt="none",
                        ecolor=line.get_color(), alpha=0.6, capsize=2)
    ax.set(xscale="log", xlabel="share of the database scored per query window", ylabel="top-1", ylim=(0, 1.02),
           title=title + (f"\n(bars: {level:.0%} intervals, {n_queries} queries)" if n_queries else ""))
    ax.legend(fontsize="small")
    return fig, ax


# ---- how sure a measured hit rate is


def wilson_interval(k, n: int, level: float = 0.95):
    """The Wilson score interval of a binomial proportion k / n (Wilson 1927): sound at small n and near 0 or 1,
    where the textbook p ± z sqrt(p (1 - p) / n) is not. `k` may be an array.

    Returns:
        (lo, hi), each like k.

    Notebook: 07_balanced_hashing.ipynb, 08_search.ipynb, 09_benchmark.ipynb
    """
    z = norm.ppf(0.5 + level / 2)
    p = np.asarray(k, dtype=np.float64) / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def paired_difference(hits_a, hits_b, level: float = 0.95, n_boot: int = 4000, seed: int = 0):
    """How much more often method a is right than method b on the same queries, with a bootstrap interval
    (the queries resampled with replacement, both methods' answers kept together).

    Args:
        hits_a, hits_b: (Q,) 0/1 or bool: each query right or not, the same queries in the same order.

    Returns:
        (difference, lo, hi) in shares (0.05 = 5 points).

    Notebook: 08_search.ipynb, 09_benchmark.ipynb (07 through `compare`)
    """
    d = np.asarray(hits_a, dtype=np.float64) - np.asarray(hits_b, dtype=np.float64)  # (Q,) -1, 0 or 1
    idx = np.random.default_rng(seed).integers(0, len(d), size=(n_boot, len(d)))
    boot = d[idx].mean(axis=1)
    lo, hi = np.quantile(boot, [0.5 - level / 2, 0.5 + level / 2])
    return float(d.mean()), float(lo), float(hi)


def _pts(x: float) -> str:
    """A difference of shares in signed points, rounded (never "-0")."""
    return f"{int(round(100 * x)):+d}"


def compare(name_a, hits_a, name_b, hits_b, level: float = 0.95) -> str:
    """One sentence, from the numbers: both hit rates with their intervals and what their difference shows.

    Notebook: 07_balanced_hashing.ipynb, 08_search.ipynb, 09_benchmark.ipynb
    """
    n = len(hits_a)
    parts = []
    for name, h in ((name_a, hits_a), (name_b, hits_b)):
        lo, hi = wilson_interval(np.sum(h), n, level)
        parts.append(f"{name} {100 * np.mean(h):.0f} % [{100 * lo:.0f}, {100 * hi:.0f}]")
    d, lo, hi = paired_difference(hits_a, hits_b, level)
    verdict = (f"{name_a} ahead" if lo > 0 else f"{name_b} ahead" if hi < 0 else
               "no difference this many queries can show")
    return f"{parts[0]} against {parts[1]}: {_pts(d)} points ({level:.0%} interval {_pts(lo)} to {_pts(hi)}), {verdict}"


def at_equal_share(name_a, curve_a, name_b, curve_b, n_queries: int, level: float = 0.95) -> str:
    """One sentence: the two methods at equal work. Each point of `curve_a` whose share scored lies within
    `curve_b`'s range is set against `curve_b`'s top-1 interpolated at that share (linear in log share).

    Args:
        curve_a, curve_b: lists of (share scored, top-1) in sweep order.
        n_queries: the queries behind each point, for the width of an interval.

    Notebook: 07_balanced_hashing.ipynb, 08_search.ipynb, 09_benchmark.ipynb
    """
    a, b = np.asarray(curve_a, dtype=np.float64), np.asarray(curve_b, dtype=np.float64)
    b = b[np.argsort(b[:, 0])]
    inside = (a[:, 0] >= b[0, 0]) & (a[:, 0] <= b[-1, 0])
    if not inside.any():
        return f"{name_a} and {name_b} score no common share of the database: no comparison at equal work."
    rate_b = np.interp(np.log(a[inside, 0]), np.log(b[:, 0]), b[:, 1])  # (P,) b at a's shares
    d = a[inside, 1] - rate_b  # (P,) top-1 differences
    half = []  # the half-width a difference of two independent rates needs: sqrt(h_a^2 + h_b^2)
    for rate_a, rb in zip(a[inside, 1], rate_b):
        (la, ha), (lb, hb) = (wilson_interval(np.rint(r * n_queries), n_queries, level) for r in (rate_a, rb))
        half.append(np.hypot((ha - la) / 2, (hb - lb) / 2))
    half = np.array(half)
    big = np.abs(d) > half
    if not big.any():
        verdict = "within what chance gives: this run cannot tell them apart at equal work"
    else:
        lead = name_a if d[big].mean() > 0 else name_b
        verdict = f"{lead} ahead at {big.sum()} of them, by more than chance gives there"
    return (f"At equal share of the database scored ({name_b}'s top-1 interpolated at {name_a}'s {inside.sum()} "
            f"shares), {name_a} minus {name_b} is {_pts(d.min())} to {_pts(d.max())} points, where a "
            f"difference of two rates needs more than about ±{100 * half.mean():.0f} to stand out: {verdict}.")


# ---- exercises

def _code_cases():
    """(codes, K) cases: skewed, fewer items than buckets, one bucket, perfectly even."""
    rng = np.random.default_rng(5)
    return [(np.minimum(rng.geometric(0.05, 2000), 255).astype(np.int64), 8),
            (rng.integers(0, 2 ** 16, 300) & rng.integers(0, 2 ** 16, 300), 16),
            (np.full(500, 1234, dtype=np.int64), 16),
            (np.repeat(np.arange(64), 5), 6),
            (rng.integers(0, 2 ** 12, 20000) >> rng.integers(0, 6, 20000), 12)]


@checker
def check_bucket_entropy(your_fn) -> None:
    """Check `your_fn(codes, K) -> normalised entropy` against `minihash.ot.bucket_stats`.

    The entropy of the bucket occupancy p_b = n_b / N in bits, divided by the most N
    codes can reach, log2(min(N, 2^K)). Recognises natural logs mixed with log2, the
    raw entropy, normalising by K or by the buckets in use, and empty buckets that turn
    into NaN (0 log 0) or are counted in N.

    Notebook: 07_balanced_hashing.ipynb
    """
    for k, (codes, K) in enumerate(_code_cases()):
        st = bucket_stats(codes, K)
        want = st["entropy_norm"]
        try:
            got = float(np.asarray(your_fn(codes.copy(), K)).item())
        except Exception as e:
            raise ExerciseError(f"bucket_entropy raised {type(e).__name__}: {e} (return one number)")
        if abs(got - want) < 1e-6:
            continue
        N, used = len(codes), st["n_buckets_used"]
        H = st["entropy_bits"]
        where = f"case {k} (N={N}, K={K}, {used} buckets used): got {got:.6g}, expected {want:.6g}"
        if np.isnan(got):
            raise ExerciseError(f"{where}: NaN. Empty buckets give 0 * log(0) = nan: they add nothing to the "
                                "entropy, so sum only over the buckets in use (np.unique(..., return_counts=True))")
        bound = np.log2(min(N, 2 ** K))
        variants = [
            (want * np.log(2), "the entropy is in nats (natural log) but the bound is in bits: use log2 in both"),
            (want / np.log(2), "the entropy is in bits but the bound in nats: use log2 in both"),
            (H, "that is the raw entropy in bits: divide by log2(min(N, 2^K)), the most N codes can reach"),
            (H * np.log(2), "that is the raw entropy in nats: use log2, then divide by log2(min(N, 2^K))"),
            (H / K, "you divided by K = log2(2^K): N items can fill at most N buckets, so divide by "
                    "log2(min(N, 2^K))"),
            (H / np.log2(used) if used > 1 else np.nan, "you divided by log2 of the buckets in use: that is 1 for "
                                                        "any set of equally full buckets, however few. Divide by "
                                                        "log2(min(N, 2^K))"),
        ]
        p_wrong = np.unique(codes, return_counts=True)[1] / 2 ** K  # counts over the number of buckets
        variants.append((float(-(p_wrong * np.log2(p_wrong)).sum() / bound),
                         "p_b is n_b / N (the share of items in bucket b), not n_b / 2^K"))
        for value, why in variants:
            if np.isfinite(value) and abs(got - value) < 1e-6:
                raise ExerciseError(f"{where}: {why}")
        raise ExerciseError(where)
    _ok("bucket_entropy")


@checker
def check_pack_codes(your_fn) -> None:
    """Check `your_fn(logits (N, K)) -> (N,) integer codes` against `minihash.ot.pack_codes`.

    Bit k of the code is set where logit k > 0 (strictly): logit 0 is the least
    significant bit. Recognises the bit order reversed, >= for >, inverted bits, +-1
    weights, and overflow of signed 32-bit integers.

    Notebook: 07_balanced_hashing.ipynb
    """
    rng = np.random.default_rng(9)
    for K in (16, 8, 32, 5):
        L = rng.standard_normal((400, K)).astype(np.float32)
        L[rng.random(L.shape) < 0.05] = 0.0  # exact zeros: the sign convention shows
        L[0] = 1.0  # every bit set
        want = pack_codes(L).astype(np.uint64)
        try:
            got = np.asarray(your_fn(L.copy()))
        except Exception as e:
            raise ExerciseError(f"pack_codes raised {type(e).__name__}: {e} (input: a (N, K) float array)")
        if got.shape != want.shape:
            raise ExerciseError(f"pack_codes (K={K}): expected shape {want.shape}, one code per row, got {got.shape}")
        if not np.issubdtype(got.dtype, np.integer):
            raise ExerciseError(f"pack_codes: return integers (got {got.dtype})")
        if np.any(got.astype(np.int64) < 0):
            raise ExerciseError(f"pack_codes (K={K}): negative codes: a signed integer overflowed when the top bit "
                                "was set; use an unsigned type wide enough (np.uint32 for K <= 32, np.uint64 above)")
        got = got.astype(np.uint64)
        if np.array_equal(got, want):
            continue
        where = f"pack_codes (K={K})"
        bits = (L > 0).astype(np.uint64)
        w = np.uint64(1) << np.arange(K, dtype=np.uint64)
        if np.array_equal(got, (bits * w[::-1]).sum(1, dtype=np.uint64)):
            raise ExerciseError(f"{where}: the bit order is reversed: logit 0 is bit 0, the least significant "
                                "(weight 2^0), logit k has weight 2^k")
        if np.array_equal(got, ((L >= 0).astype(np.uint64) * w).sum(1, dtype=np.uint64)):
            raise ExerciseError(f"{where}: a logit of exactly 0 gave a 1 bit: the bit is logit > 0 (strict)")
        if np.array_equal(got, ((L < 0).astype(np.uint64) * w).sum(1, dtype=np.uint64)) or \
                np.array_equal(got, ((L <= 0).astype(np.uint64) * w).sum(1, dtype=np.uint64)):
            raise ExerciseError(f"{where}: the bits are inverted: a bit is 1 where the logit is positive")
        signed = ((2 * bits.astype(np.int64) - 1) * w.astype(np.int64)).sum(1)
        if np.array_equal(got.astype(np.int64), signed):
            raise ExerciseError(f"{where}: you weighted +-1 signs: a code's bits are 0/1 (logit > 0)")
        i = int(np.flatnonzero(got != want)[0])
        raise ExerciseError(f"{where}: row {i} gives {int(got[i])} = 0b{int(got[i]):b}, expected {int(want[i])} = "
                            f"0b{int(want[i]):b} (bit k set where logit k > 0)")
    _ok("pack_codes")


@checker
def check_expected_candidates(your_fn) -> None:
    """Check `your_fn(codes) -> expected candidates per probe` = sum_b n_b^2 / N.

    A query distributed like the data lands in bucket b with probability n_b / N and
    then scores its n_b items. Recognises the mean bucket size, the collision
    probability (no factor N), a missing 1 / N, the largest bucket and n_b - 1.

    Notebook: 07_balanced_hashing.ipynb
    """
    for k, (codes, K) in enumerate(_code_cases() + [(np.array([3, 3, 3, 7, 9, 9, 11]), 4)]):
        n = np.unique(codes, return_counts=True)[1].astype(np.float64)
        N = n.sum()
        want = float((n ** 2).sum() / N)
        try:
            got = float(np.asarray(your_fn(codes.copy())).item())
        except Exception as e:
            raise ExerciseError(f"expected_candidates raised {type(e).__name__}: {e} (return one number)")
        if abs(got - want) <= 1e-6 * max(1.0, want):
            continue
        where = f"case {k} (N={int(N)}, {len(n)} buckets used): got {got:.6g}, expected {want:.6g}"
        variants = [
            (N / len(n), "that is the mean size of the buckets in use; but a query falls in bucket b with "
                         "probability n_b / N (it is distributed like the data), so big buckets count more: "
                         "sum_b (n_b / N) * n_b"),
            (want / N, "that is the probability that two random items share a bucket; multiply by N to count "
                       "candidates"),
            (want * N, "divide by N: sum_b n_b^2 / N"),
            (n.max(), "that is the largest bucket, the worst case; the expectation weighs every bucket by n_b / N"),
            (float((n * (n - 1)).sum() / N), "you used n_b - 1: a query is not in the database, it scores all n_b "
                                             "items of its bucket"),
        ]
        for value, why in variants:
            if abs(got - value) <= 1e-6 * max(1.0, abs(value)) and abs(value - want) > 1e-9:
                raise ExerciseError(f"{where}: {why}")
        raise ExerciseError(where)
    _ok("expected_candidates")


# ---- solutions: the notebook's exercises answered (`make test` runs it with them)

def solution_bucket_entropy(codes, K):
    """Exercise 1: the bucket occupancy's entropy in bits over log2 min(N, 2^K)."""
    _, n = np.unique(codes, return_counts=True)
    p = n / n.sum()
    return float(-(p * np.log2(p)).sum() / np.log2(min(len(codes), 2 ** K)))


def solution_pack_codes(logits):
    """Exercise 2: one integer per row, bit k set where logit k > 0."""
    K = logits.shape[1]
    bits = (logits > 0).astype(np.uint64)
    return (bits << np.arange(K, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)


def solution_expected_candidates(codes):
    """Exercise 3: sum of squared bucket sizes over N."""
    _, n = np.unique(codes, return_counts=True)
    return float((n.astype(np.float64) ** 2).sum() / n.sum())
