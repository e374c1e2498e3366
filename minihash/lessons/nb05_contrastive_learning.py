"""Notebook 05: contrastive learning, robust embeddings from pairs of a window and its distorted replica.

The NT-Xent loss of SimCLR, its temperature, and a live training run. Figures: one anchor's softmax over
the batch, the training curves (losses and validation scores), and notebook 04's similarity matrix for
clean against distorted windows. Exercises: NT-Xent (against `minihash.contrastive.nt_xent`, naming the
usual mistakes) and top-1 retrieval by cosine similarity.

References: T. Chen et al., ICML 2020 (SimCLR); S. Chang et al., ICASSP 2021 (NAFP); A. van den Oord,
Y. Li, O. Vinyals, 2018 (InfoNCE); A. Singh, K. Demuynck, V. Arora, ICASSP 2023.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .common import ExerciseError, _fig_ax, _ok, checker, exercise_decorator, passed
from .nb04_patch_transformer import plot_similarity_matrix

__all__ = ["plot_similarity_matrix", "plot_contrastive_softmax", "plot_training_curves", "check_nt_xent", "check_top1",
           "exercise", "passed", "solution_nt_xent", "solution_top1"]

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

def _nt_xent_variants(z1, z2, tau):
    """NT-Xent and the usual ways of getting it wrong, each with what went wrong (float64 torch)."""
    def loss(z1, z2, tau, normalise=True, drop_self=True, keep_positive=True, both=True, reduce="mean",
             scale=lambda s: s / tau):
        B = z1.shape[0]
        z = torch.cat([z1, z2])
        if normalise:
            z = F.normalize(z, dim=1)
        S = scale(z @ z.T)  # (2B, 2B)
        eye = torch.eye(2 * B, dtype=torch.bool)
        pos = torch.cat([torch.arange(B, 2 * B), torch.arange(B)])
        S_pos = S[torch.arange(2 * B), pos]  # (2B,)
        S_den = S.masked_fill(eye, float("-inf")) if drop_self else S
        if not keep_positive:
            S_den = S_den.masked_fill(torch.nn.functional.one_hot(pos, 2 * B).bool(), float("-inf"))
        per = torch.logsumexp(S_den, dim=1) - S_pos  # (2B,)
        per = per if both else per[:B]
        return float(per.sum() if reduce == "sum" else per.mean())

    def cross_view(a, b):
        S = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / tau  # (B, B)
        return float(F.cross_entropy(S, torch.arange(a.shape[0])))

    return loss(z1, z2, tau), [
        (loss(z1, z2, tau, normalise=False), "the embeddings are not L2-normalised: NT-Xent uses cosine "
         "similarities, so normalise each row (F.normalize(z, dim=1)) before the dot products"),
        (loss(z1, z2, tau, drop_self=False), "the anchor is its own negative: mask the diagonal of the (2B, 2B) "
         "similarity matrix (set it to -inf) before the softmax"),
        (loss(z1, z2, tau, keep_positive=False), "the positive is left out of the denominator: the softmax runs "
         "over all 2B - 1 other samples, the positive included"),
        (loss(z1, z2, tau, scale=lambda s: s * tau), "the temperature multiplies the similarities: divide by tau"),
        (loss(z1, z2, tau, scale=lambda s: s) / tau, "tau divides the loss, not the similarities inside the "
         "softmax"),
        (loss(z1, z2, tau, scale=lambda s: s / tau ** 2), "the similarities are divided by tau twice"),
        (loss(z1, z2, tau, both=False), "only the clean windows are anchors: the loss is symmetric, average "
         "over all 2B anchors (rows of z1 AND rows of z2)"),
        (loss(z1, z2, tau, reduce="sum"), "the loss is summed over anchors: take the mean over the 2B anchors"),
        (loss(z2, z1, tau, both=False), "only the distorted windows are anchors: average over all 2B anchors"),
        (cross_view(z1, z2), "only the B x B clean-vs-distorted similarities, one direction: NT-Xent stacks "
         "all 2B samples, and each anchor's candidates are the 2B - 1 others (other clean windows included)"),
        (0.5 * (cross_view(z1, z2) + cross_view(z2, z1)), "only the B x B clean-vs-distorted similarities (CLIP's "
         "loss): NT-Xent stacks all 2B samples, and each anchor's candidates are the 2B - 1 others"),
    ]


@checker
def check_nt_xent(fn) -> None:
    """Check `fn(z1, z2, tau) -> scalar` against NT-Xent (SimCLR) on random batches.

    z1, z2 are (B, D) float64 torch tensors (not normalised: that is part of the job),
    row i of z1 and row i of z2 a positive pair.

    Notebook: 05_contrastive_learning.ipynb
    """
    g = torch.Generator().manual_seed(5)
    for B, D, tau in ((6, 8, 0.1), (10, 16, 0.5), (4, 3, 1.0)):
        z1 = 3 * torch.randn(B, D, generator=g, dtype=torch.float64)
        z2 = z1 + 2 * torch.randn(B, D, generator=g, dtype=torch.float64)  # related, so mistakes differ
        z2[0] *= 5  # rows of different lengths: normalisation matters
        got = fn(z1.clone(), z2.clone(), tau)
        got = float(got.detach()) if hasattr(got, "detach") else float(np.asarray(got))
        want, variants = _nt_xent_variants(z1, z2, tau)
        if np.isclose(got, want, rtol=1e-5, atol=1e-7):
            continue
        for value, why in variants:
            if np.isclose(got, value, rtol=1e-5, atol=1e-7):
                raise ExerciseError(f"B={B}, tau={tau}: {why} (got {got:.6g}, expected {want:.6g})")
        hint = f" (off by a factor {got / want:.3g})" if want and abs(got / want - round(got / want)) < 1e-6 else ""
        raise ExerciseError(f"B={B}, D={D}, tau={tau}: got {got:.6g}, expected {want:.6g}{hint}; compare your "
                            "loop with minihash.contrastive.nt_xent")
    _ok("nt_xent")


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

def solution_nt_xent(z1, z2, tau):
    """Exercise 1: NT-Xent over the 2B anchors."""
    B = len(z1)
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2B, D)
    S = (z @ z.T / tau).masked_fill(torch.eye(2 * B, dtype=torch.bool), float("-inf"))  # (2B, 2B)
    target = torch.cat([torch.arange(B, 2 * B), torch.arange(B)])
    return F.cross_entropy(S, target)


def solution_top1(queries, refs, truth):
    """Exercise 2: the share of queries whose most cosine-similar reference is truth[q]."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    r = refs / np.linalg.norm(refs, axis=1, keepdims=True)
    return float(((q @ r.T).argmax(axis=1) == truth).mean())
