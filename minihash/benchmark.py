"""`minihash bench-search`: every search method on one database, at 10k, 100k and 1M windows.

The comparison of Singh, Demuynck and Arora (ICASSP 2023, arXiv 2211.11060) and FlowHash (Singh
et al., TASLP 2024): the OT-balanced hash against the unbalanced sign codes of a network trained
without OT, LSH on the same embeddings (Charikar 2002, as in NAFP, Chang et al. 2021), exhaustive search and, where
installed, FAISS (Johnson et al. 2019). For each database size and method it measures top-1 on a
fixed set of noisy queries, the share of the database scored per query, p50/p95 search latency,
build time, bytes per indexed window and bucket occupancy, sweeping the number of probes (and LSH
tables) so that accuracy can be read against work. The targets of the README are checked from
the numbers, never typed in.

The database is real windows of the embedded procedural corpus (corpus seed 1 by default: the
training runs use seed 0, so it is music the model never heard), one track after another, so a
larger database holds every window of a smaller one and the queries, cut from the smallest
size's tracks, are valid at every size. Embeddings are cached per (model id, corpus seed, track
length, hop) in chunks of tracks: a larger size only fingerprints the tracks it adds.

Notebook: 09_benchmark.ipynb
"""
from __future__ import annotations

import csv
import functools
import hashlib
import math
import os
import re
import shlex
import sys
import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import data
from .audio import SR
from .distort import add_noise, reverb, synth_rir
from .evaluate import machine_info
from .index import SearchConfig, index_class

METHODS = ("hash", "sign", "lsh", "exhaustive", "faiss")
LABELS = {"hash": "OT hash", "sign": "sign hash", "lsh": "LSH", "exhaustive": "exhaustive", "faiss": "FAISS"}
CHUNK_TRACKS = 128  # tracks per cache file (~37k windows of 30 s tracks): a crash loses at most one
DEFAULT_PROBES = SearchConfig().n_probes  # the operating point the main table reports
DEFAULT_TABLES = 4  # LSHIndex's default L

# ----------------------------------------------------------------------------
# configuration


@dataclass
class BenchConfig:
    """What `bench-search` measures. `preset("full" | "quick")`."""

    sizes: tuple = (10_000, 100_000, 1_000_000)  # database windows (whole tracks: a little more)
    n_queries: int = 500
    query_s: float = 5.0
    snr_db: float = 10.0
    p_reverb: float = 0.0  # share of queries put through a synthetic room before the noise
    methods: tuple = METHODS
    probes: tuple = (1, 4, 16, 64, 256)  # n_probes swept by the hashes and LSH
    lsh_tables: tuple = (1, 4, 16)  # L swept by LSH (K = the model's bits)
    lsh_max_probes: int = 1024  # L x n_probes at most: each table's probe sequence costs as much as the hash's
    max_candidates: int = 4096  # per query window, as SearchConfig
    faiss_kind: str = "hnsw"
    clock: str = "wall"  # "cpu": this process's CPU time, for a shared machine (exact with 1 thread)
    track_s: float = 30.0
    hop_s: float = 0.1  # database hop
    query_hop_s: float = 0.5  # query hop (index.query_audio's default)
    corpus_seed: int = 1
    query_seed: int = 0

    @classmethod
    def preset(cls, name: str, **overrides) -> "BenchConfig":
        presets = {"full": {}, "quick": dict(sizes=(10_000, 100_000), n_queries=200)}
        return replace(cls(**presets[name]), **overrides)


