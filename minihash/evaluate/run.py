"""Running the evaluation: index the database for every method, calibrate, ask the same queries.

Every reference track is fingerprinted every 0.1 s, as in the Neural Audio Fingerprint (Chang et
al., ICASSP 2021, arXiv 2010.11910) and Singh et al. (ICASSP 2023, arXiv 2211.11060). Noise and
rooms come from sources kept out of training. Negative queries (audio not in the database) count
false matches, at the no-match thresholds each neural index calibrates on the database itself,
leave-one-track-out, exactly as `minihash index` does (`calibrate.calibrate_index`).

Notebook: 09_benchmark.ipynb
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..audio import SR, AudioFolder
from ..corpus import synth_tracks
from ..landmarks import LandmarkIndex
from ..modelfile import load_model
from ..pairs import load_rirs, training_noise
from ..search import index_class
from ..search.base import Match
from .calibrate import calibrate_index
from .protocol import (DB_SEED, NEG_SEED, ROOM_SEED, SYSTEMS, EvalConfig, add_likeness, draw_queries, eval_rooms,
                       render, score)
from .report import EvalResult, machine, write_report

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
    systems, stats = {}, {}
    for key, model in models.items():
        mine = [m for m in methods if SYSTEMS.get(m, ("",))[0] == key]
        if not mine:
            continue
        t0 = time.perf_counter()
        fp = [model.fingerprint_audio(x, hop_s) for x in tqdm(tracks, desc=f"fingerprinting ({key})", unit="track",
                                                                disable=not progress)]
        E, Lg, S = (np.concatenate(a) for a in zip(*fp))  # (N, D), (N, K), (N,)
        T = np.concatenate([np.full(len(f[0]), i, np.int32) for i, f in enumerate(fp)])
        fp_s = time.perf_counter() - t0
        for m in mine:
            index, build_s = _timed(index_class(SYSTEMS[m][1]).build, E, Lg, T, S, list(names), hop_s,
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


def evaluate(tracks: dict, models: dict, cfg: EvalConfig, noise, rooms, negatives, progress: bool = True) -> EvalResult:
    """Run the protocol: index, calibrate, then every method answers the same queries in every cell.

    Args:
        tracks: the database, name -> (T,) float32 at 8 kHz.
        models: {"model": Encoder, and optionally "sign", "nafp"}; a method whose model is absent is skipped.
        cfg: what to measure.
        noise: list of (T,) evaluation noises. rooms: list of (L,) impulse responses.
        negatives: list of (T,) signals not in the database, for the false matches.

    Returns:
        an EvalResult; `.table()` is the headline, `.rows()` the CSV.
    """
    names, audio = list(tracks), list(tracks.values())
    notes = [f"{k}: windows cut from the samples (its {1e3 * m.cfg.mel.hop / m.cfg.mel.sr:g} ms front-end hop does "
             f"not divide {cfg.hop_s:g} s)" for k, m in models.items()
             if not all(m.slices_mel(h) for h in (cfg.hop_s, cfg.query_hop_s))]
    systems, stats = build_systems(names, audio, models, cfg.methods, cfg.hop_s, progress)
    for m, s in systems.items():  # as `minihash index` calibrates: on the database itself
        if s.model is not None:
            cal = calibrate_index(s.index, s.model, tracks, cfg.max_false, cfg.confidence, cfg.n_calibration,
                                  lengths=cfg.lengths, hop_s=cfg.query_hop_s, seed=cfg.seed, progress=progress)
            stats[m].update(threshold=s.index.threshold, thresholds=dict(sorted(s.index.thresholds.items())),
                            calibration_s=cal.pop("seconds"), calibration=cal)
    records, repeats = [], {}
    total = len(cfg.lengths) * (len(cfg.cells) * cfg.n_queries + cfg.n_negatives) * len(systems)
    bar = tqdm(total=total, desc="queries", unit="query", disable=not progress)
    for L in cfg.lengths:
        rng = np.random.default_rng([cfg.seed, 0x717279, round(1000 * L)])
        qs = draw_queries(audio, L, cfg.n_queries, rng, len(noise), len(rooms), ncc_threshold=cfg.ncc_threshold,
                          progress=progress)
        add_likeness(audio, qs)
        repeats[L] = float(np.mean([np.any(np.abs(q.repeats - q.start) > cfg.tol_s * SR) for q in qs]))
        for cell in cfg.cells:
            xs = [render(audio, q, cell, noise, rooms, cfg.context_s) for q in qs]
            fps = {}
            for m, s in systems.items():
                for i, (q, (a, search_ms, total_ms)) in enumerate(zip(qs, s.answer(xs, fps, cfg.query_hop_s))):
                    sc = score(a, names[q.track], q.start / SR, q.repeats / SR, cfg.tol_s, cfg.loose_tol_s)
                    records.append(_record(m, "positive", cell, L, i, names[q.track], q.start / SR, a, search_ms,
                                           total_ms, sc, q.likeness))
                bar.update(len(qs))
        rng = np.random.default_rng([cfg.seed, 0x6E6567, round(1000 * L)])  # negatives: the cells in turn
        nq = draw_queries(negatives, L, cfg.n_negatives, rng, len(noise), len(rooms))
        cells = [cfg.cells[i % len(cfg.cells)] for i in range(len(nq))]
        xs = [render(negatives, q, c, noise, rooms, cfg.context_s) for q, c in zip(nq, cells)]
        fps = {}
        for m, s in systems.items():
            for i, (q, c, (a, search_ms, total_ms)) in enumerate(zip(nq, cells, s.answer(xs, fps, cfg.query_hop_s))):
                sc = {"hit": False, "hit_loose": False, "repeat": False, "right_track": False,
                      "false": a.track is not None}
                records.append(_record(m, "negative", c, L, i, None, q.start / SR, a, search_ms, total_ms, sc))
            bar.update(len(nq))
    bar.close()
    return EvalResult(cfg, records, stats, notes, info={"repeat_share": repeats})


def _record(method, kind, cell, L, i, track, start_s, m: Match, search_ms, total_ms, sc, likeness=None) -> dict:
    return {"method": method, "kind": kind, "condition": cell[0], "snr_db": cell[1], "length_s": L, "query": i,
            "track": track, "start_s": start_s, "likeness": likeness, "match": m.track, "offset_s": m.offset_s,
            "score": m.score, "frac_scored": m.frac_scored, "search_ms": search_ms, "total_ms": total_ms, **sc}


# ----------------------------------------------------------------------------
# data for a run: the database, evaluation noise and rooms, negatives


def load_folders(dirs, notes: list | None = None) -> dict:
    """name -> signal for every audio file under the folders (named by folder when there are several)."""
    tracks = {}
    for d in dirs:
        f = AudioFolder(d)
        for name, x in zip(f.names, f.tracks):
            tracks[f"{Path(d).name}/{name}" if len(dirs) > 1 else name] = x
        if notes is not None:
            notes += [f"skipped {name}: {reason}" for name, reason in f.errors]
    return tracks


def negative_set(cfg: EvalConfig, folders=()) -> list:
    """Negatives (music not in the database) for the false matches: procedural tracks of a seed of
    their own, and the files of `folders` (held-out music)."""
    held = list(load_folders(folders).values()) if folders else []
    return synth_tracks(cfg.n_neg_tracks, cfg.synth_seconds, seed=NEG_SEED) + held


def _load_models(cfg: EvalConfig, model, sign_model, nafp_model, notes: list) -> tuple[dict, dict]:
    """({key: encoder}, {key: where it came from}) for the methods of `cfg`; a missing baseline is a note."""
    models, paths = {}, {}
    if any(SYSTEMS.get(m, ("",))[0] == "model" for m in cfg.methods):
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
    return models, paths


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

    Notebook: 09_benchmark.ipynb
    """
    t0, cpu0 = time.perf_counter(), time.process_time()
    notes = []
    models, paths = _load_models(cfg, model, sign_model, nafp_model, notes)
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
    neg = negative_set(cfg, negatives)
    if refs and not negatives:
        notes.append("negatives are procedural tracks only: pass --negatives DIR (held-out music) for a harder test")
    result = evaluate(tracks, models, cfg, noise_x, rooms, neg, progress)
    result.notes = notes + result.notes
    result.info.update(command=command, machine=machine(), database=f"{db}, {hours:.2f} h",
                       models="; ".join(f"{k}: {paths[k]} ({models[k].cfg.arch}, id {models[k].model_id})"
                                        for k in models),
                       noise=f"{len(noise_x)} recordings, evaluation split of "
                             f"{', '.join(map(str, (*noise, *speech))) or 'the procedural bank (seed 1)'}",
                       rooms=f"{len(rooms)} impulse responses from {', '.join(map(str, rirs))}" if rirs else
                             f"{len(rooms)} synthetic rooms, RT60 {cfg.rt60[0]:g}-{cfg.rt60[1]:g} s (seed {ROOM_SEED})",
                       negatives=f"{len(neg)} tracks not in the database",
                       elapsed_s=time.perf_counter() - t0, cpu_s=time.process_time() - cpu0)
    write_report(result, out)
    return result
