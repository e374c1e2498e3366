"""Notebook 10: your own audio, a folder of real files indexed and found again from a (simulated) phone recording.

Figures: the frequency response of the phone's band-pass and accuracy against query length (the
spectrograms are notebook 00's). Exercises: a telephone band-pass (300-3400 Hz, at any sample rate) and
cutting an excerpt at a continuous start time (round, do not truncate).

References: A. Singh, K. Demuynck, V. Arora, ICASSP 2023; S. Chang et al., ICASSP 2021 (queries of 1-10 s);
ITU-T G.712 / P.48 (the telephone channel).
"""
from __future__ import annotations

import numpy as np
from scipy.signal import butter, sosfilt, sosfreqz

from .common import ExerciseError, _fig_ax, _ok, checker, exercise_decorator, passed
from .nb00_overview import plot_spectrogram
from .nb07_balanced_hashing import paired_difference

__all__ = ["plot_spectrogram", "paired_difference",
           "plot_frequency_response", "plot_accuracy_vs_length", "check_phone_filter",
           "check_excerpt",
           "exercise", "passed", "solution_phone_filter", "solution_excerpt"]

exercise = exercise_decorator(globals())  # `@lesson.exercise` in the notebook: see common


# ---- figures

def plot_frequency_response(sos, sr, band=None, ax=None, figsize=(7, 3), title="frequency response", label=None):
    """Gain in dB against frequency of a filter given as second-order sections.

    Args:
        sos: (S, 6) second-order sections (`scipy.signal.butter(..., output="sos")`).
        sr: sample rate in Hz.
        band: (low, high) Hz, shaded (e.g. the telephone band 300-3400 Hz), or None.
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title: the title.
        label: legend label of the curve.

    Returns:
        (fig, ax).

    Notebook: 10_your_own_audio.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)
    f, h = sosfreqz(sos, worN=2048, fs=sr)
    ax.plot(f, 20 * np.log10(np.maximum(np.abs(h), 1e-10)), label=label)
    if band is not None:
        ax.axvspan(*band, color="C2", alpha=0.12, label=f"{band[0]:g}-{band[1]:g} Hz")
    ax.set(xlabel="frequency (Hz)", ylabel="gain (dB)", title=title, ylim=(-60, 5), xlim=(0, sr / 2))
    ax.grid(alpha=0.3)
    if band is not None or label is not None:
        ax.legend(fontsize=8)
    return fig, ax


def plot_accuracy_vs_length(lengths, curves, ax=None, figsize=(8, 3.5), title="accuracy against query length"):
    """Hit rates against query length, one curve per score.

    Args:
        lengths: (L,) query lengths, seconds.
        curves: {label: (L,) fractions in [0, 1]}.
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title: the title.

    Returns:
        (fig, ax).

    Notebook: 10_your_own_audio.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)
    for label, acc in curves.items():
        ax.plot(lengths, acc, "o-", label=label)
    ax.set(xlabel="query length (s)", ylabel="share of queries", title=title, ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: the curves reach the top
    return fig, ax


# ---- exercises

def _tone_gain_db(fn, f: float, sr: int) -> float:
    t = np.arange(sr) / sr
    x = (0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32)  # 1 s tone
    y = np.asarray(fn(x.copy(), sr), dtype=np.float64)
    if y.shape != x.shape:
        raise ExerciseError(f"a ({len(x)},) signal came back as shape {y.shape}: keep the length (filter, do not "
                            "convolve in 'full' mode)")
    if not np.all(np.isfinite(y)):
        raise ExerciseError("your filter returned NaN or Inf (an unstable filter? use output='sos')")
    mid = slice(sr // 4, sr - sr // 10)  # skip the filter's start-up and end transients
    return 10 * np.log10(np.mean(y[mid] ** 2) / np.mean(x[mid].astype(np.float64) ** 2) + 1e-20)


@checker
def check_phone_filter(your_fn) -> None:
    """Check `your_fn(x, sr) -> y`: a telephone band-pass, 300-3400 Hz, at any sample rate.

    Pure tones through it: 500, 1000, 2000 and 2500 Hz must pass within 3 dB; 100 Hz and a
    frequency well above 3400 Hz must be cut by at least 12 dB. Run at 8 kHz and 16 kHz.

    Notebook: 10_your_own_audio.ipynb
    """
    for sr, high in ((8000, 3900.0), (16000, 6000.0)):
        try:
            g = {f: _tone_gain_db(your_fn, f, sr) for f in (100.0, 500.0, 1000.0, 2000.0, 2500.0, high)}
        except ValueError as e:
            raise ExerciseError(f"at sr={sr} your filter raised ValueError ({e}): give scipy.signal.butter the band "
                                "edges in Hz with fs=sr (or divided by the Nyquist frequency sr / 2)") from None
        passband = np.array([g[500.0], g[1000.0], g[2000.0], g[2500.0]])
        table = ", ".join(f"{f:g} Hz: {v:+.1f} dB" for f, v in g.items())
        where = f"at sr={sr} ({table})"
        if np.all(np.abs(passband - passband.mean()) <= 1.5) and abs(passband.mean()) > 3:
            raise ExerciseError(f"{where}: the whole passband is {passband.mean():+.1f} dB: a gain factor slipped "
                                "in; a band-pass leaves the band at 0 dB")
        if np.any(np.abs(passband) > 3):
            hint = (" (and it works at 8 kHz: the band edges must come from sr, not a fixed 8000)"
                    if sr == 16000 else ": are the band edges in Hz with fs=sr, or divided by the Nyquist frequency?")
            raise ExerciseError(f"{where}: the passband 500-2500 Hz should be within 3 dB of 0 dB{hint}")
        if g[100.0] > -12:
            raise ExerciseError(f"{where}: 100 Hz passes at {g[100.0]:+.1f} dB: a phone's microphone and codec cut "
                                "the bass below about 300 Hz; your filter needs a high-pass side")
        if g[high] > -12:
            msg = (" (and it works at 8 kHz: the band edges must come from sr, not a fixed 8000)" if sr == 16000
                   else ": the low-pass side at 3400 Hz is missing")
            raise ExerciseError(f"{where}: {high:g} Hz passes at {g[high]:+.1f} dB{msg}")
    _ok("check_phone_filter")


@checker
def check_excerpt(your_fn) -> None:
    """Check `your_fn(x, start_s, length_s, sr) -> excerpt`: x[a:a+n], a = round(start_s sr), n = round(length_s sr).

    The signal tested is 0, 1, 2, ... so the excerpt's first sample names the start it used. The
    start times include ones where start_s * sr lands just under an integer in floating point
    (2.01 * 8000 = 16079.999999999998): truncating with int() is then one sample early.

    Notebook: 10_your_own_audio.ipynb
    """
    cases = [(8000, 2.01, 3.0), (8000, 1.00009, 3.0), (8000, 0.0, 1.0), (8000, 7.123456, 2.0),
             (44100, 0.57, 1.13), (8000, 1.0000375, 2.0000375), (16000, 2.99999, 2.0)]
    for sr, start_s, length_s in cases:
        T = int(round((start_s + length_s) * sr)) + sr
        x = np.arange(T, dtype=np.float64)
        a, n = int(round(start_s * sr)), int(round(length_s * sr))
        y = np.asarray(your_fn(x, start_s, length_s, sr))
        where = f"excerpt(start_s={start_s}, length_s={length_s}, sr={sr})"
        if y.ndim != 1:
            raise ExerciseError(f"{where}: return a 1-d array, got shape {y.shape}")
        if len(y) == 0:
            raise ExerciseError(f"{where}: empty excerpt; the expected length is {n} samples")
        first = int(y[0])
        if first != a:
            if first == int(start_s * sr) or first == int(np.floor(start_s * sr)):
                why = (f"start_s * sr = {start_s * sr!r}: int() or floor() truncate it to {first}; round it to the "
                       f"nearest sample, {a}")
            elif first == int(np.ceil(start_s * sr)):
                why = f"start_s * sr = {start_s * sr!r}: ceil gives {first}; round it to the nearest sample, {a}"
            elif first == int(round(start_s * 8000)) and sr != 8000:
                why = "you use 8000 Hz whatever sr is"
            else:
                why = f"start_s * sr = {start_s * sr!r}"
            raise ExerciseError(f"{where}: the excerpt starts at sample {first}, expected {a}: {why}")
        if len(y) != n:
            if len(y) == int(length_s * sr) or len(y) == int(np.floor(length_s * sr)):
                why = f"length_s * sr = {length_s * sr!r} truncated; round it: {n} samples"
            elif len(y) == int(round((start_s + length_s) * sr)) - a:
                why = ("you cut up to round((start_s + length_s) * sr): the length then depends on the start; "
                       "take n = round(length_s * sr) samples from a")
            else:
                why = f"expected round(length_s * sr) = {n}"
            raise ExerciseError(f"{where}: {len(y)} samples, expected {n}: {why}")
        if not np.array_equal(y, x[a:a + n]):
            raise ExerciseError(f"{where}: the samples are not x[{a}:{a + n}] (reordered or modified?)")
    _ok("check_excerpt")


# ---- solutions: the notebook's exercises answered (`make test` runs it with them)

def solution_phone_filter(x, sr):
    """Exercise 1: a 4th-order Butterworth band-pass, 300-3400 Hz, at any sample rate."""
    sos = butter(4, [300.0, 3400.0], btype="bandpass", fs=sr, output="sos")
    return sosfilt(sos, x)


def solution_excerpt(x, start_s, length_s, sr):
    """Exercise 2: round(length_s * sr) samples from sample round(start_s * sr)."""
    a = int(round(start_s * sr))
    return x[a:a + int(round(length_s * sr))]