def parse_size(s) -> int:
    """ "10k" -> 10000, "1M" -> 1000000, "250" -> 250."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmM]?)\s*", str(s))
    if not m:
        raise ValueError(f"not a database size: {s!r} (use e.g. 10k, 100k, 1M)")
    n = int(round(float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[m.group(2).lower()]))
    if n < 1:
        raise ValueError(f"a database needs at least one window, got {s!r}")
    return n


def size_label(n: int) -> str:
    if n >= 1e6 and n % 100_000 == 0:
        return f"{n / 1e6:g}M"
    return f"{n / 1e3:g}k" if n >= 1e3 and n % 100 == 0 else str(n)


def windows_per_track(model, cfg: BenchConfig) -> int:
    """Windows `fingerprint_audio` cuts from one corpus track at the database hop."""
    return 1 + (int(round(cfg.track_s * SR)) - model.cfg.n_samples) // int(round(cfg.hop_s * SR))


# ----------------------------------------------------------------------------
# the database: corpus embeddings, cached in chunks of tracks


def _chunk_files(folder: Path, a: int, b: int) -> dict:
    return {k: folder / f"{a:05d}-{b:05d}.{k}.npy" for k in ("emb", "logits", "starts", "counts")}


def _cached_chunks(folder: Path) -> dict:
    """{first track: (end track, arrays memory-mapped)} of the complete, consistent chunks in `folder`."""
    have = {}
    for f in folder.glob("*.counts.npy"):  # counts is written last: a chunk without it is incomplete
        a, b = map(int, f.name.split(".")[0].split("-"))
        try:
            arr = {k: np.load(p, mmap_mode="r", allow_pickle=False) for k, p in _chunk_files(folder, a, b).items()}
        except (OSError, ValueError):
            continue
        n = int(np.sum(arr["counts"]))
        if len(arr["counts"]) == b - a and len(arr["emb"]) == len(arr["logits"]) == len(arr["starts"]) == n:
            if b > have.get(a, (a, None))[0]:
                have[a] = (b, arr)
    return have


def _save(path: Path, a: np.ndarray):
    """Atomically: a temporary file renamed into place, so a crash never leaves half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(a), allow_pickle=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def plan_chunks(have: dict, n_tracks: int) -> list:
    """Chunks (a, b, cached) covering tracks [0, n_tracks): cached ones where they exist, new ones
    (at most CHUNK_TRACKS tracks each) in the gaps."""
    plan, pos = [], 0
    while pos < n_tracks:
        if pos in have:
            plan.append((pos, have[pos][0], True))
        else:
            end = min([n_tracks, pos + CHUNK_TRACKS] + [a for a in have if a > pos])
            plan.append((pos, end, False))
        pos = plan[-1][1]
    return plan


def corpus_key(model, cfg: BenchConfig) -> str:
    """The cache folder's name: the model, the synthesiser (its version and a digest of track 0,
    freshly made: a change nobody announced is caught too), corpus seed, track length and hop."""
    x0 = data.synth_track(0, cfg.track_s, cfg.corpus_seed, cache=False)
    audio = f"gen{data.GENERATOR_VERSION}-{hashlib.sha256(x0.tobytes()).hexdigest()[:8]}"
    return f"{model.model_id}_{audio}_seed{cfg.corpus_seed}_{cfg.track_s:g}s_hop{cfg.hop_s:g}"


