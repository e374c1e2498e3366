"""The log-mel front end: 1 s of 8 kHz audio to a (n_mels x frames) image.

A short-time Fourier transform, a mel filterbank that spaces bands as the ear
does, and log compression, so that a 20 dB louder or quieter recording shifts
the image instead of rescaling it. All of it is torchaudio; this module only
fixes the parameters (in a dataclass) and the log. The defaults give 64 mel
bands between 300 Hz and 4 kHz (as the Neural Audio Fingerprint) and a 10 ms
hop, so one second is 100 frames: ten 100 ms patches, as in Singh et al. 2023.
`prepare_window` is what an encoder then sees of each window: floored, zero mean, unit variance.

Notebook: 01_audio_and_spectrograms.ipynb
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torchaudio

from .audio import SR

TOP_DB = 80.0  # the dB floor: this far under the maximum


@dataclass
class MelConfig:
    sr: int = SR
    n_fft: int = 512  # 64 ms at 8 kHz
    hop: int = 80  # 10 ms: 100 frames per second
    n_mels: int = 64
    f_min: float = 300.0
    f_max: float = 4000.0
    log: str = "log"  # "log": natural log of (power + eps); "db": 10 log10, the top TOP_DB kept
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
        floor: with `cfg.log == "db"`, keep the top `TOP_DB` of each signal of the batch.

    Shapes:
        (B, T) or (T,) samples -> (B, n_mels, frames) or (n_mels, frames).

    Notebook: 01_audio_and_spectrograms.ipynb
    """

    def __init__(self, cfg: MelConfig | None = None, floor: bool = True):
        super().__init__()
        self.cfg = cfg = cfg or MelConfig()
        self.floor = floor  # with log="db": keep the top TOP_DB of each signal (an encoder floors each window)
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
        if not self.floor:
            return db
        return torch.maximum(db, db.amax(dim=(-2, -1), keepdim=True) - TOP_DB)


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


# ----------------------------------------------------------------------------
# what an encoder sees of a window's log-mel


def prepare_window(S: torch.Tensor, mel: MelConfig) -> torch.Tensor:
    """What an encoder sees of a window's log-mel: in dB (`mel.log == "db"`), floored `TOP_DB` under
    the window's own maximum, so that near-silent bands do not dominate; then `normalize_window`.
    (B, n_mels, frames) -> same."""
    if mel.log == "db":
        S = torch.maximum(S, S.amax(dim=(1, 2), keepdim=True) - TOP_DB)  # (B, n_mels, frames)
    return normalize_window(S)


def normalize_window(S: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean, unit variance per window: a louder recording shifts a log-mel image, so
    removing the mean makes the encoder deaf to loudness. (B, n_mels, frames) -> same."""
    d = S - S.mean(dim=(1, 2), keepdim=True)  # (B, n_mels, frames)
    var = d.square().sum(dim=(1, 2), keepdim=True) / (S[0].numel() - 1)  # (B, 1, 1), as Tensor.std
    return d / (var.sqrt() + eps)  # two passes of sums: ~50x faster on a CPU than torch's std kernel


# ----------------------------------------------------------------------------
# SpecAugment: masks on the distorted view's log-mel during training


@dataclass
class MaskConfig:
    """Time and frequency masks (Park et al., SpecAugment, Interspeech 2019) and cut-out rectangles
    (DeVries and Taylor 2017), as the Neural Audio Fingerprint trains with them: parts of the
    replica hidden, so the embedding cannot lean on any one band or moment."""
    p: float = 1.0  # share of windows masked
    time_masks: int = 2
    time_width: int = 10  # frames (10 ms each): each mask is 0..width wide
    freq_masks: int = 2
    freq_width: int = 8  # mel bands
    cutouts: int = 1
    cut_time: int = 20  # frames
    cut_freq: int = 16  # mel bands


def _spans(B: int, n: int, size: int, width: int, generator=None):
    """n random spans per item over an axis of `size`: widths uniform in 0..width, starts uniform."""
    w = torch.randint(0, min(width, size) + 1, (B, n), generator=generator)  # (B, n)
    start = (torch.rand(B, n, generator=generator) * (size - w + 1)).long()  # (B, n)
    return start, w


def draw_masks(B: int, M: int, T: int, cfg: MaskConfig, generator=None) -> dict:
    """The random part of `spec_augment`: which items, and where each mask and cut-out lies."""
    return {"apply": torch.rand(B, generator=generator) < cfg.p,
            "time": _spans(B, cfg.time_masks, T, cfg.time_width, generator),
            "freq": _spans(B, cfg.freq_masks, M, cfg.freq_width, generator),
            "cut_t": _spans(B, cfg.cutouts, T, cfg.cut_time, generator),
            "cut_f": _spans(B, cfg.cutouts, M, cfg.cut_freq, generator)}


def _inside(spans, size: int) -> torch.Tensor:
    start, w = spans  # (B, n) each
    i = torch.arange(size)
    return (i >= start[..., None]) & (i < (start + w)[..., None])  # (B, n, size)


def apply_masks(S: torch.Tensor, draws: dict) -> torch.Tensor:
    """Fill the drawn masks with each window's mean level. (B, M, T) -> (B, M, T), a new tensor."""
    B, M, T = S.shape
    hide = _inside(draws["time"], T).any(1)[:, None, :] | _inside(draws["freq"], M).any(1)[:, :, None]  # (B, M, T)
    cut = _inside(draws["cut_f"], M)[:, :, :, None] & _inside(draws["cut_t"], T)[:, :, None, :]  # (B, n, M, T)
    hide = (hide | cut.any(1)) & draws["apply"][:, None, None]
    # drawn on the CPU (the same random stream on any device), applied where S lives
    return torch.where(hide.to(S.device), S.mean(dim=(1, 2), keepdim=True), S)


def spec_augment(S: torch.Tensor, cfg: MaskConfig | None = None, generator=None) -> torch.Tensor:
    """Random time/frequency masks and cut-outs on a batch of log-mels, filled with each window's mean.

    Args:
        S: (B, n_mels, frames) log-mel.
        cfg: how many masks, how wide, for which share of the windows.
        generator: a torch.Generator (None: torch's global one).

    Returns:
        (B, n_mels, frames), masked.
    """
    B, M, T = S.shape
    return apply_masks(S, draw_masks(B, M, T, cfg or MaskConfig(), generator))
