"""Notebook 01: audio and spectrograms, from samples to the log-mel image the network sees.

Sampling at 8 kHz, windows, the STFT, the mel filterbank and the log. Figures: the waveform, the mel
filterbank (the spectrogram is notebook 00's). Exercises: Hz to mel (the HTK formula, told apart from
Slaney's), the frame count of an STFT (against `torch.stft`), and a log-mel spectrogram by hand (against
`minihash.spectrogram.LogMel`).

References: M. Müller, Fundamentals of Music Processing (chapters 2 and 3); S. S. Stevens, J. Volkmann,
E. B. Newman, JASA 1937 (the mel scale); D. O'Shaughnessy, Speech Communication, 1987 (HTK's formula);
M. Slaney, Auditory Toolbox, 1998 (librosa's).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torchaudio

from ..spectrogram import LogMel, MelConfig
from .common import ExerciseError, _as_float_array, _audio_np, _close, _fig_ax, _ok, checker, exercise_decorator, passed
from .nb00_overview import plot_spectrogram

try:  # a private torchaudio helper: when it is there, the checker makes sure its formulas are still torchaudio's
    from torchaudio.functional.functional import _hz_to_mel
except ImportError:
    _hz_to_mel = None

__all__ = ["ExerciseError", "plot_spectrogram", "plot_waveform", "plot_filterbank", "check_alias", "check_hz_to_mel",
           "check_stft_frames", "check_log_mel",
           "exercise", "passed", "solution_alias", "solution_n_frames", "solution_log_mel"]

exercise = exercise_decorator(globals())  # `@lesson.exercise` in the notebook: see common


# ---- figures

def plot_waveform(x, sr, ax=None, figsize=(8, 2.5), title=None, t0=0.0, **kw):
    """A signal against time in seconds.

    Args:
        x: (T,) samples, numpy or torch.
        sr: sample rate in Hz.
        ax: axes to draw on (a new figure when None).
        figsize: size of the new figure.
        title: axes title.
        t0: time of the first sample, in seconds.
        **kw: passed to `ax.plot` (color, lw, label...).

    Returns:
        (fig, ax).

    Notebook: 01_audio_and_spectrograms.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)
    x = _audio_np(x).ravel()
    ax.plot(t0 + np.arange(x.size) / sr, x, **{"lw": 0.6, **kw})
    ax.set_xlim(t0, t0 + x.size / sr)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("amplitude")
    if title:
        ax.set_title(title)
    return fig, ax