def corpus_embeddings(models: dict, n_tracks: int, cfg: BenchConfig, progress: bool = True, log=print) -> dict:
    """The first `n_tracks` tracks of the corpus, fingerprinted every `cfg.hop_s` by each model.

    Each track is synthesised once for all the models that lack it; results are cached under
    `data.cache_dir()/bench/<model id>_...`, one file set per chunk of tracks.

    Args:
        models: {name: encoder}.
        n_tracks: tracks wanted.
        cfg: the corpus (seed, track length, hop).

    Returns:
        {name: (emb (N, D) float16, logits (N, K) float32, track_ids (N,) int32, starts (N,) float32)}.

    Notebook: 09_benchmark.ipynb
    """
    folders, plans = {}, {}
    for name, model in models.items():
        folders[name] = data.cache_dir() / "bench" / corpus_key(model, cfg)
        folders[name].mkdir(parents=True, exist_ok=True)
        have = _cached_chunks(folders[name])
        plans[name] = [(a, b, have[a][1] if cached else None) for a, b, cached in plan_chunks(have, n_tracks)]
    todo = sorted({i for p in plans.values() for a, b, arr in p if arr is None for i in range(a, b)})
    if todo:
        work = sum(windows_per_track(m, cfg) * sum(b - a for a, b, arr in plans[k] if arr is None)
                   for k, m in models.items())
        log(f"fingerprinting {len(todo)} tracks ({work:,} windows over {len(models)} model(s)); cached under "
            f"{data.cache_dir() / 'bench'}")
    new = {name: {} for name in models}  # name -> a -> lists of per-track arrays
    t0, done = time.perf_counter(), 0
    for j, i in enumerate(tqdm(todo, desc="corpus", unit="track", disable=not progress)):
        x = data.synth_track(i, cfg.track_s, cfg.corpus_seed, cache=False)  # not worth 3 GB of disk at 1M
        for name, model in models.items():
            chunk = next(((a, b) for a, b, arr in plans[name] if arr is None and a <= i < b), None)
            if chunk is None:
                continue
            e, l, s = model.fingerprint_audio(x, cfg.hop_s)
            parts = new[name].setdefault(chunk[0], [])
            parts.append((e.astype(np.float16), l.astype(np.float32), s.astype(np.float32)))
            done += len(e)
            if i == chunk[1] - 1:  # the chunk is complete: write it, counts last
                files = _chunk_files(folders[name], *chunk)
                for k, col in (("emb", 0), ("logits", 1), ("starts", 2)):
                    _save(files[k], np.concatenate([p[col] for p in parts]))
                _save(files["counts"], np.array([len(p[0]) for p in parts], dtype=np.int32))
                del new[name][chunk[0]]  # read back from disk below: hold one chunk at a time
        if j == 0 and len(todo) > 1:
            rate = done / (time.perf_counter() - t0)
            log(f"  ~{rate:,.0f} windows/s (synthesis included): about {(work - done) / rate / 60:.1f} min to go")
    out = {}
    for name in models:
        have = _cached_chunks(folders[name])
        parts = []
        for a, b, _ in plans[name]:
            arr = have[a][1]
            n = np.asarray(arr["counts"][:min(b, n_tracks) - a])  # a cached chunk may run past n_tracks
            w = int(n.sum())
            parts.append((arr["emb"][:w], arr["logits"][:w], np.repeat(np.arange(a, a + len(n), dtype=np.int32), n),
                          arr["starts"][:w]))
        out[name] = tuple(np.concatenate(col) for col in zip(*parts))  # copies out of the memory maps
    return out


# ----------------------------------------------------------------------------
# the query set: fixed, seeded, noisy excerpts at continuous start times


@dataclass
class Query:
    track: int  # corpus track index
    start_s: float  # where the excerpt starts in it
    x: np.ndarray  # (T,) the distorted excerpt


@functools.lru_cache(maxsize=1)
def _eval_noise() -> list:
    return list(data.noise_bank(seed=1).values())  # seconds to make: once per process


def make_queries(cfg: BenchConfig, n_tracks: int) -> list:
    """`cfg.n_queries` excerpts of `cfg.query_s` seconds from the first `n_tracks` tracks.

    Starts are continuous (not on the database's 0.1 s grid). Each excerpt is reverberated by a
    synthetic room with probability `cfg.p_reverb` (rt60 0.3-0.9 s), then mixed with a noise of
    the evaluation bank (`noise_bank(seed=1)`, never heard in training) at exactly `cfg.snr_db`,
    measured on the excerpt. Every query draws the same random numbers whatever the settings, so
    changing one setting leaves the others' draws alone.

    Notebook: 09_benchmark.ipynb
    """
    rng = np.random.default_rng([0x7175, cfg.query_seed])
    g = torch.Generator().manual_seed(cfg.query_seed)
    bank = _eval_noise()
    n = int(round(cfg.query_s * SR))
    tracks, queries = {}, []
    for _ in range(cfg.n_queries):
        t, start = int(rng.integers(n_tracks)), rng.uniform(0.0, cfg.track_s - cfg.query_s)
        u, rt60, k, u_noise = rng.random(), rng.uniform(0.3, 0.9), int(rng.integers(len(bank))), rng.random()
        if t not in tracks:
            tracks[t] = data.synth_track(t, cfg.track_s, cfg.corpus_seed, cache=False)  # as the database's
        i0 = int(round(start * SR))
        x = torch.from_numpy(tracks[t][i0:i0 + n])  # (T,)
        rir = synth_rir(rt60, generator=g)  # drawn for every query, used by some
        if u < cfg.p_reverb:
            x = reverb(x, rir)
        noise = bank[k]
        o = int(u_noise * max(len(noise) - n, 0))
        queries.append(Query(t, i0 / SR, add_noise(x, torch.from_numpy(noise[o:o + n]), cfg.snr_db).numpy()))
    return queries


