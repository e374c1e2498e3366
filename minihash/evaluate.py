"""The evaluation protocol: the same distorted excerpts, searched by every method side by side.

The protocol of the Neural Audio Fingerprint (Chang et al., ICASSP 2021, arXiv 2010.11910) as
Singh et al. use it (ICASSP 2023, arXiv 2211.11060; FlowHash, TASLP 2024): every reference track
is fingerprinted every 0.1 s; a query is an excerpt of 1, 2, 3 or 5 s cut at a random start time
(any sample, not the 0.1 s grid), heard clean, in noise at an SNR, in a room, or in a room and
noise (the music reverberates, then noise is added at the microphone; the SNR is measured on the
reverberant excerpt). Noise and rooms come from sources kept out of training. A hit is the right
track with the start within 0.1 s (0.5 s is reported too). Music repeats itself, so a
repeat-aware score also accepts any start where the clean excerpt recurs in its own track: a
normalised cross-correlation >= 0.9, computed by FFT. Negative queries (audio not in the
database) count false matches, at a no-match threshold each neural index calibrates on another
negative set. Every method hears exactly the same excerpts, so differences are the methods'.

Notebook: 09_benchmark.ipynb
"""
from __future__ import annotations

import csv
import os
import platform
import shlex
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from scipy.signal import oaconvolve
from tqdm.auto import tqdm

from .audio import SR
from .distort import add_noise, fit_length, reverb, synth_rir
from .index import Match, calibrate_on_negatives, index_class

DB_SEED, CAL_SEED, NEG_SEED = 20_000, 30_000, 40_000  # procedural corpora: none of them is trained on (0, 10_000)
ROOM_SEED = 2  # training rooms use seed 0, validation rooms seed 1
CONDITIONS = ("clean", "noise", "reverb", "noise+reverb")
METHODS = ("minihash", "sign", "lsh", "exhaustive", "landmarks", "nafp")
NEURAL = {"minihash": ("model", "hash"), "sign": ("sign", "hash"), "lsh": ("model", "lsh"),
          "exhaustive": ("model", "exhaustive"), "nafp": ("nafp", "exhaustive")}  # method -> (model, index)
SCORES = {"hit": "hits_0.1", "hit_loose": "hits_0.5", "repeat": "repeat_aware", "false": "false_matches"}

# ----------------------------------------------------------------------------
# configuration


def grid(snrs=(0, 5, 10, 15, 20), conditions=CONDITIONS) -> tuple:
    """The cells of an evaluation: (condition, SNR in dB, or None where no noise is added)."""
    return tuple(cell for c in conditions for cell in ([(c, float(s)) for s in snrs] if "noise" in c else [(c, None)]))


def cell_label(cell) -> str:
    return cell[0] if cell[1] is None else f"{cell[0]} {cell[1]:g} dB"


@dataclass
class EvalConfig:
    """What is measured and how much. `preset("full" | "quick" | "demo")`."""

    lengths: tuple = (1.0, 2.0, 3.0, 5.0)  # query lengths, seconds
    cells: tuple = grid()  # (condition, SNR) pairs
    methods: tuple = METHODS
    n_queries: int = 200  # per length and cell: the same excerpts in every cell
    n_negatives: int = 200  # per length: excerpts of audio not in the database
    n_calibration: int = 200  # per length: other negatives, the cells in turn, to set the neural thresholds
    n_synth: int = 500  # database tracks when no folder is given
    n_neg_tracks: int = 50  # procedural tracks in each of the two negative sets
    synth_seconds: float = 30.0
    hop_s: float = 0.1  # between database windows
    query_hop_s: float = 0.5  # between query windows
    tol_s: float = 0.1  # start error of a hit, at most
    loose_tol_s: float = 0.5
    ncc_threshold: float = 0.9  # the clean excerpt recurs where its correlation with the track reaches this
    max_false: float = 0.05  # share of queries of audio not in the database allowed to match
    confidence: float | None = 0.9  # ... promised for new negatives with this confidence (None: for the calibration set)
    rt60: tuple = (0.2, 1.0)  # synthetic evaluation rooms, seconds
    n_rooms: int = 50
    context_s: float = 1.0  # audio before the excerpt that reverberates into it
    seed: int = 0

    @classmethod
    def preset(cls, name: str, **overrides) -> "EvalConfig":
        """`full`: the README table; `quick`: minutes; `demo`: `minihash demo`, < 5 min on 2 cores."""
        short = dict(lengths=(1.0, 3.0), n_neg_tracks=20,
                     cells=(("clean", None), ("noise", 0.0), ("noise", 10.0), ("noise+reverb", 10.0)))
        presets = {"full": {},
                   "quick": dict(short, n_queries=100, n_negatives=100, n_calibration=200, n_synth=100),
                   "demo": dict(short, methods=("minihash", "lsh", "exhaustive", "landmarks"), n_queries=60,
                                n_negatives=60, n_calibration=200, n_synth=200)}  # 60 cannot promise 5 %
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(presets)}")
        return replace(cls(**presets[name]), **overrides)


# ----------------------------------------------------------------------------
# repeats: where the clean excerpt recurs in its own track


