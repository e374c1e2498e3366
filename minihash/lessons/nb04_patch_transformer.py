"""Notebook 04: the patch transformer, from one second of log-mel to an embedding and a hash code.

Full-band 100 ms patches (Singh et al. 2023), positional encodings, scaled dot-product self-attention.
Figures: the patch grid, positional encodings, attention matrices and the attention a patch receives,
a similarity matrix (of positions here; of embeddings in notebook 05), and the footprints of the two stems. Exercises: ViT-style square patches
(against `torch.nn.functional.unfold`), attention rollout through the blocks and their residuals, and the
rotation that shifts a sinusoidal position.

References: A. Singh, K. Demuynck, V. Arora, ICASSP 2023 (arXiv 2211.11060); A. Vaswani et al., NeurIPS
2017; A. Dosovitskiy et al., ICLR 2021 (ViT); Y. Gong, Y.-A. Chung, J. Glass, Interspeech 2021 (AST);
S. Abnar, W. Zuidema, ACL 2020 (attention rollout).
"""
from __future__ import annotations


import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Rectangle

from .common import ExerciseError, _audio_np, _fig_ax, _numpy, _ok, checker, exercise_decorator, passed

__all__ = ["plot_patch_grid", "plot_attention", "plot_token_attention", "plot_positional_encoding",
           "plot_similarity_matrix", "plot_footprints", "check_square_patches", "check_rollout", "check_shift_matrix",
           "exercise", "passed", "solution_square_patches", "solution_rollout", "solution_shift_matrix"]

exercise = exercise_decorator(globals())  # `@lesson.exercise` in the notebook: see common


# ---- figures

def plot_patch_grid(S, patch=(64, 10), hop_s: float = 0.01, ax=None, figsize=(6, 3), title=None, cmap="magma"):
    """A log-mel image with the grid of non-overlapping patches a transformer cuts it into.

    Args:
        S: (n_mels, frames) log-mel image.
        patch: (mel bands, frames) of one patch: (n_mels, 10) are Singh et al.'s full-band
            100 ms patches, (16, 16) ViT/AST-style squares.
        hop_s: seconds per frame. ax, figsize, cmap: as usual. title: default, the patch count.

    Returns:
        (fig, ax). Frames and bands left over after the last whole patch are shaded.

    Notebook: 04_patch_transformer.ipynb
    """
    S = _numpy(S)
    M, F = S.shape
    pm, pf = patch
    nm, nf = M // pm, F // pf
    fig, ax = _fig_ax(ax, figsize)
    im = ax.imshow(S, origin="lower", aspect="auto", cmap=cmap, extent=(0, F * hop_s, 0, M))
    fig.colorbar(im, ax=ax, label="log power", fraction=0.046, pad=0.02)
    for i in range(nm):
        for j in range(nf):
            ax.add_patch(Rectangle((j * pf * hop_s, i * pm), pf * hop_s, pm, fill=False, ec="w", lw=1.2))
    if nf * pf < F:
        ax.axvspan(nf * pf * hop_s, F * hop_s, color="k", alpha=0.5)
    if nm * pm < M:
        ax.axhspan(nm * pm, M, color="k", alpha=0.5)
    ax.set(xlabel="time (s)", ylabel="mel band",
           title=title or f"{pm} x {pf} patches: {nm} x {nf} = {nm * nf} tokens")
    return fig, ax


def plot_attention(A, ax=None, figsize=(4.5, 4), title="attention", patch_s: float = 0.1, vmax=None):
    """An (N, N) attention matrix: row i is where token i looks (rows sum to 1).

    Args:
        A: (N, N) attention weights, e.g. `model.attention_maps(x)[0, layer, head]`.
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title: the title.
        patch_s: seconds per token (ticks show each token's start time).
        vmax: top of the colour scale (default: the largest weight).

    Returns:
        (fig, ax).

    Notebook: 04_patch_transformer.ipynb
    """
    A = _numpy(A)
    N = A.shape[0]
    fig, ax = _fig_ax(ax, figsize)
    im = ax.imshow(A, cmap="viridis", vmin=0, vmax=vmax or A.max(), interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="weight")
    ticks = np.arange(N)
    labels = [f"{t * patch_s:.1f}" for t in ticks]
    ax.set_xticks(ticks, labels, rotation=90, fontsize="small")
    ax.set_yticks(ticks, labels, fontsize="small")
    ax.set(xlabel="key token (start, s)", ylabel="query token (start, s)", title=title)
    return fig, ax