def clock_ms(clock: str) -> float:
    """Wall time, or this process's CPU time (every thread's): what a query costs on a busy machine."""
    return 1e3 * (time.process_time() if clock == "cpu" else time.perf_counter())


def fingerprint_queries(model, queries, hop_s: float, clock: str = "wall", progress: bool = False):
    """Each query's (emb, logits, starts) every `hop_s`, and the time each took, ms (M,)."""
    fps, ms = [], []
    for q in tqdm(queries, desc="queries", unit="query", disable=not progress):
        t0 = clock_ms(clock)
        fps.append(model.fingerprint_audio(q.x, hop_s))
        ms.append(clock_ms(clock) - t0)
    return fps, np.array(ms)


# ----------------------------------------------------------------------------
# one index, one operating point


def measure(index, fps, fp_ms, queries, names, clock: str = "wall", **settings) -> dict:
    """Top-1 (track right, start within 0.1 s and 0.5 s), share scored and latency over the queries."""
    hit1 = hit5 = 0
    ms, frac = np.zeros(len(queries)), np.zeros(len(queries))
    for i, ((e, l, s), q) in enumerate(zip(fps, queries)):
        t0 = clock_ms(clock)
        m = index.search(e, l, s, threshold=-np.inf, **settings)  # top-1 whatever its score
        ms[i], frac[i] = (m.time_ms if clock == "wall" else clock_ms(clock) - t0), m.frac_scored
        err = abs(m.offset_s - q.start_s) if m.track == names[q.track] else np.inf
        hit1, hit5 = hit1 + (err <= 0.1 + 1e-6), hit5 + (err <= 0.5 + 1e-6)
    n = max(len(queries), 1)
    return {"top1": 100 * hit1 / n, "top1_05": 100 * hit5 / n, "scored": 100 * frac.mean(),
            "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p50_total_ms": float(np.percentile(ms + fp_ms, 50))}


def occupancy(index, K: int) -> dict:
    """Bytes per window and, for bucketed methods, entropy, largest bucket (windows) and empty share."""
    st = index.stats()
    row = {"bytes_per_window": st["bytes_per_window"], "entropy": None, "largest": None, "empty": None}
    if "entropy" in st:
        row.update(entropy=st["entropy"], empty=100 * st["empty_share"],
                   largest=round(st["largest_over_uniform"] * max(1.0, len(index) / 2 ** K)))
    return row


def bench_size(size: int, arrays: dict, fps: dict, queries, cfg: BenchConfig, K: int, progress=True, log=print):
    """Every method and operating point on the database of `size` windows; one row each."""
    emb, logits, tids, starts = arrays["ot"]
    names = [f"synth{cfg.corpus_seed}/{i:05d}" for i in range(int(tids.max()) + 1)]
    base = {"size": size_label(size), "n_windows": len(emb)}
    scfg = SearchConfig(max_candidates=cfg.max_candidates)
    probes = sorted(set(cfg.probes) | {DEFAULT_PROBES})
    builds = []  # (method, curve, index class, build kwargs, [(setting, search overrides, default?)])
    for method in cfg.methods:
        if method in ("hash", "sign") and ("ot" if method == "hash" else "sign") in fps:
            pts = [(f"n_probes={p}", dict(n_probes=p), p == DEFAULT_PROBES) for p in probes]
            builds.append((method, LABELS[method], "hash", {}, pts))
        elif method == "lsh":
            for L in sorted(set(cfg.lsh_tables) | {DEFAULT_TABLES}):
                pts = [(f"L={L} n_probes={p}", dict(n_probes=p), L == DEFAULT_TABLES and p == DEFAULT_PROBES)
                       for p in probes if L * p <= cfg.lsh_max_probes or (L, p) == (DEFAULT_TABLES, DEFAULT_PROBES)]
                builds.append((method, f"LSH L={L}", "lsh", dict(L=L, K=K), pts))
        elif method == "exhaustive":
            builds.append((method, LABELS[method], "exhaustive", {}, [("all", {}, True)]))
        elif method == "faiss":
            try:
                import faiss  # noqa: F401  optional
            except ImportError:
                log("  faiss is not installed (pip install faiss-cpu): no FAISS row")
                continue
            pts = [(cfg.faiss_kind, {}, True)]
            builds.append((method, f"FAISS {cfg.faiss_kind}", "faiss", dict(kind=cfg.faiss_kind), pts))
    rows = []
    for method, curve, cls, params, pts in builds:
        src = "sign" if method == "sign" else "ot"
        e, l, t, s = arrays[src]
        t0 = clock_ms(cfg.clock)
        index = index_class(cls).build(e, l, t, s, names, hop_s=cfg.hop_s, cfg=scfg, **params)
        build_s = (clock_ms(cfg.clock) - t0) / 1e3
        occ = occupancy(index, K)
        for setting, over, default in tqdm(pts, desc=f"{size_label(size)} {curve}", disable=not progress):
            res = measure(index, *fps[src], queries, names, cfg.clock, **over)
            rows.append({**base, "method": method, "curve": curve, "setting": setting, "default": default,
                         **res, "build_s": build_s, **occ, "n_queries": len(queries)})
        del index
    return rows


