"""`minihash bench-search`: every search method on one database, at 10k, 100k and 1M windows.

The comparison of Singh, Demuynck and Arora (ICASSP 2023, arXiv 2211.11060) and FlowHash (Singh
et al., TASLP 2024): the OT-balanced hash against the unbalanced sign codes of a network trained
without OT, LSH on the same embeddings (Charikar 2002, as in NAFP, Chang et al. 2021), exhaustive
search and, where installed, FAISS (Johnson et al. 2019). For each database size and method it
measures top-1 on a fixed set of noisy queries, the share of the database scored per query,
p50/p95 search latency, build time, bytes per indexed window and bucket occupancy, sweeping the
number of probes (and LSH tables) so that accuracy can be read against work.

The queries are the evaluation's (`evaluate.protocol`): drawn, heard (noise of the evaluation
bank at the SNR, a share of them first in an evaluation room, with the second before the
excerpt) and scored (its hit rule) exactly as `minihash eval` does, cut from the smallest size's
tracks, so they are valid at every size.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass, replace
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from ..audio import SR
from ..corpus import music
from ..evaluate.protocol import EvalConfig, draw_queries, render, score
from ..evaluate.run import eval_rooms
from ..machine import machine_info
from ..pairs import training_noise
from ..search import index_class
from ..search.base import SearchConfig
from .corpus import corpus_embeddings, windows_per_track


class Method(NamedTuple):
    label: str  # the curve's name in tables and plots
    model: str  # whose embeddings it indexes: "ot" (the model) or "sign" (the sign-hash model)
    index: str  # the search package's index kind
    color: str  # in the trade-off plot


# the one list of bench-search's methods
METHODS = {"hash": Method("OT hash", "ot", "hash", "C0"), "sign": Method("sign hash", "sign", "hash", "C3"),
           "lsh": Method("LSH", "ot", "lsh", "C2"), "exhaustive": Method("exhaustive", "ot", "exhaustive", "k"),
           "faiss": Method("FAISS", "ot", "faiss", "C4")}
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
    p_reverb: float = 0.0  # share of queries put through an evaluation room before the noise
    methods: tuple = tuple(METHODS)
    probes: tuple = (1, 4, 16, 64, 256)  # n_probes swept by the hashes and LSH
    lsh_tables: tuple = (1, 4, 16)  # L swept by LSH (K = the model's bits)
    lsh_max_probes: int = 1024  # L x n_probes at most: each table's probe sequence costs as much as the hash's
    max_candidates: int = 4096  # per query window, as SearchConfig
    faiss_kind: str = "hnsw"
    clock: str = "wall"  # "cpu": this process's CPU time, for a shared machine (exact with 1 thread)
    track_s: float = 30.0
    hop_s: float = 0.1  # database hop
    query_hop_s: float = 0.5  # query hop (query_audio's default)
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


# ----------------------------------------------------------------------------
# the query set: the evaluation's, fixed and seeded


def make_queries(cfg: BenchConfig, n_tracks: int) -> tuple[list, list]:
    """`cfg.n_queries` excerpts of `cfg.query_s` seconds from the first `n_tracks` tracks.

    Drawn, heard and later scored as the evaluation's queries (`evaluate.protocol`): starts at any
    sample (not on the database's 0.1 s grid), near-silence drawn again; a share `cfg.p_reverb`
    reverberated by an evaluation room (with the second before the excerpt), then a noise of the
    evaluation bank (`noise_bank(seed=1)`, never heard in training) at exactly `cfg.snr_db`,
    measured on the excerpt. Which queries reverberate is drawn after the queries, whatever the
    settings, so changing one setting leaves the others' draws alone.

    Returns:
        (queries, xs): the `protocol.Query` of each and its (n,) float32 audio.
    """
    tracks = [music.synth_track(i, cfg.track_s, cfg.corpus_seed, cache=False) for i in range(n_tracks)]  # as the DB's
    noise, rooms = training_noise(split="eval"), eval_rooms(EvalConfig())
    rng = np.random.default_rng([0x7175, cfg.query_seed])
    queries = draw_queries(tracks, cfg.query_s, cfg.n_queries, rng, len(noise), len(rooms))
    wet = rng.random(len(queries)) < cfg.p_reverb  # (Q,)
    xs = [render(tracks, q, ("noise+reverb" if w else "noise", cfg.snr_db), noise, rooms) for q, w in zip(queries, wet)]
    return queries, xs


def clock_ms(clock: str) -> float:
    """Wall time, or this process's CPU time (every thread's): what a query costs on a busy machine."""
    return 1e3 * (time.process_time() if clock == "cpu" else time.perf_counter())


def fingerprint_queries(model, xs, hop_s: float, clock: str = "wall", progress: bool = False):
    """Each query's (emb, logits, starts) every `hop_s`, and the time each took, ms (M,)."""
    fps, ms = [], []
    for x in tqdm(xs, desc="queries", unit="query", disable=not progress):
        t0 = clock_ms(clock)
        fps.append(model.fingerprint_audio(x, hop_s))
        ms.append(clock_ms(clock) - t0)
    return fps, np.array(ms)


