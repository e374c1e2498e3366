"""Query-by-example search: the registry of index methods, and `load_index` for any saved index.

Every method keeps the embeddings of the database windows and answers a query the same way
(`base.BaseIndex`: candidates, re-ranking by inner product, offset voting, verification); they
differ only in how they find the candidates:
- "hash": the model's learned K-bit codes in 2^K buckets, multi-probed (Singh, Demuynck and
  Arora, ICASSP 2023, arXiv 2211.11060; Lv et al., VLDB 2007), `hash.HashIndex`;
- "lsh": random-hyperplane codes over the embeddings (Charikar, STOC 2002), `baselines.LSHIndex`;
- "exhaustive": every inner product, the reference, `baselines.ExhaustiveIndex`;
- "faiss": FAISS's indexes, where the optional `faiss` is installed, `baselines.FaissIndex`.

The modules, in data-flow order: buckets (codes into buckets, the probe order), base (the shared
search), threshold (the no-match threshold), hash and baselines (the methods), store (the folder
on disk), pipeline (audio in, matches out).

Notebook: 08_search.ipynb
"""
from __future__ import annotations

from ..errors import FormatError
from .base import BaseIndex
from .baselines import ExhaustiveIndex, FaissIndex, LSHIndex
from .hash import HashIndex
from .store import read_manifest

# ----------------------------------------------------------------------------
# the registry: method name -> index class

METHODS = {c.method: c for c in (HashIndex, LSHIndex, ExhaustiveIndex, FaissIndex)}


def index_class(method: str):
    """The index class for a method name: "hash", "lsh", "exhaustive" (or "faiss")."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: choose one of {sorted(METHODS)}")
    return METHODS[method]


def load_index(path, expect_model: str | None = None) -> BaseIndex:
    """Load any minihash index (hash, lsh, exhaustive, faiss), dispatching on its manifest's method."""
    method = read_manifest(path).get("method")
    if method not in METHODS:
        raise FormatError(path, f"unknown index method {method!r}")
    return METHODS[method].load(path, expect_model)
