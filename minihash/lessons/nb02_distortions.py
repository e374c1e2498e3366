"""Notebook 02: distortions, what a room and a café do to a query, and the training chain that imitates them.

Noise at an exact signal-to-noise ratio, room impulse responses and their RT60, reverb aligned on the direct
path, and time offsets (the distortion chain of Chang et al. 2021 and Singh et al. 2023). Figures: the noise
spectra (Welch), an impulse response with its Schroeder decay curve, and the (GCC-PHAT) cross-correlation.
Exercises: what one SNR number hides, the SNR in the front end's band and frame by frame (segmental), and a
room's clarity C50, against `minihash.distort.snr_db`, an explicit loop and Schroeder's integral.

References: M. R. Schroeder, JASA 37(3), 1965; ISO 3382-1:2009 (T20, C50); C. Knapp, G. Carter, IEEE TASSP
24(4), 1976 (GCC-PHAT); P. Welch, IEEE Trans. Audio Electroacoustics 15(2), 1967; J. H. L. Hansen, B. Pellom,
ICSLP 1998 (segmental SNR).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import signal

from ..distort import snr_db, synth_rir
from .common import ExerciseError, _as_float_array, _audio_np, _fig_ax, _ok, checker, exercise_decorator, passed
from .nb00_overview import plot_spectrogram

__all__ = ["ExerciseError", "plot_spectrogram", "plot_rir_decay", "plot_noise_spectra", "plot_xcorr", "check_band_snr",
           "check_segmental_snr", "check_c50",
           "exercise", "passed", "solution_band_snr_db", "solution_segmental_snr_db", "solution_c50"]

exercise = exercise_decorator(globals())  # `@lesson.exercise` in the notebook: see common


# ---- figures

def plot_rir_decay(h, sr, ax=None, figsize=(8, 3), title=None, fit_db=(-5.0, -25.0), label=None):
    """An impulse response in dB and its Schroeder energy decay curve, with the T20 fit extrapolated to -60 dB.

    Args:
        h: (L,) impulse response, numpy or torch.
        sr: sample rate in Hz.
        ax: axes to draw on (a new figure when None).
        figsize: size of the new figure.
        title: axes title.
        fit_db: the EDC range (dB) the line is fitted over, as `minihash.distort.rt60_schroeder`.
        label: prefix of the legend entries.

    Returns:
        (fig, ax).

    Notebook: 02_distortions.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)
    h = _audio_np(h).ravel()
    t = np.arange(h.size) / sr
    e = np.square(h)
    edc = np.cumsum(e[::-1])[::-1]  # energy still to come after each instant (Schroeder 1965)
    edc_db = 10 * np.log10(np.maximum(edc / edc[0], 1e-30))
    pre = f"{label}: " if label else ""
    ax.plot(t, 10 * np.log10(np.maximum(e / e.max(), 1e-30)), color="0.75", lw=0.5, label=f"{pre}10 log10 h(t)^2")
    ax.plot(t, edc_db, lw=2, label=f"{pre}Schroeder EDC")
    hi, lo = fit_db
    if edc_db.min() <= lo:
        i, j = np.argmax(edc_db <= hi), np.argmax(edc_db <= lo)
        slope, icpt = np.polyfit(t[i:j + 1], edc_db[i:j + 1], 1)
        tt = np.array([t[i], (-60.0 - icpt) / slope])
        ax.plot(tt, slope * tt + icpt, "k--", lw=1, label=f"{pre}fit {hi:g} to {lo:g} dB: RT60 = {-60 / slope:.2f} s")
        ax.axhline(-60, color="k", lw=0.5, ls=":")
    ax.set_ylim(-80, 3)
    ax.set_xlim(0, t[-1])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("level (dB)")
    ax.legend(loc="upper right", fontsize=8)
    if title:
        ax.set_title(title)
    return fig, ax


