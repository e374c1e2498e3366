"""Notebook 06: optimal transport, Sinkhorn and the balanced assignment of a batch to the 2^K hash codes.

Transport plans, the exact (Kantorovich) problem, entropic regularisation and Sinkhorn-Knopp, and the
balanced assignment that keeps hash codes from collapsing (SwAV's, as Singh et al. 2023 use it). Figures:
a plan between two point clouds and as a matrix, items per code, and bucket sizes (also read in 07 and 08).
Exercises: Sinkhorn (against POT's `ot.sinkhorn`) and the balanced plan (against `minihash.ot.sinkhorn`).

References: M. Cuturi, NeurIPS 2013; G. Peyré, M. Cuturi, Computational Optimal Transport, 2019; M. Caron
et al., NeurIPS 2020 (SwAV); R. Flamary et al., JMLR 2021 (POT).
"""
from __future__ import annotations

import warnings

import numpy as np
import ot
import torch
from scipy.special import logsumexp

from ..ot import bucket_stats, sinkhorn
from .common import ExerciseError, _audio_np, _fig_ax, _numpy, _ok, checker, exercise_decorator, passed

__all__ = ["plot_transport_plan", "plot_plan_matrix", "plot_ot_code_counts", "plot_bucket_sizes", "check_sinkhorn",
           "check_balanced_assignment",
           "exercise", "passed", "solution_sinkhorn", "solution_balanced_plan"]

exercise = exercise_decorator(globals())  # `@lesson.exercise` in the notebook: see common


# ---- figures

def plot_transport_plan(xs, xt, P, ax=None, figsize=(5, 4.5), title="transport plan", a=None, b=None,
                        min_share: float = 1e-3):
    """Two 2-d point clouds and the mass a plan moves between them, one line per pair.

    Args:
        xs: (n, 2) source points. xt: (m, 2) target points.
        P: (n, m) transport plan; line i-j is drawn with opacity and width growing with P[i, j].
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title: the title.
        a, b: (n,), (m,) masses of the points (marker areas); uniform if None.
        min_share: pairs carrying less than this share of the largest entry are not drawn.

    Returns:
        (fig, ax).

    Notebook: 06_optimal_transport.ipynb
    """
    xs, xt = np.asarray(xs), np.asarray(xt)
    P = _numpy(P)
    n, m = P.shape
    a = np.full(n, 1.0 / n) if a is None else np.asarray(a)
    b = np.full(m, 1.0 / m) if b is None else np.asarray(b)
    fig, ax = _fig_ax(ax, figsize)
    top = P.max()
    for i, j in zip(*np.nonzero(P > min_share * top)):
        w = P[i, j] / top
        ax.plot([xs[i, 0], xt[j, 0]], [xs[i, 1], xt[j, 1]], color="k", alpha=float(0.1 + 0.8 * w), lw=0.5 + 2.5 * w)
    ax.scatter(xs[:, 0], xs[:, 1], s=2000 * a, c="C0", label="source (a)", zorder=3, edgecolors="w")
    ax.scatter(xt[:, 0], xt[:, 1], s=2000 * b, c="C1", label="target (b)", zorder=3, edgecolors="w", marker="s")
    ax.set(title=title, xlabel="x", ylabel="y", aspect="equal")
    ax.legend(fontsize="small", loc="best")
    return fig, ax


def plot_plan_matrix(P, ax=None, figsize=(4.5, 4), title="plan P", xlabel="target j", ylabel="source i",
                     cmap="Greys"):
    """A transport plan as an image, with its row and column sums in the title.

    Args:
        P: (n, m) plan (numpy or torch).
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title, xlabel, ylabel: labels.
        cmap: colour map.

    Returns:
        (fig, ax).

    Notebook: 06_optimal_transport.ipynb
    """
    P = _numpy(P)
    fig, ax = _fig_ax(ax, figsize)
    im = ax.imshow(P, cmap=cmap, aspect="auto", interpolation="nearest", vmin=0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="mass")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return fig, ax


