"""The notebooks' exercises: they ship as stubs that report "not yet done", the reference solutions pass
their checks, and every checker rejects a wrong answer with an explanation (not a crash).

`make test` also runs every notebook with its solutions (MINIHASH_SOLUTIONS=1, through nbmake);
tests/test_notebooks.py runs one notebook as shipped, stubs and all, to the end.
"""
import ast
import contextlib
import importlib
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.signal import butter, sosfilt

from minihash.lessons.common import ExerciseError

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def cells(path):
    return json.loads(path.read_text())["cells"]


def source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def lesson_of(path):
    """The notebook's lesson module (`from minihash.lessons import nbXX_... as lesson`)."""
    text = "\n".join(source(c) for c in cells(path) if c["cell_type"] == "code")
    m = re.search(r"from minihash\.lessons import (nb\w+) as lesson", text)
    assert m, f"{path.name}: no `from minihash.lessons import nbXX_... as lesson`"
    return importlib.import_module(f"minihash.lessons.{m.group(1)}")


def exercise_cells(path):
    return [(i, source(c)) for i, c in enumerate(cells(path))
            if c["cell_type"] == "code" and "exercise" in c.get("metadata", {}).get("tags", [])]


EXERCISES = [(p, i, src) for p in NOTEBOOKS for i, src in exercise_cells(p)]
IDS = [f"{p.stem[:2]}-cell{i}" for p, i, _ in EXERCISES]


def is_stub(fn: ast.FunctionDef) -> bool:
    """The body is `...` or `raise NotImplementedError(...)`, after an optional docstring."""
    body = fn.body[1:] if (fn.body and isinstance(fn.body[0], ast.Expr)
                           and isinstance(fn.body[0].value, ast.Constant) and isinstance(fn.body[0].value.value, str)) \
        else fn.body
    if len(body) != 1:
        return False
    st = body[0]
    if isinstance(st, ast.Expr) and isinstance(st.value, ast.Constant) and st.value.value is Ellipsis:
        return True
    if isinstance(st, ast.Raise) and st.exc is not None:
        exc = st.exc.func if isinstance(st.exc, ast.Call) else st.exc
        return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"
    return False


def learner_functions(src):
    return [n for n in ast.parse(src).body if isinstance(n, ast.FunctionDef)]


def run_cell(src, module, monkeypatch, solutions: bool) -> str:
    """Execute an exercise cell on its own (it needs only `lesson`) and return what it printed."""
    if solutions:
        monkeypatch.setenv("MINIHASH_SOLUTIONS", "1")
    else:
        monkeypatch.delenv("MINIHASH_SOLUTIONS", raising=False)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(src, "<exercise cell>", "exec"), {"lesson": module})
    return out.getvalue()


# ---- the notebooks ship stubs, each with a reference solution


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_ships_a_stub_exercise(path):
    ex = exercise_cells(path)
    assert ex, f"{path.name}: no code cell tagged `exercise`"
    module = lesson_of(path)
    for i, src in ex:
        fns = learner_functions(src)
        assert fns, f"{path.name} cell {i}: an exercise cell defines the learner's function"
        for fn in fns:
            assert fn.name.startswith("my_"), f"{path.name} cell {i}: {fn.name}: the learner's functions are my_..."
            assert [ast.unparse(d) for d in fn.decorator_list] == ["lesson.exercise"], \
                f"{path.name} cell {i}: {fn.name} is decorated with @lesson.exercise"
            assert is_stub(fn), f"{path.name} cell {i}: {fn.name} must ship as a stub (`...` or NotImplementedError)"
            sol = "solution_" + fn.name.removeprefix("my_")
            assert callable(getattr(module, sol, None)), f"{path.name}: {module.__name__} has no {sol}"
        assert re.search(r"^lesson\.check_\w+\(my_\w+", src, re.M), f"{path.name} cell {i}: the cell runs its check"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_cells_that_use_a_learner_function_wait_for_its_check(path):
    """A stub must not crash the rest of the notebook: other cells use `my_...` only once it passed."""
    mine = {fn.name for _, src in exercise_cells(path) for fn in learner_functions(src)}
    for i, c in enumerate(cells(path)):
        if c["cell_type"] != "code" or "exercise" in c.get("metadata", {}).get("tags", []):
            continue
        used = {n for n in mine if re.search(rf"\b{n}\b", source(c))}
        for n in used:
            assert f"lesson.passed({n})" in source(c), f"{path.name} cell {i} uses {n} without `lesson.passed({n})`"