# ----------------------------------------------------------------------------
# the whole benchmark


def run_benchmark(model, cfg: BenchConfig, sign_model=None, progress: bool = True, log=print) -> dict:
    """Build and query every method at every size.

    Args:
        model: the OT-trained encoder (hash, LSH, exhaustive and FAISS rows use it).
        cfg: what to measure.
        sign_model: an encoder trained with `--hash sign`, for the unbalanced sign hash row
            (None: that row is skipped).

    Returns:
        {"rows": one dict per (size, method, operating point), "meta": settings, machine, timings}.

    Notebook: 09_benchmark.ipynb
    """
    models = {"ot": model}
    if "sign" in cfg.methods and sign_model is not None:
        models["sign"] = sign_model
    elif "sign" in cfg.methods:
        log("no --sign-model given: the unbalanced sign hash row is skipped "
            "(train one with `minihash train --hash sign`)")
    per_track = windows_per_track(model, cfg)
    sizes = sorted(cfg.sizes)
    n_q_tracks = math.ceil(sizes[0] / per_track)
    queries = make_queries(cfg, n_q_tracks)
    fps = {name: fingerprint_queries(m, queries, cfg.query_hop_s, cfg.clock, progress) for name, m in models.items()}
    meta = {"config": asdict(cfg), "machine": machine_info(), "query_tracks": n_q_tracks,
            "models": {k: m.model_id for k, m in models.items()},
            "query_fp_p50_ms": {k: float(np.median(ms)) for k, (_, ms) in fps.items()}, "corpus_s": {}}
    rows = []
    for size in sizes:
        n_tracks = math.ceil(size / per_track)
        t0 = time.perf_counter()
        arrays = corpus_embeddings(models, n_tracks, cfg, progress, log)
        meta["corpus_s"][size_label(size)] = time.perf_counter() - t0
        log(f"{size_label(size)}: {len(arrays['ot'][0]):,} windows of {n_tracks} tracks")
        rows += bench_size(size, arrays, fps, queries, cfg, model.cfg.K, progress, log)
        del arrays
    return {"rows": rows, "meta": meta}


# ----------------------------------------------------------------------------
# targets, checked from the numbers


def _rows(rows, method, size):
    return [r for r in rows if r["method"] == method and r["size"] == size]