def ncc(q, x) -> np.ndarray:
    """Normalised cross-correlation (Pearson r) of `q` with every window of `x`, by FFT.

    r[k] = sum_t (q[t] - mean q) (x[k+t] - mean of the window) / (n std q std window); the
    numerator is one FFT convolution, overlap-add (q centred, so the window's mean drops out),
    the window statistics come from cumulative sums: O(T log n) instead of O(T n).

    Args:
        q: (n,) excerpt.
        x: (T,) signal, T >= n.

    Returns:
        (T - n + 1,) correlations in [-1, 1]; 0 where the window (or q) is silent.

    Notebook: 09_benchmark.ipynb
    """
    q, x = np.asarray(q, np.float64), np.asarray(x, np.float64)
    n = len(q)
    qc = q - q.mean()
    if qc @ qc <= n * 1e-12:
        return np.zeros(len(x) - n + 1)
    x = x - x.mean()  # smaller cumulative sums, the same correlations
    num = oaconvolve(x, qc[::-1], mode="valid")  # (T - n + 1,); overlap-add: O(T log n) for a long track
    c1, c2 = (np.concatenate([[0.0], np.cumsum(v)]) for v in (x, x * x))
    s1, s2 = c1[n:] - c1[:-n], c2[n:] - c2[:-n]  # window sums of x and x^2
    var = np.maximum(s2 - s1 * s1 / n, 0.0)  # n times each window's variance
    ok = var > n * 1e-12
    return np.where(ok, num / np.sqrt(np.where(ok, var, 1.0) * (qc @ qc)), 0.0).clip(-1.0, 1.0)


def repeat_starts(x, start: int, n: int, threshold: float = 0.9) -> np.ndarray:
    """Starts (samples) at which x[start:start+n] recurs in x: NCC >= threshold; `start` is among them."""
    return np.flatnonzero(ncc(x[start:start + n], x) >= threshold)


# ----------------------------------------------------------------------------
# queries: drawn once, heard in every cell


@dataclass
class Query:
    """One excerpt and the noise and room it meets, the same in every cell and for every method."""

    track: int
    start: int  # samples
    n: int  # samples
    noise: int  # which noise recording
    noise_at: float  # where in it, 0..1
    room: int  # which impulse response
    repeats: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (R,) samples, `start` among them


def draw_queries(tracks, length_s: float, n: int, rng, n_noise: int, n_rooms: int, sr: int = SR,
                 ncc_threshold: float | None = None, min_rms: float = 1e-3) -> list[Query]:
    """`n` excerpts at random starts (any sample), tracks weighted by length, near-silence drawn again.

    Args:
        tracks: list of (T,) signals.
        length_s: excerpt length.
        rng: np.random.Generator.
        n_noise, n_rooms: how many noises and rooms to pick from.
        ncc_threshold: find each excerpt's repeats in its track (None: don't).

    Returns:
        list of Query.

    Notebook: 09_benchmark.ipynb
    """
    L = int(round(length_s * sr))
    n_starts = np.array([max(len(x) - L + 1, 0) for x in tracks])
    if not n_starts.any():
        raise ValueError(f"no track is {length_s:g} s long")
    out = []
    for _ in range(n):
        for _ in range(100):
            k = int(rng.choice(len(tracks), p=n_starts / n_starts.sum()))
            s = int(rng.integers(n_starts[k]))
            if np.sqrt(np.mean(np.square(tracks[k][s:s + L], dtype=np.float64))) >= min_rms:
                break
        q = Query(k, s, L, int(rng.integers(n_noise)), float(rng.random()), int(rng.integers(n_rooms)))
        if ncc_threshold is not None:
            q.repeats = repeat_starts(tracks[k], s, L, ncc_threshold)
        out.append(q)
    return out


def render(tracks, q: Query, cell, noise, rooms, context_s: float = 1.0, sr: int = SR) -> np.ndarray:
    """The query heard in one cell: the excerpt, reverberated with the audio before it, then noise
    at the cell's SNR measured on the (reverberant) excerpt. Returns (q.n,) float32."""
    cond, snr = cell
    x = tracks[q.track]
    if "reverb" in cond:
        a = max(0, q.start - int(round(context_s * sr)))  # the room also rings with what came before
        y = reverb(np.ascontiguousarray(x[a:q.start + q.n], np.float32), rooms[q.room])[q.start - a:]
    else:
        y = torch.from_numpy(np.ascontiguousarray(x[q.start:q.start + q.n], np.float32))
    if "noise" in cond:
        rec = torch.as_tensor(noise[q.noise]).float()
        i = int(q.noise_at * max(len(rec) - q.n + 1, 1))
        y = add_noise(y, fit_length(rec[i:], q.n), snr)
    return y.numpy().astype(np.float32)


def score(m: Match, name: str, start_s: float, repeats_s=(), tol: float = 0.1, loose_tol: float = 0.5) -> dict:
    """Is a Match a hit? `hit`: right track, start within `tol`; `hit_loose`: within `loose_tol`;
    `repeat`: right track, start within `tol` of any start where the excerpt recurs (or a hit);
    `false`: it names a track and is not a repeat-aware hit. No match (track None) is never right."""
    right = m.track is not None and m.track == name
    hit = right and abs(m.offset_s - start_s) <= tol + 1e-9
    rep = np.asarray(repeats_s, dtype=np.float64)
    repeat = hit or (right and rep.size > 0 and float(np.min(np.abs(rep - m.offset_s))) <= tol + 1e-9)
    return {"hit": hit, "hit_loose": right and abs(m.offset_s - start_s) <= loose_tol + 1e-9, "repeat": repeat,
            "false": m.track is not None and not repeat}


