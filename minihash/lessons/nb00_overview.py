"""Notebook 00, the overview: the whole search in a few cells, collection to (track, start, score).

Its figures are the ones every later look inside the search uses: a spectrogram (an STFT or a log-mel
image, as the model sees it) and the offset votes of one query, the histogram over "DB start - query
start" whose peak names the track and the start time (Wang 2003's offset voting over the query's
windows, as in Chang et al. 2021). Its exercise is the evaluation protocol's hit: the right track with
the start within a tolerance.

References: A. Singh, K. Demuynck, V. Arora, ICASSP 2023 (arXiv 2211.11060); S. Chang et al., ICASSP 2021
(arXiv 2010.11910); A. Wang, ISMIR 2003.
"""
from __future__ import annotations

import numpy as np

from ..search.base import Match
from .common import ExerciseError, _audio_np, _fig_ax, _ok, checker, exercise_decorator, passed

__all__ = ["plot_spectrogram", "plot_offset_votes", "check_is_hit",
           "exercise", "passed", "solution_is_hit"]

exercise = exercise_decorator(globals())  # `@lesson.exercise` in the notebook: see common


# ---- figures

def plot_spectrogram(S, sr, hop, ax=None, figsize=(8, 3), title=None, freq="linear", db=False,
                     f_min=None, f_max=None, clabel=None, colorbar=True, cmap="magma", vmin=None, vmax=None):
    """A time-frequency image: an STFT power spectrogram or a (log-)mel one.

    Frame k is centred on sample k * hop (a centred STFT), so it is drawn at k * hop / sr seconds.

    Args:
        S: (F, frames) values, numpy or torch; F = n_fft // 2 + 1 bins for `freq="linear"`,
            the mel bands for `freq="mel"`.
        sr: sample rate in Hz.
        hop: hop between frames in samples.
        ax: axes to draw on (a new figure when None).
        figsize: size of the new figure.
        title: axes title.
        freq: "linear" (y axis in Hz, 0 to sr / 2) or "mel" (y axis: band index).
        db: draw 10 log10(S) (S is a power) instead of S.
        f_min, f_max: for `freq="mel"`, the band edges in Hz, shown in the y label.
        clabel: colorbar label (a sensible default otherwise).
        colorbar: add a colorbar.
        cmap, vmin, vmax: passed to `imshow`.

    Returns:
        (fig, ax).

    Notebook: 00_overview.ipynb, 01_audio_and_spectrograms.ipynb, 02_distortions.ipynb, 10_your_own_audio.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)
    S = _audio_np(S)
    if S.ndim != 2:
        raise ValueError(f"plot_spectrogram expects (F, frames), got shape {S.shape}")
    if db:
        S = 10 * np.log10(np.maximum(S, 1e-12))
    F, N = S.shape
    dt = hop / sr
    if freq == "linear":
        df = sr / 2 / max(F - 1, 1)
        extent = (-dt / 2, (N - 0.5) * dt, -df / 2, sr / 2 + df / 2)
        ylabel = "frequency (Hz)"
    elif freq == "mel":
        extent = (-dt / 2, (N - 0.5) * dt, -0.5, F - 0.5)
        ylabel = "mel band" + (f" ({f_min:g}-{f_max:g} Hz)" if f_min is not None and f_max is not None else "")
    else:
        raise ValueError(f"freq must be 'linear' or 'mel', got {freq!r}")
    im = ax.imshow(S, origin="lower", aspect="auto", extent=extent, cmap=cmap, vmin=vmin, vmax=vmax,
                   interpolation="nearest")
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if colorbar:
        fig.colorbar(im, ax=ax, label=clabel or ("power (dB)" if db else "value"), pad=0.01)
    return fig, ax


def plot_offset_votes(offsets_s, weights, hop_s=0.1, others=None, truth_s=None, found_s=None, ax=None,
                      figsize=(8, 3), title="votes per offset"):
    """The offset histogram of one query: summed similarities of its candidates per offset bin.

    A query window at q seconds whose candidate DB window starts at d seconds votes for the offset
    d - q; the right alignment collects votes from (nearly) every query window, a wrong one from few.

    Args:
        offsets_s: (C,) offsets (DB start - query window start, seconds) of the candidates in one track.
        weights: (C,) their votes (inner products; negative ones count 0).
        hop_s: bin width, seconds (the DB hop).
        others: optional (offsets_s, weights) of the candidates in every other track, drawn grey.
        truth_s: the true start time, marked with a dashed line (None: not drawn).
        found_s: the start time the search returned (refined below the hop), marked with a dotted line.
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title: the title.

    Returns:
        (fig, ax).

    Notebook: 00_overview.ipynb, 08_search.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)

    def hist(off, w):
        b = np.rint(np.asarray(off, dtype=np.float64) / hop_s).astype(np.int64)
        keys, inv = np.unique(b, return_inverse=True)
        return keys * hop_s, np.bincount(inv, weights=np.maximum(np.asarray(w, dtype=np.float64), 0.0))

    if others is not None and len(others[0]):
        x, y = hist(*others)
        ax.bar(x, y, width=hop_s, color="0.7", label="all other tracks")
    if len(offsets_s):
        x, y = hist(offsets_s, weights)
        ax.bar(x, y, width=hop_s, color="C0", label="matched track")
    if truth_s is not None:
        ax.axvline(truth_s, color="C3", ls="--", lw=1, label=f"true start {truth_s:.2f} s")
    if found_s is not None:
        ax.axvline(found_s, color="k", ls=":", lw=1, label=f"found {found_s:.2f} s")
    ax.set(xlabel="offset = DB window start - query window start (s)", ylabel="summed similarity", title=title)
    ax.legend(loc="upper right", fontsize=8)
    return fig, ax


