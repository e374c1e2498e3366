"""What every lesson module shares: the exercise error and its success line, a comparison that says what
differs, and the conversions and axes the figures start from.

Checkers (`check_...(your_fn)`) run the learner's function on cases with known answers (computed by the
package or by a library such as POT or scipy) and say what is wrong, not only that it is wrong: wrong shape,
wrong scale, off by a constant, a marginal that does not sum to one... They print a short success line when
all cases pass and raise `ExerciseError` with the explanation otherwise, so that a notebook run under nbmake
fails if the reference solution breaks.

Figures take `ax` (or `figsize`) and return `(fig, ax)`, as libfmp does (M. Müller, Fundamentals of Music
Processing, and its FMP notebooks), so a notebook can place one in its own grid or show it alone.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

# ---- exercises


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


def _as_float_array(x, what: str) -> np.ndarray:
    """The learner's answer as a float64 numpy array (torch tensors accepted)."""
    try:
        return _audio_np(x)
    except (TypeError, ValueError):
        raise ExerciseError(f"{what}: expected numbers (a float or an array), got {type(x).__name__}") from None


# ---- arrays and axes for the figures


def _numpy(x) -> np.ndarray:
    """A numpy view of an array or tensor (detached, on the CPU), its dtype kept."""
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _audio_np(x) -> np.ndarray:
    """A numpy float64 copy of a numpy array or torch tensor (on any device)."""
    return np.asarray(_numpy(x), dtype=np.float64)


def _fig_ax(ax=None, figsize=(8, 3)):
    """The figure and axes to draw on: `ax`'s own, or a new pair."""
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax
