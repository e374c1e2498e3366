"""Notebook 04: the patch transformer, from one second of log-mel to an embedding and a hash code.

Full-band 100 ms patches (Singh et al. 2023), positional encodings, scaled dot-product self-attention.
Figures: the patch grid, positional encodings, attention matrices and the attention a patch receives, and
a similarity matrix (of positions here; of embeddings in notebook 05). Exercises: cutting patches as
`minihash.encoder.PatchEmbed` does, single-head attention, and the sinusoidal encoding of Vaswani et al.

References: A. Singh, K. Demuynck, V. Arora, ICASSP 2023 (arXiv 2211.11060); A. Vaswani et al., NeurIPS
2017; A. Dosovitskiy et al., ICLR 2021 (ViT); Y. Gong, Y.-A. Chung, J. Glass, Interspeech 2021 (AST).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.patches import Rectangle

from .common import ExerciseError, _audio_np, _fig_ax, _numpy, _ok, checker, exercise_decorator, passed

__all__ = ["plot_patch_grid", "plot_attention", "plot_token_attention", "plot_positional_encoding",
           "plot_similarity_matrix", "check_patchify", "check_attention", "check_positional_encoding",
           "exercise", "passed", "solution_patchify", "solution_attention", "solution_positional_encoding"]

exercise = exercise_decorator(globals())  # `@lesson.exercise` in the notebook: see common


# ---- figures

def plot_patch_grid(S, patch=(64, 10), hop_s: float = 0.01, ax=None, figsize=(6, 3), title=None, cmap="magma"):
    """A log-mel image with the grid of non-overlapping patches a transformer cuts it into.

    Args:
        S: (n_mels, frames) log-mel image.
        patch: (mel bands, frames) of one patch: (n_mels, 10) are Singh et al.'s full-band
            100 ms patches, (16, 16) ViT/AST-style squares.
        hop_s: seconds per frame.
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title: the title (default: the patch count).
        cmap: colour map.

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


# ---- exercises

def _first_matching_mistake(got, candidates, rtol=1e-6, atol=1e-9):
    """The message of the first (array, message) candidate equal to `got` (same shape), else None."""
    for value, why in candidates:
        value = np.asarray(value, dtype=np.float64)
        if value.shape == got.shape and np.allclose(got, value, rtol=rtol, atol=atol):
            return why
    return None