# ----------------------------------------------------------------------------
# the methods: an index each, and the model that fingerprints its queries


class System:
    """A method under evaluation. Neural methods sharing a model share each query's fingerprint."""

    def __init__(self, name: str, index, model=None):
        self.name, self.index, self.model = name, index, model

    def answer(self, xs, fps: dict, hop_s: float) -> list[tuple[Match, float, float]]:
        """(Match, search ms, total ms) per query; `fps` caches fingerprints by model across methods."""
        if self.model is None:  # landmarks hash the audio inside `search`
            return [(m, m.time_ms, m.time_ms) for m in map(self.index.search, xs)]
        if id(self.model) not in fps:
            fps[id(self.model)] = [_timed(self.model.fingerprint_audio, x, hop_s) for x in xs]
        out = []
        for (e, l, s), ms in fps[id(self.model)]:
            m = self.index.search(e, l, s)
            out.append((m, m.time_ms, ms + m.time_ms))
        return out


def _timed(f, *a):
    t0 = time.perf_counter()
    return f(*a), 1e3 * (time.perf_counter() - t0)


def build_systems(names, tracks, models: dict, methods, hop_s: float = 0.1, progress: bool = True):
    """Index the tracks for each method; a model fingerprints the database once for all its indexes.

    Returns:
        ({method: System}, {method: index stats, fingerprint and build seconds}).
    """
    from .landmarks import LandmarkIndex

    systems, stats = {}, {}
    for key, model in models.items():
        mine = [m for m in methods if NEURAL.get(m, ("",))[0] == key]
        if not mine:
            continue
        t0 = time.perf_counter()
        fp = [model.fingerprint_audio(x, hop_s) for x in tqdm(tracks, desc=f"fingerprinting ({key})", unit="track",
                                                                disable=not progress)]
        E, Lg, S = (np.concatenate(a) for a in zip(*fp))  # (N, D), (N, K), (N,)
        T = np.concatenate([np.full(len(f[0]), i, np.int32) for i, f in enumerate(fp)])
        fp_s = time.perf_counter() - t0
        for m in mine:
            index, build_s = _timed(index_class(NEURAL[m][1]).build, E, Lg, T, S, list(names), hop_s,
                                    {"model": model.model_id})
            systems[m] = System(m, index, model)
            stats[m] = {**index.stats(), "fingerprint_s": fp_s, "build_s": build_s / 1e3}
    if "landmarks" in methods:
        t0 = time.perf_counter()
        lm = LandmarkIndex()
        for name, x in tqdm(zip(names, tracks), total=len(names), desc="landmarks", unit="track", disable=not progress):
            lm.add(x, name)
        st = lm.stats()  # sorts the hash table
        systems["landmarks"] = System("landmarks", lm)
        stats["landmarks"] = {"n_windows": st["n_hashes"], "bytes_per_window": st["bytes"] / (st["seconds"] / hop_s),
                              "fingerprint_s": time.perf_counter() - t0, "build_s": 0.0}
    order = [m for m in methods if m in systems]
    return {m: systems[m] for m in order}, {m: stats[m] for m in order}


# ----------------------------------------------------------------------------
# the run


@dataclass
class EvalResult:
    """Every query's answer (`records`), index statistics, notes and facts about the run."""

    cfg: EvalConfig
    records: list
    index_stats: dict
    notes: list = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def groups(self) -> dict:
        """Records by (method, kind, length, condition, SNR)."""
        g = defaultdict(list)
        for r in self.records:
            g[r["method"], r["kind"], r["length_s"], r["condition"], r["snr_db"]].append(r)
        return g

    def rows(self) -> list[dict]:
        """One row per method x condition x SNR x length (and one of negatives per method x length)."""
        agg = defaultdict(list)
        for (m, kind, L, c, snr), rs in self.groups().items():
            agg[(m, L, c, snr) if kind == "positive" else (m, L, "negatives", None)] += rs
        rows = []
        for (m, L, c, snr), rs in agg.items():
            col = lambda k: np.array([r[k] for r in rs], dtype=np.float64)  # noqa: E731
            rows.append({"method": m, "condition": c, "snr_db": snr, "length_s": L, "n": len(rs),
                         **{v: int(col(k).sum()) for k, v in SCORES.items()}, "frac_scored": col("frac_scored").mean(),
                         **{f"{t}_ms_p{p}": float(np.percentile(col(f"{t}_ms"), p)) for t in ("search", "total")
                            for p in (50, 95)}})
        return rows

    def table(self, key: str = "hit", extras: bool = True) -> str:
        """Markdown: method x query length against the cells (top-1 %), then (`extras`) false matches,
        DB scored, latency and size."""
        g = self.groups()
        head = ["method", "query"] + [cell_label(c) for c in self.cfg.cells] + [
            "false match %", "DB scored %", "p50 ms search / total", "bytes/window"][:4 * extras]
        lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for m in self.index_stats:
            for L in self.cfg.lengths:
                cells = [g.get((m, "positive", L, *c), []) for c in self.cfg.cells]
                pos = [r for rs in cells for r in rs]
                neg = [r for k, rs in g.items() if k[:3] == (m, "negative", L) for r in rs]
                pct = [f"{100 * np.mean([r[key] for r in rs]):.1f}" if rs else "-" for rs in cells]
                more = [f"{100 * np.mean([r['false'] for r in neg]):.1f}" if neg else "-",
                        f"{100 * np.mean([r['frac_scored'] for r in pos]):.2f}",
                        f"{np.median([r['search_ms'] for r in pos]):.1f} / "
                        f"{np.median([r['total_ms'] for r in pos]):.1f}",
                        f"{self.index_stats[m]['bytes_per_window']:.0f}"]
                lines.append("| " + " | ".join([m, f"{L:g} s", *pct, *more[:4 * extras]]) + " |")
        return "\n".join(lines)