def plot_token_attention(S, weights, query: int | None = None, hop_s: float = 0.01, ax=None, figsize=(6, 3),
                         title=None):
    """The spectrogram with each full-band patch tinted by the attention it receives.

    Args:
        S: (n_mels, frames) log-mel image.
        weights: (N,) attention over the N patches (one row of an attention matrix, or a mean).
        query: the query token, outlined (None: no outline).
        hop_s: seconds per frame.
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title: the title.

    Returns:
        (fig, ax).

    Notebook: 04_patch_transformer.ipynb
    """
    S, w = _numpy(S), _numpy(weights).astype(float)
    M, F = S.shape
    N = len(w)
    P = F // N
    fig, ax = _fig_ax(ax, figsize)
    ax.imshow(S, origin="lower", aspect="auto", cmap="gray", extent=(0, F * hop_s, 0, M))
    for j in range(N):
        ax.add_patch(Rectangle((j * P * hop_s, 0), P * hop_s, M, color="orange", alpha=0.75 * w[j] / max(w.max(), 1e-12),
                               lw=0))
        ax.text((j + 0.5) * P * hop_s, M * 1.01, f"{w[j]:.2f}", ha="center", va="bottom", fontsize="x-small")
    if query is not None:
        ax.add_patch(Rectangle((query * P * hop_s, 0), P * hop_s, M, fill=False, ec="cyan", lw=2))
    ax.set(xlabel="time (s)", ylabel="mel band", ylim=(0, M * 1.08))
    ax.set_title(title or ("attention received per patch" if query is None else
                           f"where token {query} (cyan) looks"), pad=12)
    return fig, ax


