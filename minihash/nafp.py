"""The NAFP-style CNN: the Neural Audio Fingerprint of Chang et al. (ICASSP 2021, arXiv 2010.11910).

Separable 1x3 / 3x1 convolutions take a 256 x 32 log-mel image down to one vector,
and a split ("divide and encode") projection gives the embedding; the hash head is
the transformer's. It is minihash's baseline, with the interface of every `Encoder`.

Notebook: 04_patch_transformer.ipynb
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .encoder import Encoder, ModelConfig
from .spectrogram import prepare_window


class SepConv(nn.Module):
    """NAFP block: a 1x3 convolution along time, then 3x1 along frequency, each followed by ELU and a
    layer norm over (C, F, T) (GroupNorm with one group: NAFP's layer_norm2d, with per-channel affine)."""

    def __init__(self, c_in: int, c_out: int, stride_t: int, stride_f: int = 2):
        super().__init__()
        self.conv_t = nn.Conv2d(c_in, c_out, (1, 3), stride=(1, stride_t), padding=(0, 1))
        self.norm_t = nn.GroupNorm(1, c_out)
        self.conv_f = nn.Conv2d(c_out, c_out, (3, 1), stride=(stride_f, 1), padding=(1, 0))
        self.norm_f = nn.GroupNorm(1, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, F, T) -> (B, C', ceil(F/2), ceil(T/s))
        x = self.norm_t(F.elu(self.conv_t(x)))
        return self.norm_f(F.elu(self.conv_f(x)))


class ConvEncoder(Encoder):
    """The NAFP-style CNN with minihash's interface: 8 separable blocks take NAFP's 256 x 32
    image to 1 x 1 x 1024; each of the emb_dim slices of 1024 / emb_dim channels gets its own
    small MLP (Linear -> ELU -> Linear to one number: "divide and encode"), then L2 norm.
    The hash head is the same linear map to K logits as the transformer's.

    Notebook: 04_patch_transformer.ipynb
    """

    TIME_STRIDES = (2, 2, 2, 2, 1, 2, 1, 2)  # NAFP's; frequency is halved by every block

    def __init__(self, cfg: ModelConfig, hidden: int = 32):
        super().__init__(cfg)
        chans = [cfg.width << (i // 2) for i in range(cfg.depth)]  # d, d, 2d, 2d, 4d, 4d, 8d, 8d
        self.convs = nn.Sequential(*(SepConv(c_in, c, s) for c_in, c, s in
                                     zip([1] + chans[:-1], chans, self.TIME_STRIDES)))
        h, q = chans[-1], cfg.emb_dim
        # grouped 1x1 convolutions = q independent MLPs, one per consecutive slice of h / q channels
        self.split_head = nn.Sequential(nn.Conv1d(h, q * hidden, 1, groups=q), nn.ELU(),
                                        nn.Conv1d(q * hidden, q, 1, groups=q))
        self.hash_head = nn.Linear(h, cfg.K)

    def encode_mel(self, S: torch.Tensor):
        """(B, n_mels, frames) log-mel -> (emb (B, emb_dim), logits (B, K))."""
        x = self.convs(prepare_window(S, self.cfg.mel).unsqueeze(1))  # (B, h, F', T'): 1 x 1 for NAFP's input
        h = x.mean(dim=(2, 3))  # (B, h); NAFP flattens, the same when F' = T' = 1
        emb = F.normalize(self.split_head(h.unsqueeze(-1)).squeeze(-1), dim=-1)  # (B, emb_dim)
        return emb, self.hash_head(h)

