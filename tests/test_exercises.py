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


def _hamming(c1, c2, K, op="xor", low=None):  # the Hamming distance of packed codes, or a classic mistake
    x = {"xor": c1 ^ c2, "or": c1 | c2}[op] & np.uint64((1 << (low or K)) - 1)
    return sum(((x >> np.uint64(k)) & np.uint64(1)).astype(np.int64) for k in range(K))


def _collision(cos, K, L, clip=True, angle=True, union=False):  # LSH collision probability, or a classic mistake
    c = np.clip(cos, -1, 1) if clip else cos
    p = (1 - (np.arccos(c) if angle else c) / np.pi) ** K
    return np.minimum(1.0, L * p) if union else 1 - (1 - p) ** L


def _radius1(codes, K, own=True, add=False):  # expected candidates of the bucket and its K neighbours, or a mistake
    u, n = np.unique(codes.astype(np.int64), return_counts=True)
    size = dict(zip(u.tolist(), n.tolist()))
    ring = [nb * (nb * own + sum(size.get(b + (1 << k) if add else b ^ (1 << k), 0) for k in range(K)))
            for b, nb in zip(u.tolist(), n.tolist())]
    return sum(ring) / n.sum()


def _band_snr(clean, noisy, sr, f_lo, f_hi, power=2, noise=True):  # the band's SNR, or a classic mistake
    f = np.fft.rfftfreq(len(clean), 1 / sr)
    band = (f >= f_lo) & (f <= f_hi)
    X, N = np.fft.rfft(clean)[band], np.fft.rfft(noisy - clean if noise else noisy)[band]
    return 10 * np.log10(np.sum(np.abs(X) ** power) / np.sum(np.abs(N) ** power))


def _segmental(clean, noisy, frame, clip=True, db=10):  # segmental SNR, or a classic mistake
    n = len(clean) // frame
    c, e = clean[:n * frame].reshape(n, frame), (noisy - clean)[:n * frame].reshape(n, frame)
    snr = db * np.log10(np.sum(c ** 2, 1) / np.sum(e ** 2, 1))
    return float(np.mean(np.clip(snr, -10, 35) if clip else snr))


def _c50(h, sr, start=None, ms=50, over="late"):  # C50, or a classic mistake
    d = int(np.argmax(np.abs(h))) if start is None else start
    j = d + int(round(ms / 1000 * sr))
    e = np.square(h)
    return 10 * np.log10(e[d:j].sum() / (e[j:].sum() if over == "late" else e[d:].sum()))


def _wrong_target_zone(t, f, cfg):  # no frequency limit on the zone
    lo, hi = np.searchsorted(t, t + cfg.min_dt, "left"), np.searchsorted(t, t + cfg.max_dt, "right")
    out = [(t[i], f[i], f[j], t[j] - t[i]) for i in range(len(t)) for j in range(lo[i], hi[i])[:cfg.fanout]]
    return tuple(np.array(c) for c in zip(*out))


def _square(S, ph, pw, time_first=False, frame_major=False):  # ViT-style patches, or a classic mistake
    B, M, F_ = S.shape
    nf, nt = M // ph, F_ // pw
    X = S[:, :nf * ph, :nt * pw].reshape(B, nf, ph, nt, pw)
    order = (0, 3, 1) if time_first else (0, 1, 3)
    return X.transpose(*order, *((4, 2) if frame_major else (2, 4))).reshape(B, nf * nt, ph * pw)


def _rollout(maps, residual=True, reverse=False, halve=True):  # attention rollout, or a classic mistake
    R = np.eye(maps.shape[-1])
    for A in np.asarray(maps).mean(axis=1):
        A = (A + np.eye(len(A))) * (0.5 if halve else 1.0) if residual else A
        R = R @ A if reverse else A @ R
    return R


