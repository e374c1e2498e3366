"""Procedural noise: stand-ins for recorded noise (MUSAN, ESC-50 in real use; see data/README.md).

Seven kinds, each a few lines of signal processing: pink and brown noise (power
1/f and 1/f^2), babble (glottal pulse trains through the vowel formants of
Peterson and Barney 1952), traffic (rumble and passing cars with a Doppler glide),
rain, clicks and mains hum. Train on one seed of the bank and evaluate on another,
so the evaluation noise is never heard in training.

Notebook: 02_distortions.ipynb
"""
from __future__ import annotations

import numpy as np
from scipy import signal

from ..audio import SR, peak_normalise

NOISE_KINDS = ("pink", "brown", "babble", "traffic", "rain", "clicks", "hum")
GLOTTIS = np.convolve([1.0, -0.95], [1.0, -0.85])  # two poles: the glottal pulse's -12 dB/octave
# formants F1-F3 (Hz) of the vowels of hod, head, heed, hawed, who'd, had (Peterson and Barney 1952, men)
VOWELS = ((730, 1090, 2440), (530, 1840, 2480), (270, 2290, 3010), (570, 840, 2410), (300, 870, 2240),
          (660, 1720, 2410))


def _colored(rng: np.random.Generator, n: int, sr: int, beta: float, f_lo: float = 20.0) -> np.ndarray:
    """Noise with power spectrum 1/f^beta above f_lo (flat below): beta=1 pink, beta=2 brown."""
    f = np.fft.rfftfreq(n, 1.0 / sr)
    X = np.fft.rfft(rng.standard_normal(n)) * np.maximum(f, f_lo) ** (-beta / 2)
    X[0] = 0.0
    return np.fft.irfft(X, n)


def _resonators(formants, sr: int) -> np.ndarray:
    """Denominator of a cascade of two-pole resonators, one per formant (bandwidths widen with frequency)."""
    a = np.ones(1)
    for F in formants:
        r = np.exp(-np.pi * (50.0 + 0.05 * F) / sr)
        a = np.convolve(a, [1.0, -2 * r * np.cos(2 * np.pi * F / sr), r * r])
    return a


