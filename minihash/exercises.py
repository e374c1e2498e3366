"""Self-checking exercises for the notebooks.

Each `check_...(your_fn)` runs the learner's function on cases with known answers
(computed by the package or by a library such as POT or scipy) and says what is
wrong, not only that it is wrong: wrong shape, wrong scale, off by a constant, a
marginal that does not sum to one... It prints a short success line when all
cases pass and raises `ExerciseError` with the explanation otherwise, so that a
notebook run under nbmake fails if the reference solution breaks.
"""
from __future__ import annotations

import numpy as np


class ExerciseError(AssertionError):
    """The learner's answer is wrong; the message says how."""


def _ok(name: str) -> None:
    print(f"✓ {name}: all checks passed")


def _close(got, want, what: str, rtol=1e-4, atol=1e-5) -> None:
    """Raise with a helpful message if `got` is not `want` (shape first, then values)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise ExerciseError(f"{what}: expected shape {want.shape}, got {got.shape}")
    if not np.allclose(got, want, rtol=rtol, atol=atol):
        err = np.abs(got - want)
        i = np.unravel_index(np.argmax(err), err.shape) if err.ndim else ()
        raise ExerciseError(f"{what}: largest difference {err.max():.3g} at index {tuple(int(j) for j in i)} "
                            f"(got {got[i]:.6g}, expected {want[i]:.6g})")
