"""NT-Xent against a per-sample loop written from the SimCLR paper's formula."""
import math

import numpy as np
import pytest
import torch

from minihash.contrastive import nt_xent, similarity_matrix, top1_accuracy


def naive_nt_xent(z1, z2, tau):
    """SimCLR eq. (1), one anchor at a time, averaged over all 2B anchors."""
    z = torch.cat([z1, z2])
    z = [v / v.norm() for v in z]
    B = len(z1)
    total = 0.0
    for i in range(2 * B):
        pos = (i + B) % (2 * B)
        num = math.exp(float(z[i] @ z[pos]) / tau)
        den = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(2 * B) if k != i)
        total += -math.log(num / den)
    return total / (2 * B)


@pytest.mark.parametrize("tau", [0.05, 0.1, 0.5])
def test_nt_xent_matches_naive_loop(tau):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randn(6, 5, generator=g, dtype=torch.float64)
    np.testing.assert_allclose(nt_xent(z1, z2, tau).item(), naive_nt_xent(z1, z2, tau), rtol=1e-5)


def test_nt_xent_float32_matches_float64():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(32, 16, generator=g), torch.randn(32, 16, generator=g)
    np.testing.assert_allclose(nt_xent(z1, z2).item(), nt_xent(z1.double(), z2.double()).item(), rtol=1e-5)


def test_nt_xent_symmetric_and_scale_invariant():
    g = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(8, 4, generator=g, dtype=torch.float64), torch.randn(8, 4, generator=g, dtype=torch.float64)
    np.testing.assert_allclose(nt_xent(z1, z2).item(), nt_xent(z2, z1).item(), rtol=1e-12)
    np.testing.assert_allclose(nt_xent(3.0 * z1, 0.5 * z2).item(), nt_xent(z1, z2).item(), rtol=1e-12)


def test_nt_xent_lower_for_aligned_pairs():
    g = torch.Generator().manual_seed(3)
    B, D, tau = 64, 32, 0.1
    z1 = torch.randn(B, D, generator=g)
    aligned = nt_xent(z1, z1 + 0.05 * torch.randn(B, D, generator=g), tau)
    unrelated = nt_xent(z1, torch.randn(B, D, generator=g), tau)
    assert aligned < unrelated
    assert aligned.item() < 0.1 * math.log(2 * B - 1)
    # at tau = 1 random unit vectors in 32-d have nearly equal logits (cosines ~ +-0.18),
    # so the positive is one of 2B - 1 alike candidates: the loss is about log(2B - 1)
    z2 = torch.randn(B, D, generator=g)
    assert abs(nt_xent(z1, z2, 1.0).item() - math.log(2 * B - 1)) < 0.1


def test_nt_xent_gradcheck():
    g = torch.Generator().manual_seed(4)
    z1 = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: nt_xent(a, b, 0.2), (z1, z2))


def test_nt_xent_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        nt_xent(torch.randn(4, 3), torch.randn(5, 3))


def test_similarity_matrix_and_top1_accuracy():
    g = torch.Generator().manual_seed(5)
    z1, z2 = torch.randn(10, 6, generator=g), torch.randn(10, 6, generator=g)
    S = similarity_matrix(z1, z2)
    naive = torch.tensor([[float(a @ b / (a.norm() * b.norm())) for b in z2] for a in z1])
    np.testing.assert_allclose(S.numpy(), naive.numpy(), atol=1e-6)
    expected = np.mean([int(np.argmax(naive[i].numpy()) == i) for i in range(10)])
    assert top1_accuracy(z1, z2) == pytest.approx(expected)
    assert top1_accuracy(z1, 2.0 * z1 + 0.01 * torch.randn(10, 6, generator=g)) == 1.0
