"""Random-hyperplane LSH and exhaustive search, behind the hash index's query API.

The baselines of the hash index (`hash.py`), on the same embeddings:

- `LSHIndex`: sign random projections (Charikar, STOC 2002). A bit is the side of a random
  hyperplane a vector falls on; two unit vectors at angle theta land on the same side with
  probability 1 - theta / pi (Goemans and Williamson 1995). L tables of K bits each, multi-probed by
  flipping the bits whose projection is smallest (Lv et al., VLDB 2007). This is the "+ LSH" row of
  the FlowHash table (Singh et al., TASLP 2024; NAFP, Chang et al., ICASSP 2021).
- `ExhaustiveIndex`: every inner product, float16 storage, one matrix product per block of rows:
  the reference every other method is measured against.
- `FaissIndex`: where `faiss` is installed (it is optional, minihash never needs it), FAISS's
  IndexFlatIP, IndexHNSWFlat or IndexBinaryMultiHash finds the candidates instead.

All of them re-rank, vote, verify and save exactly as `HashIndex` does (`base.BaseIndex`), so
their results differ only through the candidates they find.

Notebook: 08_search.ipynb
"""
from __future__ import annotations

import numpy as np
import torch

from ..ot import pack_codes
from .base import BaseIndex
from .buckets import BucketTable

POOL = 8  # exhaustive search keeps each window's POOL x top_k best rows (see ExhaustiveIndex._candidates)

# ----------------------------------------------------------------------------
# random-hyperplane LSH


