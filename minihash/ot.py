"""Balanced hash codes by optimal transport: Sinkhorn-Knopp and the OT hash loss.

The hash head gives K logits per 1 s window; the signs of the logits are its
K-bit code, the bucket of the hash table. Trained only to agree across a window
and its distorted replica, the codes collapse: most windows share a few buckets
and a lookup scores a large part of the database. Singh, Demuynck and Arora
(ICASSP 2023, arXiv 2211.11060) balance them as SwAV (Caron et al., NeurIPS
2020, arXiv 2006.09882) balances clusters: the 2^K vertices of the hypercube
{-1, +1}^K are the centroids, Sinkhorn spreads the batch evenly over them, and
each view's logits learn the other view's balanced assignment (swapped
prediction). Sinkhorn-Knopp and its log-domain form follow Cuturi (NeurIPS 2013)
and Peyre and Cuturi, "Computational Optimal Transport" (2019), chapter 4.

The problem at K = 16. Item i (one window) has soft code h_i = tanh(l_i / tau)
(the mean of its bits under the model below), and vertex v the score
s_iv = <v, h_i> / K in [-1, 1], the mean agreement of their bits. Sinkhorn
scales the Gibbs kernel exp(s_iv / eps) so that every item sends 1/B and every
one of the 2^K codes receives 1/2^K. With B = 512 < 2^16 no batch can fill
every code: an item's target spreads over the capacity of 2^K / B = 128 codes
around its own, and the codes are balanced over batches, not within one. All
2^K columns are kept, because balance over a subset of codes (say those near
the batch) would lose the pull towards the empty regions of the cube. The
(B, 2^K) matrix (33.5M entries, 128 MiB in float32) is never formed either;
three facts make the exact plan cheap:
- a score is a sum over bits, so the kernel is a product over bits. Split the
  bits into a low and a high half: item i's kernel row, seen as a
  2^8 x 2^8 matrix, is the outer product Hi[i] Lo[i]^T of two 256-vectors.
- so the column sums of the scaled kernel are one matrix product
  Hi^T diag(u) Lo (256 x 256), and the row sums another: each Sinkhorn
  iteration is two (B x 256) @ (256 x 256) products, fast on any BLAS.
- the model's distribution over vertices, p_i(v) ~ exp(<v, l_i> / tau),
  factorises over bits, because log sum_v exp(<v, l> / tau) =
  sum_k log(2 cosh(l_k / tau)). The cross-entropy between a target q_i over
  the 2^K vertices and p_i is then sum_k BCE(q_ik, sigmoid(2 l_ik / tau)),
  where q_ik is the target's probability that bit k is +1: the loss needs only
  these (B, K) per-bit marginals, again two small matrix products.
The result equals log-domain `sinkhorn` on the full matrix (tested at K = 1, 5, 6).
Measured on one CPU thread, B = 512, K = 16: 7 ms per assignment (3 iterations,
exp domain; float32 is safe for eps > 1/80, float64 is used below that), where
the full matrix costs about 0.3 s to build and 0.35 s per log-domain iteration.

Codes are integers with bit k set where logit k > 0 (`sign_codes`, and
`pack_codes`, the same codes stored unsigned for the hash tables of
`minihash.search`); `bucket_stats` measures how evenly they fill the 2^K buckets.

Notebook: 06_optimal_transport.ipynb
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from .contrastive import nt_xent

MAX_BITS = 24  # balanced_assignment holds 2^K column potentials and does 2 B 2^K work per iteration


# ---- Sinkhorn-Knopp in the log domain

def sinkhorn(C, a=None, b=None, eps: float = 0.05, n_iter: int = 1000, tol: float = 1e-9,
             return_potentials: bool = False):
    """Entropic optimal transport plan by log-domain Sinkhorn-Knopp.

    Solves min_P <P, C> + eps sum_ij P_ij log P_ij subject to P 1 = a and
    P^T 1 = b. The plan is P_ij = exp(f_i + g_j - C_ij / eps); the potentials
    f (rows) and g (columns), in units of eps, are updated in turn with
    logsumexp, so that no exp ever overflows; columns first, as POT's
    `sinkhorn_log` and SwAV do, so a fixed n_iter gives the same plan as theirs.

    Args:
        C: (..., n, m) cost matrix, torch or numpy; leading dims are a batch of
            independent problems.
        a: (..., n) row marginals (uniform 1/n if None).
        b: (..., m) column marginals (uniform 1/m if None).
        eps: entropic regularisation (POT's `reg`); smaller is closer to the
            exact assignment and needs more iterations.
        n_iter: maximum number of iterations (one column and one row update).
        tol: stop when the column marginals are within tol (L1, worst problem
            of the batch); checked every 10 iterations; 0 runs all n_iter.
        return_potentials: also return the dual potentials in cost units.

    Returns:
        P (..., n, m), of the input's type (numpy in, numpy out); with
        `return_potentials`, (P, eps * f, eps * g).

    Notebook: 06_optimal_transport.ipynb
    """
    as_numpy = isinstance(C, np.ndarray)
    C = torch.as_tensor(C)
    if not C.is_floating_point():
        C = C.double()
    n, m = C.shape[-2:]
    like = dict(dtype=C.dtype, device=C.device)
    a = torch.full(C.shape[:-1], 1.0 / n, **like) if a is None else torch.as_tensor(a, **like)
    b = torch.full(C.shape[:-2] + (m,), 1.0 / m, **like) if b is None else torch.as_tensor(b, **like)
    M = -C / eps  # (..., n, m) log of the Gibbs kernel
    log_a, log_b = a.log(), b.log()  # (..., n), (..., m)
    f = torch.zeros_like(log_a)
    g = torch.zeros_like(log_b)
    for it in range(n_iter):
        g = log_b - torch.logsumexp(M + f[..., :, None], dim=-2)  # (..., m): columns now sum to b
        f = log_a - torch.logsumexp(M + g[..., None, :], dim=-1)  # (..., n): rows now sum to a
        if tol > 0 and it % 10 == 9:
            cols = torch.logsumexp(M + f[..., :, None] + g[..., None, :], dim=-2).exp()  # (..., m)
            if (cols - b).abs().sum(-1).max() < tol:
                break
    P = torch.exp(M + f[..., :, None] + g[..., None, :])  # (..., n, m)
    if as_numpy:
        P, f, g = P.numpy(), f.numpy(), g.numpy()
    return (P, eps * f, eps * g) if return_potentials else P


# ---- codes: bits <-> integers, and how evenly they fill the buckets

def sign_codes(logits):
    """The K-bit code of each item: bit k set where logit k > 0.

    Args:
        logits: (..., K) hash logits, torch or numpy, K <= 63.

    Returns:
        (...,) int64 codes, of the input's type.

    Notebook: 06_optimal_transport.ipynb
    """
    K = logits.shape[-1]
    if isinstance(logits, np.ndarray):
        return ((logits > 0).astype(np.int64) << np.arange(K, dtype=np.int64)).sum(-1)
    return ((logits > 0).long() << torch.arange(K, device=logits.device)).sum(-1)


def pack_codes(logits: np.ndarray) -> np.ndarray:
    """The codes of `sign_codes`, in the unsigned type a hash table stores: bit k set where logit k > 0.

    Args:
        logits: (N, K) floats, K <= 64.

    Returns:
        (N,) uint32 codes for K <= 32, uint64 otherwise.

    Notebook: 08_search.ipynb
    """
    logits = np.asarray(logits)
    K = logits.shape[1]
    if K > 64:
        raise ValueError(f"at most 64 bits fit a code, got K={K}")
    # at K = 64 bit 63 is the sign bit of int64: the cast to uint64 keeps the bits
    return sign_codes(logits).astype(np.uint32 if K <= 32 else np.uint64)


def code_bits(codes, K: int):
    """The bits of integer codes, bit k in column k (the inverse of `sign_codes`).

    Args:
        codes: (...,) integer codes, torch or numpy.
        K: number of bits.

    Returns:
        (..., K) int64 array of 0/1, of the input's type. 2 * bits - 1 is the
        hypercube vertex.

    Notebook: 06_optimal_transport.ipynb
    """
    if isinstance(codes, np.ndarray):
        return (codes.astype(np.int64)[..., None] >> np.arange(K, dtype=np.int64)) & 1
    return (codes.long()[..., None] >> torch.arange(K, device=codes.device)) & 1


def bucket_stats(codes, K: int) -> dict:
    """How evenly N codes fill the 2^K buckets of a hash table.

    Args:
        codes: (N,) integer codes (torch or numpy).
        K: number of bits.

    Returns:
        dict with `entropy_norm` (entropy of the bucket occupancy in bits,
        divided by the most N codes can reach, log2(min(N, 2^K)): 1 is as even
        as possible, 0 all in one bucket), `entropy_bits` (the raw entropy),
        `largest_over_mean` (largest bucket over the mean of the buckets in use:
        1 when every used bucket holds the same number), `largest_over_uniform`
        (largest bucket over max(1, N / 2^K), what a perfect spread would give),
        `empty_share` (fraction of the 2^K buckets with no item),
        `n_buckets_used`, `largest` (items in the largest bucket) and `n`.

    Notebook: 07_balanced_hashing.ipynb
    """
    codes = codes.cpu().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
    _, counts = np.unique(codes.ravel(), return_counts=True)  # (n_used,)
    n, n_buckets = int(counts.sum()), 2 ** K
    p = counts / n
    H = float((p * np.log2(1.0 / p)).sum())
    return dict(
        entropy_norm=H / max(1e-12, np.log2(min(n, n_buckets))) if n > 1 else 1.0,
        entropy_bits=H,
        largest_over_mean=float(counts.max() / (n / len(counts))),
        largest_over_uniform=float(counts.max() / max(1.0, n / n_buckets)),
        empty_share=1.0 - len(counts) / n_buckets,
        n_buckets_used=len(counts),
        largest=int(counts.max()),
        n=n,
    )


# ---- balanced assignment of a batch over the 2^K hypercube vertices

def bit_kernel(up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """The product over bits of per-bit factors, for every code of those bits.

    Args:
        up: (B, m) factor of bit k when it is +1.
        down: (B, m) factor of bit k when it is -1.

    Returns:
        (B, 2^m) table, entry j the product of up[:, k] where bit k of j is
        set and down[:, k] where it is not; built by doubling, one bit at a time.

    Notebook: 06_optimal_transport.ipynb
    """
    T = torch.ones(up.shape[0], 1, dtype=up.dtype, device=up.device)  # (B, 1): no bits yet
    for k in range(up.shape[1]):
        T = torch.cat([T * down[:, k:k + 1], T * up[:, k:k + 1]], dim=1)  # bit k is the new top bit
    return T


@torch.no_grad()
def balanced_assignment(logits: torch.Tensor, eps: float = 0.05, n_iter: int = 3, tau: float = 1.0,
                        return_plan: bool = False):
    """Spread a batch evenly over all 2^K codes (SwAV's Sinkhorn on hypercube vertices).

    The cost of sending item i to vertex v is -<v, tanh(l_i / tau)> / K; every
    item sends 1/B and every vertex receives 1/2^K. The plan equals
    `sinkhorn(C, eps=eps, n_iter=n_iter, tol=0)` on that (B, 2^K) cost matrix,
    but the matrix is never formed: split the bits into a low and a high half,
    and item i's row of the kernel exp(-C / eps) is the outer product of a
    2^(K/2) vector for each half (see the module docstring).

    Args:
        logits: (B, K) hash logits (not differentiated).
        eps: entropic regularisation; smaller gives sharper targets.
        n_iter: Sinkhorn iterations (SwAV uses 3: the targets need balance,
            not convergence).
        tau: temperature of the model's bits (the same as in the loss).
        return_plan: also return the (B, 2^K) plan (memory B * 2^K).

    Returns:
        q (B, K): the balanced target's probability that bit k of item i is +1
        (B times the plan's mass on vertices with bit k set), in the logits'
        dtype; with `return_plan`, (q, P) with P (B, 2^K), vertex j having bit k
        set where (j >> k) & 1, as `sign_codes` packs them.

    Notebook: 06_optimal_transport.ipynb
    """
    B, K = logits.shape
    if K > MAX_BITS:
        raise ValueError(f"K = {K} bits: at most {MAX_BITS} (the column potentials hold 2^K numbers)")
    if n_iter < 1 or eps <= 1 / 700:
        raise ValueError(f"need n_iter >= 1 and eps > 1/700, got n_iter={n_iter}, eps={eps}")
    # the kernel spans exp(-1/eps) .. exp(1/eps): float32 holds it up to about exp(88)
    dtype = torch.float64 if logits.dtype == torch.float64 or 1 / eps > 80 else torch.float32
    h = torch.tanh(logits.to(dtype) / tau)  # (B, K) mean code in [-1, 1]
    up, down = torch.exp(h / (K * eps)), torch.exp(-h / (K * eps))  # (B, K) factor of v_k = +1, -1
    # vertex j = j_lo + 2^k_lo * j_hi, and kernel[i, j] = Hi[i, j_hi] * Lo[i, j_lo]
    k_lo = K // 2
    Lo = bit_kernel(up[:, :k_lo], down[:, :k_lo])  # (B, n_lo), n_lo = 2^k_lo
    Hi = bit_kernel(up[:, k_lo:], down[:, k_lo:])  # (B, n_hi)
    # Sinkhorn scalings, columns first (SwAV): plan[i, j] = u[i] * kernel[i, j] * W[j_hi, j_lo]
    u = torch.ones(B, dtype=dtype, device=logits.device)  # (B,)
    for _ in range(n_iter):
        W = (1.0 / 2 ** K) / (Hi.T @ (u[:, None] * Lo))  # (n_hi, n_lo) every code receives 1/2^K
        u = (1.0 / B) / (Hi * (Lo @ W.T)).sum(1)  # (B,) every item sends 1/B
    # the plan's mass of item i by its high bits and by its low bits, each summing to 1/B
    mass_hi = u[:, None] * Hi * (Lo @ W.T)  # (B, n_hi)
    mass_lo = u[:, None] * Lo * (Hi @ W)  # (B, n_lo)
    bits_lo = code_bits(torch.arange(Lo.shape[1], device=logits.device), k_lo).to(dtype)  # (n_lo, k_lo)
    bits_hi = code_bits(torch.arange(Hi.shape[1], device=logits.device), K - k_lo).to(dtype)  # (n_hi, K - k_lo)
    q = B * torch.cat([mass_lo @ bits_lo, mass_hi @ bits_hi], dim=1)  # (B, K) per-bit marginals of B * P
    q = q.clamp(0.0, 1.0).to(logits.dtype)
    if return_plan:
        P = u[:, None, None] * Hi[:, :, None] * Lo[:, None, :] * W  # (B, n_hi, n_lo)
        return q, P.reshape(B, 2 ** K)
    return q


# ---- losses for the hash head

def bit_cross_entropy(logits: torch.Tensor, q: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Cross-entropy from a target over the 2^K vertices to the model's, per bit.

    The model puts p(v) ~ exp(<v, l> / tau) on vertex v, a product of
    independent bits with P(bit k = +1) = sigmoid(2 l_k / tau). For any target
    with per-bit marginals q, CE(q, p) = sum_k BCE(q_k, sigmoid(2 l_k / tau)),
    exactly, at the cost of K terms instead of 2^K.

    Args:
        logits: (B, K) hash logits.
        q: (B, K) target probability that each bit is +1.
        tau: temperature.

    Returns:
        Scalar: the cross-entropy in nats, summed over bits, mean over the batch.

    Notebook: 06_optimal_transport.ipynb
    """
    bce = F.binary_cross_entropy_with_logits(2.0 * logits / tau, q, reduction="none")  # (B, K)
    return bce.sum(1).mean()


def ot_hash_loss(logits1: torch.Tensor, logits2: torch.Tensor, eps: float = 0.05, tau: float = 1.0,
                 n_iter: int = 3) -> torch.Tensor:
    """The OT hash loss of Singh et al. 2023: swapped prediction of balanced codes.

    Each view's balanced assignment (no gradient) is the target of the other
    view's logits, as SwAV does with its cluster assignments.

    Args:
        logits1: (B, K) hash logits of the clean windows.
        logits2: (B, K) hash logits of their distorted replicas.
        eps, tau, n_iter: as in `balanced_assignment` and `bit_cross_entropy`.

    Returns:
        Scalar loss, the mean of the two directions.

    Notebook: 06_optimal_transport.ipynb
    """
    q1 = balanced_assignment(logits1.detach(), eps=eps, n_iter=n_iter, tau=tau)  # (B, K)
    q2 = balanced_assignment(logits2.detach(), eps=eps, n_iter=n_iter, tau=tau)  # (B, K)
    return 0.5 * (bit_cross_entropy(logits1, q2, tau) + bit_cross_entropy(logits2, q1, tau))


def sign_hash_loss(logits1: torch.Tensor, logits2: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """The baseline without balancing: each view predicts the other view's signs.

    The same swapped prediction as `ot_hash_loss` with the hard bits of the
    other view as target instead of its balanced assignment. Nothing stops all
    windows from sharing a few codes, which is what the OT loss prevents.

    Args:
        logits1: (B, K) hash logits of the clean windows.
        logits2: (B, K) hash logits of their distorted replicas.
        tau: temperature.

    Returns:
        Scalar loss, the mean of the two directions.

    Notebook: 06_optimal_transport.ipynb
    """
    t1 = (logits1.detach() > 0).to(logits1.dtype)  # (B, K)
    t2 = (logits2.detach() > 0).to(logits2.dtype)  # (B, K)
    return 0.5 * (bit_cross_entropy(logits1, t2, tau) + bit_cross_entropy(logits2, t1, tau))


# ---- what balancing costs per training step

def overhead_benchmark(B: int = 512, K: int = 16, D: int = 128, n_rep: int = 5, device: str = "cpu",
                       seed: int = 0) -> dict:
    """Milliseconds per forward + backward of each loss on random inputs.

    Args:
        B: batch size. K: hash bits. D: embedding dimension.
        n_rep: timed repetitions (after one warm-up).
        device: "cpu" or "cuda".
        seed: random seed.

    Returns:
        dict of ms per step: `nt_xent` (embeddings (B, D)), `ot_hash_loss`,
        `sign_hash_loss` (logits (B, K)), and `balanced_assignment` alone (one view).
    """
    gen = torch.Generator().manual_seed(seed)
    z1, z2 = (torch.randn(B, D, generator=gen).to(device).requires_grad_() for _ in range(2))
    l1, l2 = (torch.randn(B, K, generator=gen).to(device).requires_grad_() for _ in range(2))
    steps = {
        "nt_xent": lambda: nt_xent(z1, z2).backward(),
        "ot_hash_loss": lambda: ot_hash_loss(l1, l2).backward(),
        "sign_hash_loss": lambda: sign_hash_loss(l1, l2).backward(),
        "balanced_assignment": lambda: balanced_assignment(l1),
    }
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    ms = {}
    for name, step in steps.items():
        step()
        sync()
        t0 = time.perf_counter()
        for _ in range(n_rep):
            step()
        sync()
        ms[name] = (time.perf_counter() - t0) / n_rep * 1e3
    return ms