@checker
def check_patchify(fn) -> None:
    """Check `fn(S, P) -> patches`: full-band time patches, as `minihash.encoder.PatchEmbed` cuts them.

    S is a (B, n_mels, frames) numpy array and P the frames per patch; the answer is
    (B, N, n_mels * P) with N = frames // P (leftover frames dropped), patch n holding frames
    n*P ... n*P + P - 1 of every band, flattened band by band (mel-major: entry m * P + t).

    Notebook: 04_patch_transformer.ipynb
    """
    rng = np.random.default_rng(4)
    for B, M, F, P in ((2, 6, 27, 5), (1, 4, 21, 3), (3, 8, 101, 10)):
        S = rng.normal(size=(B, M, F))
        N = F // P
        X = S[:, :, :N * P].reshape(B, M, N, P)  # (B, M, N, P)
        want = X.transpose(0, 2, 1, 3).reshape(B, N, M * P)
        got = _audio_np(fn(S.copy(), P))
        if got.shape == want.shape and np.allclose(got, want):
            continue
        if got.ndim == 3 and got.shape[0] == B and got.shape[2] == M * P and got.shape[1] == -(-F // P) != N:
            raise ExerciseError(f"{F} frames, P={P}: expected {N} patches, got {got.shape[1]}: drop the "
                                f"{F - N * P} leftover frames (S[:, :, :N * P]) instead of padding a last patch")
        if got.shape != want.shape:
            hint = ""
            if got.ndim == 3 and got.shape[1] == M // P:
                hint = ": did you cut along the mel axis? Patches are slices of TIME (the last axis), full band"
            raise ExerciseError(f"S of shape {S.shape}, P={P}: expected patches of shape {want.shape} "
                                f"(B, frames // P, n_mels * P), got {got.shape}{hint}")
        why = _first_matching_mistake(got, [
            (X.transpose(0, 2, 3, 1).reshape(B, N, M * P), "each patch is flattened frame by frame (time-major, "
             "entry t * n_mels + m): PatchEmbed flattens band by band (mel-major, entry m * P + t), like a Conv2d "
             "weight; permute to (B, N, M, P) before the last reshape"),
            (S[:, :, :N * P].reshape(B, N, M * P), "a plain reshape of (B, M, N*P) to (B, N, M*P) mixes up "
             "frequency and time (each 'patch' is a run of consecutive values of a few bands): reshape to "
             "(B, M, N, P), permute to (B, N, M, P), then flatten"),
            (want[:, ::-1], "the patches come in reverse time order"),
        ])
        raise ExerciseError(f"S of shape {S.shape}, P={P}: " + (why or "wrong values: patch n must hold frames "
                            "n*P ... n*P+P-1 of all bands, flattened band by band; compare with a small S = "
                            "np.arange(...) by eye"))
    _ok("patchify")


@checker
def check_attention(fn) -> None:
    """Check `fn(Q, K, V) -> (Y, A)`: single-head scaled dot-product attention.

    Q, K, V are (B, N, d) float64 torch tensors; A = softmax(Q K^T / sqrt(d)) over the keys
    (the last axis: every row sums to 1) is (B, N, N), and Y = A V is (B, N, d).

    Notebook: 04_patch_transformer.ipynb
    """
    g = torch.Generator().manual_seed(2)
    for B, N, d in ((2, 5, 16), (1, 7, 4), (3, 4, 64)):
        Q, K, V = (2 * torch.randn(B, N, d, generator=g, dtype=torch.float64) for _ in range(3))
        S = Q @ K.transpose(-2, -1)  # (B, N, N) raw scores
        A = (S / d ** 0.5).softmax(-1)
        out = fn(Q.clone(), K.clone(), V.clone())
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise ExerciseError("return a pair (Y, A): the output (B, N, d) and the attention weights (B, N, N)")
        Y, A_got = _audio_np(out[0]), _audio_np(out[1])
        if A_got.shape != (B, N, N):
            raise ExerciseError(f"A should be (B, N, N) = {(B, N, N)}, got {A_got.shape}")
        if not np.allclose(A_got, A.numpy(), rtol=1e-6, atol=1e-9):
            why = _first_matching_mistake(A_got, [
                (S.softmax(-1).numpy(), "the scores are not scaled: divide Q K^T by sqrt(d) before the softmax "
                 "(without it, large d makes the softmax nearly one-hot and its gradients vanish)"),
                ((S / d).softmax(-1).numpy(), "the scores are divided by d: divide by sqrt(d)"),
                ((S * d ** 0.5).softmax(-1).numpy(), "the scores are multiplied by sqrt(d): divide by it"),
                ((S / d ** 0.5).softmax(-2).numpy(), "the softmax runs over the queries (axis -2), so columns sum "
                 "to 1: it must run over the keys (axis -1), so that each query's weights sum to 1"),
                ((S / d ** 0.5).softmax(-1).transpose(-2, -1).numpy(), "A is transposed: row i (query i) should "
                 "hold the weights over the keys"),
                ((S / d ** 0.5).numpy(), "A holds the scaled scores: apply the softmax over the keys"),
                ((Q @ Q.transpose(-2, -1) / d ** 0.5).softmax(-1).numpy(), "the scores use Q Q^T: use Q K^T"),
            ])
            rows = A_got.sum(-1)
            if why is None and not np.allclose(rows, 1):
                why = f"rows of A should sum to 1 (a softmax over the keys), they sum to {rows.ravel()[:3]}..."
            raise ExerciseError(f"B={B}, N={N}, d={d}: " + (why or "A differs from softmax(Q K^T / sqrt(d))"))
        if Y.shape != (B, N, d):
            raise ExerciseError(f"Y should be (B, N, d) = {(B, N, d)}, got {Y.shape}")
        if not np.allclose(Y, (A @ V).numpy(), rtol=1e-6, atol=1e-9):
            why = _first_matching_mistake(Y, [
                ((A.transpose(-2, -1) @ V).numpy(), "Y uses A^T: Y = A V (row i mixes the values with query i's "
                 "weights)"),
                ((A @ K).numpy(), "Y mixes the keys: Y = A V"),
                ((A @ Q).numpy(), "Y mixes the queries: Y = A V"),
            ])
            raise ExerciseError(f"B={B}, N={N}, d={d}: " + (why or "A is right but Y is not A V"))
    _ok("attention")


def _sinusoidal(N: int, D: int, base: float = 10000.0, start: int = 0, layout: str = "interleaved",
                expo: str = "2i", swap: bool = False) -> np.ndarray:
    pos = np.arange(start, start + N)[:, None]  # (N, 1)
    i = np.arange(D // 2)[None, :]  # (1, D/2)
    e = 2 * i / D if expo == "2i" else i / D
    ang = pos / base ** e  # (N, D/2)
    s, c = (np.cos(ang), np.sin(ang)) if swap else (np.sin(ang), np.cos(ang))
    if layout == "concat":
        return np.concatenate([s, c], axis=1)
    PE = np.empty((N, D))
    PE[:, 0::2], PE[:, 1::2] = s, c
    return PE


@checker
def check_positional_encoding(fn) -> None:
    """Check `fn(N, D) -> PE`: the sinusoidal positional encoding of Vaswani et al. (2017).

    PE[p, 2i] = sin(p / 10000^(2i / D)) and PE[p, 2i + 1] = cos(p / 10000^(2i / D)) for
    positions p = 0 ... N - 1 and even D; an (N, D) numpy array or tensor.

    Notebook: 04_patch_transformer.ipynb
    """
    for N, D in ((10, 16), (50, 64), (3, 4)):
        want = _sinusoidal(N, D)
        got = _audio_np(fn(N, D))
        if got.shape != want.shape:
            hint = " (transposed?)" if got.shape == want.shape[::-1] else ""
            raise ExerciseError(f"N={N}, D={D}: expected shape {want.shape} (positions x dimensions), got "
                                f"{got.shape}{hint}")
        if np.allclose(got, want, atol=1e-6):
            continue
        why = _first_matching_mistake(got, [
            (_sinusoidal(N, D, layout="concat"), "sines in the first half and cosines in the second: a valid "
             "encoding too (tensor2tensor's), but the paper interleaves them: sin in even columns, cos in odd"),
            (_sinusoidal(N, D, swap=True), "sin and cos are swapped: sin in the even columns (2i), cos in the odd"),
            (_sinusoidal(N, D, start=1), "positions start at 1: the first token is position 0"),
            (_sinusoidal(N, D, expo="i"), "the exponent uses i / D: the frequency of pair i is 1 / 10000^(2i / D)"),
            (_sinusoidal(N, D, base=1000.0), "the base is 1000: it is 10000"),
        ], atol=1e-6)
        raise ExerciseError(f"N={N}, D={D}: " + (why or "values differ from sin/cos(p / 10000^(2i / D)); check "
                            "PE[1, 0] = sin(1) = 0.841 and PE[0, 1] = cos(0) = 1"))
    _ok("positional_encoding")


# ---- solutions: the notebook's exercises answered (`make test` runs it with them)

def solution_patchify(S, P):
    """Exercise 1: (B, M, F) -> (B, N, M * P) full-band patches, flattened band by band."""
    B, M, F_ = S.shape
    N = F_ // P
    return S[:, :, :N * P].reshape(B, M, N, P).transpose(0, 2, 1, 3).reshape(B, N, M * P)


def solution_attention(Q, K, V):
    """Exercise 2: scaled dot-product attention, (Y, A)."""
    A = torch.softmax(Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1]), dim=-1)
    return A @ V, A


def solution_positional_encoding(N, D):
    """Exercise 3: Vaswani et al.'s sinusoids, sin in even columns, cos in odd ones."""
    p = np.arange(N)[:, None]
    freq = 1.0 / 10000 ** (np.arange(0, D, 2) / D)
    PE = np.zeros((N, D))
    PE[:, 0::2], PE[:, 1::2] = np.sin(p * freq), np.cos(p * freq)
    return PE
