"""Notebook 05: contrastive learning, robust embeddings from pairs of a window and its distorted replica.

The NT-Xent loss of SimCLR, its temperature, and a live training run. Figures: one anchor's softmax over
the batch, the training curves (losses and validation scores), and notebook 04's similarity matrix for
clean against distorted windows. Exercises: the gradient of NT-Xent with respect to the similarities (against
autograd through `minihash.contrastive.nt_xent`: where the temperature sends the push on the negatives) and
top-1 retrieval by cosine similarity.

References: T. Chen et al., ICML 2020 (SimCLR); S. Chang et al., ICASSP 2021 (NAFP); A. van den Oord,
Y. Li, O. Vinyals, 2018 (InfoNCE); A. Singh, K. Demuynck, V. Arora, ICASSP 2023.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..contrastive import nt_xent
from .common import ExerciseError, _fig_ax, _numpy, _ok, checker, exercise_decorator, passed
from .nb04_patch_transformer import plot_similarity_matrix

__all__ = ["plot_similarity_matrix", "plot_contrastive_softmax", "plot_training_curves", "check_nt_xent_grad",
           "check_top1", "exercise", "passed", "solution_nt_xent_grad", "solution_top1"]

exercise = exercise_decorator(globals())  # `@lesson.exercise` in the notebook: see common


# ---- figures

def plot_contrastive_softmax(sims, positive: int, tau: float, ax=None, figsize=(8, 3)):
    """One anchor's softmax over the other samples of the batch at temperature `tau`.

    NT-Xent is the cross-entropy of this distribution against the positive: the bar
    of the positive (orange) should carry the mass, the negatives (blue) none.

    Args:
        sims: (M,) cosine similarities of the anchor to the M other samples.
        positive: index of the positive in `sims`.
        tau: temperature.
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.

    Returns:
        (fig, ax).

    Notebook: 05_contrastive_learning.ipynb
    """
    sims = np.asarray(sims, dtype=np.float64)
    logits = sims / tau
    p = np.exp(logits - logits.max())
    p /= p.sum()
    fig, ax = _fig_ax(ax, figsize)
    colors = ["C1" if j == positive else "C0" for j in range(len(p))]
    ax.bar(np.arange(len(p)), p, color=colors)
    ax.set(xlabel="other sample of the batch (orange: the positive)", ylabel="softmax weight", ylim=(0, 1),
           title=f"tau = {tau:.3g}: p(positive) = {p[positive]:.2f}, loss = {-np.log(p[positive]):.2f}")
    return fig, ax


def plot_training_curves(history, val_history=(), loss_keys=("loss",), val_keys=("val_top1",), smooth=10,
                         ax=None, figsize=(8, 3.5), title="training"):
    """Training losses (left axis, smoothed) and validation scores (right axis) against the step.

    Args:
        history: list of per-step dicts with "step" and the `loss_keys` (`Trainer.history`).
        val_history: list of dicts with "step" and the `val_keys` (`Trainer.val_history`).
        loss_keys: which logged losses to draw.
        val_keys: which validation numbers to draw (fractions in [0, 1]).
        smooth: moving-average length for the losses (the raw curve is drawn faint behind).
        ax: axes to draw on (a new figure if None); the scores go on a twin axis.
        figsize: size of a new figure.
        title: the title.

    Returns:
        (fig, ax), ax the loss axis (the twin axis is `ax.right_ax`).

    Notebook: 05_contrastive_learning.ipynb, 07_balanced_hashing.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)
    steps = np.array([h["step"] for h in history])
    for i, key in enumerate(loss_keys):
        y = np.array([h[key] for h in history], dtype=float)
        color = f"C{i}"
        ax.plot(steps, y, color=color, alpha=0.25, lw=0.8)
        if len(y) >= smooth > 1:
            ys = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
            ax.plot(steps[smooth - 1:], ys, color=color, label=f"{key} ({smooth}-step mean)")
        else:
            ax.plot(steps, y, color=color, label=key)
    ax.set(xlabel="training step", ylabel="loss", title=title)
    handles, labels = ax.get_legend_handles_labels()
    if val_history:
        right = ax.twinx()
        ax.right_ax = right
        vsteps = [v["step"] for v in val_history]
        for i, key in enumerate(val_keys):
            right.plot(vsteps, [v[key] for v in val_history], "o-", color=f"C{len(loss_keys) + i}", label=key)
        right.set(ylabel="validation score", ylim=(0, 1.02))
        h2, l2 = right.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="center right", fontsize="small")
    return fig, ax