# ----------------------------------------------------------------------------
# one index, one operating point


def measure(index, fps, fp_ms, queries, names, clock: str = "wall", **settings) -> dict:
    """Top-1 by the evaluation's hit rule (`protocol.score`: track right, start within 0.1 s and
    0.5 s), share scored and latency over the queries."""
    hit1 = hit5 = 0
    ms, frac = np.zeros(len(queries)), np.zeros(len(queries))
    for i, ((e, l, s), q) in enumerate(zip(fps, queries)):
        t0 = clock_ms(clock)
        m = index.search(e, l, s, threshold=-np.inf, **settings)  # top-1 whatever its score
        ms[i], frac[i] = (m.time_ms if clock == "wall" else clock_ms(clock) - t0), m.frac_scored
        sc = score(m, names[q.track], q.start / SR)
        hit1, hit5 = hit1 + sc["hit"], hit5 + sc["hit_loose"]
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


def _builds(cfg: BenchConfig, fps: dict, K: int, log) -> list:
    """The indexes to build: (method, curve, build kwargs, [(setting, search overrides, default?)])."""
    probes = sorted(set(cfg.probes) | {DEFAULT_PROBES})
    builds = []
    for method in cfg.methods:
        label = METHODS[method].label
        if METHODS[method].model not in fps:  # no sign model given
            continue
        if METHODS[method].index == "hash":
            pts = [(f"n_probes={p}", dict(n_probes=p), p == DEFAULT_PROBES) for p in probes]
            builds.append((method, label, {}, pts))
        elif method == "lsh":
            for L in sorted(set(cfg.lsh_tables) | {DEFAULT_TABLES}):
                pts = [(f"L={L} n_probes={p}", dict(n_probes=p), L == DEFAULT_TABLES and p == DEFAULT_PROBES)
                       for p in probes if L * p <= cfg.lsh_max_probes or (L, p) == (DEFAULT_TABLES, DEFAULT_PROBES)]
                builds.append((method, f"{label} L={L}", dict(L=L, K=K), pts))
        elif method == "exhaustive":
            builds.append((method, label, {}, [("all", {}, True)]))
        elif method == "faiss":
            try:
                import faiss  # noqa: F401  optional, and heavy: imported only when asked for
            except ImportError:
                log("  faiss is not installed (pip install faiss-cpu): no FAISS row")
                continue
            pts = [(cfg.faiss_kind, {}, True)]
            builds.append((method, f"{label} {cfg.faiss_kind}", dict(kind=cfg.faiss_kind), pts))
    return builds


def bench_size(size: int, arrays: dict, fps: dict, queries, cfg: BenchConfig, K: int, progress=True, log=print):
    """Every method and operating point on the database of `size` windows; one row each."""
    emb, logits, tids, starts = arrays["ot"]
    names = [f"synth{cfg.corpus_seed}/{i:05d}" for i in range(int(tids.max()) + 1)]
    base = {"size": size_label(size), "n_windows": len(emb)}
    scfg = SearchConfig(max_candidates=cfg.max_candidates)
    rows = []
    for method, curve, params, pts in _builds(cfg, fps, K, log):
        src = METHODS[method].model
        e, l, t, s = arrays[src]
        t0 = clock_ms(cfg.clock)
        index = index_class(METHODS[method].index).build(e, l, t, s, names, hop_s=cfg.hop_s, cfg=scfg, **params)
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
    queries, xs = make_queries(cfg, n_q_tracks)
    fps = {name: fingerprint_queries(m, xs, cfg.query_hop_s, cfg.clock, progress) for name, m in models.items()}
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
