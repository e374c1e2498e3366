"""The log-mel front end: 1 s of 8 kHz audio to a (n_mels x frames) image.

A short-time Fourier transform, a mel filterbank that spaces bands as the ear
does, and log compression, so that a 20 dB louder or quieter recording shifts
the image instead of rescaling it. All of it is torchaudio; this module only
fixes the parameters (in a dataclass) and the log. The defaults give 64 mel
bands between 300 Hz and 4 kHz (as the Neural Audio Fingerprint) and a 10 ms
hop, so one second is 100 frames: ten 100 ms patches, as in Singh et al. 2023.

Notebook: 01_audio_and_spectrograms.ipynb
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torchaudio

from .audio import SR


@dataclass
class MelConfig:
    sr: int = SR
    n_fft: int = 512  # 64 ms at 8 kHz
    hop: int = 80  # 10 ms: 100 frames per second
    n_mels: int = 64
    f_min: float = 300.0
    f_max: float = 4000.0
    log: str = "log"  # "log": natural log of (power + eps); "db": 10 log10, top 80 dB kept
    eps: float = 1e-6

    def frames(self, n_samples: int) -> int:
        """Frames produced for `n_samples` input samples (centred STFT)."""
        return n_samples // self.hop + 1

    def to_dict(self) -> dict:
        return asdict(self)


class LogMel(nn.Module):
    """Batched log-mel spectrogram on CPU or GPU.

    Args:
        cfg: the parameters.

    Shapes:
        (B, T) or (T,) samples -> (B, n_mels, frames) or (n_mels, frames).

    Notebook: 01_audio_and_spectrograms.ipynb
    """

    def __init__(self, cfg: MelConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or MelConfig()
        if cfg.log not in ("log", "db"):
            raise ValueError(f"log must be 'log' or 'db', got {cfg.log!r}")
        if not 0 <= cfg.f_min < cfg.f_max <= cfg.sr / 2:
            raise ValueError(f"need 0 <= f_min < f_max <= sr/2, got {cfg.f_min}, {cfg.f_max}, sr={cfg.sr}")
        self.stft = torchaudio.transforms.Spectrogram(n_fft=cfg.n_fft, hop_length=cfg.hop, power=None, center=True)
        self.mel = torchaudio.transforms.MelScale(n_mels=cfg.n_mels, sample_rate=cfg.sr, f_min=cfg.f_min,
                                                  f_max=cfg.f_max, n_stft=cfg.n_fft // 2 + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        X = self.stft(x.float())  # (B, n_fft/2 + 1, frames) complex
        # power as re^2 + im^2: ~4x faster than squaring torch's complex abs (MelSpectrogram's
        # power=2), which was a fifth of a query's fingerprinting time
        S = self.mel(X.real.square() + X.imag.square())  # (B, n_mels, frames)
        if self.cfg.log == "log":
            return torch.log(S + self.cfg.eps)
        db = 10.0 * torch.log10(S + self.cfg.eps)
        top = db.amax(dim=(-2, -1), keepdim=True)
        return torch.maximum(db, top - 80.0)


def log_mel(x, cfg: MelConfig | None = None) -> torch.Tensor:
    """One-call log-mel of a numpy or torch signal (or batch of them).

    Args:
        x: (T,) or (B, T) samples at `cfg.sr`.
        cfg: front-end parameters (defaults if None).

    Returns:
        (n_mels, frames) or (B, n_mels, frames) float32 tensor.
    """
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x, dtype=torch.float32)
    with torch.no_grad():
        return LogMel(cfg)(x)
