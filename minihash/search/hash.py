"""The hash index: learned K-bit codes in one table of 2^K buckets, multi-probed.

Search by hash codes follows Singh, Demuynck and Arora (ICASSP 2023, arXiv 2211.11060): the K
hash logits of a window give its K-bit code (`ot.pack_codes`), the database windows are grouped by
code into buckets (`buckets.BucketTable`), and a query window probes its own bucket, then those one
or a few least confident bits away (Lv et al., VLDB 2007). Re-ranking, voting and verification are
`base.BaseIndex`'s.

Notebook: 08_search.ipynb
"""
from __future__ import annotations

import numpy as np

from ..ot import pack_codes
from .base import BaseIndex
from .buckets import BucketTable

# ----------------------------------------------------------------------------
# one table of learned codes


class HashIndex(BaseIndex):
    """Learned hash codes in one table of 2^K buckets; rows stored sorted by code.

    Notebook: 08_search.ipynb
    """

    method = "hash"

    def __init__(self, D: int, K: int = 16, **kw):
        super().__init__(D, **kw)
        self.K = int(K)

    @classmethod
    def _params_from(cls, logits, params):
        return {"K": np.shape(logits)[1], **params}

    def _codes_for(self, emb16, logits):
        logits = np.asarray(logits)
        if logits.shape != (len(emb16), self.K):
            raise ValueError(f"logits should be ({len(emb16)}, {self.K}), got {logits.shape}")
        return pack_codes(logits)

    def _reindex(self):
        self._permute(np.argsort(self.codes, kind="stable"))  # bucket order; stable keeps insertion order
        self.table = BucketTable(self.codes)
        super()._reindex()

    def _candidates(self, q, q_logits, cfg, keep=None):
        z = np.asarray(q_logits, dtype=np.float32).reshape(len(q), self.K)  # (M, K)
        # rows are stored in bucket order, so a row's position in the table is its row number
        win, rows = self.table.probe(pack_codes(z), np.abs(z), cfg.n_probes, cfg.max_candidates, keep)
        return win, rows, self._rescore(q, win, rows), len(rows)

    def _held(self):
        return [self.codes, self.table.bucket_codes, self.table.bucket_start]

    def _config(self):
        return {"K": self.K}

    def _expected(self, n):
        return {**super()._expected(n), "codes": ((n,), "uint32" if self.K <= 32 else "uint64")}  # as pack_codes

    def stats(self) -> dict:
        """Bucket occupancy (normalised entropy, largest / mean, empty share) and bytes per window."""
        return {**self.table.occupancy(self.K), **super().stats()}