# ---- exercises

@checker
def check_is_hit(your_fn) -> None:
    """Check `your_fn(match, track, start_s, tol=0.1) -> bool`: the evaluation protocol's hit.

    A hit names the right track and a start time within `tol` seconds of the true one, either side;
    "no match" (`match.track is None`) is never a hit.

    Notebook: 00_overview.ipynb
    """
    def m(track, offset):
        return Match(track, offset, 0.8, 100, 1.0)

    cases = [  # (match, track, start_s, tol, expected, what a wrong answer means)
        (m("song_a", 10.05), "song_a", 10.0, 0.1, True, "the right track 0.05 s late is a hit"),
        (m("song_a", 9.96), "song_a", 10.0, 0.1, True, "the right track 0.04 s early is a hit"),
        (m("song_a", 9.0), "song_a", 10.0, 0.1,
         False, "a start 1 s too early is not a hit: compare the absolute error |offset - start| with tol"),
        (m("song_a", 11.0), "song_a", 10.0, 0.1, False, "a start 1 s too late is not a hit"),
        (m("song_b", 10.0), "song_a", 10.0, 0.1,
         False, "the wrong track at the right time is not a hit: check match.track == track"),
        (m(None, 10.0), "song_a", 10.0, 0.1, False, "no match (match.track is None) is never a hit"),
        (m("song_a", 10.4), "song_a", 10.0, 0.5,
         True, "with tol=0.5 a start 0.4 s late is a hit: use the tol argument, not a fixed 0.1"),
        (m("song_a", 10.099), "song_a", 10.0, 0.1, True, "an error just under tol is a hit"),
    ]
    for match, track, start_s, tol, want, why in cases:
        got = your_fn(match, track, start_s, tol=tol)
        if not isinstance(got, (bool, np.bool_)):
            raise ExerciseError(f"return True or False, got {type(got).__name__} {got!r}")
        if bool(got) != want:
            raise ExerciseError(f"is_hit(Match(track={match.track!r}, offset_s={match.offset_s}), {track!r}, "
                                f"start_s={start_s}, tol={tol}) returned {got}: {why}")
    _ok("check_is_hit")


# ---- solutions: the notebook's exercises answered (`make test` runs it with them)

def solution_is_hit(match, track, start_s, tol=0.1):
    """Exercise 1: the protocol's hit (the right track, the start within tol either side; no match never is)."""
    return match.track is not None and match.track == track and abs(match.offset_s - start_s) <= tol
