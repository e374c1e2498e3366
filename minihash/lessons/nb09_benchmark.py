"""Notebook 09: the benchmark, every method on the same noisy queries (its figures are the evaluation's own,
the spectrogram of notebook 00 and the trade-off plot and interval statistics of notebook 07).

Exercises: normalised cross-correlation, which finds where an excerpt repeats in its track (for the
repeat-aware score), and the no-match threshold calibrated on negative queries, each against the package.

References: S. Chang et al., ICASSP 2021 (arXiv 2010.11910, the protocol); A. Singh, K. Demuynck,
V. Arora, ICASSP 2023; A. Wang, ISMIR 2003.
"""
from __future__ import annotations

import numpy as np

from ..corpus.repeats import ncc
from ..search.threshold import calibrate_threshold
from .common import ExerciseError, _close, _ok, checker, exercise_decorator, passed
from .nb00_overview import plot_spectrogram
from .nb07_balanced_hashing import (at_equal_share, compare, paired_difference, plot_search_tradeoff,
                                    wilson_interval)

__all__ = ["plot_spectrogram", "plot_search_tradeoff", "wilson_interval", "paired_difference", "compare",
           "at_equal_share",
           "check_ncc", "check_threshold",
           "exercise", "passed", "solution_ncc", "solution_threshold"]

exercise = exercise_decorator(globals())  # `@lesson.exercise` in the notebook: see common


# ---- exercises

@checker
def check_ncc(your_fn) -> None:
    """Check a normalised cross-correlation `your_fn(q, x) -> (len(x) - len(q) + 1,)` against
    `minihash.corpus.repeats.ncc`, and say which classic mistake it makes.

    Notebook: 09_benchmark.ipynb
    """
    rng = np.random.default_rng(9)
    x = rng.standard_normal(400) + 0.5  # an offset: forgetting to remove means shows
    q = x[120:160].copy()
    want = ncc(q, x)
    got = np.asarray(your_fn(q, x), dtype=np.float64)
    if got.shape != want.shape:
        raise ExerciseError(f"expected {want.shape[0]} lags (len(x) - len(q) + 1), got shape {got.shape}: "
                            "a window must fit entirely inside x")
    if np.allclose(got, want, atol=1e-6):
        if not np.isclose(got[120], 1.0, atol=1e-6):
            raise ExerciseError("the excerpt should correlate perfectly (r = 1) with itself at lag 120")
        _ok("check_ncc")
        return
    raw = np.array([q @ x[k:k + len(q)] for k in range(len(want))])
    if np.allclose(got, raw, rtol=1e-5):
        raise ExerciseError("this is the raw cross-correlation: divide by the norms (of q and of each window)")
    no_mean = np.array([q @ x[k:k + len(q)] / (np.linalg.norm(q) * np.linalg.norm(x[k:k + len(q)]) + 1e-12)
                        for k in range(len(want))])
    if np.allclose(got, no_mean, atol=1e-6):
        raise ExerciseError("cosine similarity, not Pearson r: subtract the mean of q and of each window first")
    global_norm = np.array([(q - q.mean()) @ (x[k:k + len(q)] - x[k:k + len(q)].mean()) for k in range(len(want))])
    global_norm /= np.linalg.norm(q - q.mean()) * np.linalg.norm(x - x.mean()) / np.sqrt(len(x) / len(q))
    if np.corrcoef(got, global_norm)[0, 1] > 0.999 and not np.allclose(got, want, atol=1e-3):
        raise ExerciseError("normalise by each window's own energy, not the whole signal's")
    _close(got, want, "ncc", atol=1e-6)


@checker
def check_threshold(your_fn) -> None:
    """Check `your_fn(negative_scores, max_false) -> threshold` (a score >= threshold is a match)
    against `minihash.search.threshold.calibrate_threshold`.

    Notebook: 09_benchmark.ipynb
    """
    rng = np.random.default_rng(3)
    for n, max_false in ((100, 0.05), (40, 0.05), (10, 0.0), (7, 0.3)):
        s = rng.uniform(0.2, 0.9, n)
        thr = float(your_fn(s.copy(), max_false))
        false = np.mean(s >= thr)
        if false > max_false + 1e-12:
            raise ExerciseError(f"with {n} negatives and max_false={max_false}, {false:.0%} of them still match "
                                f"(score >= {thr:.4f}): the threshold is too low (check >= against >)")
        want = calibrate_threshold(s, max_false)
        if np.mean(s >= want) > false + 1e-12:
            raise ExerciseError(f"with {n} negatives and max_false={max_false}, your threshold {thr:.4f} lets only "
                                f"{false:.0%} through where {np.mean(s >= want):.0%} is allowed: it is higher than "
                                "needed, and costs true matches")
    _ok("check_threshold")


# ---- solutions: the notebook's exercises answered (`make test` runs it with them)

def solution_ncc(q, x):
    """Exercise 1: Pearson r of q with every window of x (windows as rows of a strided view)."""
    q = np.asarray(q, dtype=np.float64)
    W = np.lib.stride_tricks.sliding_window_view(np.asarray(x, dtype=np.float64), len(q))  # (lags, n)
    qc, Wc = q - q.mean(), W - W.mean(axis=1, keepdims=True)
    d = np.sqrt((qc @ qc) * np.einsum("ij,ij->i", Wc, Wc))
    return np.where(d > 0, Wc @ qc / np.where(d > 0, d, 1.0), 0.0)


def solution_threshold(scores, max_false):
    """Exercise 2: the lowest threshold that at most max_false of the negatives reach (score >= threshold)."""
    s = np.sort(np.asarray(scores, dtype=np.float64))[::-1]  # highest first
    allowed = int(np.floor(max_false * len(s) + 1e-9))  # how many may pass
    return float(np.nextafter(s[allowed], np.inf)) if allowed < len(s) else -np.inf