def plot_noise_spectra(bank, sr, ax=None, figsize=(8, 4), nperseg=1024, slopes=True, title="noise spectra (Welch)"):
    """Power spectral densities of several noises on log-log axes, with 1/f and 1/f^2 guides.

    Pink noise falls as 1/f (-10 dB per decade), brown noise as 1/f^2 (-20 dB per decade).

    Args:
        bank: {name: (T,) samples}, e.g. `minihash.corpus.noise.noise_bank()`.
        sr: sample rate in Hz.
        ax: axes to draw on (a new figure when None).
        figsize: size of the new figure.
        nperseg: Welch segment length.
        slopes: draw the 1/f and 1/f^2 reference lines.
        title: axes title.

    Returns:
        (fig, ax).

    Notebook: 02_distortions.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)
    curves = {}
    for name, x in bank.items():
        f, P = signal.welch(_audio_np(x).ravel(), fs=sr, nperseg=nperseg)
        ax.loglog(f[1:], P[1:], lw=1, label=name)  # the 0 Hz bin has no place on a log axis
        curves[name] = (f, P)
    if slopes and curves:
        fr = np.array([30.0, sr / 2])
        for name, beta, style, text in (("pink", 1.0, "k--", "1/f (-10 dB/decade)"),
                                        ("brown", 2.0, "k:", "1/f² (-20 dB/decade)")):
            f, P = curves.get(name, next(iter(curves.values())))
            ref = 4 * np.interp(100.0, f, P)  # parallel to the named curve, a little above it
            ax.loglog(fr, ref * (fr / 100.0) ** -beta, style, lw=1.2, label=text)
    if curves:
        top = max(P.max() for _, P in curves.values())
        ax.set_ylim(top * 1e-9, top * 5)  # a filter's stopband would otherwise stretch the axis to 1e-20
    ax.set_xlim(10, sr / 2)
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("power spectral density (1/Hz)")
    ax.legend(fontsize=8, ncol=2)
    if title:
        ax.set_title(title)
    return fig, ax


def plot_xcorr(x, y, sr, max_lag_s=0.05, phat=False, ax=None, figsize=(8, 2.5), title=None):
    """Cross-correlation of two signals against lag, with its peak marked.

    A positive lag means `y` is late: y(t) ~ x(t - lag). Music correlates with itself
    at many lags (held notes, beats), which blurs the plain cross-correlation; `phat`
    whitens the cross-spectrum first (GCC-PHAT, Knapp and Carter 1976), leaving a sharp
    peak at the delay, for a reverberant `y` at its direct path.

    Args:
        x, y: (T,) signals, numpy or torch.
        sr: sample rate in Hz.
        max_lag_s: the largest lag drawn, in seconds.
        phat: whiten (GCC-PHAT) instead of the plain normalised cross-correlation.
        ax: axes to draw on (a new figure when None).
        figsize: size of the new figure.
        title: axes title.

    Returns:
        (fig, ax).

    Notebook: 02_distortions.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)
    x, y = _audio_np(x).ravel(), _audio_np(y).ravel()
    n = x.size + y.size - 1  # long enough that the circular correlation is the linear one
    C = np.fft.rfft(y, n) * np.conj(np.fft.rfft(x, n))
    if phat:
        C = C / (np.abs(C) + 1e-12 * np.abs(C).max())
    c = np.roll(np.fft.irfft(C, n), x.size - 1)  # (n,) lags -(len(x) - 1) ... len(y) - 1
    lags = np.arange(n) - (x.size - 1)
    if not phat:
        c = c / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-30)
    keep = np.abs(lags) <= max_lag_s * sr
    lags, c = lags[keep], c[keep]
    k = int(np.argmax(c))
    ax.plot(1000 * lags / sr, c, lw=1)
    ax.plot(1000 * lags[k] / sr, c[k], "ro", label=f"peak at {1000 * lags[k] / sr:.1f} ms ({lags[k]} samples)")
    ax.set_xlabel("lag (ms)")
    ax.set_ylabel("GCC-PHAT" if phat else "correlation")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return fig, ax


# ---- exercises

def _scalar(x, what: str) -> float:
    got = _as_float_array(x, what)
    if got.size != 1:
        raise ExerciseError(f"{what} should be one number, got shape {got.shape}")
    return float(got)


def _named_mistake(got: float, want: float, variants, tol: float) -> str | None:
    """The explanation of the first (value, why) variant within `tol` of `got` (and not of `want`)."""
    for value, why in variants:
        if np.isfinite(value) and abs(got - value) <= tol and abs(value - want) > tol:
            return why
    return None


def _band_pass(x: np.ndarray, sr: int, f_lo: float, f_hi: float) -> np.ndarray:
    """`x` through an ideal band-pass filter: the rfft bins outside f_lo <= f <= f_hi set to zero."""
    f = np.fft.rfftfreq(len(x), 1 / sr)
    return np.fft.irfft(np.fft.rfft(x) * ((f >= f_lo) & (f <= f_hi)), len(x))


