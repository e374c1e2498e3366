"""Audio in, matches out: the glue between a fingerprinting model and an index.

`index_audio` fingerprints tracks every `hop_s` seconds and builds an index of any method;
`query_audio` fingerprints one query and searches it; `calibrate_on_negatives` sets the index's
no-match thresholds from audio that is not in it, one per query length (`threshold.py`).

Notebook: 08_search.ipynb
"""
from __future__ import annotations

import time

import numpy as np
from tqdm.auto import tqdm

from ..errors import NothingToIndex
from . import index_class
from .base import BaseIndex, Match
from .manifest import invalid

MIN_HOP_S = 0.01  # one frame of the front end (10 ms): no finer hop gives new windows

# ----------------------------------------------------------------------------
# index, query, calibrate


def check_hop(hop_s) -> float:
    """`hop_s` as seconds between windows, or a ValueError: not a number, not finite, under MIN_HOP_S."""
    if not (isinstance(hop_s, (int, float, np.floating)) and np.isfinite(hop_s) and hop_s >= MIN_HOP_S):
        raise ValueError(f"the hop must be a number of seconds >= {MIN_HOP_S:g}, got {hop_s!r}")
    return float(hop_s)


def check_fits(index: BaseIndex, model, path) -> None:
    """Refuse an index whose windows the model cannot query: other embedding size or number of bits."""
    K = getattr(index, "K", None) if index.method == "hash" else None
    if index.D != model.cfg.emb_dim or K not in (None, model.cfg.K):
        raise invalid(path, f"D = {index.D}, K = {K}, but its model gives D = {model.cfg.emb_dim}, K = {model.cfg.K}")


def index_audio(model, tracks, method: str = "hash", hop_s: float = 0.1, meta: dict | None = None,
                progress: bool = True, total: int | None = None, **params) -> BaseIndex:
    """Fingerprint tracks every `hop_s` seconds and index them.

    Args:
        model: an `encoder.Encoder` (its `fingerprint_audio` and `model_id` are used).
        tracks: dict name -> (T,) float32 signal at the model's sample rate, or an iterable of
            (name, signal) pairs (a generator streams a large folder without holding it in memory).
        method: "hash" (the model's K-bit codes), "lsh" or "exhaustive" (on its embeddings).
        hop_s: hop between database windows.
        meta: extra JSON-able facts to keep in the index.
        progress: show a progress bar over the tracks.
        total: number of tracks, for the progress bar when `tracks` is a generator.
        **params: the method's own parameters (LSH: L, K, seed).

    Returns:
        the index, its `meta["model"]` set to the model's id.

    Raises:
        NothingToIndex: no tracks (a ValueError).

    Notebook: 00_overview.ipynb
    """
    check_hop(hop_s)
    pairs = tracks.items() if isinstance(tracks, dict) else tracks
    total = len(tracks) if isinstance(tracks, dict) else total
    E, L, T, S, names = [], [], [], [], []
    for name, x in tqdm(pairs, total=total, desc="indexing", unit="track", disable=not progress):
        e, l, s = model.fingerprint_audio(x, hop_s)
        E.append(e), L.append(l), S.append(s), T.append(np.full(len(e), len(names), np.int32))
        names.append(name)
    if not names:
        raise NothingToIndex("nothing to index: no tracks")
    meta = {"model": model.model_id, **(meta or {})}
    return index_class(method).build(np.concatenate(E), np.concatenate(L), np.concatenate(T),
                                     np.concatenate(S), names, hop_s=hop_s, meta=meta, **params)


def query_audio(index: BaseIndex, model, x, hop_s: float = 0.5, **kw) -> Match:
    """Find one query signal: fingerprint it every `hop_s` seconds, then `index.search`.

    Returns:
        a Match whose `time_ms` includes fingerprinting the query.

    Notebook: 00_overview.ipynb
    """
    check_hop(hop_s)
    t0 = time.perf_counter()
    e, l, s = model.fingerprint_audio(x, hop_s)
    m = index.search(e, l, s, **kw)
    m.time_ms = 1e3 * (time.perf_counter() - t0)
    return m


def calibrate_on_negatives(index: BaseIndex, model, negatives, max_false: float = 0.05, hop_s: float = 0.5,
                           confidence: float | None = 0.9) -> float:
    """Set the index's no-match threshold from queries of audio that is not in it.

    Short queries score their few windows' best similarities, long ones average many, so chance
    scores fall with length: besides one overall threshold, each query length (number of
    windows) among the negatives gets its own, and `search` holds a query to the one of its length.

    Args:
        negatives: (T,) signals not in the database (excerpts of the lengths users will query).
        max_false: the largest share of queries of audio not in the index allowed to match, per length.
        confidence: promise `max_false` for new such queries with this confidence (a Clopper-Pearson
            bound, `allowed_passes`), not only for these negatives; None: for these only.

    Returns:
        the overall threshold, stored in `index.meta["threshold"]`; the per-length ones are in
        `index.thresholds`.

    Notebook: 08_search.ipynb
    """
    scores, counts = [], []
    for x in negatives:
        e, l, s = model.fingerprint_audio(x, hop_s)
        scores.append(index.search(e, l, s, threshold=np.inf).score)
        counts.append(len(s))
    return index.calibrate(scores, max_false, n_windows=counts, confidence=confidence)
