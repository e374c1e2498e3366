"""Notebook 07: balanced hashing, what the optimal-transport loss buys at search time.

Two models trained with the same budget, with and without the OT hash loss, against random-hyperplane LSH:
bucket balance and the share of the database a lookup scores. Figures: top-1 against the share scored
(bucket sizes are notebook 06's, training curves notebook 05's). Exercises: the Hamming distance between packed
codes (how far a distortion moves a window's code), the probability that L tables of K random hyperplanes keep
a pair together, and the expected candidates of a probe that also visits the K buckets one bit away.

References: A. Singh, K. Demuynck, V. Arora, ICASSP 2023; M. Charikar, STOC 2002 (random-hyperplane LSH);
Q. Lv et al., VLDB 2007 (multi-probe LSH).
"""
from __future__ import annotations

import numpy as np
from scipy.stats import norm

from ..ot import code_bits
from .common import ExerciseError, _fig_ax, _ok, checker, exercise_decorator, passed
from .nb05_contrastive_learning import plot_training_curves
from .nb06_optimal_transport import plot_bucket_sizes

__all__ = ["plot_training_curves", "plot_bucket_sizes", "plot_search_tradeoff", "wilson_interval",
           "paired_difference", "compare", "at_equal_share", "check_hamming",
           "check_lsh_collision", "check_radius1_candidates",
           "exercise", "passed", "solution_hamming", "solution_lsh_collision", "solution_radius1_candidates"]

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

def _hamming_cases():
    """(c1, c2, K): random codes with their top bits set, pairs a few flips apart, identical pairs."""
    rng = np.random.default_rng(5)
    out = []
    for K, N in ((16, 300), (32, 200), (5, 64)):
        c1 = rng.integers(0, 2 ** K, N, dtype=np.int64).astype(np.uint64)
        flips = (rng.random((N, K)) < rng.uniform(0.02, 0.4, (N, 1))) << np.arange(K)  # (N, K) a few bits each
        c2 = c1 ^ flips.sum(1).astype(np.uint64)
        c2[:5] = c1[:5]  # some codes kept
        out.append((c1, c2, K))
    return out


@checker
def check_hamming(your_fn) -> None:
    """Check `your_fn(c1, c2, K) -> (N,) bit flips`: the Hamming distance between packed K-bit codes.

    c1 and c2 are (N,) unsigned integer codes (as `minihash.ot.pack_codes` packs them); the answer counts
    the bits k < K in which they differ, compared with a count bit by bit (`minihash.ot.code_bits`). Names
    the XOR returned uncounted, the numeric difference, the bits that agree, OR/AND counted and only the
    low 8 bits counted.

    Notebook: 07_balanced_hashing.ipynb
    """
    for c1, c2, K in _hamming_cases():
        b1, b2 = code_bits(c1, K), code_bits(c2, K)  # (N, K) 0/1
        want = (b1 != b2).sum(1)
        try:
            got = np.asarray(your_fn(c1.copy(), c2.copy(), K))
        except Exception as e:
            raise ExerciseError(f"hamming raised {type(e).__name__}: {e} (inputs: two (N,) uint64 arrays and K)")
        case = f"K={K}"
        if got.shape != want.shape:
            raise ExerciseError(f"{case}: expected one count per pair, shape {want.shape}, got {got.shape}")
        if np.array_equal(got.astype(np.float64), want):
            continue
        x = (c1 ^ c2).astype(np.float64)
        variants = [
            (x, "that is the XOR itself, a number: count its set bits (np.bitwise_count, or ((x >> k) & 1) summed "
                "over k)"),
            (np.abs(c1.astype(np.float64) - c2.astype(np.float64)), "that is the numeric difference: two codes "
             "differing in their top bit are 2^(K-1) apart as numbers and 1 bit apart as codes; XOR, then count bits"),
            (K - want, "that counts the bits that AGREE: the distance counts those that differ"),
            ((b1 | b2).sum(1), "that counts the bits set in either code (OR): use XOR, set where they differ"),
            ((b1 & b2).sum(1), "that counts the bits set in both (AND): use XOR, set where they differ"),
            ((b1[:, :8] != b2[:, :8]).sum(1), "only the lowest 8 bits are counted (a cast to uint8, or "
             "np.unpackbits on one byte?): count all K bits"),
        ]
        for value, why in variants:
            if np.array_equal(got.astype(np.float64), np.asarray(value, dtype=np.float64)) and not np.array_equal(
                    value, want):
                raise ExerciseError(f"{case}: {why}")
        i = int(np.flatnonzero(got != want)[0])
        raise ExerciseError(f"{case}: pair {i}: {int(c1[i]):#b} and {int(c2[i]):#b} differ in {int(want[i])} bits, "
                            f"got {got[i]}")
    _ok("hamming")