def _band_cases(seed: int = 2):
    """(clean, noisy, sr, f_lo, f_hi): tones in and out of the band, noises with most power low or high."""
    rng = np.random.default_rng(seed)
    cases = []
    for sr, T, (f_lo, f_hi), tilt in ((8000, 6000, (310.0, 3390.0), -1), (8000, 5000, (510.0, 2030.0), 1),
                                      (16000, 9000, (95.0, 6030.0), -1), (8000, 6000, (0.0, 4000.0), 1)):
        t = np.arange(T) / sr
        x = sum(a * np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for a, f in ((1.0, 110), (0.5, 440), (0.3, 1250),
                                                                               (0.2, 3000)))
        w = np.fft.rfft(rng.standard_normal(T))
        f = np.fft.rfftfreq(T, 1 / sr)
        n = np.fft.irfft(w * (1 + f / 500.0) ** (tilt * 1.0), T)  # most power low (tilt -1) or high (+1)
        n *= 0.3 * np.sqrt(np.mean(x ** 2) / np.mean(n ** 2))
        cases.append((x, x + n, sr, f_lo, f_hi))
    return cases


@checker
def check_band_snr(your_fn) -> None:
    """Check `your_fn(clean, noisy, sr, f_lo, f_hi) -> dB`: the SNR counting only f_lo <= f <= f_hi.

    The reference passes clean and noise (noisy - clean) through an ideal band-pass filter (rfft bins outside
    the band set to zero) and takes `minihash.distort.snr_db` of what is left; the power sums of the rfft bins
    in the band (Parseval) give the same number. Names the band ignored, magnitudes for powers, 20 log10,
    the noisy mix for the noise and the band's edges taken as bin indices.

    Notebook: 02_distortions.ipynb
    """
    for x, y, sr, f_lo, f_hi in _band_cases():
        want = float(snr_db(_band_pass(x, sr, f_lo, f_hi), _band_pass(y, sr, f_lo, f_hi)))
        got = _scalar(your_fn(x.copy(), y.copy(), sr, f_lo, f_hi), "band_snr_db(clean, noisy, sr, f_lo, f_hi)")
        if abs(got - want) <= 0.01:
            continue
        where = f"band {f_lo:g}-{f_hi:g} Hz at {sr} Hz: got {got:.4g} dB, expected {want:.4g} dB"
        if not np.isfinite(got):
            raise ExerciseError(f"{where}: not a finite number: did any bin fall in the band? The bins' frequencies "
                                "in Hz are np.fft.rfftfreq(len(clean), 1 / sr)")
        f = np.fft.rfftfreq(len(x), 1 / sr)
        X, N, Y = np.fft.rfft(x), np.fft.rfft(y - x), np.fft.rfft(y)
        band, k = (f >= f_lo) & (f <= f_hi), np.arange(len(f))
        by_index = (k >= f_lo) & (k <= f_hi)
        sums = lambda A, m, p=2: float(np.sum(np.abs(A[m]) ** p))
        why = _named_mistake(got, want, [
            (float(snr_db(x, y)), "that is the SNR of the whole signal: keep only the rfft bins with f_lo <= f <= "
             "f_hi (np.fft.rfftfreq(len(clean), 1 / sr) gives their frequencies)"),
            (10 * np.log10(sums(X, band, 1) / sums(N, band, 1)), "you summed magnitudes |X|: power is the squared "
             "magnitude, |X|^2"),
            (2 * want, "20 log10 of a power ratio (twice the answer): powers take 10 log10"),
            (10 * np.log10(sums(X, band) / sums(Y, band)), "the denominator is the noisy mix: the noise is "
             "noisy - clean"),
            (10 * np.log10(sums(X, by_index) / sums(N, by_index)) if by_index.any() else np.nan,
             "f_lo and f_hi were used as bin indices: they are in Hz; bin k is at k * sr / len(clean) Hz"),
            (float(snr_db(_band_pass(x, 8000, f_lo, f_hi), _band_pass(y, 8000, f_lo, f_hi))), "the sample rate is "
             "fixed at 8000: the bins' frequencies are np.fft.rfftfreq(len(clean), 1 / sr)"),
        ], tol=0.01)
        raise ExerciseError(f"{where}: {why}" if why else f"{where}: SNR = 10 log10(sum of |X|^2 / sum of |N|^2) "
                            "over the rfft bins in the band, N = rfft(noisy - clean)")
    _ok("band_snr_db")


