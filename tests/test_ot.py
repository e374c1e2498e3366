"""Sinkhorn against POT and the exact assignment; the balanced hash codes against brute force."""
import math
from collections import Counter

import numpy as np
import ot as pot
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from minihash.ot import (MAX_BITS, balanced_assignment, bit_cross_entropy, bucket_stats, code_bits,
                         ot_hash_loss, pack_codes, sign_codes, sign_hash_loss, sinkhorn)


def random_problem(seed, n=7, m=5):
    rng = np.random.default_rng(seed)
    return rng.random((n, m)), rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(m))


def vertices(K):
    """All 2^K hypercube vertices in {-1, +1}^K, row j = the code j."""
    return torch.tensor([[1.0 if (j >> k) & 1 else -1.0 for k in range(K)] for j in range(2 ** K)],
                        dtype=torch.float64)


# ---- sinkhorn

@pytest.mark.parametrize("eps", [0.05, 0.2, 1.0])
def test_sinkhorn_equals_pot_log_same_iterations(eps):
    C, a, b = random_problem(0)
    ref = pot.sinkhorn(a, b, C, eps, method="sinkhorn_log", numItermax=40, stopThr=0.0, warn=False)
    P = sinkhorn(C, a, b, eps=eps, n_iter=40, tol=0)
    assert isinstance(P, np.ndarray)
    np.testing.assert_allclose(P, ref, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("seed", [1, 2])
def test_sinkhorn_equals_pot_converged(seed):
    C, a, b = random_problem(seed)
    ref = pot.sinkhorn(a, b, C, 0.1)  # POT's default: plain Sinkhorn-Knopp to 1e-9
    P = sinkhorn(torch.tensor(C), torch.tensor(a), torch.tensor(b), eps=0.1, n_iter=5000, tol=1e-12)
    np.testing.assert_allclose(P.numpy(), ref, atol=1e-5)


def test_sinkhorn_marginals_and_batch():
    problems = [random_problem(s) for s in range(3)]
    C, a, b = (torch.tensor(np.stack(x)) for x in zip(*problems))  # (3, 7, 5), (3, 7), (3, 5)
    P = sinkhorn(C, a, b, eps=0.1, n_iter=2000, tol=1e-10)
    np.testing.assert_allclose(P.sum(-1).numpy(), a.numpy(), atol=1e-12)  # rows exact after the last step
    np.testing.assert_allclose(P.sum(-2).numpy(), b.numpy(), atol=1e-9)
    for i in range(3):
        np.testing.assert_allclose(P[i].numpy(), sinkhorn(*problems[i], eps=0.1, n_iter=2000, tol=1e-10), atol=1e-9)
    # uniform marginals by default
    Pu = sinkhorn(C[0], eps=0.1, n_iter=2000, tol=1e-10)
    np.testing.assert_allclose(Pu.sum(-1).numpy(), np.full(7, 1 / 7), atol=1e-12)
    np.testing.assert_allclose(Pu.sum(-2).numpy(), np.full(5, 1 / 5), atol=1e-9)


def test_sinkhorn_tends_to_exact_assignment():
    rng = np.random.default_rng(0)
    n = 6
    C = rng.random((n, n))
    rows, cols = linear_sum_assignment(C)
    best = C[rows, cols].sum() / n  # a permutation carrying mass 1/n per row
    gaps = []
    for eps in [0.1, 0.03, 0.01, 0.003]:
        P = sinkhorn(C, eps=eps, n_iter=3000, tol=1e-9)
        gap = (P * C).sum() - best
        # entropic OT: 0 <= <P, C> - OT <= eps (H(P) - H(P*)) <= eps log n
        assert -1e-4 <= gap <= eps * math.log(n) + 1e-4
        gaps.append(gap)
        if eps <= 0.03:
            np.testing.assert_array_equal(P.argmax(1), cols)
    assert all(g1 > g2 for g1, g2 in zip(gaps, gaps[1:]))
    assert gaps[-1] < 1e-3


# ---- codes and buckets

def test_sign_codes_and_code_bits():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((50, 11))
    naive = [int("".join("1" if x > 0 else "0" for x in row[::-1]), 2) for row in logits]
    np.testing.assert_array_equal(sign_codes(logits), naive)
    np.testing.assert_array_equal(sign_codes(torch.tensor(logits)).numpy(), naive)
    bits = code_bits(np.array(naive), 11)
    np.testing.assert_array_equal(bits, (logits > 0).astype(np.int64))
    np.testing.assert_array_equal(code_bits(torch.tensor(naive), 11).numpy(), bits)


@pytest.mark.parametrize("K", [1, 16, 32, 33, 63, 64])
def test_pack_codes_are_sign_codes_stored_unsigned(K):
    logits = np.random.default_rng(K).standard_normal((40, K)).astype(np.float32)
    logits[0] = 1.0  # every bit set, the top one too
    naive = [sum(1 << k for k in range(K) if x[k] > 0) for x in logits]
    codes = pack_codes(logits)
    assert codes.dtype == (np.uint32 if K <= 32 else np.uint64)
    assert [int(c) for c in codes] == naive
    if K < 64:  # sign_codes is int64: 63 bits
        np.testing.assert_array_equal(codes, sign_codes(logits))
    with pytest.raises(ValueError):
        pack_codes(np.ones((2, 65)))


def test_bucket_stats_against_naive_count():
    rng = np.random.default_rng(1)
    K = 6
    codes = np.concatenate([rng.integers(0, 2 ** K, 300), np.full(100, 5)])  # one crowded bucket
    counts = Counter(codes.tolist())
    sizes = [counts.get(j, 0) for j in range(2 ** K)]
    N = len(codes)
    H = -sum(c / N * math.log2(c / N) for c in sizes if c > 0)
    stats = bucket_stats(torch.tensor(codes), K)
    assert stats["entropy_norm"] == pytest.approx(H / math.log2(min(N, 2 ** K)))
    assert stats["entropy_bits"] == pytest.approx(H)
    assert stats["largest_over_mean"] == pytest.approx(max(sizes) / (N / sum(c > 0 for c in sizes)))
    assert stats["largest_over_uniform"] == pytest.approx(max(sizes) / max(1, N / 2 ** K))
    few = bucket_stats(np.arange(100), 16)  # 100 codes all different: as even as 100 codes can be
    assert few["entropy_norm"] == pytest.approx(1.0) and few["largest_over_mean"] == 1.0
    assert stats["empty_share"] == pytest.approx(sum(c == 0 for c in sizes) / 2 ** K)
    assert stats["n_buckets_used"] == sum(c > 0 for c in sizes)
    assert stats["largest"] == max(sizes) and stats["n"] == N
    collapsed = bucket_stats(np.zeros(10, dtype=np.int64), K)
    assert collapsed["entropy_norm"] == 0.0 and collapsed["n_buckets_used"] == 1


# ---- the factorised cross-entropy and the balanced assignment

def test_bit_cross_entropy_equals_brute_force_over_vertices():
    g = torch.Generator().manual_seed(0)
    B, K, tau = 5, 6, 0.7
    logits = torch.randn(B, K, generator=g, dtype=torch.float64)
    q = torch.softmax(3 * torch.randn(B, 2 ** K, generator=g, dtype=torch.float64), dim=1)  # (B, 2^K) any target
    V = vertices(K)  # (2^K, K)
    log_p = torch.log_softmax(logits @ V.T / tau, dim=1)  # (B, 2^K) the model over all vertices
    brute = -(q * log_p).sum(1).mean()
    q_bits = q @ ((V + 1) / 2)  # (B, K) P(bit k = +1) under q
    np.testing.assert_allclose(bit_cross_entropy(logits, q_bits, tau).item(), brute.item(), rtol=1e-10)


@pytest.mark.parametrize("K,eps,dtype", [(6, 0.05, torch.float64), (5, 0.05, torch.float64), (1, 0.05, torch.float64),
                                         (6, 0.05, torch.float32), (6, 0.01, torch.float32)])
def test_balanced_assignment_equals_dense_sinkhorn(K, eps, dtype):
    g = torch.Generator().manual_seed(1)
    B, tau = 40, 0.5
    logits = 2 * torch.randn(B, K, generator=g, dtype=torch.float64)
    q, P = balanced_assignment(logits.to(dtype), eps=eps, n_iter=3, tau=tau, return_plan=True)
    V = vertices(K)
    C = -(torch.tanh(logits / tau) @ V.T) / K  # (B, 2^K) minus the mean bit agreement
    ref = sinkhorn(C, eps=eps, n_iter=3, tol=0)
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    np.testing.assert_allclose(P.double().numpy() * B, ref.numpy() * B, atol=tol)
    np.testing.assert_allclose(q.double().numpy(), (B * ref @ ((V + 1) / 2)).numpy(), atol=tol)
    assert q.dtype == dtype


def test_balanced_assignment_converges_to_uniform_codes():
    g = torch.Generator().manual_seed(2)
    B, K = 300, 8
    logits = torch.randn(B, K, generator=g, dtype=torch.float64) + 1.0  # skewed towards code 255
    _, P = balanced_assignment(logits, eps=0.1, n_iter=300, return_plan=True)
    np.testing.assert_allclose(P.sum(1).numpy(), np.full(B, 1 / B), rtol=1e-10)
    np.testing.assert_allclose(P.sum(0).numpy(), np.full(2 ** K, 1 / 2 ** K), rtol=1e-3)


def test_balanced_assignment_spreads_a_skewed_batch_at_16_bits():
    g = torch.Generator().manual_seed(3)
    B, K = 512, 16
    logits = 1.5 + 0.5 * torch.randn(B, K, generator=g)  # nearly every bit +1: a few crowded buckets
    logits[:, 8:] = logits[:, :8] + 0.1 * torch.randn(B, 8, generator=g)  # and redundant bits
    q, P = balanced_assignment(logits, return_plan=True)
    assert P.shape == (B, 2 ** K) and torch.isfinite(q).all()
    before = bucket_stats(sign_codes(logits), K)
    after = bucket_stats(P.argmax(1), K)
    assert before["n_buckets_used"] < 20 and after["n_buckets_used"] > 20 * before["n_buckets_used"]
    assert after["largest"] < before["largest"] / 20
    # every code receives 1/2^K, so each bit is +1 for half the batch's mass
    np.testing.assert_allclose(q.mean(0).numpy(), 0.5, atol=0.01)


def test_balanced_assignment_rejects_too_many_bits():
    with pytest.raises(ValueError):
        balanced_assignment(torch.zeros(4, MAX_BITS + 1))


# ---- losses

def test_ot_hash_loss_gradients():
    g = torch.Generator().manual_seed(4)
    l1 = torch.randn(64, 16, generator=g, requires_grad=True)
    l2 = (l1.detach() + 0.1 * torch.randn(64, 16, generator=g)).requires_grad_()
    loss = ot_hash_loss(l1, l2)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(l1.grad).all() and torch.isfinite(l2.grad).all()
    assert l1.grad.abs().sum() > 0
    # the targets carry no gradient: the same as a cross-entropy to fixed targets
    q2 = balanced_assignment(l2.detach())
    l1b = l1.detach().clone().requires_grad_()
    (0.5 * bit_cross_entropy(l1b, q2)).backward()
    np.testing.assert_allclose(l1.grad.numpy(), l1b.grad.numpy(), atol=1e-7)


def train_free_codes(loss_fn, steps=40, B=256, K=8, lr=20.0, seed=0):
    """Gradient descent on free logits, seen through two noisy views, from one shared code.

    The loss is a batch mean, so lr = 20 moves each item's logits by about lr / B per unit gradient.
    """
    g = torch.Generator().manual_seed(seed)
    X = (1.0 + 0.3 * torch.randn(B, K, generator=g)).requires_grad_()
    for _ in range(steps):
        l1, l2 = (X + 0.2 * torch.randn(B, K, generator=g) for _ in range(2))
        X.grad = None
        loss_fn(l1, l2).backward()
        with torch.no_grad():
            X -= lr * X.grad
    return bucket_stats(sign_codes(X.detach()), K)


def test_ot_loss_unfolds_collapsed_codes_and_sign_loss_does_not():
    ot_stats = train_free_codes(ot_hash_loss)
    sign_stats = train_free_codes(sign_hash_loss)
    assert ot_stats["entropy_norm"] > 0.8 and ot_stats["n_buckets_used"] > 100
    assert sign_stats["entropy_norm"] < 0.1 and sign_stats["n_buckets_used"] < 5