def _nt_xent_grad(S, tau, self_in=False, positive=True):  # d NT-Xent / d S, or a classic mistake
    n = S.shape[0]
    logits = S / tau if self_in else (S / tau).masked_fill(torch.eye(n, dtype=torch.bool), float("-inf"))
    G = torch.softmax(logits, dim=1)
    if positive:
        G[torch.arange(n), (torch.arange(n) + n // 2) % n] -= 1.0
    return G / (n * tau)


def _factored(Lo, Hi, n_iter, rows_first=False, with_u=True, row_mass=None):  # factorised Sinkhorn, or a mistake
    B, n = Lo.shape[0], Lo.shape[1] * Hi.shape[1]
    u, W = torch.ones(B, dtype=Lo.dtype), torch.ones(Hi.shape[1], Lo.shape[1], dtype=Lo.dtype)
    a = 1.0 / B if row_mass is None else row_mass
    for _ in range(n_iter):
        if rows_first:
            u = a / (Hi * (Lo @ W.T)).sum(1)
        W = (1.0 / n) / (Hi.T @ ((u[:, None] if with_u else 1.0) * Lo))
        if not rows_first:
            u = a / (Hi * (Lo @ W.T)).sum(1)
    return u, W


def _targets(**how):  # the per-bit targets from the factors, with a classic mistake
    return lambda u, W, Lo, Hi: _lesson("nb06_optimal_transport")._bit_targets(
        *(np.asarray(x) for x in (u, W, Lo, Hi)), **how)


def _wrong_probes(logits, n_probes):  # single-bit flips only, least confident first
    order = np.argsort(np.abs(logits))
    return np.array([0] + [1 << int(k) for k in order], dtype=np.uint64)[:n_probes]


def _passes(how):  # allowed_passes with a classic mistake (the checker's own variants)
    return lambda n, mf, conf: _lesson("nb08_search")._passes_variants(n, mf, conf)[how]


def _agree(**how):  # Match.agree with a classic mistake
    return lambda *args: _lesson("nb08_search")._agree(*args, **how)


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
    "check_band_snr": ("nb02_distortions", lambda c, y, sr, lo, hi: _band_snr(c, y, sr, lo, hi, power=1)),
    "check_segmental_snr": ("nb02_distortions", lambda c, y, frame: _segmental(c, y, frame, clip=False)),
    "check_c50": ("nb02_distortions", lambda h, sr: _c50(h, sr, start=0)),
    "check_pack_hash": ("nb03_landmarks", lambda f1, df, dt: (f1 << 12) | (df << 6) | dt),
    "check_offset_histogram": ("nb03_landmarks", lambda qh, qt, dh, dt: _lesson("nb03_landmarks")
                               .solution_best_offset(qh, -qt, dh, -dt)),
    "check_target_zone": ("nb03_landmarks", _wrong_target_zone),
    "check_square_patches": ("nb04_patch_transformer", lambda S, ph, pw: _square(S, ph, pw, time_first=True)),
    "check_rollout": ("nb04_patch_transformer", lambda maps: _rollout(maps, residual=False)),
    "check_shift_matrix": ("nb04_patch_transformer",
                           lambda k, D: _lesson("nb04_patch_transformer").solution_shift_matrix(k, D).T),
    "check_nt_xent_grad": ("nb05_contrastive_learning", lambda S, tau: _nt_xent_grad(S, tau) * tau),
    "check_top1": ("nb05_contrastive_learning",
                   lambda q, r, truth: float(((np.asarray(q) @ np.asarray(r).T).argmax(1) == truth).mean())),
    "check_factored_sinkhorn": ("nb06_optimal_transport", lambda Lo, Hi, n: _factored(Lo, Hi, n, with_u=False)),
    "check_bit_targets": ("nb06_optimal_transport", _targets(times_B=False)),
    "check_hamming": ("nb07_balanced_hashing", lambda c1, c2, K: c1 ^ c2),
    "check_lsh_collision": ("nb07_balanced_hashing", lambda cos, K, L: _collision(cos, K, L, union=True)),
    "check_radius1_candidates": ("nb07_balanced_hashing", lambda codes, K: _radius1(codes, K, add=True)),
    "check_allowed_passes": ("nb08_search", _passes("plain")),
    "check_probe_order": ("nb08_search", _wrong_probes),
    "check_agree": ("nb08_search", _agree(pick="all")),
    "check_ncc": ("nb09_benchmark", lambda q, x: np.correlate(np.asarray(x, float), np.asarray(q, float), "valid")),
    "check_threshold": ("nb09_benchmark", _wrong_threshold),
    "check_phone_filter": ("nb10_your_own_audio", _wrong_phone_filter),
    "check_excerpt": ("nb10_your_own_audio", lambda x, start_s, length_s, sr: x[int(start_s * sr):
                                                                                 int(start_s * sr) + int(length_s * sr)]),
}


MISTAKES = [  # (checker, lesson module, a classic wrong answer, words the explanation must contain)
    ("check_band_snr", "nb02_distortions", lambda c, y, sr, lo, hi: _band_snr(c, y, sr, lo, hi, power=1),
     "magnitudes"),
    ("check_band_snr", "nb02_distortions", lambda c, y, sr, lo, hi: _band_snr(c, y, sr, lo, hi, noise=False),
     "noisy mix"),
    ("check_band_snr", "nb02_distortions", lambda c, y, sr, lo, hi: _band_snr(c, y, sr, 0, sr / 2),
     "whole signal"),
    ("check_band_snr", "nb02_distortions", lambda c, y, sr, lo, hi: _band_snr(c, y, 8000, lo, hi), "fixed at 8000"),
    ("check_segmental_snr", "nb02_distortions", lambda c, y, frame: _segmental(c, y, frame, clip=False),
     "not clipped"),
    ("check_segmental_snr", "nb02_distortions", lambda c, y, frame: _segmental(c, y, frame, db=20), "20 log10"),
    ("check_segmental_snr", "nb02_distortions",
     lambda c, y, frame: 10 * np.log10(np.mean(c ** 2) / np.mean((y - c) ** 2)), "global SNR"),
    ("check_c50", "nb02_distortions", lambda h, sr: _c50(h, sr, start=0), "from sample 0"),
    ("check_c50", "nb02_distortions", lambda h, sr: _c50(h, sr, start=int(np.argmax(h))), "argmax |h|"),
    ("check_c50", "nb02_distortions", lambda h, sr: _c50(h, sr, over="total"), "D50"),
    ("check_c50", "nb02_distortions", lambda h, sr: _c50(h, sr, ms=50000 / sr), "50 samples"),
    ("check_square_patches", "nb04_patch_transformer", lambda S, ph, pw: _square(S, ph, pw, time_first=True),
     "time block first"),
    ("check_square_patches", "nb04_patch_transformer", lambda S, ph, pw: _square(S, ph, pw, frame_major=True),
     "frame by frame"),
    ("check_square_patches", "nb04_patch_transformer", lambda S, ph, pw: _square(S, pw, ph), "pw bands by ph frames"),
    ("check_rollout", "nb04_patch_transformer", lambda maps: _rollout(maps, reverse=True), "wrong order"),
    ("check_rollout", "nb04_patch_transformer", lambda maps: _rollout(maps, residual=False), "no residual"),
    ("check_rollout", "nb04_patch_transformer", lambda maps: _rollout(maps, halve=False), "not halved"),
    ("check_shift_matrix", "nb04_patch_transformer",
     lambda k, D: _lesson("nb04_patch_transformer").solution_shift_matrix(k, D).T, "shifts by -k"),
    ("check_shift_matrix", "nb04_patch_transformer", lambda k, D: np.eye(D), "differs from PE[p + k]"),
    ("check_nt_xent_grad", "nb05_contrastive_learning", lambda S, tau: _nt_xent_grad(S, tau) * tau, "1/tau"),
    ("check_nt_xent_grad", "nb05_contrastive_learning", lambda S, tau: _nt_xent_grad(S, tau) * len(S), "1/(2B)"),
    ("check_nt_xent_grad", "nb05_contrastive_learning", lambda S, tau: _nt_xent_grad(S, tau, self_in=True),
     "diagonal is in the softmax"),
    ("check_nt_xent_grad", "nb05_contrastive_learning", lambda S, tau: _nt_xent_grad(S, tau, positive=False),
     "-1 is missing"),
    ("check_nt_xent_grad", "nb05_contrastive_learning", lambda S, tau: _nt_xent_grad(S, tau).T, "transposed"),
    ("check_factored_sinkhorn", "nb06_optimal_transport", lambda Lo, Hi, n: _factored(Lo, Hi, n, with_u=False),
     "u is left out"),
    ("check_factored_sinkhorn", "nb06_optimal_transport", lambda Lo, Hi, n: _factored(Lo, Hi, n, rows_first=True),
     "rows are updated first"),
    ("check_factored_sinkhorn", "nb06_optimal_transport", lambda Lo, Hi, n: _factored(Lo, Hi, n, row_mass=1.0),
     "not 1/B"),
    ("check_factored_sinkhorn", "nb06_optimal_transport", lambda Lo, Hi, n: _factored(Hi, Lo, n), "halves"),
    ("check_factored_sinkhorn", "nb06_optimal_transport", lambda Lo, Hi, n: _factored(Lo, Hi, n + 1),
     "iterations: run n_iter"),
    ("check_bit_targets", "nb06_optimal_transport", _targets(times_B=False), "B times that mass"),
    ("check_bit_targets", "nb06_optimal_transport", _targets(hi_first=True), "halves are swapped"),
    ("check_bit_targets", "nb06_optimal_transport", _targets(with_u=False), "u is left out"),
    ("check_bit_targets", "nb06_optimal_transport", _targets(set_bit=False), "bit k is -1"),
    ("check_bit_targets", "nb06_optimal_transport", _targets(msb_first=True), "other way round"),
    ("check_bit_targets", "nb06_optimal_transport", lambda u, W, Lo, Hi: Lo, "should be (B, K)"),
    ("check_hamming", "nb07_balanced_hashing", lambda c1, c2, K: c1 ^ c2, "XOR itself"),
    ("check_hamming", "nb07_balanced_hashing", lambda c1, c2, K: _hamming(c1, c2, K, op="or"), "(OR)"),
    ("check_hamming", "nb07_balanced_hashing", lambda c1, c2, K: _hamming(c1, c2, K, low=8), "lowest 8 bits"),
    ("check_hamming", "nb07_balanced_hashing", lambda c1, c2, K: K - _hamming(c1, c2, K), "AGREE"),
    ("check_lsh_collision", "nb07_balanced_hashing", lambda cos, K, L: _collision(cos, K, L, union=True),
     "union bound"),
    ("check_lsh_collision", "nb07_balanced_hashing", lambda cos, K, L: _collision(cos, K, L, clip=False), "clip"),
    ("check_lsh_collision", "nb07_balanced_hashing", lambda cos, K, L: _collision(cos, K, L, angle=False),
     "cosine is used as the angle"),
    ("check_lsh_collision", "nb07_balanced_hashing", lambda cos, K, L: _collision(cos, 1, L), "no power K"),
    ("check_radius1_candidates", "nb07_balanced_hashing", lambda codes, K: _radius1(codes, K, add=True), "XOR"),
    ("check_radius1_candidates", "nb07_balanced_hashing", lambda codes, K: _radius1(codes, K, own=False),
     "own bucket is left out"),
    ("check_radius1_candidates", "nb07_balanced_hashing", lambda codes, K: _radius1(codes, 0), "one probe"),
    ("check_allowed_passes", "nb08_search", _passes("plain"), "floor(max_false * n)"),
    ("check_allowed_passes", "nb08_search", _passes("one more"), "one too many"),
    ("check_allowed_passes", "nb08_search", _passes("two-sided"), "two-sided"),
    ("check_allowed_passes", "nb08_search", _passes("lower"), "LOWER bound"),
    ("check_allowed_passes", "nb08_search", _passes("normal"), "normal approximation"),
    ("check_allowed_passes", "nb08_search", lambda n, mf, conf: 0.05 * n, "whole number"),
    ("check_agree", "nb08_search", _agree(pick="all"), "candidates, not windows"),
    ("check_agree", "nb08_search", _agree(pick="first"), "first candidate"),
    ("check_agree", "nb08_search", _agree(any_track=True), "another track"),
    ("check_agree", "nb08_search", _agree(sign=-1.0), "minus the query window's start"),
    ("check_agree", "nb08_search", _agree(tol=0.5), "own 0.1 s bin"),
]


@pytest.mark.parametrize("name,module,wrong,words", MISTAKES,
                         ids=[f"{m[0]}-{i}" for i, m in enumerate(MISTAKES)])
def test_the_checker_names_the_mistake(name, module, wrong, words):
    check = getattr(_lesson(module), name)
    with pytest.raises(ExerciseError) as err, contextlib.redirect_stdout(io.StringIO()), np.errstate(all="ignore"):
        check(wrong)
    assert words in str(err.value), f"{name}: {err.value}"


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
