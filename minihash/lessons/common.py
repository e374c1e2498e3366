"""What every lesson module shares: the exercise error and its success line, a comparison that says what
differs, and the conversions and axes the figures start from.

Checkers (`check_...(your_fn)`) run the learner's function on cases with known answers (computed by the
package or by a library such as POT or scipy) and say what is wrong, not only that it is wrong: wrong shape,
wrong scale, off by a constant, a marginal that does not sum to one... They print a short success line when
all cases pass and raise `ExerciseError` with the explanation otherwise, so that a notebook run under nbmake
fails if the reference solution breaks.

Exercises ship as stubs (nbgrader, Neuromatch and PCP courses do the same): the notebook's exercise cell
defines `my_xxx` with `...` (or `raise NotImplementedError`) as its body, under `@lesson.exercise`. A checker
handed a stub says "not yet done" and returns False, so a notebook run as shipped finishes. The reference
answer is `solution_xxx` in the notebook's lesson module; with MINIHASH_SOLUTIONS=1 in the environment
(`make test` sets it) `@lesson.exercise` hands the checker that solution instead of the stub, so every
notebook is tested with its exercises solved, through the same checkers.

Figures take `ax` (or `figsize`) and return `(fig, ax)`, as libfmp does (M. Müller, Fundamentals of Music
Processing, and its FMP notebooks), so a notebook can place one in its own grid or show it alone.
"""
from __future__ import annotations

import functools
import os
import weakref

import matplotlib.pyplot as plt
import numpy as np

# ---- exercises


class ExerciseError(AssertionError):
    """The learner's answer is wrong; the message says how."""


class NotYetDone(BaseException):
    """The learner's function is still a stub. A BaseException, so that a checker's `except Exception`
    (which turns the learner's crash into an explanation) lets it through to `checker`."""


SOLUTIONS_ENV = "MINIHASH_SOLUTIONS"
_passed = weakref.WeakSet()  # the learner's functions whose check passed


def solutions_on() -> bool:
    """Whether the notebooks run with the reference solutions in place of the stubs (`make test`)."""
    return os.environ.get(SOLUTIONS_ENV, "") not in ("", "0")


def exercise_decorator(module_globals: dict):
    """A lesson module's `exercise` decorator: it returns the learner's function unchanged, or, with
    MINIHASH_SOLUTIONS=1, the module's reference `solution_xxx` for the learner's `my_xxx`."""
    def exercise(fn):
        """Your function, unchanged (with MINIHASH_SOLUTIONS=1: the reference solution in its place)."""
        if not solutions_on():
            return fn
        name = "solution_" + fn.__name__.removeprefix("my_")
        if name not in module_globals:
            raise LookupError(f"{fn.__name__}: no reference solution {name} in {module_globals['__name__']}")
        return module_globals[name]
    return exercise


def _stub_aware(fn):
    """`fn`, except that a stub (NotImplementedError raised, or None / Ellipsis returned) raises NotYetDone."""
    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            out = fn(*args, **kwargs)
        except NotImplementedError:
            raise NotYetDone("it still raises NotImplementedError") from None
        if out is None or out is Ellipsis:
            raise NotYetDone("it returns None (a stub, or a `return` missing)")
        return out
    return call


def checker(check):
    """Wrap a `check_...(your_fn)`: a stub prints "not yet done" (and nothing is raised); a wrong answer still
    raises ExerciseError; a pass is remembered for `passed`. Returns None, so a notebook shows only the message."""
    @functools.wraps(check)
    def run(your_fn, *args, **kwargs) -> None:
        try:
            check(_stub_aware(your_fn), *args, **kwargs)
        except NotYetDone as e:
            print(f"… {check.__name__}({getattr(your_fn, '__name__', 'your function')}): not yet done: {e}. "
                  "Write it in the cell above and run the cell again.")
            return
        try:
            _passed.add(your_fn)
        except TypeError:  # not weak-referenceable (a builtin): nothing to remember
            pass
    return run


def passed(fn) -> bool:
    """Whether `fn` passed its check in this session (cells that use the learner's function ask first)."""
    try:
        return fn in _passed
    except TypeError:
        return False


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