def check_targets(rows, size: str | None = None) -> list:
    """The README's targets, each PASS, FAIL or N/A (a number it needs was not measured).

    The hash's operating point is its most accurate one scoring at most 1 % of the database (the
    default, n_probes=64, if none does); targets 2 and 4 are read at that point.

    Args:
        rows: `run_benchmark(...)["rows"]`.
        size: the size label to check at (default: the largest measured; the targets say 1M).

    Returns:
        list of {"target", "verdict", "detail"}.

    Notebook: 09_benchmark.ipynb
    """
    if size is None:
        size = max(rows, key=lambda r: r["n_windows"])["size"] if rows else "1M"
    at = f" [at {size} windows]" + ("" if size == "1M" else " (the targets are stated at 1M)")
    out = []

    def add(target, ok, detail):
        out.append({"target": target + at, "verdict": "N/A" if ok is None else "PASS" if ok else "FAIL",
                    "detail": detail})

    hashes = _rows(rows, "hash", size)
    cheap = [r for r in hashes if r["scored"] <= 1.0]
    op = (max(cheap, key=lambda r: (r["top1"], -r["scored"])) if cheap
          else next((r for r in hashes if r["default"]), None))
    exh = next(iter(_rows(rows, "exhaustive", size)), None)
    if op is None or exh is None:
        add("OT hash within 1 point of exhaustive top-1, scoring <= 1 % of the DB", None, "hash or exhaustive not run")
    else:
        gap = exh["top1"] - op["top1"]
        add("OT hash within 1 point of exhaustive top-1, scoring <= 1 % of the DB", bool(cheap) and gap <= 1.0,
            f"hash {op['setting']}: {op['top1']:.1f} % scoring {op['scored']:.3g} %; exhaustive {exh['top1']:.1f} %"
            f" (gap {gap:+.1f} points)" + ("" if cheap else "; no hash operating point scores <= 1 %"))
    lsh = [r for r in _rows(rows, "lsh", size) if op is not None and r["top1"] >= op["top1"]]
    if op is None or not _rows(rows, "lsh", size):
        add("at equal top-1, OT hash >= 2.4x faster than LSH (p50)", None, "hash or LSH not run")
    elif not lsh:
        top = max(_rows(rows, "lsh", size), key=lambda r: r["top1"])
        add("at equal top-1, OT hash >= 2.4x faster than LSH (p50)", None,
            f"no LSH operating point reaches the hash's {op['top1']:.1f} % (best LSH: {top['setting']}, "
            f"{top['top1']:.1f} % at {top['p50_ms']:.2f} ms): widen --lsh-tables / --probes")
    else:
        ref = min(lsh, key=lambda r: r["p50_ms"])
        ratio = ref["p50_ms"] / max(op["p50_ms"], 1e-9)
        add("at equal top-1, OT hash >= 2.4x faster than LSH (p50)", ratio >= 2.4,
            f"{ratio:.2f}x: hash {op['setting']} {op['top1']:.1f} % at {op['p50_ms']:.2f} ms; fastest LSH at least as "
            f"accurate: {ref['setting']} {ref['top1']:.1f} % at {ref['p50_ms']:.2f} ms")
    if op is None:
        add("<= 300 bytes per indexed window, everything included", None, "hash not run")
        add("a 5 s query answers in < 10 ms (p50, query fingerprinting included)", None, "hash not run")
    else:
        add("<= 300 bytes per indexed window, everything included", op["bytes_per_window"] <= 300,
            f"{op['bytes_per_window']:.1f} bytes per window (float16 embedding, track id, start, code, buckets)")
        add("a 5 s query answers in < 10 ms (p50, query fingerprinting included)", op["p50_total_ms"] < 10.0,
            f"{op['p50_total_ms']:.2f} ms end to end, of which search {op['p50_ms']:.2f} ms (hash {op['setting']})")
    sign = [r for r in _rows(rows, "sign", size) if op is not None and r["setting"] == op["setting"]]
    if not sign or op is None:
        add("the unbalanced sign hash reported beside it", None, "no sign model (--sign-model) or no hash row")
    else:
        s = sign[0]
        add("the unbalanced sign hash reported beside it", True,
            f"{op['setting']}: OT {op['top1']:.1f} % scoring {op['scored']:.3g} %, entropy {op['entropy']:.3f}, "
            f"largest bucket {op['largest']}; sign {s['top1']:.1f} % scoring {s['scored']:.3g} %, entropy "
            f"{s['entropy']:.3f}, largest bucket {s['largest']}")
    return out


# ----------------------------------------------------------------------------
# report: markdown, csv, plot

COLUMNS = ("size", "n_windows", "method", "curve", "setting", "default", "top1", "top1_05", "scored", "p50_ms",
           "p95_ms", "p50_total_ms", "build_s", "bytes_per_window", "entropy", "largest", "empty", "n_queries")