def evaluate(tracks: dict, models: dict, cfg: EvalConfig, noise, rooms, cal_negatives, negatives,
             progress: bool = True) -> EvalResult:
    """Run the protocol: index, calibrate, then every method answers the same queries in every cell.

    Args:
        tracks: the database, name -> (T,) float32 at 8 kHz.
        models: {"model": Encoder, and optionally "sign", "nafp"}; a method whose model is absent is skipped.
        cfg: what to measure.
        noise: list of (T,) evaluation noises. rooms: list of (L,) impulse responses.
        cal_negatives, negatives: lists of (T,) signals not in the database, for calibration and for scoring.

    Returns:
        an EvalResult; `.table()` is the headline, `.rows()` the CSV.

    Notebook: 09_benchmark.ipynb
    """
    names, audio = list(tracks), list(tracks.values())
    notes = [f"{k}: windows cut from the samples (its {1e3 * m.cfg.mel.hop / m.cfg.mel.sr:g} ms front-end hop does "
             f"not divide {cfg.hop_s:g} s)" for k, m in models.items()
             if not all(m.slices_mel(h) for h in (cfg.hop_s, cfg.query_hop_s))]
    systems, stats = build_systems(names, audio, models, cfg.methods, cfg.hop_s, progress)
    cal = calibration_queries(cal_negatives, cfg, noise, rooms)
    for m, s in systems.items():
        if s.model is not None:
            stats[m]["threshold"] = calibrate_on_negatives(s.index, s.model, cal, cfg.max_false, cfg.query_hop_s,
                                                             cfg.confidence)
            stats[m]["thresholds"] = dict(sorted(s.index.thresholds.items()))  # by query windows
    records, repeats = [], {}
    total = len(cfg.lengths) * (len(cfg.cells) * cfg.n_queries + cfg.n_negatives) * len(systems)
    bar = tqdm(total=total, desc="queries", unit="query", disable=not progress)
    for L in cfg.lengths:
        rng = np.random.default_rng([cfg.seed, 0x717279, round(1000 * L)])
        qs = draw_queries(audio, L, cfg.n_queries, rng, len(noise), len(rooms), ncc_threshold=cfg.ncc_threshold)
        repeats[L] = float(np.mean([np.any(np.abs(q.repeats - q.start) > cfg.tol_s * SR) for q in qs]))
        for cell in cfg.cells:
            xs = [render(audio, q, cell, noise, rooms, cfg.context_s) for q in qs]
            fps = {}
            for m, s in systems.items():
                for i, (q, (a, search_ms, total_ms)) in enumerate(zip(qs, s.answer(xs, fps, cfg.query_hop_s))):
                    sc = score(a, names[q.track], q.start / SR, q.repeats / SR, cfg.tol_s, cfg.loose_tol_s)
                    records.append(_record(m, "positive", cell, L, i, names[q.track], q.start / SR, a, search_ms,
                                           total_ms, sc))
                bar.update(len(qs))
        rng = np.random.default_rng([cfg.seed, 0x6E6567, round(1000 * L)])  # negatives: the cells in turn
        nq = draw_queries(negatives, L, cfg.n_negatives, rng, len(noise), len(rooms))
        cells = [cfg.cells[i % len(cfg.cells)] for i in range(len(nq))]
        xs = [render(negatives, q, c, noise, rooms, cfg.context_s) for q, c in zip(nq, cells)]
        fps = {}
        for m, s in systems.items():
            for i, (q, c, (a, search_ms, total_ms)) in enumerate(zip(nq, cells, s.answer(xs, fps, cfg.query_hop_s))):
                sc = {"hit": False, "hit_loose": False, "repeat": False, "false": a.track is not None}
                records.append(_record(m, "negative", c, L, i, None, q.start / SR, a, search_ms, total_ms, sc))
            bar.update(len(nq))
    bar.close()
    return EvalResult(cfg, records, stats, notes, info={"repeat_share": repeats})


def calibration_queries(tracks, cfg: EvalConfig, noise, rooms) -> list[np.ndarray]:
    """Queries of audio not in the database that set the no-match thresholds: `cfg.n_calibration`
    excerpts per query length, each heard in the cells of `cfg.cells` in turn, drawn and rendered
    exactly as the evaluation's queries (its own seed). `minihash index` calibrates on these too.

    Args:
        tracks: list of (T,) signals not in the database.
        cfg: lengths, cells, how many, seed, context.
        noise, rooms: evaluation noises and impulse responses.

    Returns:
        list of (n,) float32 signals, length by length.
    """
    rng = np.random.default_rng([cfg.seed, 0x63616C])
    out = []
    for L in cfg.lengths:
        qs = draw_queries(tracks, L, cfg.n_calibration, rng, len(noise), len(rooms))
        out += [render(tracks, q, cfg.cells[i % len(cfg.cells)], noise, rooms, cfg.context_s) for i, q in enumerate(qs)]
    return out