def plot_positional_encoding(PE, ax=None, figsize=(6, 3), title="positional encoding"):
    """An (N, D) positional encoding as an image: one row per position, one column per dimension.

    Args:
        PE: (N, D) positional encodings.
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title: the title.

    Returns:
        (fig, ax).

    Notebook: 04_patch_transformer.ipynb
    """
    PE = _numpy(PE)
    fig, ax = _fig_ax(ax, figsize)
    m = np.abs(PE).max()
    im = ax.imshow(PE, cmap="RdBu_r", vmin=-m, vmax=m, aspect="auto", interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    ax.set(xlabel="dimension", ylabel="position (token)", title=title)
    return fig, ax


def plot_similarity_matrix(S, ax=None, figsize=(4.5, 4), title="cosine similarity", xlabel="distorted window",
                           ylabel="clean window", vmin=-1.0, vmax=1.0, cmap="RdBu_r"):
    """A (B1, B2) similarity matrix as an image: a trained encoder lights up the diagonal.

    Args:
        S: (B1, B2) similarities (numpy or torch), e.g. clean embeddings @ distorted embeddings.T.
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title, xlabel, ylabel: labels.
        vmin, vmax, cmap: colour scale (cosine similarities live in [-1, 1]).

    Returns:
        (fig, ax).

    Notebook: 04_patch_transformer.ipynb, 05_contrastive_learning.ipynb
    """
    S = _numpy(S)
    fig, ax = _fig_ax(ax, figsize)
    im = ax.imshow(S, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return fig, ax


def plot_footprints(S, maps: dict, figsize=(13, 3.2)):
    """The log-mel image S (n_mels, frames), and beside it each footprint of `maps` (title -> (n_mels, frames)
    array, maximum 1) drawn over it. Returns (fig, axes).

    Notebook: 04_patch_transformer.ipynb
    """
    fig, axes = plt.subplots(1, len(maps) + 1, figsize=figsize, constrained_layout=True)
    axes[0].imshow(_numpy(S), origin="lower", aspect="auto", cmap="magma")
    axes[0].set(title="log-mel (normalised)", xlabel="frame", ylabel="mel band")
    for ax, (title, g) in zip(axes[1:], maps.items()):
        ax.imshow(_numpy(S), origin="lower", aspect="auto", cmap="gray", alpha=0.4)
        im = ax.imshow(np.ma.masked_less(g, 0.01), origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=1)
        ax.set(title=title, xlabel="frame")
    fig.colorbar(im, ax=axes[1:], shrink=0.8, label="|gradient| / its maximum")
    return fig, axes


# ---- exercises

def _first_matching_mistake(got, candidates, rtol=1e-6, atol=1e-9):
    """The message of the first (array, message) candidate equal to `got` (same shape), else None."""
    for value, why in candidates:
        value = np.asarray(value, dtype=np.float64)
        if value.shape == got.shape and np.allclose(got, value, rtol=rtol, atol=atol):
            return why
    return None


def _square_variants(S, ph, pw, mistakes=True):
    """The (B, L, ph * pw) patches of S as nn.Unfold cuts them, and the usual mistakes with their explanations."""
    B, M, F = S.shape
    nf, nt = M // ph, F // pw
    X = S[:, :nf * ph, :nt * pw].reshape(B, nf, ph, nt, pw)  # (B, nf, ph, nt, pw)
    want = X.transpose(0, 1, 3, 2, 4).reshape(B, nf * nt, ph * pw)
    if not mistakes:
        return want, []
    return want, [
        (X.transpose(0, 3, 1, 2, 4).reshape(B, nf * nt, ph * pw), "the tokens are listed time block first: like "
         "nn.Unfold (and ViT's flatten), go row by row: every time block of the lowest band block, then the next band"),
        (X.transpose(0, 1, 3, 4, 2).reshape(B, nf * nt, ph * pw), "each patch is flattened frame by frame: flatten "
         "it band by band (row by row, entry r * pw + c), as Unfold and a Conv2d weight do"),
        (S[:, :nf * ph, :nt * pw].reshape(B, nf * nt, ph * pw), "a plain reshape: each 'patch' is then a run of "
         "consecutive values of one or two bands; reshape to (B, nf, ph, nt, pw), permute the two block axes "
         "next to each other, then flatten"),
        (_square_variants(S, pw, ph, False)[0], "the patches are pw bands by ph frames: ph counts "
         "mel bands (axis 1), pw frames (axis 2)"),
    ]


@checker
def check_square_patches(fn) -> None:
    """Check `fn(S, ph, pw) -> patches`: ViT/AST-style ph x pw patches, as `torch.nn.functional.unfold` cuts them.

    S is a (B, n_mels, frames) numpy array; the answer is (B, (n_mels // ph) * (frames // pw), ph * pw), leftover
    bands and frames dropped, the patches in row-major order (band block by band block, time blocks within each)
    and each flattened band by band. The reference is F.unfold(S[:, None], (ph, pw), stride=(ph, pw)).transpose(1, 2).

    Notebook: 04_patch_transformer.ipynb
    """
    rng = np.random.default_rng(4)
    for B, M, F, ph, pw in ((2, 12, 27, 4, 6), (1, 64, 101, 16, 16), (3, 10, 9, 5, 3)):
        S = rng.normal(size=(B, M, F))
        ref = torch.nn.functional.unfold(torch.from_numpy(S)[:, None], (ph, pw), stride=(ph, pw)).transpose(1, 2)
        want, variants = _square_variants(S, ph, pw)
        assert np.array_equal(ref.numpy(), want)
        got = _audio_np(fn(S.copy(), ph, pw))
        case = f"S of shape {S.shape}, {ph} x {pw} patches"
        if got.shape == want.shape and np.allclose(got, want):
            continue
        if got.shape != want.shape:
            hint = ""
            if got.ndim == 3 and got.shape[1] == (M // pw) * (F // ph):
                hint = ": ph counts mel bands (axis 1), pw frames (axis 2)"
            elif got.ndim == 3 and got.shape[1] == -(-M // ph) * -(-F // pw):
                hint = ": drop the leftover bands and frames (S[:, :nf * ph, :nt * pw]) instead of padding"
            raise ExerciseError(f"{case}: expected shape {want.shape} = (B, (n_mels // ph) * (frames // pw), ph * pw), "
                                f"got {got.shape}{hint}")
        why = _first_matching_mistake(got, variants)
        raise ExerciseError(f"{case}: " + (why or "wrong values: token n * (frames // pw) + t holds bands n*ph ... "
                            "n*ph+ph-1 of frames t*pw ... t*pw+pw-1, flattened band by band; compare with "
                            "F.unfold on a small S = np.arange(...)"))
    _ok("square_patches")


def _rollout_variants(maps):
    """Attention rollout (Abnar and Zuidema 2020) of (depth, heads, N, N) maps, and the usual mistakes."""
    L, _, N, _ = maps.shape
    eye = np.eye(N)
    mean = maps.mean(axis=1)  # (depth, N, N)

    def chain(mats, reverse=False):
        R = eye
        for A in mats:
            R = R @ A if reverse else A @ R  # the later block on the left
        return R

    want = chain(0.5 * mean + 0.5 * eye)
    return want, [
        (chain(0.5 * mean + 0.5 * eye, reverse=True), "the maps are multiplied in the wrong order: the first block "
         "acts first, so the last block's map is on the LEFT: R = Â_1 Â_0 (R = Â_l @ R in a loop)"),
        (chain(mean), "no residual: each block adds its attention output to its input, so half of each token goes "
         "straight through: use Â = (A + I) / 2"),
        (chain(mean + eye), "A + I is not halved: its rows sum to 2 and the product's to 2^depth; use (A + I) / 2"),
        (chain(0.5 * maps.max(axis=1) + 0.5 * eye), "the heads are combined by their maximum: average them"),
        (0.5 * mean[-1] + 0.5 * eye, "only the last block: multiply the maps of every block"),
        (want.T, "R is transposed: row i (output token i) should hold what it draws from each input patch"),
    ]


@checker
def check_rollout(fn) -> None:
    """Check `fn(maps) -> R`: attention rollout of one window's (depth, heads, N, N) attention maps.

    Â_l = (mean over heads of A_l + I) / 2 accounts for the residual connection, and R = Â_{L-1} ... Â_0 (N, N):
    row i, what output token i draws from each input patch (Abnar and Zuidema 2020). Checked against an
    explicit product on random row-stochastic maps; names the wrong order, no residual, A + I unhalved, the
    maximum over heads, the last block alone and R transposed.

    Notebook: 04_patch_transformer.ipynb
    """
    g = torch.Generator().manual_seed(2)
    for L, h, N in ((2, 4, 10), (3, 2, 5), (1, 3, 4)):
        maps = torch.softmax(2 * torch.randn(L, h, N, N, generator=g, dtype=torch.float64), dim=-1)
        want, variants = _rollout_variants(maps.numpy())
        got = _audio_np(fn(maps.clone()))
        case = f"{L} blocks of {h} heads, N={N}"
        if got.shape != (N, N):
            raise ExerciseError(f"{case}: R should be (N, N) = {(N, N)}, got {got.shape}")
        if np.allclose(got, want, rtol=1e-6, atol=1e-9):
            continue
        why = _first_matching_mistake(got, variants)
        raise ExerciseError(f"{case}: " + (why or f"rows sum to {got.sum(1)[:3].round(4)}...; Â = (mean_h A + I) / 2, "
                                                  "R = Â_(L-1) ... Â_0"))
    _ok("rollout")


def _sinusoidal(positions, D: int, expo: str = "2i") -> np.ndarray:
    """Vaswani et al.'s encoding of the given positions: sin in even columns, cos in odd ones, (len, D)."""
    i = np.arange(D // 2)
    ang = np.asarray(positions, dtype=np.float64)[:, None] / 10000.0 ** ((2 * i if expo == "2i" else i) / D)
    PE = np.empty((len(ang), D))
    PE[:, 0::2], PE[:, 1::2] = np.sin(ang), np.cos(ang)
    return PE


def _rotation(k, D, expo="2i", sign=1.0, concat=False) -> np.ndarray:
    """The block-diagonal (D, D) rotation taking PE[p] to PE[p + k] (and variants)."""
    i = np.arange(D // 2)
    t = k / 10000.0 ** ((2 * i if expo == "2i" else i) / D)
    c, s = np.cos(t), sign * np.sin(t)
    ev, od = (i, i + D // 2) if concat else (2 * i, 2 * i + 1)
    M = np.zeros((D, D))
    M[ev, ev], M[ev, od], M[od, ev], M[od, od] = c, s, -s, c
    return M


@checker
def check_shift_matrix(fn) -> None:
    """Check `fn(k, D) -> M`: the (D, D) matrix with PE[p + k] = M @ PE[p] for every position p.

    PE is Vaswani et al.'s sinusoidal encoding (sin(p w_i) in column 2i, cos(p w_i) in column 2i + 1,
    w_i = 1 / 10000^(2i / D)); M is block-diagonal, a 2 x 2 rotation by k w_i per frequency. Checked on the
    property itself over many positions, then against that rotation; names M transposed (a shift by -k),
    frequencies 1 / 10000^(i / D) and the blocks pairing columns i and i + D/2.

    Notebook: 04_patch_transformer.ipynb
    """
    for k, D in ((3, 16), (-5, 8), (1, 64), (0, 4)):
        p = np.arange(max(0, -k), max(0, -k) + 40)
        PE, PE_k = _sinusoidal(p, D), _sinusoidal(p + k, D)
        got = _audio_np(fn(k, D))
        case = f"k={k}, D={D}"
        if got.shape != (D, D):
            raise ExerciseError(f"{case}: M should be (D, D) = {(D, D)}, got {got.shape}")
        if np.allclose(PE @ got.T, PE_k, atol=1e-8):
            continue
        why = _first_matching_mistake(got, [
            (_rotation(k, D, sign=-1.0), "M shifts by -k: it is the transpose (the inverse rotation). sin((p+k)w) = "
             "sin(pw) cos(kw) + cos(pw) sin(kw): the sine row of block i is [cos kw_i, +sin kw_i]"),
            (_rotation(k, D, expo="i"), "the frequencies are 1 / 10000^(i / D): pair i turns at w_i = "
             "1 / 10000^(2i / D), as in the encoding"),
            (_rotation(k, D, concat=True), "the blocks pair column i with i + D/2 (sines first, then cosines): here "
             "the sin and cos of one frequency are neighbours, columns 2i and 2i + 1"),
        ], atol=1e-8)
        err = np.abs(PE @ got.T - PE_k).max()
        raise ExerciseError(f"{case}: " + (why or f"M @ PE[p] differs from PE[p + k] by up to {err:.3g}; block i "
                                                  "(rows and columns 2i, 2i+1) is [[cos kw_i, sin kw_i], "
                                                  "[-sin kw_i, cos kw_i]], zeros elsewhere"))
    _ok("shift_matrix")


# ---- solutions: the notebook's exercises answered (`make test` runs it with them)

def solution_square_patches(S, ph, pw):
    """Exercise 1: (B, M, F) -> (B, (M // ph) * (F // pw), ph * pw) patches, row-major, flattened band by band."""
    B, M, F_ = S.shape
    nf, nt = M // ph, F_ // pw
    X = S[:, :nf * ph, :nt * pw].reshape(B, nf, ph, nt, pw)
    return X.transpose(0, 1, 3, 2, 4).reshape(B, nf * nt, ph * pw)


def solution_rollout(maps):
    """Exercise 2: attention rollout, R = Â_(L-1) ... Â_0 with Â = (mean over heads + I) / 2."""
    maps = np.asarray(maps, dtype=np.float64)
    N = maps.shape[-1]
    R = np.eye(N)
    for A in maps.mean(axis=1):  # (N, N) per block, first block first
        R = (0.5 * A + 0.5 * np.eye(N)) @ R
    return R


def solution_shift_matrix(k, D):
    """Exercise 3: block-diagonal rotations by k w_i, taking PE[p] to PE[p + k]."""
    M = np.zeros((D, D))
    for i in range(D // 2):
        t = k / 10000 ** (2 * i / D)
        M[2 * i:2 * i + 2, 2 * i:2 * i + 2] = [[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]]
    return M
