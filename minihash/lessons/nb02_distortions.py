"""Notebook 02: distortions, what a room and a café do to a query, and the training chain that imitates them.

Noise at an exact signal-to-noise ratio, room impulse responses and their RT60, reverb aligned on the direct
path, and time offsets (the distortion chain of Chang et al. 2021 and Singh et al. 2023). Figures: the noise
spectra (Welch), an impulse response with its Schroeder decay curve, and the (GCC-PHAT) cross-correlation.
Exercises: measuring an SNR, adding noise at one, and Schroeder's RT60, each against `minihash.distort`.

References: M. R. Schroeder, JASA 37(3), 1965; ISO 3382-1:2009 (T20); C. Knapp, G. Carter, IEEE TASSP 24(4),
1976 (GCC-PHAT); P. Welch, IEEE Trans. Audio Electroacoustics 15(2), 1967.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import signal

from ..distort import add_noise, rt60_schroeder, snr_db, synth_rir
from .common import ExerciseError, _as_float_array, _audio_np, _close, _fig_ax, _ok, checker, exercise_decorator, passed
from .nb00_overview import plot_spectrogram

__all__ = ["ExerciseError", "plot_spectrogram", "plot_rir_decay", "plot_noise_spectra", "plot_xcorr", "check_snr_db",
           "check_add_noise", "check_rt60",
           "exercise", "passed", "solution_snr_db", "solution_add_noise", "solution_rt60"]

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

def _snr_cases(seed: int = 0):
    """Clean and noise signals of varied powers (independently varied, so errors can be told apart)."""
    rng = np.random.default_rng(seed)
    T = 4000
    t = np.arange(T) / 8000
    x0 = np.sin(2 * np.pi * 330 * t) + 0.5 * np.sin(2 * np.pi * 1100 * t + 1) + 0.1 * rng.standard_normal(T)
    n0 = rng.standard_normal(T)
    x0, n0 = x0 / np.sqrt(np.mean(x0 ** 2)), n0 / np.sqrt(np.mean(n0 ** 2))  # unit power
    cases = []
    for i, (gx_db, gn_db, snr) in enumerate([(0, 0, 10.0), (-20, 0, 0.0), (0, -20, 5.0), (-10, 6, 20.0),
                                             (-26, -14, -5.0), (3, -30, 15.0), (-6, -6, 3.0), (-15, 10, 12.0)]):
        x = 10 ** (gx_db / 20) * x0
        n = 10 ** (gn_db / 20) * np.roll(n0, 97 * i)
        cases.append((x, n, snr, float(gx_db), float(gn_db)))  # powers in dB are gx_db and gn_db
    return cases


@checker
def check_snr_db(your_fn) -> None:
    """Check an SNR measurement `your_fn(clean, noisy) -> dB` against `minihash.distort.snr_db`.

    Recognises 20 log10 of powers, 10 log10 of amplitudes, the ratio upside down, and the
    noisy mix used where the noise (noisy - clean) is meant.

    Notebook: 02_distortions.ipynb
    """
    for x, n, snr, _, _ in _snr_cases():
        y = x + n
        want = float(snr_db(x, y))
        got_a = _as_float_array(your_fn(x.copy(), y.copy()), "snr_db(clean, noisy)")
        if got_a.size != 1:
            raise ExerciseError(f"snr_db(clean, noisy) should be one number for 1-d signals, got shape {got_a.shape}")
        got = float(got_a)
        if abs(got - want) < 1e-3:
            continue
        where = f"snr_db: got {got:.4g} dB, expected {want:.4g} dB"
        px, pn, py = np.mean(x ** 2), np.mean(n ** 2), np.mean(y ** 2)
        if abs(want) > 0.5 and abs(got - 2 * want) < 1e-3:
            raise ExerciseError(f"{where} (twice): 20 log10 is for amplitude (RMS) ratios; the SNR is a power "
                                "ratio: 10 log10(P_clean / P_noise)")
        if abs(want) > 0.5 and abs(got - want / 2) < 1e-3:
            raise ExerciseError(f"{where} (half): 10 log10 of an amplitude (RMS) ratio; use powers (mean squares) "
                                "with 10 log10, or RMS with 20 log10")
        if abs(want) > 0.5 and abs(got + want) < 1e-3:
            raise ExerciseError(f"{where} (opposite sign): signal over noise, P_clean / P_noise, not the reverse")
        if abs(got - 10 * np.log10(px / py)) < 1e-3:
            raise ExerciseError(f"{where}: you divided by the power of the noisy mix; the noise is noisy - clean")
        if abs(got - 10 * np.log10(py / pn)) < 1e-3:
            raise ExerciseError(f"{where}: the numerator is the clean signal's power, not the mix's")
        raise ExerciseError(where)
    _ok("snr_db")


@checker
def check_add_noise(your_fn) -> None:
    """Check `your_fn(x, noise, snr_db) -> y` adds noise at exactly the SNR asked, measured on `x`.

    Fits the measured-minus-asked SNR over cases where the SNR, the signal power and the
    noise power vary independently, so the kind of mistake can be named: amplitude vs
    power (factor 2 in dB), the wrong sign, the signal's and noise's powers swapped (SNR
    measured on the noise), a missing square root, a power ignored, the signal rescaled.

    Notebook: 02_distortions.ipynb
    """
    rows, errs, cases = [], [], _snr_cases(1)
    for x, n, snr, px_db, pn_db in cases:
        y = _as_float_array(your_fn(x.copy(), n.copy(), snr), "add_noise(x, noise, snr_db)")
        if y.shape != x.shape:
            raise ExerciseError(f"add_noise: expected the shape of x, {x.shape}, got {y.shape}")
        if not np.all(np.isfinite(y)):
            raise ExerciseError("add_noise returned NaN or Inf")
        # y should be x + g n: solve y = a x + g n in the least-squares sense
        (a, g), *_ = np.linalg.lstsq(np.stack([x, n], 1), y, rcond=None)
        if np.abs(a * x + g * n - y).max() > 1e-6 * (np.abs(y).max() + 1e-12):
            raise ExerciseError("add_noise: the output is not the clean signal plus a multiple of the noise "
                                "(did you crop, shift or filter something?)")
        if abs(a - 1) > 1e-6:
            raise ExerciseError(f"add_noise: the clean signal came out multiplied by {a:.4g}: scale the noise, not "
                                "the music (the query must keep the reference's level; the SNR is measured on x)")
        if g == 0:
            raise ExerciseError("add_noise: no noise was added")
        measured = 10 * np.log10(np.mean(x ** 2) / np.mean((g * n) ** 2))
        rows.append([snr, px_db, pn_db, 1.0])
        errs.append(measured - snr)
    errs = np.array(errs)
    if np.abs(errs).max() < 1e-3:
        for x, n, snr, _, _ in cases[:3]:  # and it equals the package's
            want = add_noise(torch.from_numpy(x), torch.from_numpy(n), snr).numpy()
            _close(your_fn(x.copy(), n.copy(), snr), want, f"add_noise at {snr} dB vs minihash.distort.add_noise",
                   rtol=1e-5, atol=1e-7)
        _ok("add_noise")
        return
    # measured - asked = c_snr * snr + c_x * P_x(dB) + c_n * P_noise(dB) + c0
    coef, *_ = np.linalg.lstsq(np.array(rows), errs, rcond=None)
    fits = np.abs(np.array(rows) @ coef - errs).max() < 1e-2
    c = np.round(coef[:3] * 2) / 2 if fits else None
    worst = int(np.argmax(np.abs(errs)))
    example = (f"(asked {cases[worst][2]:g} dB, measured {cases[worst][2] + errs[worst]:.2f} dB with P_x = "
               f"{cases[worst][3]:g} dB and P_noise = {cases[worst][4]:g} dB)")
    known = {
        (1, 0, 0): "the SNR comes out twice the one asked: amplitude and power mixed up. The noise amplitude gain "
                   "is 10^(-snr/20) (its power gain 10^(-snr/10)); you used the power factor on the amplitude",
        (-0.5, 0, 0): "the SNR comes out half the one asked: amplitude and power mixed up (10^(-snr/40)?). The "
                      "amplitude gain is sqrt(P_x / (P_noise 10^(snr/10)))",
        (-2, 0, 0): "wrong sign: a higher SNR must mean quieter noise; the gain is 10^(-snr/20), not 10^(+snr/20)",
        (0, 2, -2): "the SNR is measured on the noise instead of the signal: P_x and P_noise are swapped in the "
                    "gain. It is g = sqrt(P_x / (P_noise 10^(snr/10)))",
        (0, -1, 1): "missing square root: P_x / P_noise is a power ratio, the gain on the noise samples is its "
                    "square root",
        (0, 0, -1): "the noise's own power is ignored (right only for unit-power noise): divide by P_noise",
        (0, 1, 0): "the signal's power is ignored: the SNR is measured on x, so the noise level must follow P_x",
        (0, 1, -1): "the noise is scaled to a fixed level, ignoring both powers: the gain must depend on P_x / P_noise",
    }
    if c is not None and abs(coef[3]) < 1e-2 and tuple(float(v) for v in c) in known:
        raise ExerciseError(f"add_noise: {known[tuple(float(v) for v in c)]} {example}")
    if c is not None:
        raise ExerciseError(f"add_noise: the SNR error is {coef[0]:+.3g} x snr {coef[1]:+.3g} x P_x(dB) "
                            f"{coef[2]:+.3g} x P_noise(dB) {coef[3]:+.3g} dB; it should be 0 {example}")
    raise ExerciseError(f"add_noise: wrong SNR {example}")


def _schroeder_variants(h: np.ndarray, sr: int) -> dict:
    """RT60 computed in several wrong ways, to name the learner's mistake."""
    e = np.square(h)

    def fit(curve_db, hi, lo, t0=None):
        i = 0 if t0 is not None else int(np.argmax(curve_db <= hi))
        j = int(np.argmax(curve_db <= lo)) if curve_db.min() <= lo else len(curve_db) - 1
        if j <= i:
            return np.nan
        t = np.arange(i, j + 1) / sr
        return float(-60.0 / np.polyfit(t, curve_db[i:j + 1], 1)[0])

    edc = np.cumsum(e[::-1])[::-1]
    edc_db = 10 * np.log10(np.maximum(edc / edc[0], 1e-300))
    raw_db = 10 * np.log10(np.maximum(e / e.max(), 1e-300))
    fwd = np.cumsum(e)
    fwd_db = 10 * np.log10(np.maximum(fwd / fwd[-1], 1e-300))
    ok = edc_db > -200
    t = np.arange(len(h)) / sr
    out = {
        "no backward integration: the line is fitted to 10 log10 h(t)^2 itself, so the -25 dB point is the first "
        "near-zero sample of the noisy tail": fit(raw_db, -5, -25),
        "forward integration (cumsum from the start): Schroeder's curve is the energy still to come, "
        "integrated from the end backwards": fit(fwd_db, -5, -25),
        "fit from 0 dB, including the direct path's drop; start at -5 dB": fit(edc_db, 0, -25, t0=0),
        "fit over the whole curve, down to the truncation at the end where the EDC plunges; stop at -25 dB":
            float(-60.0 / np.polyfit(t[ok], edc_db[ok], 1)[0]),
        "early decay time (0 to -10 dB) instead of T20 (-5 to -25 dB)": fit(edc_db, 0, -10, t0=0),
        "T30 (a fit from -5 to -35 dB): a valid estimate too, but this exercise, like minihash, uses T20 "
        "(-5 to -25 dB)": fit(edc_db, -5, -35),
    }
    return out