def _record(method, kind, cell, L, i, track, start_s, m: Match, search_ms, total_ms, sc) -> dict:
    return {"method": method, "kind": kind, "condition": cell[0], "snr_db": cell[1], "length_s": L, "query": i,
            "track": track, "start_s": start_s, "match": m.track, "offset_s": m.offset_s, "score": m.score,
            "frac_scored": m.frac_scored, "search_ms": search_ms, "total_ms": total_ms, **sc}


# ----------------------------------------------------------------------------
# data for a run: the database, evaluation noise and rooms, negatives


def eval_rooms(cfg: EvalConfig) -> list[torch.Tensor]:
    """Synthetic rooms drawn as `distort.Distorter` draws them, from a seed training never uses."""
    g = torch.Generator().manual_seed(ROOM_SEED)
    lo, hi = cfg.rt60
    return [synth_rir(float(lo + (hi - lo) * r), SR, generator=g)
            for r in torch.rand(cfg.n_rooms, generator=g, dtype=torch.float64)]


def load_folders(dirs, notes: list | None = None) -> dict:
    """name -> signal for every audio file under the folders (named by folder when there are several)."""
    from .data import AudioFolder

    tracks = {}
    for d in dirs:
        f = AudioFolder(d)
        for name, x in zip(f.names, f.tracks):
            tracks[f"{Path(d).name}/{name}" if len(dirs) > 1 else name] = x
        if notes is not None:
            notes += [f"skipped {name}: {reason}" for name, reason in f.errors]
    return tracks


def negative_sets(cfg: EvalConfig, folders=()) -> tuple[list, list]:
    """(calibration, evaluation) negatives: procedural tracks of two seeds of their own, and the
    files of `folders` (held-out music) split between them alternately."""
    from .data import synth_tracks

    cal = synth_tracks(cfg.n_neg_tracks, cfg.synth_seconds, seed=CAL_SEED)
    neg = synth_tracks(cfg.n_neg_tracks, cfg.synth_seconds, seed=NEG_SEED)
    held = list(load_folders(folders).values()) if folders else []
    return cal + held[0::2], neg + held[1::2]


