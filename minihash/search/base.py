"""What every index shares: rows, candidates re-ranked, offset voting, verification, add/remove, save/load.

An index holds one row per database window: its float16 embedding, its track and its start time,
plus whatever its method keys the rows by (hash codes, LSH codes, nothing). A query's windows find
candidate rows (the method's part), which are re-ranked by the inner product of their embeddings;
each window's best few vote for a (track, offset) pair, a histogram of time differences as in
Shazam (Wang 2003); the best few pairs are re-scored over every query window (the sequence search
of Chang et al., ICASSP 2021) and the start time is refined below the hop by parabolic
interpolation.

Notebook: 08_search.ipynb
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from ..errors import FormatError
from .manifest import FORMAT, VERSION, check_stored, invalid
from .store import read_index_dir, write_index_dir
from .threshold import NoMatch

# ----------------------------------------------------------------------------
# results and search settings

AGREE_HOPS = 1.5  # a window's own best candidate agrees with an alignment this many hops from it, at most


@dataclass
class Match:
    """The answer to one query. `track` is None when `score` is under `threshold`."""

    track: str | None
    offset_s: float  # where the query starts in the track
    score: float  # the decision score held to the threshold (`similarity` until the index is calibrated)
    n_scored: int  # candidates re-ranked: inner products of query windows with DB windows
    time_ms: float
    frac_scored: float = 0.0  # n_scored / (query windows x DB windows): 1.0 for exhaustive search
    threshold: float = float("nan")  # the no-match threshold this query was held to
    similarity: float = 0.0  # mean inner product over the query's windows at the alignment
    margin: float = 0.0  # similarity minus that of the best alignment in another track
    agree: int = 0  # query windows whose own most similar candidate lies at the alignment
    n_windows: int = 0  # the query's windows


@dataclass
class SearchConfig:
    """How hard a query searches. `preset("fast" | "default" | "thorough")`."""

    n_probes: int = 64  # buckets probed per query window (per window and table for LSH)
    max_candidates: int = 4096  # candidates re-ranked per query window, at most
    top_k: int = 5  # best candidates of each window that vote
    n_verify: int = 5  # (track, offset) pairs re-scored over the whole query

    @classmethod
    def preset(cls, name: str) -> "SearchConfig":
        presets = {"fast": dict(n_probes=16, max_candidates=1024), "default": {},
                   "thorough": dict(n_probes=256, max_candidates=16384, top_k=10, n_verify=10)}
        return cls(**presets[name])


# ----------------------------------------------------------------------------
# voting


def top_per_window(win, rows, sims, k: int):
    """Keep each query window's k most similar candidates; candidates come sorted by window."""
    bounds = np.searchsorted(win, np.arange(win[-1] + 2)) if len(win) else np.zeros(1, dtype=np.int64)
    keep = [a + np.argpartition(-sims[a:b], k - 1)[:k] if b - a > k else np.arange(a, b)
            for a, b in zip(bounds[:-1], bounds[1:])]
    keep = np.concatenate(keep) if keep else np.zeros(0, dtype=np.int64)
    return win[keep], rows[keep], sims[keep]


def vote(win, rows, sims, q_starts, track_ids, starts, hop_s: float, n_best: int = 5):
    """Vote for (track, offset bin) pairs: offset = DB window start - query window start.

    Each query window adds, to every pair it supports, its best similarity there (once: a window
    that found two rows of one track in one bin counts the better). Negative similarities add 0.

    Args:
        win, rows, sims: (C,) candidates: query window, DB row, inner product.
        q_starts: (M,) query window starts, seconds.
        track_ids, starts: (N,) the DB rows' tracks and start times.
        hop_s: bin width, seconds (the DB hop).
        n_best: how many pairs to return.

    Returns:
        tracks (B,), bins (B,) offsets in hops, scores (B,) summed similarities, best first.

    Notebook: 08_search.ipynb
    """
    tr = track_ids[rows].astype(np.int64)
    bins = np.rint((starts[rows] - q_starts[win]) / hop_s).astype(np.int64)
    key = (tr << 32) | (bins + 2**31)  # one integer per (track, offset bin)
    o = np.lexsort((-sims, win, key))
    first = np.ones(len(o), dtype=bool)
    first[1:] = (key[o][1:] != key[o][:-1]) | (win[o][1:] != win[o][:-1])
    o = o[first]
    keys, inv = np.unique(key[o], return_inverse=True)
    score = np.bincount(inv, weights=np.maximum(sims[o], 0.0), minlength=len(keys))
    top = np.argsort(-score, kind="stable")[:n_best]
    return keys[top] >> 32, (keys[top] & 0xFFFFFFFF) - 2**31, score[top]