HEADER = ("DB windows", "method", "setting", "top-1 % (0.1 s)", "top-1 % (0.5 s)", "DB scored %", "p50 ms",
          "p95 ms", "build s", "bytes/window", "entropy", "largest bucket", "empty %")


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def markdown_table(rows) -> str:
    """One markdown row per result: sizes, methods and settings as given."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        cells = (f"{r['n_windows']:,}", r["curve"], r["setting"], f"{r['top1']:.1f}", f"{r['top1_05']:.1f}",
                 f"{r['scored']:.3g}", f"{r['p50_ms']:.2f}", f"{r['p95_ms']:.2f}", f"{r['build_s']:.2f}",
                 f"{r['bytes_per_window']:.0f}", _fmt(r["entropy"], ".3f"), _fmt(r["largest"], "d"),
                 _fmt(r["empty"], ".1f"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_tradeoff(rows, figsize=None):
    """Top-1 against the share of the database scored, log x, one panel per size, one curve per method.

    Returns:
        (fig, axes).

    Notebook: 09_benchmark.ipynb
    """
    from matplotlib.figure import Figure  # no pyplot: works headless, leaves no global state

    sizes = list(dict.fromkeys(r["size"] for r in rows))
    fig = Figure(figsize=figsize or (4.2 * len(sizes), 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(sizes), sharey=True))
    colors = {"hash": "C0", "sign": "C3", "lsh": "C2", "exhaustive": "k", "faiss": "C4"}
    styles = ["-", "--", ":", "-."]
    for ax, size in zip(axes, sizes):
        curves = list(dict.fromkeys((r["method"], r["curve"]) for r in rows if r["size"] == size))
        n_lsh = 0
        for method, curve in curves:
            pts = sorted((r for r in rows if r["size"] == size and r["curve"] == curve), key=lambda r: r["scored"])
            x = [max(r["scored"], 1e-4) for r in pts]  # a share of 0 has no place on a log axis
            style = styles[n_lsh % len(styles)] if method == "lsh" else "-"
            n_lsh += method == "lsh"
            ax.plot(x, [r["top1"] for r in pts], style, marker="o" if len(pts) > 1 else "*",
                    ms=4 if len(pts) > 1 else 12, color=colors[method], label=curve,
                    zorder=1 if len(pts) == 1 else 2, alpha=0.8)
        ax.set_xscale("log")
        ax.set_title(f"{size} windows ({pts[0]['n_windows']:,})" if curves else size)
        ax.set_xlabel("DB scored per query (%)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("top-1 (%)")
    axes[-1].legend(fontsize=8, loc="lower right")
    return fig, axes


def write_report(result: dict, out_dir, command_line: str = "") -> dict:
    """Write bench-search.md, .csv and .png into `out_dir`; return their paths and the markdown."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, meta = result["rows"], result["meta"]
    cfg, mach = meta["config"], meta["machine"]
    targets = check_targets(rows)
    fp = ", ".join(f"{'OT' if k == 'ot' else 'sign'} model {v:.2f} ms" for k, v in meta["query_fp_p50_ms"].items())
    md = [
        "# minihash bench-search", "",
        f"`{command_line or 'run_benchmark(...)'}`", "",
        f"Machine: {mach['cpu']}, {mach['cores']} cores, {mach['torch_threads']} torch threads, BLAS threads "
        f"{mach['blas_threads']}; python "
        f"{mach['python']}, torch {mach['torch']}, numpy {mach['numpy']}. Models: "
        + ", ".join(f"{k} `{v}`" for k, v in meta["models"].items()) + ".", "",
        f"Database: the procedural corpus (seed {cfg['corpus_seed']}), {cfg['track_s']:g} s tracks, 1 s windows "
        f"every {cfg['hop_s']:g} s. Queries: {rows[0]['n_queries'] if rows else 0} excerpts of {cfg['query_s']:g} s at "
        f"continuous random starts in the first {meta['query_tracks']} tracks, noise of the evaluation bank at "
        f"{cfg['snr_db']:g} dB SNR, {100 * cfg['p_reverb']:g} % reverberated first; fingerprinted every "
        f"{cfg['query_hop_s']:g} s (p50 per query: {fp}; not in the search latencies below). A hit: the right track,"
        f" start within 0.1 s (0.5 s). At most {cfg['max_candidates']} candidates per query window, in probe order"
        " (a bucket holding more is cut: a crowded bucket costs accuracy, not time). Latencies and "
        "build times: " + ("wall clock." if cfg["clock"] == "wall" else "CPU time of the process (`--clock cpu`)."),
        "", "Corpus fingerprints (synthesis included, wall clock; near 0 when cached): "
        + ", ".join(f"{k} {v:.0f} s" for k, v in meta["corpus_s"].items()) + ".", "",
        f"## Default operating points (n_probes={DEFAULT_PROBES}; LSH L={DEFAULT_TABLES})", "",
        markdown_table([r for r in rows if r["default"]]), "",
        "## Targets", "",
        *[f"- **{t['verdict']}** {t['target']}: {t['detail']}" for t in targets], "",
        "## Every operating point", "", markdown_table(rows), "",
        "![top-1 against the share of the database scored](bench-search.png)", "",
    ]
    paths = {"md": out / "bench-search.md", "csv": out / "bench-search.csv", "png": out / "bench-search.png"}
    paths["md"].write_text("\n".join(md))
    with open(paths["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    fig, _ = plot_tradeoff(rows)
    fig.savefig(paths["png"], dpi=120)
    return {**paths, "markdown": "\n".join(md), "targets": targets}


# ----------------------------------------------------------------------------
# command line


def add_parser(sub):
    """Add `bench-search` and its arguments to an argparse subparsers object."""
    p = sub.add_parser("bench-search", help="search methods side by side: top-1 against DB share scored, latency, "
                                            "memory, bucket occupancy, at 10k/100k/1M windows")
    p.add_argument("--model", default=None, help="model file (default: the shipped model)")
    p.add_argument("--sign-model", default=None, help="a model trained with `minihash train --hash sign`, for the "
                                                      "unbalanced sign hash row (without it the row is skipped)")
    p.add_argument("--sizes", nargs="+", type=parse_size, default=None,
                   help="database sizes in windows (default 10k 100k 1M)")
    p.add_argument("--queries", type=int, default=None, help="number of queries (default 500)")
    p.add_argument("--query-seconds", type=float, default=5.0)
    p.add_argument("--snr", type=float, default=10.0, help="query SNR in dB (evaluation noise bank)")
    p.add_argument("--reverb", type=float, default=0.0, help="share of queries reverberated (synthetic rooms)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--probes", type=int, nargs="+", default=[1, 4, 16, 64, 256], help="n_probes swept")
    p.add_argument("--lsh-tables", type=int, nargs="+", default=[1, 4, 16], help="LSH tables L swept")
    p.add_argument("--lsh-max-probes", type=int, default=1024, help="LSH points with L x n_probes above it are skipped")
    p.add_argument("--max-candidates", type=int, default=4096, help="candidates re-ranked per query window")
    p.add_argument("--faiss-kind", choices=["hnsw", "flat", "multihash"], default="hnsw")
    p.add_argument("--corpus-seed", type=int, default=1)
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="latency clock: wall, or the process's CPU time (for a busy shared machine; use --threads 1)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--out", default="minihash-bench", help="folder for bench-search.md/.csv/.png")
    p.add_argument("--quick", action="store_true", help="sizes 10k and 100k, 200 queries")
    p.add_argument("--no-progress", action="store_true")
    return p


def command(args) -> int:
    """`minihash bench-search`: see `minihash bench-search --help`."""
    from .encoder import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
        try:  # numpy's BLAS has its own pool, which oversubscribes a busy machine badly
            from threadpoolctl import threadpool_limits

            threadpool_limits(args.threads)
        except ImportError:
            pass
    cfg = BenchConfig.preset("quick" if args.quick else "full", query_s=args.query_seconds, snr_db=args.snr,
                             p_reverb=args.reverb, methods=tuple(args.methods), probes=tuple(args.probes),
                             lsh_tables=tuple(args.lsh_tables), lsh_max_probes=args.lsh_max_probes,
                             max_candidates=args.max_candidates,
                             faiss_kind=args.faiss_kind, clock=args.clock, corpus_seed=args.corpus_seed)
    if args.sizes:
        cfg = replace(cfg, sizes=tuple(args.sizes))
    if args.queries:
        cfg = replace(cfg, n_queries=args.queries)
    model = load_model(args.model)
    sign_model = load_model(args.sign_model) if args.sign_model else None
    result = run_benchmark(model, cfg, sign_model, progress=not args.no_progress)
    rep = write_report(result, args.out, shlex.join(["minihash", *sys.argv[1:]]))
    print(markdown_table([r for r in result["rows"] if r["default"]]))
    print("\n".join(f"{t['verdict']:4s} {t['target']}: {t['detail']}" for t in rep["targets"]))
    print(f"wrote {rep['md']}, {rep['csv']}, {rep['png']}")
    return 0
