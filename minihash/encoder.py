"""The encoder: one second of audio to a 128-d unit embedding and K hash logits.

The transformer follows Singh, Demuynck and Arora, "Simultaneously learning
robust audio embeddings and balanced hash codes for query-by-example" (ICASSP
2023, arXiv 2211.11060): the log-mel image of a 1 s window is cut into ten
full-band 100 ms patches (or strided 3x3 convolutions, `stem="conv"`: Xiao et al., NeurIPS
2021), each patch becomes a token, a pre-norm transformer
lets the tokens attend to each other, and two heads read the pooled result: an
embedding head (L2-normalised, for re-ranking) and a hash head (K logits, whose
signs are the K-bit code of the hash table). `Encoder` is what every minihash
encoder shares, the baseline CNN of Chang et al. 2021 (`nafp.ConvEncoder`) too:
both take raw 8 kHz windows and own their log-mel front end, so any model file
is self-contained: the config in its JSON says how to hear (`modelfile`).

Notebook: 04_patch_transformer.ipynb
"""
from __future__ import annotations

import hashlib
import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .audio import segment
from .spectrogram import LogMel, MelConfig, normalize_window, prepare_window  # noqa: F401 (notebook 04)

ARCHS = ("transformer", "cnn")
STEMS = ("patch", "conv")
STEM_LAYERS = 3  # stride-2 convolutions of the conv stem: 64 x 101 log-mel -> 8 x 13 cells
PRESETS = {
    # trains on a 2-core CPU in minutes: for tests, CI and the notebooks
    "tiny": dict(width=64, depth=2, heads=4, ff=128),
    # the shipped model: ~0.9 M parameters (3.6 MB), a useful model in 1-2 h on 2 CPU cores
    "small": dict(width=128, depth=4, heads=4, ff=512),
    # the published size; the paper hears 16 kHz audio, minihash 8 kHz (as NAFP), with the same
    # 64 mels and ten 100 ms patches. Dropout is not stated there: 0.1 is the usual transformer value.
    "paper": dict(width=128, depth=8, heads=8, ff=2048, dropout=0.1),
    # NAFP: 256 mels x 32 frames (n_fft 1024, hop 256 at 8 kHz) and channels 128 ... 1024
    "nafp": dict(arch="cnn", width=128, depth=8, mel=dict(n_fft=1024, hop=256, n_mels=256)),
    # the same CNN with a quarter of the channels (32 ... 256): as many parameters as `small`,
    # so the baseline trains on a CPU too (the full `nafp` is ~25x slower per batch than `small`)
    "nafp-small": dict(arch="cnn", width=32, depth=8, mel=dict(n_fft=1024, hop=256, n_mels=256)),
}