def _seg_cases(seed: int = 3):
    """(clean, noisy, frame): music-like signals with near-silent stretches, steady and bursty noise."""
    rng = np.random.default_rng(seed)
    cases = []
    for T, frame, bursty in ((4000, 160, False), (3333, 200, True), (5000, 256, False)):
        t = np.arange(T) / 8000
        env = np.where((t % 0.25) < 0.18, 1.0, 1e-4)  # notes and near-silent gaps
        x = env * np.sin(2 * np.pi * 330 * t) * rng.uniform(0.5, 2.0)
        n = 0.2 * rng.standard_normal(T) * (rng.random(T) < 0.02 if bursty else 1.0)  # clicks or hiss
        cases.append((x, x + n, frame))
    return cases


def _segmental_reference(x, y, frame, lo=-10.0, hi=35.0, keep_tail=False, db=10.0):
    """Segmental SNR by an explicit loop over frames (the variants name the usual mistakes)."""
    out, start = [], 0
    while start + (1 if keep_tail else frame) <= len(x):
        c, e = x[start:start + frame], (y - x)[start:start + frame]
        out.append(min(hi, max(lo, db * np.log10(np.sum(c ** 2) / np.sum(e ** 2)))))
        start += frame
    return float(np.mean(out))


@checker
def check_segmental_snr(your_fn) -> None:
    """Check `your_fn(clean, noisy, frame) -> dB`: the segmental SNR.

    The signals are cut into non-overlapping frames of `frame` samples (a shorter last piece is dropped);
    each frame's SNR in dB is clipped to [-10, 35] dB and the frame SNRs are averaged (Hansen and Pellom
    1998). Checked against an explicit loop over frames; names the global SNR, a missing clip, 20 log10,
    the short last frame kept, and the ratios averaged before the log.

    Notebook: 02_distortions.ipynb
    """
    for x, y, frame in _seg_cases():
        want = _segmental_reference(x, y, frame)
        with np.errstate(all="ignore"):
            got = _scalar(your_fn(x.copy(), y.copy(), frame), "segmental_snr_db(clean, noisy, frame)")
        if abs(got - want) <= 1e-6 * max(1.0, abs(want)):
            continue
        where = f"{len(x)} samples, frames of {frame}: got {got:.5g} dB, expected {want:.5g} dB"
        n = len(x) // frame
        c, e = x[:n * frame].reshape(n, frame), (y - x)[:n * frame].reshape(n, frame)
        ratio = np.sum(c ** 2, 1) / np.sum(e ** 2, 1)
        why = _named_mistake(got, want, [
            (float(snr_db(x, y)), "that is the global SNR of the whole signal: compute one SNR per frame, then "
             "average the frames' dB values"),
            (_segmental_reference(x, y, frame, lo=-np.inf, hi=np.inf), "the frame SNRs are not clipped: near-silent "
             "frames reach -60 dB and dominate the mean; np.clip each frame's dB to [-10, 35] before averaging"),
            (_segmental_reference(x, y, frame, db=20.0), "20 log10 of power ratios: powers take 10 log10"),
            (_segmental_reference(x, y, frame, keep_tail=True), f"the last, shorter piece ({len(x) % frame} samples) "
             "is kept as a frame: drop it (use len(clean) // frame whole frames)"),
            (float(np.clip(10 * np.log10(np.mean(ratio)), -10, 35)), "the power ratios are averaged before the "
             "log: average the frames' SNRs in dB, each clipped to [-10, 35]"),
        ], tol=1e-6 * max(1.0, abs(want)))
        raise ExerciseError(f"{where}: {why}" if why else f"{where}: per frame 10 log10(sum clean^2 / sum "
                            "noise^2), clipped to [-10, 35] dB, then the mean over the whole frames")
    _ok("segmental_snr_db")


def _c50_cases():
    """(h, sr): synthetic rooms with a flight delay before the direct path, one of them polarity-inverted."""
    out = []
    for k, (rt, sr, delay_s, sign) in enumerate([(0.3, 8000, 0.01, 1), (0.8, 8000, 0.03, -1), (0.5, 16000, 0.02, 1),
                                                (1.2, 8000, 0.0, 1)]):
        h = synth_rir(rt, sr=sr, generator=torch.Generator().manual_seed(200 + k)).numpy().astype(np.float64)
        out.append((sign * np.concatenate([np.zeros(int(delay_s * sr)), h]), sr))
    return out