def machine_info() -> dict:
    """The facts a timing needs beside it: processor, cores, threads, versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    blas = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or "default"
    return {"cpu": cpu, "cores": cores, "torch_threads": torch.get_num_threads(), "blas_threads": blas,
            "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__, "platform": platform.platform()}


def machine() -> str:
    """`machine_info` in one line, for a report."""
    m = machine_info()
    return (f"{m['cpu']}, {m['cores']} cores, torch {m['torch']} with {m['torch_threads']} threads, "
            f"Python {m['python']}, {platform.system()}")


def run_eval(cfg: EvalConfig, out, model=None, sign_model=None, nafp_model=None, refs=(), negatives=(), noise=(),
             speech=(), rirs=(), command: str = "", progress: bool = True) -> EvalResult:
    """Load everything a run needs, evaluate, and write the report to `out` (`minihash eval` and `demo`).

    Args:
        cfg: what to measure.
        out: report folder.
        model: model file (None: the shipped one); sign_model, nafp_model: baselines (skipped if None).
        refs: folders of reference audio (none: `cfg.n_synth` procedural tracks).
        negatives: folders of held-out music for negative queries (besides procedural ones).
        noise, speech, rirs: folders of noise, speech (babble) and impulse responses (none: procedural).
        command: the command line, for the report.

    Returns:
        the EvalResult.
    """
    from .data import load_rirs, synth_tracks, training_noise
    from .encoder import load_model

    t0, cpu0 = time.perf_counter(), time.process_time()
    notes, models, paths = [], {}, {}
    if any(NEURAL.get(m, ("",))[0] == "model" for m in cfg.methods):
        models["model"] = load_model(model)  # None: the shipped model, FormatError says how to get it
        paths["model"] = model or "the shipped model"
    for key, path, how in (("sign", sign_model, "minihash train --hash sign"),
                           ("nafp", nafp_model, "minihash train --preset nafp-small")):
        if key not in cfg.methods:
            continue
        if path is None or not Path(path).is_file():
            notes.append(f"{key}: skipped, {'no --' + key + '-model given' if path is None else f'no model at {path}'}"
                         f" (train one with `{how}`)")
        else:
            models[key], paths[key] = load_model(path), path
    if "nafp" in models and models["nafp"].cfg.arch != "cnn":
        notes.append(f"nafp: the model at {nafp_model} is a {models['nafp'].cfg.arch}, not the NAFP-style cnn")
    if refs:
        tracks = load_folders(refs, notes)
        db = f"{len(tracks)} tracks from {', '.join(map(str, refs))}"
    else:
        tracks = {f"synth/{i:04d}": x for i, x in enumerate(synth_tracks(cfg.n_synth, cfg.synth_seconds, seed=DB_SEED,
                                                                         progress=progress))}
        db = f"{len(tracks)} procedural tracks of {cfg.synth_seconds:g} s (seed {DB_SEED}, not trained on)"
    hours = sum(len(x) for x in tracks.values()) / SR / 3600
    noise_x = training_noise(noise, speech, split="eval")
    rooms = load_rirs(rirs) if rirs else eval_rooms(cfg)
    cal, neg = negative_sets(cfg, negatives)
    if refs and not negatives:
        notes.append("negatives are procedural tracks only: pass --negatives DIR (held-out music) for a harder test")
    result = evaluate(tracks, models, cfg, noise_x, rooms, cal, neg, progress)
    result.notes = notes + result.notes
    result.info.update(command=command, machine=machine(), database=f"{db}, {hours:.2f} h",
                       models="; ".join(f"{k}: {paths[k]} ({models[k].cfg.arch}, id {models[k].model_id})"
                                        for k in models),
                       noise=f"{len(noise_x)} recordings, evaluation split of "
                             f"{', '.join(map(str, (*noise, *speech))) or 'the procedural bank (seed 1)'}",
                       rooms=f"{len(rooms)} impulse responses from {', '.join(map(str, rirs))}" if rirs else
                             f"{len(rooms)} synthetic rooms, RT60 {cfg.rt60[0]:g}-{cfg.rt60[1]:g} s (seed {ROOM_SEED})",
                       negatives=f"{len(cal)} calibration and {len(neg)} evaluation tracks not in the database",
                       elapsed_s=time.perf_counter() - t0, cpu_s=time.process_time() - cpu0)
    write_report(result, out)
    return result


# ----------------------------------------------------------------------------
# the report: markdown, CSV, plots


def plot_top1_vs_snr(rows, length_s: float, key: str = "hits_0.1", axes=None, figsize=(10, 3.6)):
    """Top-1 % against SNR, one line per method: noise (left), room + noise (right); the clean and
    room-only scores stand at the right end of each panel.

    Args:
        rows: `EvalResult.rows()`.
        length_s: which query length.
        key: "hits_0.1", "hits_0.5" or "repeat_aware".
        axes: two axes to draw on (a new figure if None).

    Returns:
        (fig, axes).

    Notebook: 09_benchmark.ipynb
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=figsize, sharey=True) if axes is None else (axes[0].figure, axes)
    rows = [r for r in rows if r["length_s"] == length_s and r["condition"] != "negatives"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    pct = {(r["method"], r["condition"], r["snr_db"]): 100.0 * r[key] / r["n"] for r in rows}
    for ax, cond, end in zip(axes, ("noise", "noise+reverb"), ("clean", "reverb")):
        snrs = sorted({r["snr_db"] for r in rows if r["condition"] == cond})
        x_end = max(snrs, default=0.0) + 5.0
        for i, m in enumerate(methods):
            ax.plot(snrs, [pct[m, cond, s] for s in snrs], "o-", color=f"C{i}", label=m)
            if (m, end, None) in pct:
                ax.plot([x_end], [pct[m, end, None]], "s", color=f"C{i}")
        has_end = any((m, end, None) in pct for m in methods)
        ax.set_xticks(snrs + [x_end] * has_end, [f"{s:g}" for s in snrs] + [end] * has_end)
        ax.set(title=f"{cond}, {length_s:g} s queries", xlabel="SNR (dB)", ylim=(-2, 102))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"top-1 % ({key})")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig, axes


def report_markdown(result: EvalResult) -> str:
    cfg, info = result.cfg, result.info
    occ = ["| method | entries | bytes/window | threshold (per query length) | bucket entropy | largest / mean | empty share | "
           "fingerprint s | build s |", "|" + " --- |" * 9]
    for m, st in result.index_stats.items():
        f = lambda k, fmt: format(st[k], fmt) if k in st else "-"  # noqa: E731
        thr = " / ".join(f"{v:.3f}" for v in st["thresholds"].values()) if st.get("thresholds") else f("threshold", ".3f")
        occ.append(f"| {m} | {st['n_windows']} | {st['bytes_per_window']:.0f} | "
                   f"{thr if m != 'landmarks' else 'own rule'} | {f('entropy', '.3f')} | "
                   f"{f('largest_over_mean', '.1f')} | {f('empty_share', '.3f')} | {st['fingerprint_s']:.1f} | "
                   f"{st['build_s']:.2f} |")
    rep = ", ".join(f"{100 * v:.0f} % of {L:g} s" for L, v in info.get("repeat_share", {}).items())
    return "\n".join([
        "# minihash evaluation", "",
        f"- command: `{info.get('command', '')}`", f"- machine: {info.get('machine', machine())}",
        f"- database: {info.get('database', '')}, fingerprinted every {cfg.hop_s:g} s",
        f"- queries: {cfg.n_queries} per length and condition, the same excerpts everywhere (seed {cfg.seed}); "
        f"{cfg.n_negatives} negatives per length; one threshold per query length, calibrated on "
        f"{cfg.n_calibration} other negatives of that length (at most {100 * cfg.max_false:g} % false matches"
        + (f", promised with {100 * cfg.confidence:g} % confidence)" if cfg.confidence else ")"),
        f"- noise: {info.get('noise', '')}; rooms: {info.get('rooms', '')}; negatives: {info.get('negatives', '')}",
        f"- excerpts that recur elsewhere in their track (NCC >= {cfg.ncc_threshold:g}): {rep}",
        f"- models: {info.get('models', '')}",
        f"- run time: {info.get('elapsed_s', 0):.0f} s ({info.get('cpu_s', 0):.0f} s of CPU in this process)", "",
        f"## Top-1 % (right track, start within {cfg.tol_s:g} s)", "", result.table("hit"), "",
        "## Top-1 %, repeat-aware (a start where the clean excerpt recurs counts)", "",
        result.table("repeat", False), "",
        f"## Top-1 % (start within {cfg.loose_tol_s:g} s)", "", result.table("hit_loose", False), "",
        "## Indexes", "", *occ, "",
        "False match %: share of negative queries (audio not in the database) that named a track. DB scored %: "
        "inner products (landmarks: hash hits) per query over query windows x database windows. Landmarks: "
        "bytes per 0.1 s of audio, search time includes hashing the query.", "",
        *(["## Notes", ""] + [f"- {n}" for n in result.notes] + [""] if result.notes else [])])