def _collision(cos, K, L, angle=True, clip=True):
    c = np.clip(cos, -1, 1) if clip else cos
    p = 1 - (np.arccos(c) if angle else c) / np.pi  # one hyperplane keeps them on one side
    return 1 - (1 - p ** K) ** L


@checker
def check_lsh_collision(your_fn) -> None:
    """Check `your_fn(cos, K, L) -> probabilities`: two unit vectors share a bucket in at least one of L tables.

    Each table is K random hyperplanes (Charikar 2002): one keeps two vectors at angle theta = arccos(cos) on
    the same side with probability 1 - theta / pi, so a table's K-bit codes agree with probability
    p = (1 - theta / pi)^K, and at least one of L independent tables with 1 - (1 - p)^L. Checked against
    that formula (and a Monte Carlo draw of hyperplanes); names the cosine used for the angle, no power K,
    the union bound L p, a missing clip (cosines a rounding error above 1) and degrees.

    Notebook: 07_balanced_hashing.ipynb
    """
    cos = np.r_[np.linspace(-0.9, 0.99, 12), 1.0 + 2e-16, 1.0]  # the last two: a rounding error above 1, and 1
    rng = np.random.default_rng(1)
    v = rng.standard_normal((20000, 2))  # Monte Carlo: random directions in the plane of the two vectors
    a, b = np.array([1.0, 0.0]), np.array([0.6, 0.8])  # cosine 0.6
    same = np.mean(np.sign(v @ a) == np.sign(v @ b))
    assert abs(same - (1 - np.arccos(0.6) / np.pi)) < 0.01
    for K, L in ((16, 1), (8, 4), (1, 1), (12, 20)):
        want = _collision(cos, K, L)
        with np.errstate(invalid="ignore"):
            try:
                got = np.asarray(your_fn(cos.copy(), K, L), dtype=np.float64)
            except Exception as e:
                raise ExerciseError(f"lsh_collision raised {type(e).__name__}: {e} (inputs: an array, K, L)")
        case = f"K={K}, L={L}"
        if got.shape != want.shape:
            raise ExerciseError(f"{case}: expected one probability per cosine, shape {want.shape}, got {got.shape}")
        if np.allclose(got, want, rtol=1e-9, atol=1e-12):
            continue
        if np.isnan(got).any():
            raise ExerciseError(f"{case}: NaN for cosine {float(cos[np.isnan(got)][0])!r}: a dot product of unit vectors can "
                                "exceed 1 by a rounding error; clip the cosines to [-1, 1] before arccos")
        theta = np.arccos(np.clip(cos, -1, 1))
        variants = [
            (_collision(cos, K, L, angle=False), "the cosine is used as the angle: theta = arccos(cos), and a bit "
             "agrees with probability 1 - theta / pi"),
            (_collision(cos, 1, L), "no power K: all K bits of a table must agree, p = (1 - theta / pi)^K"),
            (_collision(cos, K, 1), "L is ignored: that is one table; with L independent ones, 1 - (1 - p)^L"),
            (np.minimum(1.0, L * (1 - theta / np.pi) ** K), "L p is the union bound, an upper limit: the tables are "
             "independent, so P(at least one) = 1 - (1 - p)^L"),
            ((1 - theta / np.pi) ** (K * L), "that asks every one of the L tables to agree: a query finds its "
             "window if ANY table does, 1 - (1 - p)^L"),
            (1 - (1 - (1 - np.degrees(theta) / np.pi) ** K) ** L, "the angle is in degrees: arccos gives radians, "
             "and 1 - theta / pi needs them"),
        ]
        for value, why in variants:
            with np.errstate(invalid="ignore"):
                hit = np.allclose(got, value, rtol=1e-9, atol=1e-12) and not np.allclose(value, want)
            if hit:
                raise ExerciseError(f"{case}: {why}")
        i = int(np.argmax(np.abs(got - want)))
        raise ExerciseError(f"{case}: for cosine {cos[i]:.3g} got {got[i]:.6g}, expected {want[i]:.6g} = "
                            "1 - (1 - (1 - arccos(cos) / pi)^K)^L")
    _ok("lsh_collision")