# ---- exercises

def _nt_xent_of_s(S, tau, drop_self=True, pos_shift=None):
    """NT-Xent as a function of the (2B, 2B) similarity matrix, mean over the 2B anchors (torch, differentiable)."""
    n = S.shape[0]
    pos = (torch.arange(n) + (n // 2 if pos_shift is None else pos_shift)) % n  # the positive of each anchor
    L = S / tau
    if drop_self:
        L = L.masked_fill(torch.eye(n, dtype=torch.bool), float("-inf"))
    return (torch.logsumexp(L, dim=1) - L[torch.arange(n), pos]).mean()


def _grad_of_s(S, tau, **kw) -> np.ndarray:
    """d NT-Xent / d S by autograd, every entry of S its own variable."""
    S = S.detach().clone().requires_grad_(True)
    _nt_xent_of_s(S, tau, **kw).backward()
    return S.grad.numpy()


@checker
def check_nt_xent_grad(fn) -> None:
    """Check `fn(S, tau) -> G`: the gradient of NT-Xent with respect to the (2B, 2B) similarity matrix S.

    S = z z^T for the 2B stacked unit embeddings (a float64 tensor), the positive of row i at column
    (i + B) mod 2B, every entry a separate variable. The reference is autograd through the loss (which
    equals `minihash.contrastive.nt_xent` on z): G_ik = (softmax over k != i of S_i / tau - [k = p(i)]) / (2B tau),
    0 on the diagonal. Names a missing 1/tau or 1/(2B), the diagonal in the softmax, the sign, the positive's
    -1 left out and G transposed.

    Notebook: 05_contrastive_learning.ipynb
    """
    g = torch.Generator().manual_seed(5)
    for B, D, tau in ((6, 8, 0.1), (10, 16, 0.5), (4, 3, 1.0)):
        z1 = torch.randn(B, D, generator=g, dtype=torch.float64)
        z2 = z1 + torch.randn(B, D, generator=g, dtype=torch.float64)
        z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2B, D)
        S = z @ z.T  # (2B, 2B)
        assert torch.isclose(_nt_xent_of_s(S, tau), nt_xent(z1, z2, tau))
        want = _grad_of_s(S, tau)
        got = np.asarray(_numpy(fn(S.clone(), tau)), dtype=np.float64)
        case = f"B={B}, tau={tau}"
        if got.shape != want.shape:
            raise ExerciseError(f"{case}: G should have the shape of S, (2B, 2B) = {want.shape}, got {got.shape}")
        if np.allclose(got, want, rtol=1e-6, atol=1e-10):
            continue
        n = 2 * B
        soft = torch.softmax((S / tau).masked_fill(torch.eye(n, dtype=torch.bool), float("-inf")), dim=1).numpy()
        why = _first_match(got, [
            (want * tau, "the factor 1/tau is missing: the loss sees S / tau, so its gradient carries 1/tau"),
            (want * n, "the factor 1/(2B) is missing: the loss is the MEAN over the 2B anchors"),
            (_grad_of_s(S, tau, drop_self=False), "the diagonal is in the softmax: an anchor is not its own "
             "candidate (its row's softmax runs over k != i, and G_ii = 0)"),
            (-want, "the sign is flipped: the gradient pulls the positive (G_ip < 0) and pushes the negatives "
             "(G_ik > 0)"),
            (soft / (n * tau), "the positive's -1 is missing: d(-S_ip / tau) / dS_ip = -1 / tau, subtract the one-hot "
             "of each row's positive"),
            (want.T, "G is transposed: row i is anchor i's softmax over its candidates (columns)"),
            (want + want.T, "G + G^T: that treats S_ik and S_ki as one variable (S is symmetric); here every entry "
             "is its own variable, so G_ik comes from anchor i's row alone"),
            ((soft - np.eye(n)) / (n * tau), "the one-hot is on the diagonal: the positive of row i is column "
             "(i + B) mod 2B"),
        ])
        err = np.abs(got - want).max()
        raise ExerciseError(f"{case}: " + (why or f"G differs from autograd by up to {err:.3g}; G_ik = (softmax_k(S_i "
                                                  "/ tau) - [k = p(i)]) / (2B tau) for k != i, 0 on the diagonal"))
    _ok("nt_xent_grad")


def _first_match(got, candidates):
    """The message of the first (array, message) candidate equal to `got`, else None."""
    for value, why in candidates:
        if value.shape == got.shape and np.allclose(got, value, rtol=1e-6, atol=1e-10):
            return why
    return None


@checker
def check_top1(fn) -> None:
    """Check `fn(queries, refs, truth) -> float`: the share of queries whose most similar
    reference (by cosine similarity) is their true one.

    queries (Q, D) and refs (N, D) are numpy float arrays, not normalised; truth (Q,) are
    row indices into refs.

    Notebook: 05_contrastive_learning.ipynb
    """
    rng = np.random.default_rng(7)

    def cos(a, b):
        return (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T

    for Q, N, D, noise in ((12, 30, 8, 0.2), (20, 20, 5, 0.2), (16, 40, 6, 0.6)):
        refs = rng.normal(size=(N, D)) * np.exp(rng.uniform(-1.2, 1.2, size=(N, 1)))  # lengths differ: cosine != dot
        truth = rng.integers(0, N, Q)
        queries = refs[truth] / np.linalg.norm(refs[truth], axis=1, keepdims=True) + noise * rng.normal(size=(Q, D))
        S = cos(queries, refs)  # (Q, N)
        want = float((S.argmax(1) == truth).mean())
        got = fn(queries.copy(), refs.copy(), truth.copy())
        got = float(np.asarray(got.detach() if hasattr(got, "detach") else got))
        if np.isclose(got, want):
            continue
        variants = [
            (float((S.argmax(1) == truth).sum()), "you returned a count: divide by the number of queries"),
            (float(((queries @ refs.T).argmax(1) == truth).mean()), "you ranked by the raw dot product: normalise "
             "queries and references first (cosine similarity), or long reference vectors win"),
            (float((S.argmin(1) == truth).mean()), "you picked the LEAST similar reference: take the argmax of the "
             "similarity (argmin is for distances)"),
        ]
        if Q == N:
            variants.append((float((S.argmax(0) == truth).mean()), "argmax over the wrong axis: for each query "
                             "(row) find the best reference (column), argmax(axis=1)"))
        for value, why in variants:
            if np.isclose(got, value) and not np.isclose(value, want):
                raise ExerciseError(f"Q={Q}, N={N}: {why} (got {got:.4g}, expected {want:.4g})")
        raise ExerciseError(f"Q={Q}, N={N}: got {got:.4g}, expected {want:.4g}")
    _ok("top1")


# ---- solutions: the notebook's exercises answered (`make test` runs it with them)

def solution_nt_xent_grad(S, tau):
    """Exercise 1: d NT-Xent / d S = (softmax over the other candidates - one-hot of the positive) / (2B tau)."""
    n = S.shape[0]
    logits = (S / tau).masked_fill(torch.eye(n, dtype=torch.bool), float("-inf"))  # an anchor is not a candidate
    G = torch.softmax(logits, dim=1)  # (2B, 2B), 0 on the diagonal
    G[torch.arange(n), (torch.arange(n) + n // 2) % n] -= 1.0  # the positive's pull
    return G / (n * tau)


def solution_top1(queries, refs, truth):
    """Exercise 2: the share of queries whose most cosine-similar reference is truth[q]."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    r = refs / np.linalg.norm(refs, axis=1, keepdims=True)
    return float(((q @ r.T).argmax(axis=1) == truth).mean())