def plot_ot_code_counts(counts: dict, K: int, ax=None, figsize=(8, 3), title=None):
    """Items per code for a few ways of coding a batch (2^K bars per way; small K only).

    Args:
        counts: {label: (2^K,) items (or expected items) per code}.
        K: bits (codes are labelled by their bits, bit K-1 first).
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title: the title.

    Returns:
        (fig, ax). A dashed line marks the uniform share B / 2^K.

    Notebook: 06_optimal_transport.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)
    n_codes, n_ways = 2 ** K, len(counts)
    width = 0.8 / n_ways
    for k, (label, c) in enumerate(counts.items()):
        c = np.asarray(c, dtype=float)
        ax.bar(np.arange(n_codes) + (k - (n_ways - 1) / 2) * width, c, width, label=label)
    B = float(np.asarray(next(iter(counts.values())), dtype=float).sum())
    ax.axhline(B / n_codes, color="k", ls="--", lw=1, label=f"uniform: B / 2^K = {B / n_codes:.3g}")
    ax.set_xticks(np.arange(n_codes), [format(j, f"0{K}b") for j in range(n_codes)], fontsize="small")
    ax.set(xlabel="code (bits K-1 ... 0)", ylabel="items", title=title or f"items per code, K = {K}")
    ax.legend(fontsize="small")
    return fig, ax


def plot_bucket_sizes(codes, K: int, ax=None, figsize=(8, 3.5), title=None):
    """Sorted bucket sizes of one or more code sets, log-log: balanced codes stay flat.

    Args:
        codes: dict name -> (N,) integer codes (or one array).
        K: bits per code (2^K buckets).
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title: axes title.

    Returns:
        (fig, ax).

    Notebook: 06_optimal_transport.ipynb, 07_balanced_hashing.ipynb, 08_search.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)
    codes = codes if isinstance(codes, dict) else {"codes": codes}
    n = 0
    for name, c in codes.items():
        c = np.asarray(c).ravel()
        _, counts = np.unique(c, return_counts=True)
        sizes = np.sort(counts)[::-1]
        st = bucket_stats(c, K)
        # bucket r spans [r, r + 1) on the rank axis, so that even a single bucket shows
        ax.stairs(sizes, np.arange(1, len(sizes) + 2), baseline=None, lw=1.8,
                  label=f"{name}: entropy {st['entropy_norm']:.2f}, largest {st['largest']}, "
                        f"{st['n_buckets_used']} bucket{'s' if st['n_buckets_used'] != 1 else ''}")
        n = max(n, len(c))
    if n:
        level = max(1.0, n / 2 ** K)  # a perfect spread: N / 2^K per bucket, or one item in each of N buckets
        ax.hlines(level, 1, min(n, 2 ** K) + 1, color="k", ls="--", lw=1,
                  label=f"perfectly balanced ({level:.3g} each)")
        ax.set_ylim(0.7, 1.5 * n)
    ax.set(xscale="log", yscale="log", xlabel="bucket rank (largest first)", ylabel="items in bucket",
           title=title or f"bucket sizes, K = {K} bits ({2 ** K} buckets)")
    ax.legend(fontsize="small")
    return fig, ax


# ---- exercises

def _ot_marginal_report(P, a, b) -> tuple[float, float]:
    """Largest error of the row sums against a and of the column sums against b."""
    return float(np.abs(P.sum(1) - a).max()), float(np.abs(P.sum(0) - b).max())