@checker
def check_rt60(your_fn) -> None:
    """Check a Schroeder RT60 estimator `your_fn(h, sr) -> seconds` against `minihash.distort.rt60_schroeder`.

    Runs on synthetic impulse responses of several reverberation times (and two sample
    rates). Names the mistake when it can: no backward integration, forward integration,
    the wrong fit range, T20 not extrapolated to 60 dB, samples instead of seconds.

    Notebook: 02_distortions.ipynb
    """
    for k, (rt, sr) in enumerate([(0.3, 8000), (0.6, 8000), (0.9, 8000), (0.5, 16000)]):
        h = synth_rir(rt, sr=sr, generator=torch.Generator().manual_seed(100 + k)).numpy().astype(np.float64)
        want = rt60_schroeder(h, sr)
        got_a = _as_float_array(your_fn(h.copy(), sr), "rt60(h, sr)")
        if got_a.size != 1:
            raise ExerciseError(f"rt60(h, sr) should be one number (seconds), got shape {got_a.shape}")
        got = float(got_a)
        if abs(got - want) <= 0.02 * want:
            continue
        where = (f"rt60 of a synthetic RIR (RT60 {rt} s, sr {sr} Hz): got {got:.4g}, "
                 f"minihash.distort.rt60_schroeder gives {want:.4g} s")
        if not np.isfinite(got):
            raise ExerciseError(f"{where}: not a finite number (log of 0? clip the EDC above 0 before the log)")
        if got < 0:
            raise ExerciseError(f"{where}: negative: your decay curve rises. Integrate the energy backwards, from "
                                "the end: EDC(t) = sum of h^2 from t to the end; it falls from 0 dB")
        for ratio, msg in ((1 / 3, "you returned the time of the 20 dB span (-5 to -25 dB); extrapolate the line to "
                                   "a 60 dB decay: RT60 = -60 / slope"),
                           (sr, "that is in samples: divide by the sample rate"),
                           (sr / 8000, "the sample rate is hard-coded to 8000: use the `sr` argument")):
            if ratio != 1 and abs(got - ratio * want) <= 0.02 * ratio * want:
                raise ExerciseError(f"{where}: {msg}")
        variants = _schroeder_variants(h, sr)
        best = min(variants, key=lambda m: abs(variants[m] - got) if np.isfinite(variants[m]) else np.inf)
        if np.isfinite(variants[best]) and abs(variants[best] - got) <= 0.03 * abs(variants[best]):
            raise ExerciseError(f"{where}: it looks like {best}")
        if got < 0.25 * want:
            raise ExerciseError(f"{where}: far too short. Did you integrate backwards? Fitted to 10 log10 h(t)^2 "
                                "itself, the -25 dB point is the first near-zero sample of the noisy tail, a few "
                                "samples after the direct path. EDC(t) = sum of h^2 from t to the end")
        raise ExerciseError(f"{where}: EDC(t) = 10 log10 of the backward-integrated energy, normalised to 0 dB at "
                            "t = 0; fit a line between the first samples below -5 and -25 dB; RT60 = -60 / slope")
    _ok("rt60")


# ---- solutions: the notebook's exercises answered (`make test` runs it with them)

def solution_snr_db(clean, noisy):
    """Exercise 1: the SNR in dB of `noisy` against `clean`, a ratio of powers."""
    return 10 * np.log10(np.mean(clean ** 2) / np.mean((noisy - clean) ** 2))


def solution_add_noise(x, noise, snr_db):
    """Exercise 2: x plus noise scaled to exactly snr_db, measured on x."""
    g = np.sqrt(np.mean(x ** 2) / (np.mean(noise ** 2) * 10 ** (snr_db / 10)))
    return x + g * noise


def solution_rt60(h, sr):
    """Exercise 3: T20 by Schroeder's backward integration, extrapolated to 60 dB, in seconds."""
    e = np.cumsum(np.square(h, dtype=np.float64)[::-1])[::-1]  # the energy still to come
    d = 10 * np.log10(np.maximum(e / e[0], 1e-300))  # the EDC in dB, 0 at the start
    i, j = np.argmax(d <= -5), np.argmax(d <= -25)
    slope = np.polyfit(np.arange(i, j + 1) / sr, d[i: j + 1], 1)[0]  # dB per second
    return -60.0 / slope