@pytest.mark.parametrize("path,i,src", EXERCISES, ids=IDS)
def test_a_stub_is_reported_not_yet_done(path, i, src, monkeypatch):
    out = run_cell(src, lesson_of(path), monkeypatch, solutions=False)  # raises if the stub crashes the check
    assert "not yet done" in out, f"{path.name} cell {i}: printed {out!r}"
    assert "all checks passed" not in out


@pytest.mark.parametrize("path,i,src", EXERCISES, ids=IDS)
def test_the_reference_solution_passes(path, i, src, monkeypatch):
    out = run_cell(src, lesson_of(path), monkeypatch, solutions=True)
    assert "all checks passed" in out and "not yet done" not in out, f"{path.name} cell {i}: printed {out!r}"


# ---- every checker rejects at least one wrong answer (a classic mistake), with an ExerciseError


def _lesson(n):
    return importlib.import_module(f"minihash.lessons.{n}")


def _wrong_rt60(h, sr):  # the 20 dB span's time, not extrapolated to 60 dB
    return _lesson("nb02_distortions").solution_rt60(h, sr) / 3


def _wrong_target_zone(t, f, cfg):  # no frequency limit on the zone
    lo, hi = np.searchsorted(t, t + cfg.min_dt, "left"), np.searchsorted(t, t + cfg.max_dt, "right")
    out = [(t[i], f[i], f[j], t[j] - t[i]) for i in range(len(t)) for j in range(lo[i], hi[i])[:cfg.fanout]]
    return tuple(np.array(c) for c in zip(*out))


def _wrong_nt_xent(z1, z2, tau):  # one direction only: the clean windows as anchors
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    return F.cross_entropy(z1 @ z2.T / tau, torch.arange(len(z1)))


def _wrong_sinkhorn(a, b, C, eps, n_iter):  # eps upside down in the kernel
    K = np.exp(-C * eps)
    u = np.ones_like(a)
    for _ in range(n_iter):
        v = b / (K.T @ u)
        u = a / (K @ v)
    return u[:, None] * K * v[None, :]


def _wrong_balanced_plan(logits, eps, n_iter):  # the bits of code j read most significant first
    B, K = logits.shape
    j = np.arange(2 ** K)
    V = 2.0 * ((j[:, None] >> np.arange(K)[::-1]) & 1) - 1.0
    C = -np.tanh(logits) @ V.T / K
    return _lesson("nb06_optimal_transport").solution_sinkhorn(np.full(B, 1 / B), np.full(2 ** K, 1 / 2 ** K), C, eps,
                                                                n_iter)


def _wrong_probes(logits, n_probes):  # single-bit flips only, least confident first
    order = np.argsort(np.abs(logits))
    return np.array([0] + [1 << int(k) for k in order], dtype=np.uint64)[:n_probes]


def _vote_flipped(win, rows, sims, q_starts, track_ids, starts, hop_s):  # the offset's sign flipped
    tr = track_ids[rows]
    b = np.rint((q_starts[win] - starts[rows]) / hop_s).astype(int)  # query start - database start
    H = np.zeros((tr.max() + 1, b.max() - b.min() + 1))
    np.add.at(H, (tr, b - b.min()), np.maximum(sims, 0.0))
    t, j = np.unravel_index(np.argmax(H), H.shape)
    return int(t), int(j + b.min())


def _wrong_threshold(scores, max_false):  # a threshold equal to the first score that must not pass
    s = np.sort(np.asarray(scores))[::-1]
    return float(s[int(np.floor(max_false * len(s) + 1e-9))]) if max_false * len(s) < len(s) else -np.inf


def _wrong_phone_filter(x, sr):  # the low-pass side only
    return sosfilt(butter(4, 3400.0, btype="lowpass", fs=sr, output="sos"), x)