def overview_figure(model, n_tracks: int = 20, query_s: float = 3.0, snr_db: float = 5.0, rt60: float = 0.6,
                    seed: int = 3, figsize=(15, 3.6)):
    """The whole system in one picture (the README's): a noisy, reverberant query, the excerpt it
    was matched to, and the offset votes that chose the start time (notebook 00, section 4).

    A hash index of `n_tracks` procedural songs never trained on; the query is `query_s` seconds
    of one of them at a random continuous start, in an evaluation room, with babble at `snr_db`.

    Returns:
        (fig, axes, Match).

    Notebook: 00_overview.ipynb
    """
    import matplotlib.pyplot as plt

    from . import plots
    from .data import noise_bank, synth_tracks
    from .index import index_audio, query_audio, top_per_window
    from .spectrogram import log_mel

    tracks = synth_tracks(n_tracks, 30.0, seed=DB_SEED)
    names = [f"song_{i:02d}" for i in range(n_tracks)]
    index = index_audio(model, dict(zip(names, tracks)), method="hash", hop_s=0.1, progress=False)
    rng = np.random.default_rng(seed)
    k = int(rng.integers(n_tracks))
    n = int(round(query_s * SR))
    start = int(rng.integers(SR, len(tracks[k]) - n))  # any sample, not the 0.1 s grid
    room = synth_rir(rt60, SR, generator=torch.Generator().manual_seed(ROOM_SEED))
    wet = reverb(np.ascontiguousarray(tracks[k][start - SR:start + n]), room)[SR:]  # the room rings with what came before
    babble = torch.from_numpy(noise_bank(seconds=20.0, seed=1)["babble"])  # evaluation noise
    query = add_noise(wet, fit_length(babble, n), snr_db).numpy()
    m = query_audio(index, model, query, threshold=-np.inf)
    e, l, q_starts = model.fingerprint_audio(query, 0.5)  # the query's windows, as `search` sees them
    win, rows, sims, _ = index._candidates(e, l, index.cfg)  # probe and re-rank exactly as `search` does
    win, rows, sims = top_per_window(win, rows, sims, index.cfg.top_k)
    offsets = index.starts[rows] - q_starts[win]  # (C,) seconds
    mine = index.track_ids[rows] == index.names.index(m.track)
    a = int(round(m.offset_s * SR))
    matched = tracks[index.names.index(m.track)][max(a, 0):max(a, 0) + n]
    S_q, S_m = log_mel(query, model.cfg.mel), log_mel(matched, model.cfg.mel)  # (n_mels, frames)
    top = float(max(S_q.max(), S_m.max()))
    fig, axes = plt.subplots(1, 3, figsize=figsize, gridspec_kw={"width_ratios": [1, 1, 1.4]})
    mel = model.cfg.mel
    kw = dict(sr=SR, hop=mel.hop, freq="mel", f_min=mel.f_min, f_max=mel.f_max, clabel="log power",
              vmin=top - 14, vmax=top)
    plots.plot_spectrogram(S_q, ax=axes[0], title=f"query: {query_s:g} s in a room, babble at {snr_db:g} dB", **kw)
    plots.plot_spectrogram(S_m, ax=axes[1], title=f"match: {m.track} from {m.offset_s:.2f} s", **kw)
    plots.plot_offset_votes(offsets[mine], sims[mine], hop_s=index.hop_s, others=(offsets[~mine], sims[~mine]),
                            truth_s=start / SR if m.track == names[k] else None, found_s=m.offset_s, ax=axes[2],
                            title=f"votes of {len(q_starts)} query windows, {n_tracks} songs indexed")
    fig.tight_layout()
    return fig, axes, m