@checker
def check_sinkhorn(fn) -> None:
    """Check `fn(a, b, C, eps, n_iter) -> P`: the entropic OT plan, against POT's `ot.sinkhorn`.

    a (n,), b (m,) are the marginals (positive, summing to 1), C (n, m) the cost, eps the
    regularisation (the plan minimises <P, C> - eps H(P)) and n_iter the iterations to run
    (enough to converge here). P is (n, m) with P.sum(1) == a and P.sum(0) == b.

    Notebook: 06_optimal_transport.ipynb
    """
    rng = np.random.default_rng(6)
    for n, m, eps, n_iter in ((7, 9, 0.05, 300), (5, 12, 0.01, 1500), (10, 10, 0.5, 100)):
        xs, xt = rng.normal(size=(n, 2)), rng.normal(size=(m, 2)) + 1.0
        C = ot.dist(xs, xt)
        C /= C.max()  # costs in [0, 1], so eps has its usual scale
        a, b = rng.uniform(0.5, 1.5, n), rng.uniform(0.5, 1.5, m)
        a, b = a / a.sum(), b / b.sum()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # POT warns when a variant below does not converge
            want = ot.sinkhorn(a, b, C, eps, numItermax=n_iter, stopThr=0)
            got = _audio_np(fn(a.copy(), b.copy(), C.copy(), eps, n_iter))
            case = f"n={n}, m={m}, eps={eps}"
            if got.shape != want.shape:
                raise ExerciseError(f"{case}: P should be (n, m) = {want.shape}, got {got.shape}")
            if not np.isfinite(got).all():
                raise ExerciseError(f"{case}: P has NaN or inf values: either exp(-C / eps) underflowed to 0 "
                                    "(small eps: work in the log domain, with logsumexp), or the scalings blew up "
                                    "because the masses disagree (u = a / (K v) and v = b / (K^T u), with a and b)")
            if np.allclose(got, want, rtol=1e-5, atol=1e-9):
                continue
            if (got < -1e-12).any():
                raise ExerciseError(f"{case}: P has negative entries: a plan moves non-negative mass")
            variants = [
                (ot.sinkhorn(a, b, C, 1.0 / eps, numItermax=n_iter, stopThr=0), "eps is used as 1/eps: the "
                 "kernel is exp(-C / eps) (a small eps gives a sharp plan), not exp(-C * eps)"),
                (ot.sinkhorn(a, b, -C, eps, numItermax=n_iter, stopThr=0), "the kernel is exp(+C / eps): mass "
                 "goes to the MOST expensive pairs; use exp(-C / eps)"),
                (ot.emd(a, b, C), "this is the exact (unregularised) plan: Sinkhorn gives the entropic one, "
                 "blurred by eps"),
                (np.outer(a, b), "this is the independent coupling a b^T (the plan for eps -> infinity): did the "
                 "kernel lose C?"),
            ]
        for value, why in variants:
            if np.allclose(got, value, rtol=1e-5, atol=1e-9):
                raise ExerciseError(f"{case}: {why}")
        row_err, col_err = _ot_marginal_report(got, a, b)
        if np.allclose(got.sum(0), 1.0 / m) and not np.allclose(b, 1.0 / m):
            raise ExerciseError(f"{case}: column marginals are uniform (1/m): they must be b")
        if np.allclose(got.sum(1), 1.0 / n) and not np.allclose(a, 1.0 / n):
            raise ExerciseError(f"{case}: row marginals are uniform (1/n): they must be a")
        close = np.abs(got - want).max() < 0.3 * want.max()
        if close and min(row_err, col_err) < 1e-9 < max(row_err, col_err):
            which = "column" if col_err > row_err else "row"
            raise ExerciseError(f"{case}: the {which} marginals are off by up to {max(row_err, col_err):.2g} while "
                                f"the other ones are exact: Sinkhorn stopped before converging; run all n_iter = "
                                f"{n_iter} iterations (each update fixes one marginal and disturbs the other)")
        if row_err > 1e-6 and col_err > 1e-6:
            raise ExerciseError(f"{case}: neither marginal is matched (rows off by {row_err:.2g}, columns by "
                                f"{col_err:.2g}): P = diag(u) K diag(v) with u = a / (K v), v = b / (K^T u)")
        if row_err > 1e-6 or col_err > 1e-6:
            which, err, want_name = ("row", row_err, "a") if row_err > col_err else ("column", col_err, "b")
            raise ExerciseError(f"{case}: the {which} marginals are not matched: P.sum({int(which == 'column')}) "
                                f"should equal {want_name} (largest error {err:.2g})")
        raise ExerciseError(f"{case}: both marginals are right but P is not the entropic plan (largest difference "
                            f"{np.abs(got - want).max():.2g}): check the kernel K = exp(-C / eps)")
    _ok("sinkhorn")


def _balanced_plan_reference(logits, eps, n_iter, bit_order=1, sign=1.0, squash=True):
    """The balanced plan on the full (B, 2^K) cost matrix, and variants with the usual mistakes."""
    B, K = logits.shape
    j = np.arange(2 ** K)
    shifts = np.arange(K) if bit_order == 1 else np.arange(K)[::-1]
    V = 2.0 * ((j[:, None] >> shifts[None, :]) & 1) - 1.0  # (2^K, K) vertex j, bit k at column k
    h = np.tanh(logits) if squash else logits
    C = -sign * (h @ V.T) / K  # (B, 2^K)
    return sinkhorn(torch.as_tensor(C), eps=eps, n_iter=n_iter, tol=0).numpy()


