"""The database of `minihash bench-search`: windows of the procedural corpus, fingerprinted once and cached.

The database is real windows of the embedded procedural corpus (corpus seed 1 by default: the
training runs use seed 0, so it is music the model never heard), one track after another, so a
larger database holds every window of a smaller one. Embeddings are cached per (model id,
synthesiser, corpus seed, track length, hop) in chunks of tracks, each file written atomically
(`files.save_npy`) and the chunk's counts last: a larger size only fingerprints the tracks it
adds, and a crash loses at most one chunk.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..audio import SR
from ..corpus import music
from ..files import cache_dir, save_npy

CHUNK_TRACKS = 128  # tracks per cache file (~37k windows of 30 s tracks): a crash loses at most one

# ----------------------------------------------------------------------------
# the chunks on disk


def windows_per_track(model, cfg) -> int:
    """Windows `fingerprint_audio` cuts from one corpus track at the database hop (`cfg`: a BenchConfig)."""
    return 1 + (int(round(cfg.track_s * SR)) - model.cfg.n_samples) // int(round(cfg.hop_s * SR))


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


def _write_chunk(folder: Path, chunk: tuple, parts: list) -> None:
    """One chunk's arrays from its tracks' (emb, logits, starts), the counts last: they mark it complete."""
    files = _chunk_files(folder, *chunk)
    for k, col in (("emb", 0), ("logits", 1), ("starts", 2)):
        save_npy(files[k], np.concatenate([p[col] for p in parts]))
    save_npy(files["counts"], np.array([len(p[0]) for p in parts], dtype=np.int32))


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


def corpus_key(model, cfg) -> str:
    """The cache folder's name: the model, the synthesiser (its version and a digest of track 0,
    freshly made: a change nobody announced is caught too), corpus seed, track length and hop."""
    x0 = music.synth_track(0, cfg.track_s, cfg.corpus_seed, cache=False)
    audio = f"gen{music.GENERATOR_VERSION}-{hashlib.sha256(x0.tobytes()).hexdigest()[:8]}"
    return f"{model.model_id}_{audio}_seed{cfg.corpus_seed}_{cfg.track_s:g}s_hop{cfg.hop_s:g}"


# ----------------------------------------------------------------------------
# the embeddings of the first n tracks


def corpus_embeddings(models: dict, n_tracks: int, cfg, progress: bool = True, log=print) -> dict:
    """The first `n_tracks` tracks of the corpus, fingerprinted every `cfg.hop_s` by each model.

    Each track is synthesised once for all the models that lack it; results are cached under
    `files.cache_dir()/bench/<model id>_...`, one file set per chunk of tracks.

    Args:
        models: {name: encoder}.
        n_tracks: tracks wanted.
        cfg: a BenchConfig: the corpus (seed, track length, hop).

    Returns:
        {name: (emb (N, D) float16, logits (N, K) float32, track_ids (N,) int32, starts (N,) float32)}.
    """
    folders, plans = {}, {}
    for name, model in models.items():
        folders[name] = cache_dir() / "bench" / corpus_key(model, cfg)
        folders[name].mkdir(parents=True, exist_ok=True)
        have = _cached_chunks(folders[name])
        plans[name] = [(a, b, have[a][1] if cached else None) for a, b, cached in plan_chunks(have, n_tracks)]
    todo = sorted({i for p in plans.values() for a, b, arr in p if arr is None for i in range(a, b)})
    if todo:
        work = sum(windows_per_track(m, cfg) * sum(b - a for a, b, arr in plans[k] if arr is None)
                   for k, m in models.items())
        log(f"fingerprinting {len(todo)} tracks ({work:,} windows over {len(models)} model(s)); cached under "
            f"{cache_dir() / 'bench'}")
    new = {name: {} for name in models}  # name -> a -> lists of per-track arrays
    t0, done = time.perf_counter(), 0
    for j, i in enumerate(tqdm(todo, desc="corpus", unit="track", disable=not progress)):
        x = music.synth_track(i, cfg.track_s, cfg.corpus_seed, cache=False)  # not worth 3 GB of disk at 1M
        for name, model in models.items():
            chunk = next(((a, b) for a, b, arr in plans[name] if arr is None and a <= i < b), None)
            if chunk is None:
                continue
            e, l, s = model.fingerprint_audio(x, cfg.hop_s)
            parts = new[name].setdefault(chunk[0], [])
            parts.append((e.astype(np.float16), l.astype(np.float32), s.astype(np.float32)))
            done += len(e)
            if i == chunk[1] - 1:  # the chunk is complete: write it
                _write_chunk(folders[name], chunk, parts)
                del new[name][chunk[0]]  # read back from disk below: hold one chunk at a time
        if j == 0 and len(todo) > 1:
            rate = done / (time.perf_counter() - t0)
            log(f"  ~{rate:,.0f} windows/s (synthesis included): about {(work - done) / rate / 60:.1f} min to go")
    return {name: _read_plan(folders[name], plans[name], n_tracks) for name in models}


def _read_plan(folder: Path, plan: list, n_tracks: int) -> tuple:
    """The chunks of `plan` read back, cut at `n_tracks`: (emb, logits, track_ids, starts)."""
    have = _cached_chunks(folder)
    parts = []
    for a, b, _ in plan:
        arr = have[a][1]
        n = np.asarray(arr["counts"][:min(b, n_tracks) - a])  # a cached chunk may run past n_tracks
        w = int(n.sum())
        parts.append((arr["emb"][:w], arr["logits"][:w], np.repeat(np.arange(a, a + len(n), dtype=np.int32), n),
                      arr["starts"][:w]))
    return tuple(np.concatenate(col) for col in zip(*parts))  # copies out of the memory maps