WRONG = {  # checker: (lesson module, a classic wrong answer)
    "check_is_hit": ("nb00_overview", lambda m, track, start_s, tol=0.1: m.track == track),
    "check_alias": ("nb01_audio_and_spectrograms", lambda f, sr: np.mod(f, sr)),
    "check_hz_to_mel": ("nb01_audio_and_spectrograms", lambda f: 2595.0 * np.log(1.0 + np.asarray(f) / 700.0)),
    "check_stft_frames": ("nb01_audio_and_spectrograms", lambda T, n_fft, hop, center: 1 + (T - n_fft) // hop),
    "check_log_mel": ("nb01_audio_and_spectrograms",
                      lambda x, cfg: _lesson("nb01_audio_and_spectrograms").solution_log_mel(x, cfg) / math.log(10)),
    "check_snr_db": ("nb02_distortions",
                     lambda c, y: 20 * np.log10(np.mean(c ** 2) / np.mean((y - c) ** 2))),
    "check_add_noise": ("nb02_distortions",
                        lambda x, n, snr: x + np.sqrt(np.mean(x ** 2) / np.mean(n ** 2)) * 10 ** (-snr / 10) * n),
    "check_rt60": ("nb02_distortions", _wrong_rt60),
    "check_pack_hash": ("nb03_landmarks", lambda f1, df, dt: (f1 << 12) | (df << 6) | dt),
    "check_offset_histogram": ("nb03_landmarks", lambda qh, qt, dh, dt: _lesson("nb03_landmarks")
                               .solution_best_offset(qh, -qt, dh, -dt)),
    "check_target_zone": ("nb03_landmarks", _wrong_target_zone),
    "check_patchify": ("nb04_patch_transformer",
                       lambda S, P: S[:, :, :S.shape[2] // P * P].reshape(S.shape[0], S.shape[2] // P, -1)),
    "check_attention": ("nb04_patch_transformer",
                        lambda Q, K, V: (torch.softmax(Q @ K.transpose(-2, -1), -1) @ V,
                                         torch.softmax(Q @ K.transpose(-2, -1), -1))),
    "check_positional_encoding": ("nb04_patch_transformer", lambda N, D: _lesson("nb04_patch_transformer")
                                  .solution_positional_encoding(N, D)[:, np.arange(D) ^ 1]),
    "check_nt_xent": ("nb05_contrastive_learning", _wrong_nt_xent),
    "check_top1": ("nb05_contrastive_learning",
                   lambda q, r, truth: float(((np.asarray(q) @ np.asarray(r).T).argmax(1) == truth).mean())),
    "check_sinkhorn": ("nb06_optimal_transport", _wrong_sinkhorn),
    "check_balanced_assignment": ("nb06_optimal_transport", _wrong_balanced_plan),
    "check_bucket_entropy": ("nb07_balanced_hashing", lambda codes, K: _lesson("nb07_balanced_hashing")
                             .solution_bucket_entropy(codes, K) * math.log(2) * math.log2(min(len(codes), 2 ** K))),
    "check_pack_codes": ("nb07_balanced_hashing",
                         lambda l: ((l > 0).astype(np.uint64) << np.arange(l.shape[1], dtype=np.uint64)[::-1])
                         .sum(axis=1, dtype=np.uint64)),
    "check_expected_candidates": ("nb07_balanced_hashing",
                                  lambda codes: float(np.unique(codes, return_counts=True)[1].mean())),
    "check_bucket_lookup": ("nb08_search", lambda cs, code: (int(np.searchsorted(cs, code, "left")),
                                                             int(np.searchsorted(cs, code, "right")) - 1)),
    "check_probe_order": ("nb08_search", _wrong_probes),
    "check_vote": ("nb08_search", _vote_flipped),
    "check_ncc": ("nb09_benchmark", lambda q, x: np.correlate(np.asarray(x, float), np.asarray(q, float), "valid")),
    "check_threshold": ("nb09_benchmark", _wrong_threshold),
    "check_phone_filter": ("nb10_your_own_audio", _wrong_phone_filter),
    "check_excerpt": ("nb10_your_own_audio", lambda x, start_s, length_s, sr: x[int(start_s * sr):
                                                                                 int(start_s * sr) + int(length_s * sr)]),
}


def all_checkers():
    names = set()
    for p in sorted((Path(__file__).parent.parent / "minihash" / "lessons").glob("nb*.py")):
        names |= set(re.findall(r"^def (check_\w+)", p.read_text(), re.M))
    return names


def test_every_checker_has_a_wrong_answer_here():
    assert all_checkers() == set(WRONG), "add a wrong answer for each new checker (and drop removed ones)"


@pytest.mark.parametrize("name", sorted(WRONG))
def test_the_checker_rejects_a_wrong_answer(name):
    module, wrong = WRONG[name]
    check = getattr(_lesson(module), name)
    with pytest.raises(ExerciseError) as err, contextlib.redirect_stdout(io.StringIO()):
        check(wrong)
    assert len(str(err.value)) > 20, f"{name}: say what is wrong, not only that it is"
