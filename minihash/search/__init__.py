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
search), threshold (the no-match threshold), hash and baselines (the methods), manifest (the
checked description of a saved index), store (the folder on disk: versions under a pointer),
pipeline (audio in, matches out).

Notebook: 08_search.ipynb
"""
from __future__ import annotations

import importlib.util

from ..errors import FormatError
from .base import BaseIndex
from .baselines import ExhaustiveIndex, FaissIndex, LSHIndex
from .hash import HashIndex
from .manifest import invalid
from .store import read_index_dir

# ----------------------------------------------------------------------------
# the registry: method name -> index class

METHODS = {c.method: c for c in (HashIndex, LSHIndex, ExhaustiveIndex, FaissIndex)}


def index_class(method: str):
    """The index class for a method name: "hash", "lsh", "exhaustive" (or "faiss")."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: choose one of {sorted(METHODS)}")
    return METHODS[method]


def have_faiss() -> bool:
    """Whether the optional `faiss` is installed (a "faiss" index needs it)."""
    return importlib.util.find_spec("faiss") is not None


def load_index(path, expect_model: str | None = None) -> BaseIndex:
    """Load any minihash index (hash, lsh, exhaustive, faiss), dispatching on its manifest's method.

    Raises:
        FormatError: no index there, or a damaged, edited, unreadable one, or one built by another
            model than `expect_model` (a model id), saying what is wrong and what to do.

    Notebook: 08_search.ipynb
    """
    manifest, arrays = read_index_dir(path, expect_model)  # one read: one version, even if replaced meanwhile
    method = manifest["method"]
    if method not in METHODS:
        raise invalid(path, f"unknown index method {method!r}")
    if method == "faiss" and not have_faiss():
        raise FormatError(path, "a faiss index: loading it needs the optional faiss package (pip install faiss-cpu),"
                                " or rebuild it with `minihash index` (--method hash)")
    return METHODS[method].from_stored(path, manifest, arrays)