def _babble(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """4-8 talkers: glottal pulse trains with gliding pitch through vowel formants, in syllables."""
    out = np.zeros(n + sr)
    for _ in range(rng.integers(4, 9)):
        f0, g = rng.uniform(85, 240), rng.uniform(0.5, 1.0)
        size = rng.uniform(0.9, 1.2)  # shorter vocal tracts, higher formants
        pos = int(rng.integers(0, sr // 2))
        while pos < n:
            if rng.random() < 0.12:  # a pause between phrases
                pos += int(rng.uniform(0.2, 0.7) * sr)
                continue
            L = int(rng.uniform(0.1, 0.3) * sr)
            pitch = f0 * np.linspace(*rng.uniform(0.85, 1.15, 2), L)  # (L,) intonation glides
            pulses = np.diff(np.floor(np.cumsum(pitch / sr)), prepend=0.0)  # one impulse per glottal period
            # the glottal pulse falls at -12 dB/oct (two poles), the lips give +6 back (a difference below)
            src = signal.lfilter([1.0], GLOTTIS, pulses) + 0.01 * rng.standard_normal(L)  # plus breath
            a = _resonators(np.array(VOWELS[rng.integers(len(VOWELS))]) * size, sr)
            y = np.diff(signal.lfilter([a.sum()], a, src), prepend=0.0)  # lip radiation: a first difference
            y *= np.sin(np.pi * np.arange(L) / L) ** 0.7  # the syllable's rise and fall (~4-5 Hz)
            out[pos: pos + L] += g * y / (np.abs(y).max() + 1e-9)
            pos += L + int(rng.uniform(0.0, 0.08) * sr)
    return out[:n]


def _traffic(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Low-passed brown rumble with slow swells, plus passing cars (noise and a Doppler-gliding engine)."""
    t = np.arange(n) / sr
    b, a = signal.butter(2, rng.uniform(150, 400), fs=sr)
    x = signal.lfilter(b, a, _colored(rng, n, sr, 2.0)) * (1 + 0.3 * np.sin(2 * np.pi * t / rng.uniform(5, 12)))
    x /= x.std()
    b, a = signal.butter(2, 900, fs=sr)
    hiss = signal.lfilter(b, a, rng.standard_normal(n))
    for tc in np.cumsum(rng.exponential(4.0, size=int(n / sr / 2) + 2)):
        w = rng.uniform(0.8, 3.0)
        env = np.exp(-0.5 * ((t - tc) / w) ** 2)
        fe = rng.uniform(30, 90) * (1 + 0.06 * np.tanh(-(t - tc) / w))  # higher approaching, lower leaving
        ph = 2 * np.pi * np.cumsum(fe) / sr
        x += rng.uniform(1, 3) * env * (hiss + 0.5 * np.sin(ph) + 0.3 * np.sin(2 * ph))
    return x


def _rain(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Dense random drops (heavy-tailed amplitudes, each a short decay) through a band-pass, on a hiss."""
    drops = (rng.random(n) < rng.uniform(0.2, 0.5)) * rng.lognormal(0.0, 1.0, n)
    drops = signal.lfilter([1.0], [1.0, -0.6], drops)
    hiss = rng.uniform(0.1, 0.4) * drops.std() * rng.standard_normal(n)
    b, a = signal.butter(2, [rng.uniform(400, 800), rng.uniform(2800, 3600)], "bandpass", fs=sr)
    return signal.lfilter(b, a, drops + hiss)


def _clicks(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Sparse clicks (a few per second, each a 2 ms ring) on a faint floor."""
    imp = (rng.random(n) < rng.uniform(2, 6) / sr) * rng.uniform(0.2, 1.0, n) * rng.choice([-1, 1], n)
    b, a = signal.butter(2, [rng.uniform(500, 1500), 3500], "bandpass", fs=sr)
    return signal.lfilter(b, a, imp) + 1e-3 * rng.standard_normal(n)


def _hum(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Mains hum: 50 or 60 Hz and its harmonics (odd ones strongest), plus a little noise."""
    t = np.arange(n) / sr
    f = float(rng.choice([50.0, 60.0]))
    x = np.zeros(n)
    for k in range(1, 12):
        x += (1.0 if k == 1 else rng.uniform(0.1, 0.6) / k ** (0.5 if k % 2 else 1.0)) * np.sin(
            2 * np.pi * k * f * t + rng.uniform(0, 2 * np.pi))
    return x * (1 + 0.05 * np.sin(2 * np.pi * 0.3 * t)) + 0.02 * rng.standard_normal(n)


def noise_bank(seconds: float = 20.0, seed: int = 0, sr: int = SR) -> dict[str, np.ndarray]:
    """Procedural noises, a stand-in for real recorded noise (MUSAN, ESC-50: data/README.md).

    Train on one seed and evaluate on another (`seed=0` for training, `seed=1` for
    evaluation), so the evaluation noise is never heard in training.

    Args:
        seconds: duration of each noise.
        seed: which bank.
        sr: sample rate.

    Returns:
        {kind: (round(seconds * sr),) float32, peak 0.9} for kind in `NOISE_KINDS`.

    Notebook: 02_distortions.ipynb
    """
    n = int(round(seconds * sr))
    makers = {"pink": lambda r: _colored(r, n, sr, 1.0), "brown": lambda r: _colored(r, n, sr, 2.0),
              "babble": lambda r: _babble(r, n, sr), "traffic": lambda r: _traffic(r, n, sr),
              "rain": lambda r: _rain(r, n, sr), "clicks": lambda r: _clicks(r, n, sr), "hum": lambda r: _hum(r, n, sr)}
    bank = {}
    for i, kind in enumerate(NOISE_KINDS):
        x = makers[kind](np.random.default_rng([0x6E6F, seed, i]))
        bank[kind] = peak_normalise(x)
    return bank
