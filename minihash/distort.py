"""Distortions: noise at an exact SNR, room reverb, time offsets, and the random training chain.

A phone's query is the reference played into a room: offset, reverberated and
buried in noise. The Neural Audio Fingerprint (Chang et al. 2021, arXiv 2010.11910)
makes its positive pairs by applying exactly these distortions on the fly, and
Singh et al. 2023 (arXiv 2211.11060) keep the chain: background noise at an SNR
drawn from a range, room impulse responses, time offsets up to half the database
hop. Every step here is a batched torch function taking a `torch.Generator`, so a
seed fixes the whole chain. Synthetic impulse responses (direct path, early
reflections, exponential noise tail) are checked by measuring their reverberation
time with Schroeder's backward integration (Schroeder 1965, JASA 37), T20 fit.

Notebook: 02_distortions.ipynb
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.fft import next_fast_len

from .audio import SR

CONDITIONS = ("clean", "noise", "reverb", "noise+reverb")  # the index of each is its condition code


def _power(x: torch.Tensor, floor: bool = False) -> torch.Tensor:
    """Mean square over the last axis; `floor` keeps it above zero, for a denominator."""
    p = x.square().mean(-1)
    return p.clamp_min(torch.finfo(x.dtype).tiny) if floor else p


def _as_tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


# ----------------------------------------------------------------------------
# noise


def fit_length(noise: torch.Tensor, T: int) -> torch.Tensor:
    """The first `T` samples of `noise` (..., N), tiled first if it is shorter."""
    reps = math.ceil(T / noise.shape[-1])
    return noise.repeat(*([1] * (noise.ndim - 1)), reps)[..., :T] if reps > 1 else noise[..., :T]


def add_noise(x, noise, snr_db) -> torch.Tensor:
    """Add noise scaled to an exact signal-to-noise ratio, measured on `x` itself.

    Args:
        x: (B, T) or (T,) clean signal.
        noise: (B, N) or (N,) noise; its first T samples are used (tiled if N < T).
        snr_db: float or (B,) tensor, the SNR in dB: 10 log10(P_x / P_noise).

    Returns:
        y = x + scaled noise, the shape of `x`. A silent `x` stays silent.

    Notebook: 02_distortions.ipynb
    """
    x = _as_tensor(x)
    noise = fit_length(_as_tensor(noise).to(x.dtype), x.shape[-1])  # (B, T) or (T,)
    snr = torch.as_tensor(snr_db, dtype=torch.float64)
    # the gain that puts P_noise at P_x / 10^(snr/10); computed in float64 so the SNR is exact
    gain = (_power(x).double() / (_power(noise, True).double() * 10 ** (snr / 10))).sqrt()  # (B,) or ()
    return x + gain.to(x.dtype).unsqueeze(-1) * noise


def snr_db(clean, noisy) -> torch.Tensor:
    """The measured SNR of `noisy` against `clean`, in dB, per item: (B, T) -> (B,), (T,) -> ()."""
    clean, noisy = _as_tensor(clean).double(), _as_tensor(noisy).double()
    return 10 * torch.log10(_power(clean) / _power(noisy - clean, True))


# ----------------------------------------------------------------------------
# reverb


def reverb(x, rir) -> torch.Tensor:
    """Convolve with a room impulse response, with no added delay and no change of level.

    The output is aligned on the direct path (the largest |rir| tap, at index d):
    y[t] = (x * rir)[t + d], so the clean and reverberant signals line up at lag 0.

    Args:
        x: (B, T) or (T,) dry signal.
        rir: (B, L) or (L,) impulse response(s); zero padding at the end changes nothing.

    Returns:
        (B, T) or (T,) reverberant signal, its RMS equal to that of `x` item by item.

    Notebook: 02_distortions.ipynb
    """
    x = _as_tensor(x)
    rir = _as_tensor(rir).to(x.dtype)
    n = next_fast_len(x.shape[-1] + rir.shape[-1] - 1, real=True)  # linear (not circular) convolution
    return _convolve_aligned(x, torch.fft.rfft(rir, n), rir.abs().argmax(-1, keepdim=True), n)


def _convolve_aligned(x: torch.Tensor, H: torch.Tensor, d: torch.Tensor, n: int) -> torch.Tensor:
    """`reverb` given the spectrum H (B, n // 2 + 1) of the response and its direct-path index d (B, 1)."""
    T = x.shape[-1]
    full = torch.fft.irfft(torch.fft.rfft(x, n) * H, n)  # (B, n)
    idx = torch.arange(T) + d  # (B, T) samples [d, d + T) of the full convolution
    y = torch.gather(full, -1, idx.expand(*full.shape[:-1], T))
    return y * (_power(x) / _power(y, True)).sqrt().unsqueeze(-1)


def synth_rir(rt60: float, sr: int = SR, length_s: float | None = None, early: bool = True,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """A room impulse response: a unit direct path at index 0, a few early reflections
    in the first 50 ms, and a Gaussian tail whose energy falls 60 dB in `rt60` seconds.

    The tail starts at 0.1 (at 8 kHz), a direct-to-reverberant ratio from about 0 dB
    (rt60 = 0.2 s) to -8 dB (1 s): a phone a few metres from a loudspeaker.

    Args:
        rt60: reverberation time in seconds.
        sr: sample rate.
        length_s: length in seconds (default 1.2 rt60, at least 0.1 s).
        early: add sparse early reflections.
        generator: random source.

    Returns:
        (L,) float32 impulse response.

    Notebook: 02_distortions.ipynb
    """
    L = int(round(sr * (length_s if length_s is not None else max(1.2 * rt60, 0.1))))
    t = torch.arange(L) / sr  # (L,) seconds
    envelope = torch.exp(-math.log(1000.0) * t / rt60)  # amplitude -60 dB at rt60
    tail = torch.randn(L, generator=generator).clamp_(-4, 4)  # clamped so no tap beats the direct path
    h = 0.1 * math.sqrt(SR / sr) * tail * envelope  # the same tail energy at any sample rate
    if early:
        k = int(torch.randint(3, 9, (1,), generator=generator))
        taps = torch.randint(int(0.002 * sr), int(0.05 * sr), (k,), generator=generator).clamp_max(L - 1)
        amp = 0.2 + 0.3 * torch.rand(k, generator=generator)  # at most 0.5, below the direct path
        sign = torch.randint(0, 2, (k,), generator=generator) * 2 - 1
        h.index_put_((taps,), amp * sign * envelope[taps], accumulate=False)
    h[0] = 1.0
    return h.float()


def rt60_schroeder(rir, sr: int = SR) -> float:
    """Reverberation time measured by Schroeder backward integration (T20 method).

    The energy decay curve EDC(t) = sum over tau >= t of h(tau)^2, in dB, is fitted
    by a line between -5 and -25 dB and extrapolated to -60 dB.

    Args:
        rir: (L,) impulse response (numpy or torch).
        sr: sample rate.

    Returns:
        RT60 in seconds; ValueError if the response never decays by 25 dB.

    Notebook: 02_distortions.ipynb
    """
    h = np.asarray(torch.as_tensor(rir).detach().cpu(), dtype=np.float64)
    edc = np.cumsum(np.square(h)[::-1])[::-1]  # (L,) energy left after each sample
    edc_db = 10 * np.log10(np.maximum(edc / edc[0], 1e-300))
    if edc_db.min() > -25:
        raise ValueError(f"the response decays only {-edc_db.min():.1f} dB, T20 needs 25 dB")
    i5, i25 = np.argmax(edc_db <= -5), np.argmax(edc_db <= -25)
    t = np.arange(i5, i25 + 1) / sr
    slope = np.polyfit(t, edc_db[i5:i25 + 1], 1)[0]  # dB per second
    return float(-60.0 / slope)


# ----------------------------------------------------------------------------
# time offsets


def time_offset(x, max_shift: int, generator: torch.Generator | None = None, return_shift: bool = False):
    """Delay (shift > 0) or advance each item by a random whole number of samples, zero-filled.

    Args:
        x: (B, T) signals.
        max_shift: the largest shift in samples; each is uniform in [-max_shift, max_shift].
        generator: random source.
        return_shift: also return the (B,) shifts.

    Returns:
        y (B, T) with y[b, t] = x[b, t - shift[b]] (0 outside), and the shifts if asked.

    Notebook: 02_distortions.ipynb
    """
    x, S = _as_tensor(x), max_shift
    B, T = x.shape
    shift = torch.randint(-S, S + 1, (B,), generator=generator)  # (B,)
    # every shifted copy is a window of the zero-padded signal; pick one per item
    windows = torch.nn.functional.pad(x, (S, S)).unfold(1, T, 1)  # (B, 2S + 1, T), a view
    y = windows[torch.arange(B), S - shift]  # (B, T)
    return (y, shift) if return_shift else y


def crop(x, start: int, length: int) -> torch.Tensor:
    """x[start : start + length] of a 1-d signal, zero-filled where it runs off either end."""
    x = _as_tensor(x)
    a, b = max(start, 0), min(start + length, x.shape[0])
    return torch.nn.functional.pad(x[a:b], (a - start, start + length - b)) if b > a else x.new_zeros(length)


def band_limit(x, low_hz, high_hz, order=4, sr: int = SR) -> torch.Tensor:
    """Pass x through a zero-phase Butterworth band: what a phone's microphone and codec leave.

    The magnitude of an analogue Butterworth high-pass at `low_hz` times a low-pass at `high_hz`,
    |H(f)| = (1 + (low/f)^2n)^-1/2 (1 + (f/high)^2n)^-1/2, applied in the frequency domain
    (circularly: the short impulse response wraps a few ms around the ends, harmless in training).
    Each item may have its own band.

    Args:
        x: (B, T) or (T,) signals.
        low_hz, high_hz: band edges (-3 dB), floats or (B,) tensors.
        order: the filters' order n, an int or a (B,) tensor.
        sr: sample rate.

    Returns:
        x band-limited, same shape and dtype.

    Notebook: 02_distortions.ipynb
    """
    x = _as_tensor(x)
    y = x.reshape(-1, x.shape[-1]).double()  # (B, T)
    f = torch.fft.rfftfreq(y.shape[-1], 1.0 / sr, dtype=torch.float64)  # (F,)

    def col(v):
        return torch.as_tensor(v, dtype=torch.float64).reshape(-1, 1)  # (B or 1, 1)

    lo, hi, n2 = col(low_hz), col(high_hz), 2 * col(order)
    gain = (1 + (lo / f.clamp_min(1e-9)) ** n2) ** -0.5 * (1 + (f / hi) ** n2) ** -0.5  # (B, F)
    return torch.fft.irfft(torch.fft.rfft(y) * gain, n=y.shape[-1]).to(x.dtype).reshape(x.shape)


# ----------------------------------------------------------------------------
# the random training chain


@dataclass
class DistortConfig:
    p_clean: float = 0.05  # probabilities of the four conditions (normalised when drawn)
    p_noise: float = 0.35
    p_reverb: float = 0.2
    p_noise_reverb: float = 0.4
    snr_db: tuple[float, float] = (0.0, 20.0)  # uniform range
    rt60: tuple[float, float] = (0.2, 1.0)  # seconds, for synthetic impulse responses
    max_offset_s: float = 0.05  # half the 0.1 s database hop
    gain_db: tuple[float, float] | None = None  # optional random level change
    p_band: float = 0.0  # share of items band-limited last, as a phone would (any condition)
    band_low_hz: tuple[float, float] = (150.0, 600.0)  # uniform range of the band's lower edge
    band_high_hz: tuple[float, float] = (2800.0, 3800.0)  # ... and of its upper edge
    sr: int = SR

    @classmethod
    def train(cls) -> DistortConfig:
        return cls()

    @classmethod
    def only(cls, condition: str, snr: float = 10.0) -> DistortConfig:
        """One condition of `CONDITIONS` for every item, at one SNR, no offset: an evaluation preset."""
        p = [float(c == condition) for c in CONDITIONS]
        if sum(p) != 1:
            raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")
        return cls(*p, snr_db=(snr, snr), max_offset_s=0.0)

    @classmethod
    def eval_noise(cls, snr: float) -> DistortConfig:
        return cls.only("noise", snr)

    def probs(self) -> torch.Tensor:
        p = torch.tensor([self.p_clean, self.p_noise, self.p_reverb, self.p_noise_reverb], dtype=torch.float64)
        if (p < 0).any() or p.sum() <= 0:
            raise ValueError(f"condition probabilities must be >= 0 with a positive sum, got {p.tolist()}")
        return p / p.sum()


class Distorter:
    """Apply the random training chain to a batch: offset, then noise, reverb, or reverb then noise;
    then, for a share `p_band` of the items, a random phone band.

    Args:
        cfg: the probabilities and ranges.
        noise_bank: list (or dict) of 1-d float32 noise recordings; random crops are taken.
        rirs: list of 1-d impulse responses; None synthesises a pool of `n_rirs` with rt60
            uniform in `cfg.rt60`, seeded by `seed` (use another seed for evaluation).

    Call:
        `distorter(x, generator=None, return_conditions=False)`: x (B, T) clean windows ->
        (B, T) distorted ones (dtype of x), and the (B,) condition codes (indices into
        `CONDITIONS`) if asked. `generator=None` draws from torch's global generator.

    Notebook: 02_distortions.ipynb
    """

    def __init__(self, cfg: DistortConfig | None = None, noise_bank=(), rirs=None, n_rirs: int = 200, seed: int = 0):
        self.cfg = cfg = cfg or DistortConfig()
        bank = noise_bank.values() if isinstance(noise_bank, dict) else noise_bank
        self.noise = [_as_tensor(n).float().flatten() for n in bank]
        p = cfg.probs()
        if not self.noise and (p[1] + p[3]) > 0:
            raise ValueError("the configuration adds noise but the noise bank is empty")
        if rirs is None:
            g, (lo, hi) = torch.Generator().manual_seed(seed), cfg.rt60
            rt60s = lo + (hi - lo) * torch.rand(n_rirs, generator=g, dtype=torch.float64)
            rirs = [synth_rir(float(r), cfg.sr, generator=g) for r in rt60s]
        rirs = [_as_tensor(r).float().flatten() for r in rirs]
        L = max(r.shape[0] for r in rirs)
        self.rirs = torch.stack([torch.nn.functional.pad(r, (0, L - r.shape[0])) for r in rirs])  # (R, L)
        self.direct = self.rirs.abs().argmax(-1, keepdim=True)  # (R, 1)
        self.spectra: dict[int, torch.Tensor] = {}  # FFT size -> (R, n // 2 + 1): transformed once, not per batch

    def noise_crops(self, n: int, T: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, T) random excerpts of random recordings of the noise bank (short ones tiled)."""
        which = torch.randint(len(self.noise), (n,), generator=generator).tolist()
        u = torch.rand(n, generator=generator, dtype=torch.float64).tolist()
        out = []
        for k, uk in zip(which, u):
            rec = self.noise[k]
            rec = fit_length(rec, T + rec.shape[0]) if rec.shape[0] < T else rec  # any phase of a short loop
            out.append(rec[int(uk * (rec.shape[0] - T + 1)):][:T])
        return torch.stack(out) if out else torch.zeros(0, T)

    def __call__(self, x, generator: torch.Generator | None = None, return_conditions: bool = False):
        cfg, g = self.cfg, generator
        y = x = _as_tensor(x)  # (B, T)
        B, T = x.shape
        cond = torch.multinomial(cfg.probs(), B, replacement=True, generator=g)  # (B,) groups items by condition
        max_shift = int(round(cfg.max_offset_s * cfg.sr))
        if max_shift > 0:
            y = time_offset(y, max_shift, generator=g)
        # reverb first: in a room the noise is added at the microphone, after the music has reverberated
        rev = ((cond == 2) | (cond == 3)).nonzero().squeeze(1)  # (Br,)
        if rev.numel():
            pick = torch.randint(self.rirs.shape[0], (rev.numel(),), generator=g)
            n = next_fast_len(T + self.rirs.shape[1] - 1, real=True)
            if n not in self.spectra:
                self.spectra[n] = torch.fft.rfft(self.rirs, n)
            y = y.index_copy(0, rev, _convolve_aligned(y[rev], self.spectra[n][pick], self.direct[pick], n))
        noi = ((cond == 1) | (cond == 3)).nonzero().squeeze(1)  # (Bn,)
        if noi.numel():
            lo, hi = cfg.snr_db
            snr = lo + (hi - lo) * torch.rand(noi.numel(), generator=g, dtype=torch.float64)
            y = y.index_copy(0, noi, add_noise(y[noi], self.noise_crops(noi.numel(), T, g), snr))
        if cfg.p_band > 0:
            band = (torch.rand(B, generator=g) < cfg.p_band).nonzero().squeeze(1)  # (Bb,)
            u = torch.rand(2, band.numel(), generator=g, dtype=torch.float64)
            (l0, l1), (h0, h1) = cfg.band_low_hz, cfg.band_high_hz
            order = torch.randint(2, 7, (band.numel(),), generator=g)  # gentle to steep skirts
            if band.numel():  # none drawn in a small batch: nothing to filter (an empty FFT is an error)
                y = y.index_copy(0, band, band_limit(y[band], l0 + (l1 - l0) * u[0], h0 + (h1 - h0) * u[1], order, cfg.sr))
        if cfg.gain_db is not None:
            lo, hi = cfg.gain_db
            gain_db = lo + (hi - lo) * torch.rand(B, generator=g)
            y = y * 10 ** (gain_db[:, None] / 20).to(y.dtype)
        return (y, cond) if return_conditions else y
