"""Timbres of the procedural corpus: additive, FM and plucked-string notes, and a drum kit.

Three classic ways to make a pitched sound: a sum of damped harmonics (additive
synthesis), frequency modulation (Chowning 1973, JAES 21) and the Karplus-Strong
plucked string (Karplus and Strong 1983, CMJ 7). Each instrument is a dict of random
parameters drawn once per track; `note` renders one note of it, peak 1.
"""
from __future__ import annotations

import numpy as np
from scipy import signal


def hz(midi):
    """MIDI note number(s) to frequency in Hz (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


# ----------------------------------------------------------------------------
# pitched instruments: one note at a time


def instrument(kind: str, rng: np.random.Generator, pad: bool = False) -> dict:
    """Random parameters of one timbre (its envelope, harmonic weights, FM ratio...)."""
    p = {"kind": kind, "a": rng.uniform(0.15, 0.6) if pad else rng.uniform(0.002, 0.03),
         "d": rng.uniform(0.05, 0.5), "s": rng.uniform(0.3, 0.9), "r": rng.uniform(0.03, 0.3),
         "seed": int(rng.integers(2**31)), "vib": rng.uniform(0.0, 0.012) * (rng.random() < 0.5),
         "vib_hz": rng.uniform(4.0, 7.0)}
    if kind == "additive":
        k = np.arange(1, 25)
        odd = np.where(k % 2 == 1, 1.0, rng.uniform(0.05, 1.0))  # clarinet-like when even harmonics are weak
        p.update(w=k ** -rng.uniform(0.5, 2.2) * odd * rng.uniform(0.3, 1.7, k.size),
                 phi=rng.uniform(0, 2 * np.pi, k.size), damp=rng.uniform(0.0, 4.0),
                 trem=rng.uniform(0.0, 0.3), trem_hz=rng.uniform(2.0, 7.0))
    elif kind == "fm":
        p.update(ratio=float(rng.choice([0.5, 1, 1, 2, 2, 3, 4, 1.5, 3.5, 1.41])),
                 index=rng.uniform(0.5, 5.0), tau=rng.uniform(0.05, 1.0))
    else:
        p.update(g=rng.uniform(0.985, 0.999), bright=rng.uniform(0.15, 0.9))
    return p


def envelope(n: int, r: int, sr: int, a: float, d: float, s: float) -> np.ndarray:
    """Attack-decay-sustain over the `n` gate samples, then an exponential release over `r`."""
    t = np.arange(n) / sr
    gate = np.where(t < a, t / a, s + (1.0 - s) * np.exp(-(t - a) / d))
    last = gate[-1] if n else 0.0
    return np.concatenate([gate, last * np.exp(-np.arange(r) / max(r / 6.0, 1.0))])


def note(p: dict, midi: int, n: int, sr: int) -> np.ndarray:
    """One note of `n` gate samples plus its release, peak 1."""
    f, r = float(hz(midi)), int(p["r"] * sr)
    L = n + r
    t = np.arange(L) / sr
    # vibrato: the frequency wobbles by a fraction `vib` (up to 20 cents), fading in over 0.3 s
    wobble = np.minimum(t / 0.3, 1.0) * np.cos(2 * np.pi * p["vib_hz"] * t) / (2 * np.pi * p["vib_hz"])
    phase = 2 * np.pi * f * (t - p["vib"] * wobble)  # (L,)
    if p["kind"] == "additive":
        # sum_k w_k exp(-damp (k-1) t) sin(k phase + phi_k) = Im(z P(u)), z = e^{i phase}, u = e^{-damp t} z,
        # P(u) = sum_k w_k e^{i phi_k} u^(k-1) by Horner: K complex multiply-adds instead of K x L sines.
        # High harmonics die first (the damping), as in struck strings.
        K = max(1, min(24, int(0.45 * sr / f)))  # no harmonic above 0.45 sr: no aliasing
        z = np.exp(1j * phase)  # (L,)
        u = np.exp(-p["damp"] * t) * z
        c = p["w"][:K] * np.exp(1j * p["phi"][:K])  # (K,)
        acc = np.full(L, c[-1])
        for ck in c[-2::-1]:
            acc = acc * u + ck
        x = (z * acc).imag * (1.0 - p["trem"] * np.sin(2 * np.pi * p["trem_hz"] * t))
        env = envelope(n, r, sr, p["a"], p["d"], p["s"])
    elif p["kind"] == "fm":
        fm = p["ratio"] * f
        index = min(p["index"], max(0.0, (0.45 * sr - f) / (2 * fm) - 1))  # Carson's rule keeps it below Nyquist
        x = np.sin(phase + index * np.exp(-t / p["tau"]) * np.sin(2 * np.pi * fm * t))
        env = envelope(n, r, sr, p["a"], p["d"], p["s"])
    else:
        # Karplus-Strong: a noise burst circulates in a delay line of one period, averaged
        # (low-passed) on each pass; the averaging and a linear interpolation give the
        # fractional delay P = sr / f, so pitch is exact. As an IIR filter it runs in C.
        P = sr / f
        N = max(1, int(P - 0.5))
        fr = P - 0.5 - N
        a = np.zeros(N + 3)
        a[0] = 1.0
        a[N:] = -p["g"] * np.array([0.5 * (1 - fr), 0.5, 0.5 * fr])
        burst = np.random.default_rng([p["seed"], midi]).standard_normal(N)
        burst = signal.lfilter([p["bright"]], [1.0, p["bright"] - 1.0], burst)  # darker burst, duller string
        x = signal.lfilter([1.0], a, np.pad(burst, (0, L - N)))
        env = envelope(n, r, sr, 0.001, 1.0, 1.0)
    x = x * env
    return x / (np.abs(x).max() + 1e-9)


# ----------------------------------------------------------------------------
# drums


def drum_kit(rng: np.random.Generator, sr: int) -> dict:
    """A kick (pitched sweep), a snare (band-passed noise and a tone) and hats (high-passed noise)."""
    t = np.arange(int(0.4 * sr)) / sr
    f0, f1 = rng.uniform(90, 200), rng.uniform(40, 65)
    sweep = f1 + (f0 - f1) * np.exp(-t / rng.uniform(0.01, 0.05))
    kick = np.sin(2 * np.pi * np.cumsum(sweep) / sr) * np.exp(-t / rng.uniform(0.08, 0.3))
    kick[:40] += rng.uniform(0.1, 0.6) * rng.standard_normal(40) * np.exp(-np.arange(40) / 6.0)  # beater click
    lo = rng.uniform(500, 2000)
    b, a = signal.butter(2, [lo, min(lo * rng.uniform(1.5, 4.0), 0.475 * sr)], "bandpass", fs=sr)
    snare = signal.lfilter(b, a, rng.standard_normal(t.size)) * np.exp(-t / rng.uniform(0.05, 0.2))
    snare += rng.uniform(0.2, 1.0) * np.sin(2 * np.pi * rng.uniform(150, 280) * t) * np.exp(-t / rng.uniform(0.03, 0.1))
    b, a = signal.butter(2, rng.uniform(2000, 3500), "highpass", fs=sr)
    hiss = signal.lfilter(b, a, rng.standard_normal(t.size))
    hat = hiss * np.exp(-t / rng.uniform(0.01, 0.06))
    return {k: v / np.abs(v).max() for k, v in (("kick", kick), ("snare", snare), ("hat", hat))}