def _radius1(codes, K, own=True, neighbours=True, flip="xor", weighted=True):
    """Expected candidates of a probe of a query's bucket and its K one-bit neighbours, by brute force."""
    b = code_bits(np.asarray(codes), K)  # (N, K)
    if flip == "xor":
        d = (b[:, None, :] != b[None, :, :]).sum(-1)  # (N, N) Hamming distances
        hit = (d == 0) * own + (d == 1) * neighbours
    else:  # the neighbours as c + 2^k
        c = np.asarray(codes).astype(np.int64)
        nb = (c[:, None] + (1 << np.arange(K))[None, :])  # (N, K)
        hit = (c[:, None] == c[None, :]) * own + (nb[:, :, None] == c[None, None, :]).sum(1) * neighbours
    per_query = hit.sum(1)  # (N,) candidates of each window as a query
    if weighted:
        return float(per_query.mean())
    _, first = np.unique(codes, return_index=True)
    return float(per_query[first].mean())  # one query per bucket in use


@checker
def check_radius1_candidates(your_fn) -> None:
    """Check `your_fn(codes, K) -> float`: the expected candidates when a probe visits the query's bucket
    and the K buckets one bit away, queries distributed like the data.

    (1 / N) sum over windows i of the windows whose code is at Hamming distance 0 or 1 from code i, against
    that brute-force count over all pairs. Names the query's own bucket left out, the neighbours' sizes
    taken as the own bucket's, the neighbours found by adding 2^k instead of flipping bit k, the mean over
    buckets in use, and one probe only.

    Notebook: 07_balanced_hashing.ipynb
    """
    rng = np.random.default_rng(11)
    cases = [(rng.integers(0, 16, 300) | (rng.integers(0, 16, 300) & 3), 4),
             (np.minimum(rng.geometric(0.1, 800), 255), 8),
             (rng.integers(0, 2 ** 10, 1500) >> rng.integers(0, 5, 1500), 10),
             (np.array([0, 0, 0, 1, 2, 3, 3, 7, 12]), 4)]
    for k, (codes, K) in enumerate(cases):
        codes = codes.astype(np.uint64)
        want = _radius1(codes, K)
        try:
            got = float(np.asarray(your_fn(codes.copy(), K)).item())
        except Exception as e:
            raise ExerciseError(f"radius1_candidates raised {type(e).__name__}: {e} (return one number)")
        if abs(got - want) <= 1e-9 * max(1.0, want):
            continue
        _, n = np.unique(codes, return_counts=True)
        one = float((n.astype(np.float64) ** 2).sum() / n.sum())
        where = f"case {k} (N={len(codes)}, K={K}): got {got:.6g}, expected {want:.6g}"
        variants = [
            (_radius1(codes, K, own=False), "the query's own bucket is left out: probe it AND its K neighbours"),
            (one, "that is one probe, sum_b n_b^2 / N: add the windows in the K buckets one bit away"),
            ((K + 1) * one, "each neighbour bucket has its own size (often 0): look up n at code ^ (1 << k), do not "
                            "reuse the query's own n_b"),
            (_radius1(codes, K, flip="add"), "the neighbours are code + 2^k: that carries into the next bit when bit "
                                             "k is set; flip bit k with XOR, code ^ (1 << k)"),
            (_radius1(codes, K, weighted=False), "that is the mean over buckets in use: a query lands in bucket b with "
                                                 "probability n_b / N, so weigh each bucket's total by n_b / N"),
        ]
        for value, why in variants:
            if abs(got - value) <= 1e-9 * max(1.0, value) and abs(value - want) > 1e-9 * max(1.0, want):
                raise ExerciseError(f"{where}: {why}")
        raise ExerciseError(where)
    _ok("radius1_candidates")


# ---- solutions: the notebook's exercises answered (`make test` runs it with them)

def solution_hamming(c1, c2, K):
    """Exercise 1: the bits k < K in which c1 and c2 differ."""
    x = (np.asarray(c1) ^ np.asarray(c2)).astype(np.uint64)
    return sum(((x >> np.uint64(k)) & np.uint64(1)).astype(np.int64) for k in range(K))


def solution_lsh_collision(cos, K, L):
    """Exercise 2: P(same bucket in at least one of L tables of K random-hyperplane bits)."""
    p = (1 - np.arccos(np.clip(cos, -1.0, 1.0)) / np.pi) ** K  # one table: all K bits agree
    return 1 - (1 - p) ** L


def solution_radius1_candidates(codes, K):
    """Exercise 3: (1 / N) sum_b n_b (n_b + sum_k n_(b ^ 2^k)), the bucket and its K one-bit neighbours."""
    u, n = np.unique(np.asarray(codes).astype(np.int64), return_counts=True)
    size = dict(zip(u.tolist(), n.tolist()))
    total = [nb * (nb + sum(size.get(b ^ (1 << k), 0) for k in range(K))) for b, nb in zip(u.tolist(), n.tolist())]
    return sum(total) / n.sum()