def parabolic_peak(a: float, m: float, b: float) -> float:
    """Where a parabola through (-1, a), (0, m), (1, b) peaks, within [-0.5, 0.5]."""
    den = a - 2.0 * m + b
    return 0.0 if den >= 0 else float(np.clip(0.5 * (a - b) / den, -0.5, 0.5))


# ----------------------------------------------------------------------------
# the index: rows, search, add/remove, persistence (every method builds on it)


class BaseIndex(NoMatch):
    """Rows of (float16 embedding, track id, start) plus whatever a method keys them by.

    Subclasses say how rows are coded (`_codes_for`), ordered (`_reindex`) and found
    (`_candidates`); re-ranking, voting, verification, add/remove and save/load are shared.
    """

    method = "base"

    def __init__(self, D: int, hop_s: float = 0.1, meta: dict | None = None, cfg: SearchConfig | None = None):
        self.D, self.hop_s = int(D), float(hop_s)
        self.meta = dict(meta or {})
        self.cfg = cfg or SearchConfig()
        self.names: list[str] = []
        self.emb = np.zeros((0, self.D), dtype=np.float16)  # (N, D)
        self.track_ids = np.zeros(0, dtype=np.int32)  # (N,)
        self.starts = np.zeros(0, dtype=np.float32)  # (N,) seconds
        self.codes = None  # (N,) or (N, L), per method

    @classmethod
    def build(cls, emb, logits, track_ids, starts, names, hop_s: float = 0.1, meta: dict | None = None,
              cfg: SearchConfig | None = None, **params):
        """Index N windows. Rows should come grouped by track, in time order.

        Args:
            emb: (N, D) unit embeddings.
            logits: (N, K) hash logits (ignored by LSH and exhaustive search; may be None there).
            track_ids: (N,) int, indices into `names`.
            starts: (N,) window start times in their tracks, seconds.
            names: the track names.
            hop_s: the hop between DB windows, seconds: the width of an offset bin.
            meta: JSON-able facts to keep, e.g. {"model": "<id or hash of the model>"}.
            cfg: search settings.
            **params: the method's own parameters (LSH: L, K, seed).

        Returns:
            the index.
        """
        index = cls(np.shape(emb)[1], hop_s=hop_s, meta=meta, cfg=cfg, **cls._params_from(logits, params))
        index._append(emb, logits, track_ids, starts, list(names))
        index._reindex()
        return index

    @classmethod
    def _params_from(cls, logits, params: dict) -> dict:
        return params

    # ---- rows
    def __len__(self) -> int:
        return len(self.track_ids)

    def _append(self, emb, logits, track_ids, starts, names):
        emb16 = np.asarray(emb, dtype=np.float16).reshape(-1, self.D)  # (n, D)
        track_ids = np.asarray(track_ids, dtype=np.int64)
        if not (len(emb16) == len(track_ids) == len(starts)):
            raise ValueError(f"emb, track_ids and starts disagree: {len(emb16)}, {len(track_ids)}, {len(starts)}")
        if len(track_ids) and (track_ids.min() < 0 or track_ids.max() >= len(names)):
            raise ValueError(f"track ids must index the {len(names)} names")
        taken = set(self.names)
        if len(set(names)) != len(names) or taken & set(names):
            raise ValueError("track names must be unique: remove a track before adding it again")
        codes = self._codes_for(emb16, logits)
        self.codes = codes if self.codes is None else np.concatenate([self.codes, codes])
        self.emb = np.concatenate([self.emb, emb16])
        self.track_ids = np.concatenate([self.track_ids, (track_ids + len(self.names)).astype(np.int32)])
        self.starts = np.concatenate([self.starts, np.asarray(starts, dtype=np.float32)])
        self.names += names

    def _permute(self, order):
        self.emb, self.track_ids, self.starts = self.emb[order], self.track_ids[order], self.starts[order]
        if self.codes is not None:
            self.codes = self.codes[order]

    def _reindex(self):
        """Derived arrays: every track's rows in time order, for verifying alignments."""
        self._by_time = np.lexsort((self.starts, self.track_ids)).astype(np.int32)  # (N,)
        self._time_off = np.searchsorted(self.track_ids[self._by_time], np.arange(len(self.names) + 1))

    def add(self, emb, logits, starts, name: str):
        """Add one track's windows: emb (n, D), logits (n, K) or None, starts (n,)."""
        self._append(emb, logits, np.zeros(len(starts), dtype=np.int64), starts, [name])
        self._reindex()

    def remove(self, name: str):
        """Drop a track. Later tracks' ids shift down by one; names stay as they were."""
        t = self.names.index(name)
        self._permute(self.track_ids != t)
        self.track_ids = self.track_ids - (self.track_ids > t)
        del self.names[t]
        self._reindex()

    # ---- search
    def _candidates(self, q, q_logits, cfg, keep=None):
        """(win, rows, sims, n_scored): each query window's candidate rows and their inner products,
        sorted by window, only rows where `keep` (N,) is True (all if None)."""
        raise NotImplementedError

    def _rescore(self, q, win, rows):
        """Inner products of candidates (sorted by window) with their query windows, in float32."""
        sims = np.empty(len(rows), dtype=np.float32)
        bounds = np.searchsorted(win, np.arange(len(q) + 1))
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            # one window's block at a time, so it is still in cache when multiplied; np.take gathers
            # rows ~2.5x faster than fancy indexing, torch widens float16 ~8x faster than numpy
            E = torch.from_numpy(np.take(self.emb, rows[a:b], axis=0)).float().numpy()  # (C_i, D)
            sims[a:b] = E @ q[i]
        return sims

    def alignment_scores(self, q, q_starts, track: int, bins) -> np.ndarray:
        """Mean similarity of the query's windows with the track's, at each offset bin.

        Args:
            q: (M, D) query embeddings. q_starts: (M,) seconds.
            track: track id. bins: (B,) offsets in hops.

        Returns:
            (B,) mean inner products; a query window with no DB window there counts 0.
        """
        rows_t = self._by_time[self._time_off[track]:self._time_off[track + 1]]
        S = self.starts[rows_t]  # (T,) sorted
        tau = q_starts[None, :] + np.asarray(bins)[:, None] * self.hop_s  # (B, M) wanted DB starts
        j = np.searchsorted(S, tau)
        jl, jr = np.clip(j - 1, 0, len(S) - 1), np.clip(j, 0, len(S) - 1)
        jn = np.where(np.abs(S[jl] - tau) <= np.abs(S[jr] - tau), jl, jr)
        ok = np.abs(S[jn] - tau) <= 0.5 * self.hop_s + 1e-4
        E = self.emb[rows_t[jn]].astype(np.float32)  # (B, M, D)
        return (np.einsum("bmd,md->bm", E, q) * ok).mean(axis=1)

    def search(self, q_emb, q_logits, q_starts, threshold: float | None = None, exclude=None,
               **overrides) -> Match:
        """Find the track and start time of one query.

        Args:
            q_emb: (M, D) the query windows' unit embeddings.
            q_logits: (M, K) their hash logits (None for LSH and exhaustive search).
            q_starts: (M,) their start times in the query, seconds.
            threshold: a score under it is no match (default: the index's calibrated one).
            exclude: a track name (or several) to search as if the index did not hold it: how a
                collection calibrates on itself, each excerpt searched without its own track.
            **overrides: SearchConfig fields for this query.

        Returns:
            a Match.

        Notebook: 08_search.ipynb
        """
        t0 = time.perf_counter()
        cfg = replace(self.cfg, **overrides) if overrides else self.cfg
        q = np.ascontiguousarray(q_emb, dtype=np.float32).reshape(-1, self.D)  # (M, D)
        q_starts = np.asarray(q_starts, dtype=np.float64)
        if len(q) == 0 or len(q_starts) != len(q):
            raise ValueError(f"a query needs windows, with one start each: {len(q)} windows, {len(q_starts)} starts")
        M = len(q)
        thr = self.threshold_for(M) if threshold is None else threshold
        keep = self._keep(exclude)  # (N,) bool, or None: every row
        if len(self) == 0 or (keep is not None and not keep.any()):
            return Match(None, 0.0, 0.0, 0, 1e3 * (time.perf_counter() - t0), threshold=float(thr), n_windows=M)
        win, rows, sims, n_scored = self._candidates(q, q_logits, cfg, keep)
        t, offset, sim, top = self._best_alignment(q, q_starts, win, rows, sims, cfg)
        margin, agree = 0.0, 0
        if t is not None:
            other = self.track_ids[rows] != t  # the best alignment elsewhere, among the same candidates
            margin = sim - self._best_alignment(q, q_starts, win[other], rows[other], sims[other], cfg)[2]
            agree = self._agreement(q_starts, *top, t, offset)
        score = float(self.score_features(np.array([[sim, margin, agree / M]]), M)[0])
        name = self.names[t] if t is not None and score >= thr else None
        n_kept = len(self) if keep is None else int(keep.sum())
        return Match(name, offset, score, int(n_scored), 1e3 * (time.perf_counter() - t0), n_scored / (M * n_kept),
                     float(thr), sim, float(margin), int(agree), M)

    def _keep(self, exclude):
        """(N,) bool: the rows of every track but `exclude` (a name, an id, or a list of them); None: all."""
        if exclude is None:
            return None
        keep = np.ones(len(self), dtype=bool)
        for x in ([exclude] if isinstance(exclude, (str, int, np.integer)) else exclude):
            t = self.names.index(x) if isinstance(x, str) else int(x)
            keep[self._by_time[self._time_off[t]:self._time_off[t + 1]]] = False
        return keep

    def _best_alignment(self, q, q_starts, win, rows, sims, cfg):
        """Vote with each window's best candidates, verify the best pairs over every window.

        Returns:
            (track id or None, offset_s, mean similarity there (0 if none), (win, rows, sims) of the
            voting candidates).
        """
        win, rows, sims = top_per_window(win, rows, sims, cfg.top_k)
        tracks, bins, _ = vote(win, rows, sims, q_starts, self.track_ids, self.starts, self.hop_s, cfg.n_verify)
        best = (0.0, None, 0.0)
        d = np.arange(-2, 3)
        for t, b in zip(tracks, bins):  # verify: re-score each voted alignment over all windows
            s = self.alignment_scores(q, q_starts, int(t), b + d)  # (5,)
            i = 1 + int(np.argmax(s[1:-1]))  # a peak with both neighbours measured
            if best[1] is None or s[i] > best[0]:
                offset = (b + d[i] + parabolic_peak(s[i - 1], s[i], s[i + 1])) * self.hop_s
                best = (float(s[i]), int(t), float(offset))
        score, t, offset = best
        return t, offset, score, (win, rows, sims)

    def _agreement(self, q_starts, win, rows, sims, t: int, offset: float) -> int:
        """How many query windows' own most similar candidate lies at the alignment (track t, offset)."""
        if len(win) == 0:
            return 0
        o = np.lexsort((-sims, win))
        first = np.ones(len(o), dtype=bool)
        first[1:] = win[o][1:] != win[o][:-1]
        w, r = win[o][first], rows[o][first]  # each window's best candidate
        near = np.abs(self.starts[r] - q_starts[w] - offset) <= AGREE_HOPS * self.hop_s
        return int(np.sum((self.track_ids[r] == t) & near))

    def search_many(self, queries, **kw) -> list[Match]:
        """`search` over a list of (q_emb, q_logits, q_starts) triples."""
        return [self.search(*query, **kw) for query in queries]

    def stats(self) -> dict:
        """Bytes per indexed window, everything held per row and per bucket included."""
        held = [self.emb, self.track_ids, self.starts, self._by_time] + self._held()
        return {"n_windows": len(self), "n_tracks": len(self.names),
                "bytes_per_window": sum(a.nbytes for a in held) / max(len(self), 1)}

    def _held(self) -> list:
        return [] if self.codes is None else [self.codes]

    # ---- persistence
    def _config(self) -> dict:
        return {}

    def _arrays(self) -> dict:
        arrays = {"emb": self.emb, "track_ids": self.track_ids, "starts": self.starts}
        return arrays if self.codes is None else {**arrays, "codes": self.codes}

    def _restore(self, arrays: dict):
        self.emb, self.track_ids, self.starts = arrays["emb"], arrays["track_ids"], arrays["starts"]
        self.codes = arrays.get("codes")

    def save(self, path):
        """Write the index to the folder `path`, replacing an index there atomically."""
        manifest = {"format": FORMAT, "version": VERSION, "method": self.method, "D": self.D,
                    "K": getattr(self, "K", None), "n_windows": len(self), "n_tracks": len(self.names),
                    "model": self.meta.get("model"), "threshold": self.threshold, "hop_s": self.hop_s,
                    "names": self.names, "params": self._config(), "search": asdict(self.cfg), "meta": self.meta}
        write_index_dir(path, manifest, self._arrays())

    @classmethod
    def load(cls, path, expect_model: str | None = None):
        """Read an index saved by `save`; FormatError says what is wrong with a bad one."""
        manifest, arrays = read_index_dir(path, expect_model)
        if manifest["method"] != cls.method:
            raise FormatError(path, f"a {manifest['method']} index, not {cls.method}: use load_index")
        return cls.from_stored(path, manifest, arrays)

    @classmethod
    def from_stored(cls, path, manifest: dict, arrays: dict):
        """The index that a checked manifest (`manifest.check_manifest`) and its arrays describe;
        FormatError when they do not make one of this method."""
        try:
            index = cls(manifest["D"], hop_s=manifest["hop_s"], meta=manifest["meta"],
                        cfg=SearchConfig(**manifest["search"]), **manifest["params"])
        except (TypeError, ValueError) as e:
            raise invalid(path, f"its parameters do not make a {cls.method} index ({e})") from None
        check_stored(path, manifest, arrays, index._expected(manifest["n_windows"]), getattr(index, "K", None))
        index.names = list(manifest["names"])
        index._restore(arrays)
        index._reindex()
        return index

    def _expected(self, n: int) -> dict:
        """name -> (shape, dtype) of every array a saved index of this method with n windows holds."""
        return {"emb": ((n, self.D), "float16"), "track_ids": ((n,), "int32"), "starts": ((n,), "float32")}
