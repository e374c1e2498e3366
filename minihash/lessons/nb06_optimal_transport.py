"""Notebook 06: optimal transport, Sinkhorn and the balanced assignment of a batch to the 2^K hash codes.

Transport plans, the exact (Kantorovich) problem, entropic regularisation and Sinkhorn-Knopp, and the
balanced assignment that keeps hash codes from collapsing (SwAV's, as Singh et al. 2023 use it). Figures:
a plan between two point clouds and as a matrix, items per code, and bucket sizes (also read in 07 and 08).
Exercises: Sinkhorn on the bit-factorised kernel, never forming the (B, 2^K) matrix (against POT's `ot.sinkhorn`
and `minihash.ot.balanced_assignment`), and the per-bit targets q from those factors (against its q).

References: M. Cuturi, NeurIPS 2013; G. Peyré, M. Cuturi, Computational Optimal Transport, 2019; M. Caron
et al., NeurIPS 2020 (SwAV); R. Flamary et al., JMLR 2021 (POT).
"""
from __future__ import annotations

import warnings

import numpy as np
import ot
import torch

from ..ot import balanced_assignment, bit_kernel, bucket_stats
from .common import ExerciseError, _audio_np, _fig_ax, _numpy, _ok, checker, exercise_decorator, passed

__all__ = ["plot_transport_plan", "plot_plan_matrix", "plot_ot_code_counts", "plot_bucket_sizes",
           "check_factored_sinkhorn", "check_bit_targets",
           "exercise", "passed", "solution_factored_sinkhorn", "solution_bit_targets"]

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

