"""Tests of minihash.search.baselines: LSH against the collision probability of theory, exhaustive search against
a naive numpy argmax and a naive vote, and the optional FAISS backends against exhaustive search."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # the synthetic data of test_index.py, however pytest imports

from minihash.errors import FormatError
from minihash.search import load_index
from minihash.search.baselines import POOL, ExhaustiveIndex, FaissIndex, LSHIndex
from minihash.search.hash import HashIndex
from test_index import Toy, build, queries


@pytest.fixture(scope="module")
def toy():
    return Toy()


@pytest.mark.parametrize("theta", [np.pi / 8, np.pi / 4, np.pi / 2, 3 * np.pi / 4])
def test_collision_probability_per_bit_is_one_minus_theta_over_pi(theta):
    D, n = 64, 400
    rng = np.random.default_rng(int(100 * theta))
    u = rng.normal(size=(n, D))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    w = rng.normal(size=(n, D))
    w -= (w * u).sum(1, keepdims=True) * u  # orthogonal to u
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    v = np.cos(theta) * u + np.sin(theta) * w  # at angle theta from u
    index = LSHIndex(D, L=8, K=32, seed=1)  # 256 hyperplanes
    agree = (index.project(u) > 0) == (index.project(v) > 0)  # (n, L, K)
    assert agree.mean() == pytest.approx(1 - theta / np.pi, abs=0.02)


@pytest.mark.parametrize("block", [65536, 97])
def test_exhaustive_equals_naive_argmax_and_vote(toy, block):
    index = build(ExhaustiveIndex, toy, block=block)
    E = toy.emb.astype(np.float16).astype(np.float32)  # what the index holds
    for t, off, (q, _, qs) in queries(toy, n=10, noise=1.0):
        S = q.astype(np.float32) @ E.T  # (M, N)
        win, rows, sims, n = index._candidates(q.astype(np.float32), None, index.cfg)
        assert n == S.size
        k = POOL * index.cfg.top_k  # the top_k vote; the rest find the best alignment in another track
        for i in range(len(q)):  # each window's best k are the k largest inner products
            assert sorted(rows[win == i].tolist()) == sorted(np.argsort(-S[i])[:k].tolist())
            assert rows[win == i][np.argmax(sims[win == i])] == np.argmax(S[i])
        votes = {}  # naive vote over the top-k of every window
        for i in range(len(q)):
            for r in np.argsort(-S[i])[:index.cfg.top_k]:
                key = (toy.track_ids[r], int(round((toy.starts[r] - qs[i]) / 0.1)))
                votes[key] = votes.get(key, 0.0) + max(S[i, r], 0)
        best_track = max(votes, key=votes.get)[0]
        m = index.search(q, None, qs)
        assert m.track == toy.names[best_track] == toy.names[t]
        assert abs(m.offset_s - off) < 0.05 and m.frac_scored == 1.0


def test_lsh_finds_tracks_and_probing_everything_equals_exhaustive(toy):
    lsh, exhaustive = build(LSHIndex, toy, L=2, K=8), build(ExhaustiveIndex, toy)
    for t, off, (q, _, qs) in queries(toy, n=15):
        m = lsh.search(q, None, qs)
        assert m.track == toy.names[t] and abs(m.offset_s - off) < 0.05
        assert m.n_scored < len(q) * len(lsh)
    for t, off, (q, _, qs) in queries(toy, n=8, noise=1.0, seed=2):
        m = lsh.search(q, None, qs, n_probes=256, max_candidates=10**9)
        r = exhaustive.search(q, None, qs)
        assert (m.track, m.offset_s, m.n_scored) == (r.track, r.offset_s, r.n_scored)


def test_lsh_and_hash_occupancy_and_bytes(toy):
    lsh = build(LSHIndex, toy, L=3, K=8)
    s = lsh.stats()
    assert 0 < s["entropy"] <= 1 and 0 <= s["empty_share"] < 1 and s["largest_over_mean"] >= 1
    per_row = 2 * toy.D + 4 + 4 + 4 + 3 * (4 + 4)  # emb, track id, start, time order, L codes and orders
    assert per_row < s["bytes_per_window"] < per_row + 40
    assert build(ExhaustiveIndex, toy).stats()["bytes_per_window"] == 2 * toy.D + 12


# ----------------------------------------------------------------------------
# optional FAISS backends: same API, compared with exhaustive search

try:
    import faiss
except ImportError:
    faiss = None


@pytest.mark.skipif(faiss is None, reason="faiss is optional and not installed")
@pytest.mark.parametrize("kind", ["flat", "hnsw", "multihash"])
def test_faiss_backends_agree_with_exhaustive(toy, tmp_path, kind):
    index = build(FaissIndex, toy, kind=kind)
    exhaustive = build(ExhaustiveIndex, toy)
    for t, off, query in queries(toy, n=10):
        m, r = index.search(*query), exhaustive.search(*query)
        assert m.track == r.track == toy.names[t] and abs(m.offset_s - off) < 0.05
    index.save(tmp_path / "f")
    back = load_index(tmp_path / "f")
    assert isinstance(back, FaissIndex) and back.kind == kind
    q = queries(toy, n=1)[0][2]
    assert back.search(*q).offset_s == index.search(*q).offset_s


def test_hash_index_is_not_an_lsh_index(toy, tmp_path):
    build(HashIndex, toy).save(tmp_path / "h")
    with pytest.raises(FormatError, match="use load_index"):
        LSHIndex.load(tmp_path / "h")