def plot_filterbank(fb, sr, ax=None, figsize=(8, 3), title="mel filterbank", every=1, **kw):
    """The triangular filters of a mel filterbank against frequency.

    Args:
        fb: (n_freqs, n_mels) weights, as `torchaudio.functional.melscale_fbanks` returns them.
        sr: sample rate in Hz (the bins span 0 to sr / 2).
        ax: axes to draw on (a new figure when None).
        figsize: size of the new figure.
        title: axes title.
        every: draw one filter in `every` (dense banks are easier to read thinned).
        **kw: passed to `ax.plot`.

    Returns:
        (fig, ax).

    Notebook: 01_audio_and_spectrograms.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)
    fb = _audio_np(fb)
    f = np.linspace(0, sr / 2, fb.shape[0])
    ax.plot(f, fb[:, ::every], **{"lw": 1.0, **kw})
    ax.set_xlim(0, sr / 2)
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("weight")
    if title:
        ax.set_title(f"{title} ({fb.shape[1]} bands" + (f", one in {every} drawn)" if every > 1 else ")"))
    return fig, ax


# ---- exercises

@checker
def check_hz_to_mel(your_fn) -> None:
    """Check a Hz -> mel conversion against the HTK formula torchaudio (and minihash) use.

    `your_fn(f)` takes frequencies in Hz (a float or a numpy array) and returns mels, the
    same shape. Says so if it is the other common mel scale (Slaney's), a natural log
    where log10 is meant, or off by a factor.

    Notebook: 01_audio_and_spectrograms.ipynb
    """
    f = np.array([0.0, 100.0, 300.0, 700.0, 1000.0, 1500.0, 2000.0, 3000.0, 4000.0, 8000.0])
    htk = 2595.0 * np.log10(1.0 + f / 700.0)
    logstep = math.log(6.4) / 27.0  # Slaney: linear below 1 kHz (200/3 Hz per mel), log above
    slaney = np.where(f < 1000.0, f / (200.0 / 3), 15.0 + np.log(np.maximum(f, 1.0) / 1000.0) / logstep)
    if _hz_to_mel is not None:  # the formulas above are torchaudio's: make sure they still are
        assert np.allclose([_hz_to_mel(float(v), "htk") for v in f], htk)
        assert np.allclose([_hz_to_mel(float(v), "slaney") for v in f], slaney)
    got = _as_float_array(your_fn(f), "hz_to_mel(array)")
    if got.shape != f.shape:
        raise ExerciseError(f"hz_to_mel(array of shape {f.shape}) returned shape {got.shape}: work element-wise "
                            "(np.log10 on the whole array, no Python loop needed)")
    one = _as_float_array(your_fn(1000.0), "hz_to_mel(1000.0)")
    if one.size != 1:
        raise ExerciseError(f"hz_to_mel(1000.0) should be one number, got shape {one.shape}")

    def close(a, b):
        return np.allclose(a, b, rtol=1e-4, atol=1e-3)

    if close(got, htk):
        if not close(one.item(), htk[4]):
            raise ExerciseError(f"the array is right but hz_to_mel(1000.0) = {one.item():.4g}, "
                                f"expected {htk[4]:.4g}")
        print(f"  1000 Hz = {htk[4]:.1f} mel (HTK puts 1 kHz at ~1000 mel by design)")
        _ok("hz_to_mel")
        return
    if close(got, slaney):
        raise ExerciseError("you implemented the Slaney mel scale (linear below 1 kHz, logarithmic above, 1 kHz = "
                            "15 mel), librosa's default. torchaudio's MelSpectrogram, and so minihash, use the HTK "
                            "scale: mel = 2595 log10(1 + f / 700). Both are 'mel scales'; they only differ in units "
                            "and in the knee")
    if close(got, 2595.0 * np.log(1.0 + f / 700.0)):
        raise ExerciseError("natural log where log10 is meant: 2595 log10(1 + f/700), or equivalently "
                            "1127 ln(1 + f/700) (1127 = 2595 / ln 10)")
    if close(got, 1127.0 * np.log10(1.0 + f / 700.0)):
        raise ExerciseError("1127 goes with the natural log: 1127 ln(1 + f/700) = 2595 log10(1 + f/700)")
    if close(got, 2595.0 * np.log10(f / 700.0 + 1e-300)) or not np.isfinite(got[0]):
        raise ExerciseError("mel(0 Hz) must be 0 and finite: the formula has log10(1 + f/700), not log10(f/700)")
    if close(got, 2595.0 * np.log10(1.0 + f / 1000.0)):
        raise ExerciseError("the break frequency of the HTK scale is 700 Hz: log10(1 + f/700), not f/1000")
    ratio = got[1:] / htk[1:]
    if np.allclose(ratio, ratio[0], rtol=1e-3):
        raise ExerciseError(f"the shape is right but every value is {ratio[0]:.4g} times too large: "
                            "check the constant (2595 with log10)")
    if not np.all(np.diff(got) > 0):
        raise ExerciseError("mel must increase with frequency; yours does not (check the sign and the argument "
                            "of the log)")
    _close(got, htk, "hz_to_mel vs the HTK formula 2595 log10(1 + f/700)", rtol=1e-4, atol=1e-3)


@checker
def check_alias(your_fn) -> None:
    """Check `your_fn(f, sr) -> Hz`: the frequency in 0 .. sr / 2 that a tone at f Hz becomes when sampled at sr.

    The reference is the definition: sampled at sr, the alias gives the very samples the tone gives,
    cos(2 pi f n / sr) for every n (cosines are even, so only 0 .. sr / 2 makes the answer unique).
    Says so if the answer is out of that range, only folds once, or never folds.

    Notebook: 01_audio_and_spectrograms.ipynb
    """
    n = np.arange(64)
    for sr in (8000, 44100):
        f = np.array([0.0, 440.0, 1000.0, 3000.0, sr / 2, 0.6 * sr, 0.99 * sr, sr, sr + 300.0, 1.6 * sr,
                      2 * sr + 1000.0, 3.3 * sr])
        got = _as_float_array(your_fn(f.copy(), sr), f"alias(array, sr={sr})")
        if got.shape != f.shape:
            raise ExerciseError(f"alias(array of shape {f.shape}, sr) returned shape {got.shape}: work element-wise "
                                "(np.mod, np.where), no Python loop needed")
        for fi, gi in zip(f, got):
            where = f"alias({fi:g} Hz, sr={sr}) = {gi:g} Hz"
            if gi < -1e-6 or gi > sr / 2 + 1e-6:
                hint = ("f mod sr removes whole turns but leaves tones above sr / 2: those fold down to sr - f"
                        if np.isclose(gi, fi % sr) else "sr - f is the fold only for tones between sr / 2 and sr: "
                        "take f modulo sr first, and leave tones below sr / 2 as they are" if np.isclose(gi, sr - fi)
                        else "fold it into that range")
                raise ExerciseError(f"{where} is outside 0 .. sr / 2 = {sr / 2:g} Hz, where sampled tones live: {hint}")
            if not np.allclose(np.cos(2 * np.pi * fi * n / sr), np.cos(2 * np.pi * gi * n / sr), atol=1e-6):
                hint = ("a tone below sr / 2 does not alias: it stays where it is" if fi <= sr / 2 else
                        "a tone above sr aliases too: subtract whole multiples of sr first (np.mod)" if fi > sr else
                        "between sr / 2 and sr the tone folds back around sr / 2, to sr - f")
                raise ExerciseError(f"{where}: sampled at {sr} Hz a {gi:g} Hz tone gives other samples than a "
                                    f"{fi:g} Hz tone: {hint}")
        one = _as_float_array(your_fn(0.6 * sr, sr), "alias(one frequency)")
        if one.size != 1 or not np.isclose(one.item(), 0.4 * sr):
            raise ExerciseError(f"alias({0.6 * sr:g}, sr={sr}) should be the one number {0.4 * sr:g}, got {one}")
    _ok("alias")


@checker
def check_stft_frames(your_fn) -> None:
    """Check a frame-count formula against what `torch.stft` actually returns.

    `your_fn(T, n_fft, hop, center)` returns the number of STFT frames of a T-sample
    signal. Says whether it is one too many or too few, or treats centring the wrong way.

    Notebook: 01_audio_and_spectrograms.ipynb
    """
    cases = [(8000, 512, 80, True), (8000, 512, 80, False), (8000, 256, 100, True), (8000, 256, 100, False),
             (8001, 512, 80, True), (8050, 512, 80, False), (1000, 400, 160, True), (1000, 400, 160, False),
             (512, 512, 128, False), (600, 512, 100, False), (6000, 1024, 1, False), (4000, 128, 33, True)]
    for T, n_fft, hop, center in cases:
        # the reference is torch itself (constant padding so short signals are allowed)
        want = torch.stft(torch.zeros(T), n_fft, hop, window=torch.ones(n_fft), center=center,
                          pad_mode="constant", return_complex=True).shape[-1]
        got = your_fn(T, n_fft, hop, center)
        try:
            got_i = int(got)
        except (TypeError, ValueError):
            raise ExerciseError(f"frames({T}, {n_fft}, {hop}, center={center}) returned {got!r}, "
                                "expected an integer") from None
        if got_i != got:
            raise ExerciseError(f"frames({T}, {n_fft}, {hop}, center={center}) = {got}: a frame count is a whole "
                                "number; use integer division // (frames start at whole multiples of hop)")
        if got_i == want:
            continue
        where = (f"frames(T={T}, n_fft={n_fft}, hop={hop}, center={center}) = {got_i}, torch.stft gives {want}")
        centred, plain = T // hop + 1, (T - n_fft) // hop + 1
        if center and got_i == plain:
            raise ExerciseError(f"{where}: with center=True the signal is padded by n_fft // 2 on both sides, so a "
                                "frame is centred on every multiple of hop: T // hop + 1 frames, independent of n_fft")
        if not center and got_i == centred:
            raise ExerciseError(f"{where}: with center=False there is no padding; the last frame must fit "
                                "entirely in the signal: 1 + (T - n_fft) // hop")
        if abs(got_i - want) == 1:
            more = "one frame too many" if got_i > want else "one frame too few"
            hint = ("frames start at 0, hop, 2 hop, ... and the first one counts too (the + 1)" if got_i < want else
                    "the last frame must still fit: floor division, not rounding up, and only one + 1")
            raise ExerciseError(f"{where}: off by one, {more}. {hint}")
        raise ExerciseError(where)
    _ok("stft_frames")


@checker
def check_log_mel(your_fn) -> None:
    """Check a hand-made log-mel spectrogram against `minihash.spectrogram.LogMel`.

    `your_fn(x, cfg)` takes (T,) float32 samples and a `MelConfig` and returns the
    (n_mels, frames) natural log of (mel power + cfg.eps). Recognises a transposed
    result, log10 or decibels, magnitude instead of power, a constant offset (a
    scaled FFT) and a missing or different eps.

    Notebook: 01_audio_and_spectrograms.ipynb
    """
    sr = 8000
    t = np.arange(sr) / sr
    rng = np.random.default_rng(0)
    x = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1250 * t * (1 + 0.3 * t))
         + 0.02 * rng.standard_normal(sr)).astype(np.float32)
    x[3000:5000] = 0.0  # a quarter second of digital silence: log(0) is -inf without eps
    for cfg in (MelConfig(), MelConfig(n_fft=256, hop=100, n_mels=40, f_min=0.0)):
        with torch.no_grad():
            want = LogMel(cfg)(torch.from_numpy(x)).numpy().astype(np.float64)  # (n_mels, frames)
        got = _as_float_array(your_fn(x.copy(), cfg), "log_mel(x, cfg)")
        what = f"log_mel with n_fft={cfg.n_fft}, hop={cfg.hop}, n_mels={cfg.n_mels}"
        if got.ndim == 3 and got.shape[0] == 1:
            raise ExerciseError(f"{what}: got shape {got.shape}, with a batch axis; return (n_mels, frames) "
                                f"= {want.shape} for a 1-d signal")
        if got.shape == want.shape[::-1] and want.shape[0] != want.shape[1]:
            raise ExerciseError(f"{what}: transposed: got (frames, n_mels) = {got.shape}, expected "
                                f"(n_mels, frames) = {want.shape} (mel bands are rows, as in an image)")
        if got.shape != want.shape:
            msg = f"{what}: expected shape (n_mels, frames) = {want.shape}, got {got.shape}"
            if got.ndim == 2 and got.shape[0] == want.shape[0]:
                msg += (f"; the centred STFT gives T // hop + 1 = {want.shape[1]} frames "
                        f"(uncentred: {1 + (x.size - cfg.n_fft) // cfg.hop})")
            raise ExerciseError(msg)
        if not np.all(np.isfinite(got)):
            raise ExerciseError(f"{what}: -inf or NaN where the signal is silent: the mel power is exactly 0 there; "
                                f"add eps inside the log: log(S + eps) with eps = cfg.eps = {cfg.eps:g}")
        # where the power is far above eps (and not far below the peak) eps plays no part, so any
        # log base, power-vs-magnitude or scale mistake shows as got = a * want + b there
        loud = (want > math.log(cfg.eps) + 10) & (want > want.max() - 8)
        a, b = np.polyfit(want[loud], got[loud], 1)
        fit_ok = np.allclose(a * want[loud] + b, got[loud], atol=0.02)
        if not fit_ok and 0.4 < a < 0.65 and np.corrcoef(want[loud], got[loud])[0, 1] > 0.95:
            raise ExerciseError(f"{what}: about half the expected values: you used the magnitude |X| where the power "
                                "|X|^2 is meant (log |X|^2 = 2 log |X|); square before the mel filterbank")
        if fit_ok and not (abs(a - 1) < 1e-3 and abs(b) < 1e-2):
            if abs(a - 1 / math.log(10)) < 1e-3:
                raise ExerciseError(f"{what}: log10 where minihash uses the natural log (torch.log / np.log)")
            if abs(a - 10 / math.log(10)) < 1e-2:
                raise ExerciseError(f"{what}: decibels (10 log10); minihash's 'log' mode is the natural log "
                                    "ln(S + eps): dB = 4.34 ln, a rescaling the network would have to undo")
            if abs(a - 0.5) < 1e-3:
                raise ExerciseError(f"{what}: half the expected values: you used the magnitude |X| where the power "
                                    "|X|^2 is meant (log |X|^2 = 2 log |X|); square before the mel filterbank")
            if abs(a - 1) < 1e-3:
                raise ExerciseError(f"{what}: shifted by a constant {b:+.4g} (a factor exp({b:.3g}) = {math.exp(b):.4g}"
                                    " on the power): a normalised FFT (norm='ortho'?), a scaled window, or a mel "
                                    "filterbank with area normalisation (norm='slaney')? Use a plain rfft, the Hann "
                                    "window, and triangles that peak at 1")
            raise ExerciseError(f"{what}: your values are {a:.4g} x the expected ones {b:+.4g}: a wrong log base "
                                "or scale factor")
        if fit_ok:  # right wherever the signal is loud: the difference is in the quiet part, i.e. eps
            quiet = ~loud
            err = np.abs(got[quiet] - want[quiet]).max()
            if err > 5e-3:
                floor = got.min()
                raise ExerciseError(f"{what}: right where the signal is loud but off by up to {err:.3g} where it is "
                                    f"quiet: the eps is different (your floor is {floor:.4g}, log(eps) = "
                                    f"{math.log(cfg.eps):.4g}). Use log(S + eps) with eps = cfg.eps, not "
                                    "log(max(S, eps)) or log(S) + eps")
        _close(got, want, what, rtol=1e-3, atol=5e-3)  # float32 vs float64 differ by ~1e-3 where S ~ eps
    _ok("log_mel")


# ---- solutions: the notebook's exercises answered (`make test` runs it with them)

def solution_alias(f, sr):
    """Exercise 1: where a tone at f Hz lands when sampled at sr Hz, in 0 .. sr / 2."""
    f = np.mod(np.asarray(f, dtype=np.float64), sr)  # sampling cannot tell f from f + k sr ...
    return np.where(f > sr / 2, sr - f, f)  # ... nor f from sr - f: fold the upper half down


def solution_n_frames(T, n_fft, hop, center):
    """Exercise 2: frames of a T-sample STFT (centred: one per multiple of hop; else the frames that fit)."""
    return T // hop + 1 if center else 1 + (T - n_fft) // hop


def solution_log_mel(x, cfg):
    """Exercise 3: the log-mel spectrogram with torch and torchaudio operations, (n_mels, frames)."""
    X = torch.stft(torch.as_tensor(x), cfg.n_fft, cfg.hop, window=torch.hann_window(cfg.n_fft), center=True,
                   pad_mode="reflect", return_complex=True)  # (F, frames)
    fbank = torchaudio.functional.melscale_fbanks(cfg.n_fft // 2 + 1, cfg.f_min, cfg.f_max, cfg.n_mels, cfg.sr)
    return torch.log(fbank.T @ X.abs() ** 2 + cfg.eps)  # (n_mels, frames)
