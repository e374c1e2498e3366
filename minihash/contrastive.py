"""Contrastive learning of robust embeddings: the NT-Xent loss.

A batch holds B clean 1 s windows and their distorted replicas (noise, reverb,
a time offset). The encoder maps each to a unit vector; NT-Xent (normalised
temperature-scaled cross-entropy) asks every window to pick its own replica out
of all the other 2B - 2 windows of the batch, which serve as negatives. After
training, a noisy query lands next to its clean original, so re-ranking the
candidates of a hash bucket by inner product finds the right segment.

Follows SimCLR (Chen, Kornblith, Norouzi, Hinton, "A simple framework for
contrastive learning of visual representations", ICML 2020, arXiv 2002.05709)
and its use for audio fingerprints in NAFP (Chang et al., "Neural audio
fingerprint for high-specific audio retrieval based on contrastive learning",
ICASSP 2021, arXiv 2010.11910; tau = 0.05 there, 0.1 in Singh et al. 2023).

Notebook: 05_contrastive_learning.ipynb
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def similarity_matrix(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every row of z1 with every row of z2.

    Args:
        z1: (B1, D) embeddings (normalised here, so any scale is fine).
        z2: (B2, D) embeddings.

    Returns:
        (B1, B2) cosine similarities in [-1, 1].
    """
    return F.normalize(z1, dim=-1) @ F.normalize(z2, dim=-1).T


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """NT-Xent loss of SimCLR over the 2B samples of a batch of B positive pairs.

    Sample i (a clean window) and sample i + B (its distorted replica) are a
    positive pair. For every one of the 2B samples as anchor, the loss is
    -log of the softmax weight of its positive among the 2B - 1 other samples
    (the positive and 2B - 2 negatives; the anchor itself is left out). The
    loss is the mean over the 2B anchors.

    Args:
        z1: (B, D) embeddings of the clean windows (normalised here).
        z2: (B, D) embeddings of their replicas, row i paired with z1 row i.
        tau: temperature; lower makes the loss focus on the hardest negatives.

    Returns:
        Scalar loss tensor (differentiable).

    Notebook: 05_contrastive_learning.ipynb
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"need two (B, D) tensors of the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    B = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=-1)  # (2B, D)
    logits = z @ z.T / tau  # (2B, 2B)
    # an anchor is never its own negative: drop the diagonal from the softmax
    self_mask = torch.eye(2 * B, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    # the positive of row i is row i + B, and of row i + B is row i
    target = torch.cat([torch.arange(B, 2 * B), torch.arange(B)]).to(z.device)  # (2B,)
    return F.cross_entropy(logits, target)


@torch.no_grad()
def top1_accuracy(z1: torch.Tensor, z2: torch.Tensor) -> float:
    """Fraction of rows of z1 whose nearest row of z2 (by cosine) is their pair.

    A validation number for training: with B candidates, chance is 1 / B.

    Args:
        z1: (B, D) query embeddings (e.g. distorted replicas).
        z2: (B, D) reference embeddings, row i the pair of z1 row i.

    Returns:
        Accuracy in [0, 1].
    """
    nearest = similarity_matrix(z1, z2).argmax(dim=1)  # (B,)
    return (nearest == torch.arange(len(z1), device=nearest.device)).float().mean().item()