def write_report(result: EvalResult, out) -> list[Path]:
    """results.md, results.csv and top1_vs_snr_{L}s.png per query length, into the folder `out`."""
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(report_markdown(result))
    rows = result.rows()
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({k: ("" if v is None else round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                    for r in rows)
    paths = [out / "results.md", out / "results.csv"]
    for L in result.cfg.lengths:
        fig, _ = plot_top1_vs_snr(rows, L)
        paths.append(out / f"top1_vs_snr_{L:g}s.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


# ----------------------------------------------------------------------------
# the commands


def add_eval_parser(sub):
    p = sub.add_parser("eval", help="the evaluation protocol: every method on the same distorted queries")
    p.add_argument("--refs", nargs="+", default=[], metavar="DIR",
                   help="reference audio (default: the embedded corpus)")
    p.add_argument("--synth", type=int, default=None, metavar="N", help="procedural database tracks when no --refs")
    p.add_argument("--synth-seconds", type=float, default=30.0)
    p.add_argument("--negatives", nargs="+", default=[], metavar="DIR",
                   help="held-out music (not in --refs) for negative queries")
    p.add_argument("--noise", nargs="+", default=[], metavar="DIR", help="noise recordings (their evaluation split)")
    p.add_argument("--speech", nargs="+", default=[], metavar="DIR", help="speech for babble (its evaluation split)")
    p.add_argument("--rirs", nargs="+", default=[], metavar="DIR", help="impulse responses not used in training "
                                                                        "(default: synthetic rooms)")
    p.add_argument("--model", default=None, help="model file (default: the shipped model)")
    p.add_argument("--sign-model", default=None, help="the same model trained with `--hash sign` (unbalanced codes)")
    p.add_argument("--nafp-model", default=None, help="a NAFP-style cnn model (`--preset nafp-small`)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=None)
    p.add_argument("--lengths", nargs="+", type=float, default=None, help="query lengths, seconds")
    p.add_argument("--snrs", nargs="+", type=float, default=None, help="SNRs, dB (default 0 5 10 15 20)")
    p.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=None)
    p.add_argument("--queries", type=int, default=None,
                   help="queries per length and condition (and negatives per length)")
    p.add_argument("--quick", action="store_true", help="minutes: 1 and 3 s, clean / noise 0, 10 / noise+reverb 10, "
                                                        "100 queries, 100 tracks")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--out", default="minihash-eval", help="report folder")
    return p


def config_from_args(args) -> EvalConfig:
    """The EvalConfig a `minihash eval` command line asks for."""
    cfg = EvalConfig.preset("quick" if args.quick else "full", seed=args.seed, synth_seconds=args.synth_seconds)
    if args.snrs is not None or args.conditions is not None:
        cfg = replace(cfg, cells=grid(args.snrs or (0, 5, 10, 15, 20), args.conditions or CONDITIONS))
    over = {"methods": tuple(args.methods) if args.methods else None, "n_synth": args.synth,
            "lengths": tuple(args.lengths) if args.lengths else None, "n_queries": args.queries,
            "n_negatives": args.queries}
    return replace(cfg, **{k: v for k, v in over.items() if v is not None})


def _command(name: str) -> str:
    """This process's command line, as `minihash NAME ...` (run as `minihash NAME ...`)."""
    return shlex.join(["minihash", name, *sys.argv[2:]])


def eval_command(args) -> int:
    """`minihash eval`: the protocol on folders (or the embedded corpus); a report in --out."""
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run_eval(config_from_args(args), args.out, args.model, args.sign_model, args.nafp_model, args.refs,
                      args.negatives, args.noise, args.speech, args.rirs, command=_command("eval"))
    print(result.table())
    for n in result.notes:
        print(f"note: {n}")
    print(f"\nwrote {Path(args.out) / 'results.md'}, results.csv and plots in {result.info['elapsed_s']:.0f} s")
    return 0


def add_demo_parser(sub):
    p = sub.add_parser("demo", help="the whole pipeline on the embedded corpus (no files, no downloads): a report")
    p.add_argument("--out", default="minihash-demo", help="report folder")
    p.add_argument("--model", default=None, help="model file (default: the shipped model)")
    p.add_argument("--queries", type=int, default=None, help="queries per length and condition (default 60)")
    p.add_argument("--seed", type=int, default=0)
    return p


def demo_command(args) -> int:
    """`minihash demo`: `minihash eval` with the demo preset: 200 procedural tracks, the shipped
    model, minihash / LSH / exhaustive / landmarks on 1 and 3 s queries; under 5 min on 2 cores."""
    t0 = time.perf_counter()
    n = {} if args.queries is None else {"n_queries": args.queries, "n_negatives": args.queries}
    cfg = EvalConfig.preset("demo", seed=args.seed, **n)
    print(f"minihash demo: {cfg.n_synth} procedural tracks of {cfg.synth_seconds:g} s as the database; "
          f"{cfg.n_queries} queries of {' and '.join(f'{L:g}' for L in cfg.lengths)} s per condition, "
          f"searched by {', '.join(cfg.methods)}")
    result = run_eval(cfg, args.out, model=args.model, command=_command("demo"))
    out = Path(args.out)
    from .encoder import load_model

    fig, _, _ = overview_figure(load_model(args.model))  # one query, its match and the votes: the README picture
    fig.savefig(out / "overview.png", dpi=100)
    print(f"\nTop-1 % (right track, start within {cfg.tol_s:g} s):\n")
    print(result.table())
    mins, secs = divmod(time.perf_counter() - t0, 60)
    print(f"\ndone in {int(mins)} min {secs:.0f} s. The report is in {out}/: open {out / 'results.md'} "
          f"(plots: {out}/top1_vs_snr_*.png; one query, its match and the votes: {out}/overview.png).")
    print("Next: `make lab` and open notebooks/00_overview.ipynb to see how each step works.")
    return 0