def _c50_from_edc(h: np.ndarray, sr: int, start=None, n50=None, early_over="late", p=2, db=10.0) -> float:
    """C50 from the Schroeder curve: early = EDC(d) - EDC(d + 50 ms), late = EDC(d + 50 ms) (and variants)."""
    e = np.abs(h) ** p
    edc = np.cumsum(e[::-1])[::-1]  # energy still to come
    d = int(np.argmax(np.abs(h))) if start is None else start
    j = d + (int(round(0.05 * sr)) if n50 is None else n50)
    early, late = edc[d] - edc[j], edc[j]
    return float(db * np.log10(early / (late if early_over == "late" else edc[d])))


@checker
def check_c50(your_fn) -> None:
    """Check `your_fn(h, sr) -> dB`: the clarity C50 of a room impulse response (ISO 3382-1).

    C50 = 10 log10(early / late): the energy (sum of h^2) in the 50 ms from the direct path, d = argmax |h|,
    against the energy after it. Checked against the same ratio read off Schroeder's backward integral on
    synthetic rooms with a flight delay (one polarity-inverted, one at 16 kHz); names counting from sample
    0, the direct path as argmax h, 50 samples for 50 ms, D50 (early over total), |h| for h^2, 20 log10.

    Notebook: 02_distortions.ipynb
    """
    for h, sr in _c50_cases():
        want = _c50_from_edc(h, sr)
        got = _scalar(your_fn(h.copy(), sr), "c50(h, sr)")
        if abs(got - want) <= 0.05:  # a sample more or less in the early part changes C50 by less
            continue
        where = f"a room with its direct path at sample {int(np.argmax(np.abs(h)))} ({sr} Hz): got {got:.4g} dB, " \
                f"expected {want:.4g} dB"
        why = _named_mistake(got, want, [
            (_c50_from_edc(h, sr, start=0), "the 50 ms are counted from sample 0: count them from the direct path, "
             "d = argmax |h| (the flight time before it is silence)"),
            (_c50_from_edc(h, sr, start=int(np.argmax(h))), "the direct path is argmax h: this response's direct "
             "path is negative (the loudspeaker's polarity), take argmax |h|"),
            (_c50_from_edc(h, sr, n50=50), "50 samples are not 50 ms: the early part is round(0.05 * sr) samples"),
            (_c50_from_edc(h, 8000), "the sample rate is fixed at 8000: use `sr` for the 50 ms"),
            (_c50_from_edc(h, sr, early_over="total"), "that is D50 (early over ALL the energy): C50 divides by the "
             "LATE energy, after the first 50 ms"),
            (_c50_from_edc(h, sr, p=1), "you summed |h|: energy is the sum of h^2"),
            (2 * want, "20 log10 of an energy ratio (twice the answer): energies take 10 log10"),
            (-want, "the ratio is upside down: early over late"),
        ], tol=0.05)
        raise ExerciseError(f"{where}: {why}" if why else f"{where}: d = argmax |h|, n = round(0.05 sr); C50 = "
                            "10 log10(sum h[d:d+n]^2 / sum h[d+n:]^2)")
    _ok("c50")


# ---- solutions: the notebook's exercises answered (`make test` runs it with them)

def solution_band_snr_db(clean, noisy, sr, f_lo, f_hi):
    """Exercise 1: the SNR in dB of what falls in f_lo <= f <= f_hi (Parseval on the rfft bins)."""
    f = np.fft.rfftfreq(len(clean), 1 / sr)
    band = (f >= f_lo) & (f <= f_hi)
    X, N = np.fft.rfft(clean)[band], np.fft.rfft(noisy - clean)[band]
    return 10 * np.log10(np.sum(np.abs(X) ** 2) / np.sum(np.abs(N) ** 2))


def solution_segmental_snr_db(clean, noisy, frame):
    """Exercise 2: the mean over whole frames of each frame's SNR, clipped to [-10, 35] dB."""
    n = len(clean) // frame
    c = clean[:n * frame].reshape(n, frame)  # (n, frame)
    e = (noisy - clean)[:n * frame].reshape(n, frame)
    with np.errstate(divide="ignore"):  # a silent frame: -inf or +inf dB, then clipped
        snr = 10 * np.log10(np.sum(c ** 2, axis=1) / np.sum(e ** 2, axis=1))
    return float(np.mean(np.clip(snr, -10, 35)))


def solution_c50(h, sr):
    """Exercise 3: the clarity C50 in dB, the 50 ms counted from the direct path."""
    d = int(np.argmax(np.abs(h)))
    j = d + int(round(0.05 * sr))
    e = np.square(h, dtype=np.float64)
    return 10 * np.log10(e[d:j].sum() / e[j:].sum())