class LSHIndex(BaseIndex):
    """L tables of K random-hyperplane bits over the embeddings; the hash logits are not used.

    Notebook: 08_search.ipynb
    """

    method = "lsh"

    def __init__(self, D: int, L: int = 4, K: int = 16, seed: int = 0, **kw):
        super().__init__(D, **kw)
        self.L, self.K, self.seed = int(L), int(K), int(seed)
        if not (1 <= self.L <= 1024 and 1 <= self.K <= 64):
            raise ValueError(f"LSH needs 1 to 1024 tables of 1 to 64 bits, got L={L}, K={K}")
        self.W = np.random.default_rng(seed).standard_normal((self.L * self.K, self.D)).astype(np.float32)

    def project(self, X) -> np.ndarray:
        """Projections on the hyperplanes' normals: (N, D) -> (N, L, K); a bit is projection > 0."""
        X = np.asarray(X, dtype=np.float32).reshape(-1, self.D)
        return (X @ self.W.T).reshape(len(X), self.L, self.K)

    def _codes_for(self, emb16, logits):
        P = self.project(emb16)  # (N, L, K), from the float16 rows the index keeps
        return np.stack([pack_codes(P[:, l]) for l in range(self.L)], axis=1)  # (N, L)

    def _reindex(self):
        self.orders = [np.argsort(self.codes[:, l], kind="stable").astype(np.int32) for l in range(self.L)]
        self.tables = [BucketTable(self.codes[o, l]) for l, o in enumerate(self.orders)]
        super()._reindex()

    def _candidates(self, q, q_logits, cfg, keep=None):
        P = self.project(q)  # (M, L, K)
        budget = max(1, cfg.max_candidates // self.L)
        keys = []
        for l, (table, order) in enumerate(zip(self.tables, self.orders)):
            kept = None if keep is None else keep[order]  # table l's rows are in its own code order
            win, pos = table.probe(pack_codes(P[:, l]), np.abs(P[:, l]), cfg.n_probes, budget, kept)
            keys.append(win * len(self) + order[pos])
        key = np.unique(np.concatenate(keys))  # a row found by several tables is scored once
        win, rows = key // len(self), key % len(self)
        return win, rows, self._rescore(q, win, rows), len(rows)

    def _held(self):
        tables = [a for t in self.tables for a in (t.bucket_codes, t.bucket_start)]
        return [self.codes, self.W] + self.orders + tables

    def _config(self):
        return {"L": self.L, "K": self.K, "seed": self.seed}

    def _arrays(self):
        return {**super()._arrays(), "W": self.W}

    def _expected(self, n):
        codes = ((n, self.L), "uint32" if self.K <= 32 else "uint64")  # as pack_codes
        return {**super()._expected(n), "codes": codes, "W": ((self.L * self.K, self.D), "float32")}

    def _restore(self, arrays):
        super()._restore(arrays)
        self.W = arrays["W"]

    def stats(self) -> dict:
        """Bucket occupancy averaged over the L tables, and bytes per window."""
        occ = [t.occupancy(self.K) for t in self.tables]
        return {**{k: float(np.mean([o[k] for o in occ])) for k in occ[0]}, **super().stats()}


# ----------------------------------------------------------------------------
# exhaustive search


class ExhaustiveIndex(BaseIndex):
    """Every inner product, one (M, block) matrix product at a time.

    Notebook: 08_search.ipynb
    """

    method = "exhaustive"

    def __init__(self, D: int, block: int = 65536, **kw):
        super().__init__(D, **kw)
        self.block = int(block)

    def _codes_for(self, emb16, logits):
        return None

    def _candidates(self, q, q_logits, cfg, keep=None):
        # each window's POOL x top_k best rows: the top_k vote, and the rest let `search` find the best
        # alignment in another track without a second scan
        M, k = len(q), POOL * cfg.top_k
        best_s = np.zeros((M, 0), dtype=np.float32)
        best_r = np.zeros((M, 0), dtype=np.int64)
        for b0 in range(0, len(self), self.block):
            S = q @ torch.from_numpy(self.emb[b0:b0 + self.block]).float().numpy().T  # (M, B), float32
            if keep is not None:
                S[:, ~keep[b0:b0 + S.shape[1]]] = -np.inf  # an excluded row is never among the best
            s = np.concatenate([best_s, S], axis=1)
            r = np.concatenate([best_r, np.broadcast_to(np.arange(b0, b0 + S.shape[1]), S.shape)], axis=1)
            if s.shape[1] > k:  # keep each window's k best so far
                part = np.argpartition(-s, k - 1, axis=1)[:, :k]
                s, r = np.take_along_axis(s, part, 1), np.take_along_axis(r, part, 1)
            best_s, best_r = s, r
        win = np.repeat(np.arange(M), best_s.shape[1])
        ok = np.isfinite(best_s.ravel())  # fewer kept rows than k: drop the excluded ones that filled in
        n_kept = len(self) if keep is None else int(keep.sum())
        return win[ok], best_r.ravel()[ok], best_s.ravel()[ok], M * n_kept

    def _config(self):
        return {"block": self.block}

    def stats(self) -> dict:
        """Bytes per window (no buckets: every row is scored)."""
        return super().stats()


# ----------------------------------------------------------------------------
# optional FAISS backends


class FaissIndex(BaseIndex):
    """FAISS finds the candidates: kind "flat" (IndexFlatIP), "hnsw" (IndexHNSWFlat, inner
    product) or "multihash" (IndexBinaryMultiHash over the hash codes; K a multiple of 8).
    The FAISS index is rebuilt from the stored rows on load. Needs `pip install faiss-cpu`.

    Notebook: 08_search.ipynb
    """

    method = "faiss"

    def __init__(self, D: int, kind: str = "flat", K: int = 16, hnsw_m: int = 32, nhash: int = 2, **kw):
        import faiss  # lazy: faiss is optional (not a dependency of minihash), only this class needs it

        super().__init__(D, **kw)
        if kind not in ("flat", "hnsw", "multihash"):
            raise ValueError(f"kind must be flat, hnsw or multihash, not {kind!r}")
        if kind == "multihash" and K % 8:
            raise ValueError(f"multihash needs K a multiple of 8, got K={K}")
        self.faiss, self.kind, self.K, self.hnsw_m, self.nhash = faiss, kind, int(K), int(hnsw_m), int(nhash)

    @classmethod
    def _params_from(cls, logits, params):
        return {"K": np.shape(logits)[1], **params} if logits is not None else params

    def _codes_for(self, emb16, logits):
        return self._binary(logits, len(emb16)) if self.kind == "multihash" else None

    def _binary(self, logits, n: int) -> np.ndarray:
        """Sign bits as FAISS's binary vectors: (n, K) logits -> (n, K / 8) uint8, bit k in byte k // 8."""
        bits = np.asarray(logits).reshape(n, self.K) > 0
        return np.packbits(bits, axis=1, bitorder="little")  # FAISS's layout: bytes, not one integer code

    def _reindex(self):
        faiss = self.faiss
        if self.kind == "multihash":
            self.fx = faiss.IndexBinaryMultiHash(self.K, self.nhash, self.K // self.nhash)
            self.fx.add(self.codes)
        else:
            self.fx = (faiss.IndexFlatIP(self.D) if self.kind == "flat"
                       else faiss.IndexHNSWFlat(self.D, self.hnsw_m, faiss.METRIC_INNER_PRODUCT))
            self.fx.add(self.emb.astype(np.float32))
        super()._reindex()

    def _candidates(self, q, q_logits, cfg, keep=None):
        M = len(q)
        extra = 0 if keep is None else int((~keep).sum())  # ask for as many more as are excluded, then drop them
        if self.kind == "multihash":
            qb = self._binary(q_logits, M)  # (M, K / 8)
            _, I = self.fx.search(qb, min(cfg.max_candidates + extra, len(self)))  # nearest in Hamming distance
        else:
            self.faiss.cvar.hnsw_stats.reset()
            _, I = self.fx.search(q, min(POOL * cfg.top_k + extra, len(self)))  # (M, k), as ExhaustiveIndex
        win = np.repeat(np.arange(M), I.shape[1])
        rows = I.ravel().astype(np.int64)
        ok = rows >= 0  # -1: fewer hits than asked
        if keep is not None:
            ok[ok] = keep[rows[ok]]
        win, rows = win[ok], rows[ok]
        n_scored = {"flat": M * len(self), "hnsw": int(self.faiss.cvar.hnsw_stats.ndis)}.get(self.kind, len(rows))
        return win, rows, self._rescore(q, win, rows), n_scored

    def _config(self):
        return {"kind": self.kind, "K": self.K, "hnsw_m": self.hnsw_m, "nhash": self.nhash}

    def _expected(self, n):
        multihash = {"codes": ((n, self.K // 8), "uint8")} if self.kind == "multihash" else {}
        return {**super()._expected(n), **multihash}