def _bit_kernel_cases(seed: int, sizes):
    """For each (B, K, eps, n_iter) of `sizes`: random code logits (B, K) with per-bit biases, and the
    two halves' kernels Lo, Hi (`bit_kernel`), as the checkers draw them."""
    g = torch.Generator().manual_seed(seed)
    for B, K, eps, n_iter in sizes:
        logits = torch.randn(B, K, generator=g, dtype=torch.float64) + 1.5 * torch.randn(K, generator=g,
                                                                                       dtype=torch.float64)
        h = torch.tanh(logits)
        up, down = torch.exp(h / (K * eps)), torch.exp(-h / (K * eps))
        Lo, Hi = bit_kernel(up[:, :K // 2], down[:, :K // 2]), bit_kernel(up[:, K // 2:], down[:, K // 2:])
        yield B, K, eps, n_iter, logits, Lo, Hi


def _factored_reference(Lo, Hi, n_iter, rows_first=False, with_u=True, row_mass=None):
    """(u, W) of n_iter factorised Sinkhorn iterations, columns first (and the usual mistakes)."""
    B, n_lo, n_hi = Lo.shape[0], Lo.shape[1], Hi.shape[1]
    a = 1.0 / B if row_mass is None else row_mass
    u, W = np.ones(B), np.ones((n_hi, n_lo))
    for _ in range(n_iter):
        if rows_first:
            u = a / (Hi * (Lo @ W.T)).sum(1)
        W = (1.0 / (n_hi * n_lo)) / (Hi.T @ ((u[:, None] if with_u else 1.0) * Lo))  # (n_hi, n_lo) column sums
        if not rows_first:
            u = a / (Hi * (Lo @ W.T)).sum(1)  # (B,) row sums Hi_i^T W Lo_i
    return u, W


def _factored_plan(u, W, Lo, Hi) -> np.ndarray:
    """The (B, n_hi * n_lo) plan of the scalings, code j = j_lo + n_lo j_hi."""
    return (u[:, None, None] * Hi[:, :, None] * Lo[:, None, :] * W[None]).reshape(len(u), -1)


@checker
def check_factored_sinkhorn(fn) -> None:
    """Check `fn(Lo, Hi, n_iter) -> (u, W)`: Sinkhorn on the factorised kernel of the balanced assignment.

    Item i's kernel entry for code j = j_lo + n_lo j_hi is Hi[i, j_hi] * Lo[i, j_lo] ((B, n_lo) and (B, n_hi)
    float64 tensors, as notebook 06 builds them with `minihash.ot.bit_kernel`); from u = 1, n_iter iterations,
    columns first, with every item sending 1/B and every code receiving 1/(n_hi n_lo). The plan
    u_i Hi[i, j_hi] Lo[i, j_lo] W[j_hi, j_lo] is compared with POT's `ot.sinkhorn` on the full kernel and with
    `minihash.ot.balanced_assignment`; names the halves swapped, the rows first, u left out, the row mass 1
    and an iteration more or less.

    Notebook: 06_optimal_transport.ipynb
    """
    sizes = ((12, 4, 0.05, 3), (20, 5, 0.1, 2), (9, 6, 0.02, 5))  # B, K, eps, n_iter
    for B, K, eps, n_iter, logits, Lo, Hi in _bit_kernel_cases(6, sizes):
        Lo_np, Hi_np = Lo.numpy(), Hi.numpy()
        full = (Hi_np[:, :, None] * Lo_np[:, None, :]).reshape(B, -1)  # (B, 2^K) the kernel, the long way
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # POT warns that a fixed number of iterations did not converge
            want = ot.sinkhorn(np.full(B, 1 / B), np.full(2 ** K, 2.0 ** -K), -np.log(full), 1.0,
                               numItermax=n_iter, stopThr=0)
        np.testing.assert_allclose(want, balanced_assignment(logits, eps, n_iter, return_plan=True)[1].numpy(),
                                   rtol=1e-9, atol=1e-15)
        out = fn(Lo.clone(), Hi.clone(), n_iter)
        case = f"B={B}, K={K} (n_lo={Lo.shape[1]}, n_hi={Hi.shape[1]}), {n_iter} iterations"
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise ExerciseError(f"{case}: return the pair (u, W): u (B,) and W (n_hi, n_lo), not the plan")
        u, W = _audio_np(out[0]).ravel(), _audio_np(out[1])
        if u.shape != (B,) or W.shape != (Hi.shape[1], Lo.shape[1]):
            hint = " (the halves swapped: W is indexed [j_hi, j_lo])" if W.shape == (Lo.shape[1], Hi.shape[1]) else ""
            raise ExerciseError(f"{case}: u should be (B,) = ({B},) and W (n_hi, n_lo) = {(Hi.shape[1], Lo.shape[1])}, "
                                f"got {u.shape} and {W.shape}{hint}")
        got = _factored_plan(u, W, Lo_np, Hi_np)
        if np.allclose(got, want, rtol=1e-6, atol=1e-14):
            continue
        variants = [
            (_factored_reference(Hi_np, Lo_np, n_iter), "the halves are swapped: code j = j_lo + n_lo j_hi, so the "
             "column sums are Hi^T diag(u) Lo, an (n_hi, n_lo) table indexed [j_hi, j_lo]"),
            (_factored_reference(Lo_np, Hi_np, n_iter, rows_first=True), "the rows are updated first: start with the "
             "columns (W from u = 1), then the rows, so that every item's row is exact at the end"),
            (_factored_reference(Lo_np, Hi_np, n_iter, with_u=False), "u is left out of the column sums: they are "
             "sum_i u_i Hi[i, j_hi] Lo[i, j_lo] = Hi^T diag(u) Lo"),
            (_factored_reference(Lo_np, Hi_np, n_iter, row_mass=1.0), "every item sends 1, not 1/B: the plan's rows "
             "must sum to 1/B"),
            (_factored_reference(Lo_np, Hi_np, n_iter + 1), f"that is {n_iter + 1} iterations: run n_iter = {n_iter}"),
            (_factored_reference(Lo_np, Hi_np, n_iter - 1), f"that is {n_iter - 1} iterations: run n_iter = {n_iter}"),
        ]
        for (vu, vW), why in variants:
            if vW.shape == W.shape and np.allclose(got, _factored_plan(vu, vW, Lo_np, Hi_np), rtol=1e-6, atol=1e-14):
                raise ExerciseError(f"{case}: {why}")
        rows = got.sum(1) * B
        raise ExerciseError(f"{case}: the plan differs from ot.sinkhorn's by up to {np.abs(got - want).max():.2g} "
                            f"(B x row sums {rows.min():.4g} ... {rows.max():.4g}): W = (1 / 2^K) / (Hi^T diag(u) Lo), "
                            "then u = (1 / B) / (row sums Hi_i^T W Lo_i)")
    _ok("factored_sinkhorn")


def _bit_targets(u, W, Lo, Hi, times_B=True, with_u=True, hi_first=False, set_bit=True, msb_first=False):
    """q (B, K) of the plan u_i Hi[i, j_hi] Lo[i, j_lo] W[j_hi, j_lo], from the factors (or a usual mistake)."""
    B, n_lo, n_hi = Lo.shape[0], Lo.shape[1], Hi.shape[1]
    k_lo, k_hi = n_lo.bit_length() - 1, n_hi.bit_length() - 1
    uu = u[:, None] if with_u else 1.0
    mass_lo, mass_hi = uu * Lo * (Hi @ W), uu * Hi * (Lo @ W.T)  # (B, n_lo), (B, n_hi): each row sums to 1/B

    def bits(n, k):  # (n, k) bit k of code j, as 0 / 1
        return (np.arange(n)[:, None] >> (np.arange(k)[::-1] if msb_first else np.arange(k))) & 1

    q_lo, q_hi = mass_lo @ bits(n_lo, k_lo), mass_hi @ bits(n_hi, k_hi)
    scale = B if times_B else 1.0
    q = scale * np.concatenate([q_hi, q_lo] if hi_first else [q_lo, q_hi], axis=1)
    return q if set_bit else scale * mass_lo.sum(1, keepdims=True) - q  # the mass with bit k unset


_TARGET_MISTAKES = [  # (how the variant differs, the explanation)
    ({"times_B": False}, "you return the plan's mass on the codes with bit k set; each row of the plan sums to 1/B, "
                         "so q, a probability, is B times that mass"),
    ({"hi_first": True}, "the halves are swapped: bits 0 .. k_lo - 1 are the low half (Lo, j_lo), the high half's "
                         "bits come after them"),
    ({"with_u": False}, "u is left out: the plan is u_i Hi[i, j_hi] Lo[i, j_lo] W[j_hi, j_lo]"),
    ({"set_bit": False}, "you return the probability that bit k is -1: q is the mass on the codes whose bit k is SET "
                         "(v_k = +1)"),
    ({"msb_first": True}, "the bits of a half are read the other way round: bit k of j_lo is (j_lo >> k) & 1, bit 0 "
                          "the lowest"),
]


@checker
def check_bit_targets(fn) -> None:
    """Check `fn(u, W, Lo, Hi) -> q`: the balanced plan's per-bit targets, from its factors, without the plan.

    q[i, k] = B x the mass of item i's row on the codes whose bit k is set, for the plan u_i Hi[i, j_hi]
    Lo[i, j_lo] W[j_hi, j_lo], code j = j_lo + n_lo j_hi (bits 0 .. k_lo - 1 in j_lo, the rest in j_hi).
    Compared with `minihash.ot.balanced_assignment`'s q and with B P @ bits on the full plan; names the missing
    factor B, the halves swapped, u left out, the probability of -1 and the bits of a half read backwards.

    Notebook: 06_optimal_transport.ipynb
    """
    cases = []
    sizes = ((12, 4, 0.05, 3), (20, 5, 0.1, 2), (9, 6, 0.05, 4))  # B, K, eps, n_iter
    for B, K, eps, n_iter, logits, Lo, Hi in _bit_kernel_cases(7, sizes):
        u, W = _factored_reference(Lo.numpy(), Hi.numpy(), n_iter)
        q_pkg, P = balanced_assignment(logits, eps, n_iter, return_plan=True)
        want = B * P.numpy() @ ((np.arange(2 ** K)[:, None] >> np.arange(K)) & 1)  # the long way
        np.testing.assert_allclose(want, q_pkg.numpy(), rtol=1e-9, atol=1e-12)
        got = _audio_np(fn(torch.as_tensor(u), torch.as_tensor(W), Lo.clone(), Hi.clone()))
        case = f"B={B}, K={K} (n_lo={Lo.shape[1]}, n_hi={Hi.shape[1]})"
        if got.shape != want.shape:
            raise ExerciseError(f"{case}: q should be (B, K) = {want.shape}, got {got.shape}")
        cases.append((got, want, (u, W, Lo.numpy(), Hi.numpy()), case))
    for got, want, args, case in cases:
        if np.allclose(got, want, rtol=1e-6, atol=1e-9):
            continue
        for how, why in _TARGET_MISTAKES:
            if np.allclose(got, _bit_targets(*args, **how), rtol=1e-6, atol=1e-9):
                raise ExerciseError(f"{case}: {why}")
        k = int(np.argmax(np.abs(got - want).max(0)))
        raise ExerciseError(f"{case}: q differs from balanced_assignment's by up to {np.abs(got - want).max():.2g}, "
                            f"most at bit {k}: q[:, k] = B sum_j P[:, j] ((j >> k) & 1)")
    _ok("bit_targets")


# ---- solutions: the notebook's exercises answered (`make test` runs it with them)

def solution_factored_sinkhorn(Lo, Hi, n_iter):
    """Exercise 1: Sinkhorn on the factorised kernel, columns first; the plan is u_i Hi[i, j_hi] Lo[i, j_lo] W[j_hi, j_lo]."""
    B, n = Lo.shape[0], Lo.shape[1] * Hi.shape[1]
    u = torch.ones(B, dtype=Lo.dtype)
    for _ in range(n_iter):
        W = (1.0 / n) / (Hi.T @ (u[:, None] * Lo))  # (n_hi, n_lo): every code receives 1/2^K
        u = (1.0 / B) / (Hi * (Lo @ W.T)).sum(1)  # (B,): every item sends 1/B
    return u, W


def solution_bit_targets(u, W, Lo, Hi):
    """Exercise 2: B x the plan's mass on the codes with bit k set, from the factors (the plan never formed)."""
    B, n_lo, n_hi = Lo.shape[0], Lo.shape[1], Hi.shape[1]
    mass_lo = u[:, None] * Lo * (Hi @ W)  # (B, n_lo): item i's mass by the setting of its low bits
    mass_hi = u[:, None] * Hi * (Lo @ W.T)  # (B, n_hi): by its high bits
    bits_lo = (torch.arange(n_lo)[:, None] >> torch.arange(n_lo.bit_length() - 1)) & 1  # (n_lo, k_lo)
    bits_hi = (torch.arange(n_hi)[:, None] >> torch.arange(n_hi.bit_length() - 1)) & 1  # (n_hi, k_hi)
    return B * torch.cat([mass_lo @ bits_lo.to(Lo.dtype), mass_hi @ bits_hi.to(Hi.dtype)], dim=1)