@dataclass
class ModelConfig:
    mel: MelConfig = field(default_factory=MelConfig)
    arch: str = "transformer"  # "transformer" (Singh et al.) or "cnn" (NAFP)
    patch_frames: int = 10  # 100 ms full-band patches: 100 frames -> 10 tokens
    stem: str = "patch"  # "patch": full-band patches (the paper); "conv": strided 3x3 convolutions (Xiao et al.)
    stem_channels: int = 16  # the conv stem's channels: c, 2c, 4c
    stem_bands: int = 1  # the conv stem's tokens per time step: its 8 frequency rows in this many bands
    stem_freq: int = 1  # the conv stem's first convolution strides 2 x this many bands (4 on 256 mels: 8 rows again)
    width: int = 128  # token size; for the CNN the channels of the first block (doubled every 2 blocks)
    depth: int = 4  # transformer blocks; for the CNN separable-conv blocks (at most 8)
    heads: int = 4
    ff: int = 512  # hidden size of the transformer MLP
    dropout: float = 0.0
    emb_dim: int = 128
    K: int = 16  # hash bits: 2^K buckets
    win_s: float = 1.0

    def __post_init__(self):
        if isinstance(self.mel, dict):  # from JSON
            self.mel = MelConfig(**self.mel)
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {self.stem!r}")
        if self.stem_channels < 1 or (self.stem_channels != 16 and self.stem != "conv"):
            raise ValueError(f"stem_channels must be >= 1, and 16 unless stem='conv'; got {self.stem_channels}, "
                             f"{self.stem!r}")
        if self.stem_freq < 1 or (self.stem_freq != 1 and self.stem != "conv"):
            raise ValueError(f"stem_freq must be >= 1, and 1 unless stem='conv'; got {self.stem_freq}, {self.stem!r}")
        if self.stem == "conv" and self.stem_rows % self.stem_bands:
            raise ValueError(f"the conv stem's {self.stem_rows} frequency rows do not split "
                             f"into {self.stem_bands} bands")
        if self.arch == "transformer" and (self.width % self.heads or self.n_tokens < 1):
            raise ValueError(f"need width % heads == 0 and >= 1 patch, got width={self.width}, "
                             f"heads={self.heads}, {self.n_frames} frames / {self.patch_frames}")
        last = self.width << ((self.depth - 1) // 2)  # the CNN's last channels
        if self.arch == "cnn" and not (1 <= self.depth <= 8 and last % self.emb_dim == 0):
            raise ValueError(f"the CNN needs 1 <= depth <= 8 and its last channels ({last}) divisible by emb_dim")
        if not 1 <= self.K <= 63:
            raise ValueError(f"K must be 1..63 bits, got {self.K}")

    @property
    def n_samples(self) -> int:
        return round(self.win_s * self.mel.sr)

    @property
    def n_frames(self) -> int:
        return self.mel.frames(self.n_samples)

    @property
    def stem_rows(self) -> int:
        """Frequency rows out of the conv stem: 64 mels -> 32 -> 16 -> 8 (the first step strides 2 x stem_freq)."""
        return _halved(-(-self.mel.n_mels // self.stem_freq), STEM_LAYERS)

    @property
    def n_tokens(self) -> int:
        if self.stem == "conv":  # 101 frames -> 51 -> 26 -> 13 time steps, times the bands
            return _halved(self.n_frames, STEM_LAYERS) * self.stem_bands
        return self.n_frames // self.patch_frames  # 101 frames -> 10 tokens, the last frame is dropped

    @classmethod
    def preset(cls, name: str, **overrides) -> "ModelConfig":
        """A named configuration (`tiny`, `small`, `paper`, `nafp`), optionally with fields changed."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
        return replace(cls(**PRESETS[name]), **overrides)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(**d)


def _halved(n: int, times: int) -> int:
    """The length after `times` stride-2 convolutions with kernel 3 and padding 1: ceil(n / 2) each time."""
    for _ in range(times):
        n = (n + 1) // 2
    return n


# ----------------------------------------------------------------------------
# the transformer (Singh et al. 2023)


class PatchEmbed(nn.Module):
    """Full-band time patches to tokens: (B, n_mels, frames) -> (B, N, width).

    A linear map of each flattened (n_mels x patch_frames) patch; the same as a Conv2d with
    kernel = stride = (n_mels, patch_frames) whose weight is this one reshaped.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.P, self.N = cfg.patch_frames, cfg.n_tokens
        self.proj = nn.Linear(cfg.mel.n_mels * cfg.patch_frames, cfg.width)

    def forward(self, S: torch.Tensor) -> torch.Tensor:
        B, M, _ = S.shape
        X = S[:, :, : self.N * self.P].reshape(B, M, self.N, self.P)  # (B, M, N, P)
        X = X.permute(0, 2, 1, 3).reshape(B, self.N, M * self.P)  # (B, N, M*P), mel-major as Conv2d
        return self.proj(X)  # (B, N, width)


class ConvStem(nn.Module):
    """Strided 3x3 convolutions to tokens (Xiao et al., NeurIPS 2021): (B, n_mels, frames) -> (B, N, width).

    Three stride-2 convolutions (c, 2c, 4c channels, layer norm, GELU) turn the 64 x 101 log-mel into
    8 x 13 cells, each seeing 15 x 15 bins; a time step's rows (in `stem_bands` bands) become a token.
    A patch embedding must learn locality from data; convolutions start with it. With `stem_freq` f the
    first convolution spans 2f + 1 bands and strides 2f, so a finer front end (256 mels, f = 4) costs
    about as much as 64 mels.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        chans = [1] + [cfg.stem_channels << i for i in range(STEM_LAYERS)]  # 1, c, 2c, 4c
        layers = []
        f = cfg.stem_freq
        for i, (c_in, c_out) in enumerate(zip(chans[:-1], chans[1:])):
            k, stride, pad = ((2 * f + 1, 3), (2 * f, 2), (f, 1)) if i == 0 else (3, 2, 1)
            layers += [nn.Conv2d(c_in, c_out, k, stride=stride, padding=pad, bias=False), nn.GroupNorm(1, c_out),
                       nn.GELU()]
        self.convs = nn.Sequential(*layers)
        self.bands = cfg.stem_bands
        rows = cfg.stem_rows // cfg.stem_bands
        self.proj = nn.Linear(chans[-1] * rows, cfg.width)

    def forward(self, S: torch.Tensor) -> torch.Tensor:
        x = self.convs(S.unsqueeze(1))  # (B, C, F', T')
        B, C, Fp, Tp = x.shape
        x = x.reshape(B, C, self.bands, Fp // self.bands, Tp)  # (B, C, bands, rows, T')
        x = x.permute(0, 2, 4, 1, 3).reshape(B, self.bands * Tp, C * (Fp // self.bands))  # (B, N, C * rows)
        return self.proj(x)  # (B, N, width)


class SelfAttention(nn.Module):
    """Multi-head self-attention, laid out as `nn.MultiheadAttention` (one qkv matrix, q then k then v).

    With `return_attn` the attention is computed by hand, softmax(q k^T / sqrt(d)) v, and the
    weights are returned; otherwise the fused `F.scaled_dot_product_attention` does the same maths.
    """

    def __init__(self, width: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, return_attn: bool = False):
        B, N, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)  # 3 x (B, N, D)
        q, k, v = (t.view(B, N, self.heads, D // self.heads).transpose(1, 2) for t in (q, k, v))  # (B, h, N, d)
        A = None
        if return_attn:
            A = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-1)  # (B, h, N, N)
            y = self.drop(A) @ v  # (B, h, N, d)
        else:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, N, D)  # heads side by side again
        return self.drop(self.proj(y)), A


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x)). Norming before each
    sublayer keeps the residual path an identity, which trains without warm-up tricks."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.width)
        self.attn = SelfAttention(cfg.width, cfg.heads, cfg.dropout)
        self.ln2 = nn.LayerNorm(cfg.width)
        self.mlp = nn.Sequential(nn.Linear(cfg.width, cfg.ff), nn.GELU(), nn.Linear(cfg.ff, cfg.width),
                                 nn.Dropout(cfg.dropout))

    def forward(self, x: torch.Tensor, return_attn: bool = False):
        a, A = self.attn(self.ln1(x), return_attn)
        x = x + a  # (B, N, D)
        return x + self.mlp(self.ln2(x)), A


class Encoder(nn.Module):
    """What every minihash encoder shares: the log-mel front end, the raw-audio `forward`, and
    `fingerprint` for many windows. Subclasses define `encode_mel(S) -> (emb, logits)`."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.frontend = LogMel(cfg.mel, floor=False)  # a dB floor is per window (`prepare_window`)

    def forward(self, x: torch.Tensor):
        """(B, T) raw windows (T = win_s * sr) -> (emb (B, emb_dim) unit norm, logits (B, K))."""
        if x.dim() != 2 or x.shape[1] != self.cfg.n_samples:
            raise ValueError(f"expected windows of shape (B, {self.cfg.n_samples}) ({self.cfg.win_s} s at "
                             f"{self.cfg.mel.sr} Hz), got {tuple(x.shape)}")
        with torch.autocast(x.device.type, enabled=False):  # the front end stays float32 under bf16 autocast
            S = self.frontend(x)
        return self.encode_mel(S)

    @contextmanager
    def _eval_mode(self):
        """Eval mode inside the block, the caller's mode after it. The switch walks every module
        (~1 ms, a fifth of a short query), so it happens only when the mode changes."""
        was_training = self.training
        if was_training:
            self.eval()
        try:
            yield
        finally:
            if was_training:
                self.train()

    @torch.no_grad()
    def fingerprint(self, windows, batch_size: int = 256):
        """Embeddings and hash logits of many windows, in eval mode (the mode is restored after).

        Args:
            windows: (N, T) float array or tensor of raw windows.
            batch_size: windows per forward pass.

        Returns:
            (emb np.float32 (N, emb_dim), logits np.float32 (N, K)).

        Notebook: 04_patch_transformer.ipynb
        """
        dev = next(self.parameters()).device
        N, embs, logits = len(windows), [], []
        with self._eval_mode(), tqdm(total=N, desc="fingerprinting", unit="win", disable=N <= 4096) as bar:
            for i in range(0, N, batch_size):
                e, l = self(torch.as_tensor(windows[i:i + batch_size], dtype=torch.float32).to(dev))
                embs.append(e.float().cpu().numpy())
                logits.append(l.float().cpu().numpy())
                bar.update(len(e))
        if not N:
            return np.zeros((0, self.cfg.emb_dim), np.float32), np.zeros((0, self.cfg.K), np.float32)
        return np.concatenate(embs), np.concatenate(logits)

    def slices_mel(self, hop_s: float) -> bool:
        """Whether windows `hop_s` apart can be cut from one log-mel of the whole signal: the front
        end's hop (10 ms for the transformer, 32 ms for the NAFP-style CNN) must divide `hop_s`."""
        mel = self.cfg.mel
        step = round(hop_s * mel.sr / mel.hop)
        return step >= 1 and abs(step * mel.hop - hop_s * mel.sr) < 1e-6 * mel.sr

    @torch.no_grad()
    def fingerprint_audio(self, x, hop_s: float = 0.1, batch_size: int = 256):
        """Fingerprint a whole signal every `hop_s` seconds.

        The log-mel of the whole signal is computed once and cut into windows of
        `n_frames` frames, ten times less front-end work than windowing the samples at a
        0.1 s hop. Where the front end's hop does not divide `hop_s` (`slices_mel`), the
        windows are cut from the samples instead: the same windows, slower. A signal
        shorter than one window is zero-padded to one window.

        Args:
            x: (T,) float array or tensor at `cfg.mel.sr`.
            hop_s: hop between window starts, seconds.
            batch_size: windows per forward pass.

        Returns:
            (emb (N, emb_dim), logits (N, K), starts (N,) seconds), numpy float32/float64.

        Notebook: 08_search.ipynb
        """
        cfg = self.cfg
        if not self.slices_mel(hop_s):
            windows, starts = segment(np.asarray(x, dtype=np.float32), cfg.mel.sr, cfg.win_s, hop_s)  # (N, W)
            return (*self.fingerprint(windows, batch_size), starts)
        step = int(round(hop_s * cfg.mel.sr / cfg.mel.hop))  # frames between window starts
        x = torch.as_tensor(np.asarray(x, dtype=np.float32)).flatten()
        if x.numel() < cfg.n_samples:
            x = torch.nn.functional.pad(x, (0, cfg.n_samples - x.numel()))
        dev = next(self.parameters()).device
        n = 1 + (x.numel() - cfg.n_samples) // (step * cfg.mel.hop)
        embs, logits = [], []
        with self._eval_mode():
            S = self.frontend(x.to(dev)[None])[0]  # (n_mels, F)
            W = S.unfold(1, cfg.n_frames, step)[:, :n].permute(1, 0, 2)  # (N, n_mels, n_frames)
            for i in tqdm(range(0, n, batch_size), desc="fingerprinting", unit="batch", disable=n <= 8192, leave=False):
                e, l = self.encode_mel(W[i:i + batch_size].contiguous())
                embs.append(e.float().cpu().numpy())
                logits.append(l.float().cpu().numpy())
        return np.concatenate(embs), np.concatenate(logits), np.arange(n) * step * cfg.mel.hop / cfg.mel.sr

    @property
    def model_id(self) -> str:
        """A short id of the weights: an index remembers it, so that it is never queried with another model."""
        h = hashlib.sha256()
        for k, v in sorted(stored_weights(self).items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


class Fingerprinter(Encoder):
    """Patches -> learned positions -> pre-norm transformer -> mean pool -> embedding and hash heads.

    Positions are learned (as in ViT/AST): there are only N = 10 fixed slots. The tokens are
    mean-pooled rather than read from a [CLS] token: every 100 ms patch gets an equal say, which
    suits a window whose content slides by a time offset, and the attention maps stay patch-to-patch.

    Notebook: 04_patch_transformer.ipynb
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.patch = ConvStem(cfg) if cfg.stem == "conv" else PatchEmbed(cfg)
        self.pos = nn.Parameter(0.02 * torch.randn(1, cfg.n_tokens, cfg.width))  # (1, N, D)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.ln_f = nn.LayerNorm(cfg.width)
        self.emb_head = nn.Sequential(nn.Linear(cfg.width, cfg.width), nn.GELU(), nn.Linear(cfg.width, cfg.emb_dim))
        self.hash_head = nn.Linear(cfg.width, cfg.K)

    def encode_mel(self, S: torch.Tensor, return_attn: bool = False):
        """(B, n_mels, frames) log-mel -> (emb (B, emb_dim), logits (B, K)) [, attn (B, depth, heads, N, N)]."""
        x = self.drop(self.patch(prepare_window(S, self.cfg.mel)) + self.pos)  # (B, N, D)
        maps = []
        for block in self.blocks:
            x, A = block(x, return_attn)
            maps.append(A)
        h = self.ln_f(x).mean(dim=1)  # (B, D)
        emb = F.normalize(self.emb_head(h), dim=-1)  # (B, emb_dim) on the unit sphere
        logits = self.hash_head(h)  # (B, K)
        return (emb, logits, torch.stack(maps, dim=1)) if return_attn else (emb, logits)

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Attention weights of every block and head: x (B, T) raw or (B, n_mels, frames) log-mel
        -> (B, depth, heads, N, N), rows sum to 1 (row i: where token i looks)."""
        S = self.frontend(x) if x.dim() == 2 else x
        return self.encode_mel(S, return_attn=True)[2]


# ----------------------------------------------------------------------------
# parameters


def stored_weights(model: nn.Module) -> dict:
    """The state dict a model file stores: the mel filterbank and window are rebuilt from the config, so not them."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith("frontend.")}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