@checker
def check_balanced_assignment(fn) -> None:
    """Check `fn(logits, eps, n_iter) -> P`: the balanced assignment of a batch to the 2^K codes.

    logits is a (B, K) numpy array. Code j is the vertex v of {-1, +1}^K with v_k = +1 where
    bit k of j is set ((j >> k) & 1, bit 0 the lowest). The cost of item i and code j is
    -<v_j, tanh(logits_i)> / K; P (B, 2^K) is the entropic OT plan with every row summing to
    1/B and every column to 1/2^K (`minihash.ot.sinkhorn` on that cost, or
    `minihash.ot.balanced_assignment(..., return_plan=True)`).

    Notebook: 06_optimal_transport.ipynb
    """
    rng = np.random.default_rng(8)
    for B, K, eps, n_iter in ((24, 3, 0.1, 200), (40, 4, 0.05, 300), (16, 2, 0.2, 200)):
        logits = rng.normal(size=(B, K)) + rng.normal(size=K)  # a shared bias: the codes start collapsed
        want = _balanced_plan_reference(logits, eps, n_iter)
        got = _audio_np(fn(logits.copy(), eps, n_iter))
        case = f"B={B}, K={K}, eps={eps}"
        if got.shape != want.shape:
            raise ExerciseError(f"{case}: P should be (B, 2^K) = {want.shape}, got {got.shape}")
        if np.allclose(got, want, rtol=1e-4, atol=1e-9):
            continue
        variants = [
            (B * want, "you returned B * P (each row a distribution over codes): return the plan itself, rows "
             "summing to 1/B"),
            (_balanced_plan_reference(logits, eps, n_iter, bit_order=-1), "the codes number the bits the other way "
             "round: bit k of code j is (j >> k) & 1, bit 0 the lowest"),
            (_balanced_plan_reference(logits, eps, n_iter, sign=-1.0), "items go to the codes that disagree most: "
             "the cost is MINUS the agreement <v, tanh(l)> / K"),
            (_balanced_plan_reference(logits, eps, n_iter, squash=False), "the scores use the raw logits: use "
             "tanh(logits), the mean of each +-1 bit"),
            (_balanced_plan_reference(logits, eps / K, n_iter), "the scores are not divided by K: the cost is the "
             "MEAN agreement over bits, <v, tanh(l)> / K"),
        ]
        for value, why in variants:
            if np.allclose(got, value, rtol=1e-4, atol=1e-9):
                raise ExerciseError(f"{case}: {why}")
        row_err = float(np.abs(got.sum(1) - 1.0 / B).max())
        col_err = float(np.abs(got.sum(0) - 1.0 / 2 ** K).max())
        if col_err > 1e-6:
            raise ExerciseError(f"{case}: codes are not balanced: every code must receive 1/2^K = {1 / 2 ** K:.4g} "
                                f"(column sums range {got.sum(0).min():.4g} ... {got.sum(0).max():.4g})")
        if row_err > 1e-6:
            raise ExerciseError(f"{case}: every item must send 1/B = {1 / B:.4g} (row sums range "
                                f"{got.sum(1).min():.4g} ... {got.sum(1).max():.4g})")
        raise ExerciseError(f"{case}: the marginals are right but the plan differs from the reference by up to "
                            f"{np.abs(got - want).max():.2g}: check the cost -<v_j, tanh(l_i)> / K and eps")
    _ok("balanced_assignment")


# ---- solutions: the notebook's exercises answered (`make test` runs it with them)

def solution_sinkhorn(a, b, C, eps, n_iter):
    """Exercise 1: the entropic plan, in the log domain."""
    f, g = np.zeros_like(a), np.zeros_like(b)
    for _ in range(n_iter):
        g = eps * np.log(b) - eps * logsumexp((f[:, None] - C) / eps, axis=0)
        f = eps * np.log(a) - eps * logsumexp((g[None, :] - C) / eps, axis=1)
    return np.exp((f[:, None] + g[None, :] - C) / eps)


def solution_balanced_plan(logits, eps, n_iter):
    """Exercise 2: the (B, 2^K) balanced assignment of a batch to the corners of the cube."""
    B, K = logits.shape
    j = np.arange(2 ** K)
    V = 2.0 * ((j[:, None] >> np.arange(K)) & 1) - 1.0  # (2^K, K) bit k of code j, as -1 / +1
    C = -np.tanh(logits) @ V.T / K  # (B, 2^K)
    return solution_sinkhorn(np.full(B, 1 / B), np.full(2 ** K, 1 / 2 ** K), C, eps, n_iter)
