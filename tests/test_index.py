"""Tests of minihash.search against references: loops, brute-force enumeration, exhaustive search.

The data are synthetic, so the index is tested without the model: each track's embedding drifts
smoothly in time (random Fourier features of a Gaussian process, correlation length `ell`), its
hash logits are a random projection of the embedding, and a query is the track's embedding at a
continuous offset plus noise. `python tests/test_index.py` runs the 1M-window smoke benchmark.
"""
import itertools
import json
import os
import sys
import time

import numpy as np
import pytest
import torch
from scipy.stats import binomtest

from minihash.errors import FormatError
from minihash.ot import pack_codes
from minihash.search import load_index, store
from minihash.search.base import Match, SearchConfig, vote
from minihash.search.baselines import ExhaustiveIndex, LSHIndex
from minihash.search.buckets import probe_order
from minihash.search.hash import HashIndex
from minihash.search.threshold import allowed_passes, calibrate_threshold

# ----------------------------------------------------------------------------
# synthetic tracks and queries


class Toy:
    """n tracks of smoothly drifting unit embeddings, sampled every hop_s; logits = emb @ R."""

    def __init__(self, n_tracks=6, seconds=30.0, D=32, K=8, hop_s=0.1, ell=0.3, F=16, seed=0):
        rng = np.random.default_rng(seed)
        self.D, self.K, self.seconds = D, K, seconds
        self.params = [(rng.normal(0, 1 / ell, (F, D)), rng.uniform(0, 2 * np.pi, (F, D)), rng.normal(size=(F, D)))
                       for _ in range(n_tracks)]
        self.R = rng.normal(size=(D, K))
        self.names = [f"album/track{t:02d}.ogg" for t in range(n_tracks)]
        starts = np.round(np.arange(0, seconds - 1 + 1e-9, hop_s), 6)
        self.emb = np.concatenate([self.emb_at(t, starts) for t in range(n_tracks)])  # (N, D)
        self.logits = self.emb @ self.R  # (N, K)
        self.track_ids = np.repeat(np.arange(n_tracks), len(starts))
        self.starts = np.tile(starts, n_tracks)

    def emb_at(self, t, times):
        om, ph, A = self.params[t]
        X = (A[None] * np.cos(om[None] * np.asarray(times)[:, None, None] + ph[None])).sum(1)  # (T, D)
        return X / np.linalg.norm(X, axis=1, keepdims=True)

    def rows(self, tracks):
        keep = np.isin(self.track_ids, tracks)
        ids = np.searchsorted(tracks, self.track_ids[keep])
        return self.emb[keep], self.logits[keep], ids, self.starts[keep], [self.names[t] for t in tracks]

    def query(self, rng, t, offset, length=4.0, noise=0.5, logit_noise=0.3):
        q_starts = np.arange(0, length - 1 + 1e-9, 0.5)  # queries are segmented at 0.5 s
        q = self.emb_at(t, offset + q_starts) + rng.normal(0, noise / np.sqrt(self.D), (len(q_starts), self.D))
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        return q, q @ self.R + rng.normal(0, logit_noise, (len(q_starts), self.K)), q_starts

    def negative(self, rng, length=4.0):
        q_starts = np.arange(0, length - 1 + 1e-9, 0.5)
        q = rng.normal(size=(len(q_starts), self.D))
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        return q, q @ self.R, q_starts


@pytest.fixture(scope="module")
def toy():
    return Toy()


def build(cls, toy, tracks=None, **kw):
    tracks = np.arange(len(toy.names)) if tracks is None else np.asarray(tracks)
    return cls.build(*toy.rows(tracks), hop_s=0.1, meta={"model": "toy-1"}, **kw)


def queries(toy, n=20, seed=1, **kw):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        t, off = int(rng.integers(len(toy.names))), float(rng.uniform(0, toy.seconds - 5))
        out.append((t, off, toy.query(rng, t, off, **kw)))
    return out


# ----------------------------------------------------------------------------
# codes, probes, buckets


@pytest.mark.parametrize("K", [8, 16, 40])
def test_pack_codes_matches_a_loop(K):
    z = np.random.default_rng(K).normal(size=(50, K))
    want = [sum(1 << k for k in range(K) if row[k] > 0) for row in z]
    assert [int(c) for c in pack_codes(z)] == want


@pytest.mark.parametrize("ties", [False, True])
def test_probe_order_matches_brute_force(ties):
    K = 7
    rng = np.random.default_rng(3)
    conf = rng.integers(1, 4, K).astype(float) if ties else rng.exponential(size=K)
    cost = {sum(1 << k for k in S): sum(conf[k] for k in S)
            for r in range(K + 1) for S in itertools.combinations(range(K), r)}
    masks, costs = probe_order(-conf, 2**K)  # sign does not matter: confidence is |logit|
    assert sorted(int(m) for m in masks) == list(range(2**K))  # every flip-set, once
    assert np.all(np.diff(costs) >= 0)
    np.testing.assert_allclose(costs, [cost[int(m)] for m in masks])
    np.testing.assert_allclose(costs, sorted(cost.values()))
    m20, c20 = probe_order(conf, 20)
    np.testing.assert_allclose(c20, sorted(cost.values())[:20])
    assert int(m20[0]) == 0 and len(m20) == 20


def test_buckets_match_dict_of_lists(toy):
    index = build(HashIndex, toy)
    groups = {}
    for c, t, s in zip(pack_codes(toy.logits), toy.track_ids, toy.starts):
        groups.setdefault(int(c), []).append((int(t), float(np.float32(s))))
    tab = index.table
    assert [int(c) for c in tab.bucket_codes] == sorted(groups)
    for b, c in enumerate(tab.bucket_codes):
        lo, hi = tab.bucket_start[b], tab.bucket_start[b + 1]
        assert list(zip(index.track_ids[lo:hi].tolist(), index.starts[lo:hi].tolist())) == groups[int(c)]
        assert np.all(index.codes[lo:hi] == c)


def test_probe_spends_the_candidate_budget_in_probe_order(toy):
    index = build(HashIndex, toy)
    rng = np.random.default_rng(5)
    z = rng.normal(size=(6, toy.K))
    codes = pack_codes(z)
    win, pos = index.table.probe(codes, np.abs(z), 40, 10**9)
    bwin, bpos = index.table.probe(codes, np.abs(z), 40, 25)
    for i in range(6):
        full = pos[win == i]
        masks, _ = probe_order(np.abs(z[i]), 40)
        want = [p for m in masks for p in np.flatnonzero(index.codes == (codes[i] ^ np.uint32(m)))]
        assert full.tolist() == want  # rows of the probed buckets, bucket by bucket in probe order
        assert bpos[bwin == i].tolist() == want[:25]


# ----------------------------------------------------------------------------
# search: against exhaustive search and the truth


def test_probing_every_bucket_equals_exhaustive_search(toy):
    index, exhaustive = build(HashIndex, toy), build(ExhaustiveIndex, toy)
    for t, off, (q, ql, qs) in queries(toy, n=15, noise=1.0, logit_noise=1.0):
        m = index.search(q, ql, qs, n_probes=2**toy.K, max_candidates=10**9)
        r = exhaustive.search(q, None, qs)
        assert (m.track, round(m.offset_s, 4)) == (r.track, round(r.offset_s, 4))
        assert m.score == pytest.approx(r.score, abs=1e-5)
        assert m.n_scored == r.n_scored == len(q) * len(index)


def test_vote_matches_a_loop():
    rng = np.random.default_rng(7)
    C, M = 300, 9
    win, rows, sims = rng.integers(0, M, C), rng.integers(0, 40, C), rng.uniform(-0.2, 1, C)
    track_ids, starts = rng.integers(0, 3, 40), np.round(rng.integers(0, 8, 40) * 0.1, 1)
    q_starts = np.arange(M) * 0.1
    best = {}
    for w, r, s in zip(win, rows, sims):  # each window's best similarity per (track, bin)
        key = (track_ids[r], int(round((starts[r] - q_starts[w]) / 0.1)), w)
        best[key] = max(best.get(key, -np.inf), s)
    total = {}
    for (t, b, _), s in best.items():
        total[(t, b)] = total.get((t, b), 0.0) + max(s, 0.0)
    tracks, bins, scores = vote(win, rows, sims, q_starts, track_ids, starts, 0.1, n_best=len(total))
    got = {(int(t), int(b)): s for t, b, s in zip(tracks, bins, scores)}
    assert got.keys() == total.keys()
    for k in total:
        assert got[k] == pytest.approx(total[k])
    assert np.all(np.diff(scores) <= 0)


def test_search_finds_track_and_sub_hop_offset(toy):
    index = build(HashIndex, toy)
    for t, off, (q, ql, qs) in queries(toy, n=25):  # continuous offsets, between the 0.1 s grid points
        m = index.search(q, ql, qs)
        assert m.track == toy.names[t]
        assert abs(m.offset_s - off) < 0.05
        assert 0 < m.n_scored < len(q) * len(index) and m.time_ms > 0


def test_threshold_rejects_negatives(toy):
    index = build(HashIndex, toy)
    rng = np.random.default_rng(11)
    neg = [index.search(*toy.negative(rng)) for _ in range(40)]
    thr = index.calibrate(neg, max_false=0.05)
    assert np.mean([m.score >= thr for m in neg]) <= 0.05
    assert np.mean([m.score >= np.nextafter(thr, -1) for m in neg]) > 0.05  # and it is the lowest such
    assert index.meta["threshold"] == thr
    assert sum(index.search(*toy.negative(rng)).track is not None for _ in range(40)) <= 6
    for t, off, query in queries(toy, n=10, seed=4):
        assert index.search(*query).track == toy.names[t]
    assert calibrate_threshold([0.1, 0.2, 0.3, 0.4], max_false=0.25) == np.nextafter(0.3, 1)
    assert calibrate_threshold([Match(None, 0, 0.5, 0, 0)], max_false=0.0) == np.nextafter(0.5, 1)


@pytest.mark.parametrize("n", [20, 60, 200, 1000])
def test_allowed_passes_is_the_largest_count_whose_exact_bound_keeps_the_promise(n):
    assert allowed_passes(n, 0.05) == int(0.05 * n + 1e-9)  # without a confidence: the plain share
    for conf in (0.8, 0.9, 0.95):
        k = allowed_passes(n, 0.05, conf)
        # one-sided upper bound at `conf` = upper end of the two-sided exact interval at 2 conf - 1
        upper = [binomtest(j, n).proportion_ci(2 * conf - 1, method="exact").high for j in range(n // 5)]
        ok = [j for j, u in enumerate(upper) if u <= 0.05]
        assert k == (max(ok) if ok else 0)
        assert k <= int(0.05 * n)  # a promise for new queries allows fewer than the share itself
    scores = np.linspace(0, 1, n)
    thr = calibrate_threshold(scores, 0.05, confidence=0.9)
    assert np.sum(scores >= thr) == allowed_passes(n, 0.05, 0.9)
    # k copies of n negatives are worth n: the same threshold as the n themselves; counted as k n, more pass
    for k in (2, 5):
        copies = np.repeat(scores, k)
        assert calibrate_threshold(copies, 0.05, 0.9, worth=n) == thr
        assert np.sum(copies >= calibrate_threshold(copies, 0.05, 0.9)) >= k * allowed_passes(n, 0.05, 0.9)
    assert calibrate_threshold(scores, 0.05, None, worth=n / 4) == calibrate_threshold(scores, 0.05)  # no promise


def test_one_threshold_per_query_length(toy, tmp_path):
    index = build(HashIndex, toy)
    rng = np.random.default_rng(12)
    lengths = [1.0] * 40 + [2.0] * 40 + [5.0] * 40 + [3.0] * 10  # 1, 3, 9 and 5 windows; too few of 3 s
    neg = [toy.negative(rng, L) for L in lengths]
    scores = np.array([index.search(*q, threshold=np.inf).score for q in neg])
    counts = np.array([len(q[2]) for q in neg])
    overall = index.calibrate(scores, max_false=0.05, n_windows=counts)
    assert overall == calibrate_threshold(scores, 0.05)
    assert sorted(index.thresholds) == [1, 3, 9]  # 10 negatives cannot resolve 5 %: no threshold of its own
    for n, thr in index.thresholds.items():  # each is the plain calibration of its own group
        assert thr == calibrate_threshold(scores[counts == n], 0.05)
        assert np.mean(scores[counts == n] >= thr) <= 0.05
    assert index.thresholds[1] > index.thresholds[9]  # one window's best similarity is a noisier score
    # a query is held to the threshold of the longest calibrated length not longer than itself
    assert index.threshold_for(1) == index.thresholds[1] and index.threshold_for(2) == index.thresholds[1]
    assert index.threshold_for(5) == index.thresholds[3] and index.threshold_for(40) == index.thresholds[9]
    m = index.search(*neg[0])
    assert m.threshold == index.thresholds[1] and (m.track is None) == (m.score < m.threshold)
    index.save(tmp_path / "idx")
    again = load_index(tmp_path / "idx")
    assert again.thresholds == index.thresholds and again.threshold == index.threshold
    index.calibrate(scores, max_false=0.05)  # without window counts: one threshold for all lengths
    assert index.thresholds == {} and index.threshold_for(1) == index.threshold_for(9) == overall


@pytest.mark.parametrize("cls", [HashIndex, LSHIndex, ExhaustiveIndex])
def test_add_and_remove_equal_a_fresh_build(toy, cls):
    index = build(cls, toy, [0, 1, 2, 3, 4])
    emb, logits, _, starts, _ = toy.rows(np.array([5]))
    index.add(emb, logits, starts, toy.names[5])
    index.remove(toy.names[2])
    fresh = build(cls, toy, [0, 1, 3, 4, 5])
    assert index.names == fresh.names
    for a, b in zip(index._arrays().values(), fresh._arrays().values()):
        np.testing.assert_array_equal(a, b)
    for _, _, query in queries(toy, n=8):
        assert index.search(*query).track == fresh.search(*query).track
        assert index.search(*query).offset_s == fresh.search(*query).offset_s
    with pytest.raises(ValueError):
        index.add(emb, logits, starts, toy.names[5])


def test_stats_of_balanced_and_degenerate_codes():
    K, n = 6, 5
    logits = np.array([[1 if (c >> k) & 1 else -1 for k in range(K)] for c in range(2**K)] * n, float)
    emb = np.ones((len(logits), 4)) / 2
    index = HashIndex.build(emb, logits, np.zeros(len(logits), int), np.arange(len(logits)) * 0.1, ["a"])
    s = index.stats()
    assert s["entropy"] == pytest.approx(1.0) and s["largest_over_mean"] == pytest.approx(1.0)
    assert s["empty_share"] == 0.0
    assert s["bytes_per_window"] == pytest.approx(4 * 2 + 4 + 4 + 4 + 4 + (2**K * 4 + (2**K + 1) * 8) / len(logits))
    one = HashIndex.build(emb, -np.abs(logits), np.zeros(len(logits), int), np.arange(len(logits)) * 0.1, ["a"])
    s = one.stats()
    assert s["entropy"] == 0.0 and s["largest_over_uniform"] == pytest.approx(2**K) and s["empty_share"] == 1 - 2**-K


# ----------------------------------------------------------------------------
# save and load


@pytest.mark.parametrize("cls", [HashIndex, LSHIndex, ExhaustiveIndex])
def test_save_load_round_trip(toy, tmp_path, cls):
    index = build(cls, toy)
    index.threshold = 0.42
    index.save(tmp_path / "idx")
    back = load_index(tmp_path / "idx", expect_model="toy-1")
    assert type(back) is cls and back.names == index.names and back.meta == index.meta
    assert back.threshold == 0.42 and back.cfg == index.cfg and back.hop_s == index.hop_s
    for k, a in index._arrays().items():
        b = back._arrays()[k]
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    for _, _, query in queries(toy, n=5):
        m, r = index.search(*query), back.search(*query)
        assert (m.track, m.offset_s, m.score, m.n_scored) == (r.track, r.offset_s, r.score, r.n_scored)
    assert sorted(os.listdir(tmp_path)) == ["idx"]


def _truncate(d):
    f = store.current_dir(d) / "emb.npy"
    f.write_bytes(f.read_bytes()[:-100])


def _flip_byte(d):
    f = store.current_dir(d) / "codes.npy"
    b = bytearray(f.read_bytes())
    b[-3] ^= 0x01
    f.write_bytes(bytes(b))


def _edit_manifest(key, value):
    def edit(d):
        f = store.current_dir(d) / "manifest.json"
        m = json.loads(f.read_text())
        m[key] = value
        f.write_text(json.dumps(m))
    return edit


@pytest.mark.parametrize("damage, expect_model, reason", [
    (_truncate, None, "truncated"),
    (_flip_byte, None, "checksum mismatch"),
    (_edit_manifest("version", 99), None, "version 99"),
    (_edit_manifest("names", ["x"] * 6), None, "manifest checksum mismatch"),
    (lambda d: None, "another-model", "built by another model"),
    (lambda d: (d / "CURRENT").unlink(), None, "not a minihash index"),
    (lambda d: (store.current_dir(d) / "manifest.json").unlink(), None, "manifest is missing"),
    (lambda d: (store.current_dir(d) / "starts.npy").unlink(), None, "missing array file"),
])
def test_damaged_index_raises_format_error(toy, tmp_path, damage, expect_model, reason):
    build(HashIndex, toy).save(tmp_path / "idx")
    damage(tmp_path / "idx")
    with pytest.raises(FormatError, match=reason) as e:
        load_index(tmp_path / "idx", expect_model=expect_model)
    assert "idx" in e.value.path


def test_save_replaces_atomically_and_leaves_no_temporaries(toy, tmp_path, monkeypatch):
    """A failed save leaves the old index; a kill at every step is tests/test_reliability.py's."""
    target = tmp_path / "idx"
    build(HashIndex, toy, [0, 1]).save(target)
    build(HashIndex, toy, [2, 3, 4]).save(target)  # replace
    assert load_index(target).names == [toy.names[t] for t in (2, 3, 4)]
    assert os.listdir(tmp_path) == ["idx"] and len(os.listdir(target)) == 3  # CURRENT, .lock, one version

    def fail_midway(step):
        if step == "arrays-written":
            raise OSError("disk full")

    monkeypatch.setattr(store, "_step", fail_midway)
    with pytest.raises(OSError):
        build(HashIndex, toy, [5]).save(target)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["idx"] and len(os.listdir(target)) == 3  # the failed save left nothing behind
    assert len(load_index(target).names) == 3  # and the old index is intact
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(FormatError, match="not a minihash index"):
        build(HashIndex, toy, [0]).save(tmp_path / "notes")


# ----------------------------------------------------------------------------
# smoke benchmark, by hand: python tests/test_index.py [N]


def benchmark(N=1_000_000, D=128, K=16, windows_per_track=3000, n_queries=200, seed=0):
    """Build and query a HashIndex over N synthetic windows with balanced random codes."""
    rng = np.random.default_rng(seed)
    n_tracks = N // windows_per_track
    N = n_tracks * windows_per_track
    # smooth drift: a random walk per track, renormalised, so neighbouring windows are similar
    emb = rng.normal(size=(N, D)).astype(np.float32)
    emb = emb.reshape(n_tracks, windows_per_track, D)
    for i in range(1, windows_per_track):
        emb[:, i] = 0.8 * emb[:, i - 1] + 0.6 * emb[:, i]
    emb = emb.reshape(N, D)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    R = rng.normal(size=(D, K)).astype(np.float32)
    logits = emb @ R  # random projection of spread-out embeddings: balanced codes
    track_ids = np.repeat(np.arange(n_tracks), windows_per_track)
    starts = np.tile(np.arange(windows_per_track) * 0.1, n_tracks)
    t0 = time.perf_counter()
    index = HashIndex.build(emb, logits, track_ids, starts, [f"t{i}" for i in range(n_tracks)], cfg=SearchConfig())
    build_s = time.perf_counter() - t0
    lat, cpu, frac, hits = [], [], [], 0
    for _ in range(n_queries):  # 5 s queries: 9 windows at a 0.5 s hop, on the grid, plus noise
        t, w0 = rng.integers(n_tracks), rng.integers(0, windows_per_track - 50)
        rows = t * windows_per_track + w0 + np.arange(9) * 5
        q = emb[rows] + rng.normal(0, 0.3 / np.sqrt(D), (9, D)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        c0 = time.process_time()  # CPU time: what the latency is on an idle core
        m = index.search(q, q @ R + rng.normal(0, 0.3, (9, K)), np.arange(9) * 0.5)
        cpu.append(1e3 * (time.process_time() - c0))
        lat.append(m.time_ms)
        frac.append(m.frac_scored)
        hits += m.track == f"t{t}" and abs(m.offset_s - w0 * 0.1) < 0.1
    s = index.stats()
    print(f"N={N} D={D} K={K}: build {build_s:.2f} s; p50 {np.median(lat):.2f} ms, p90 {np.percentile(lat, 90):.2f} ms"
          f" (CPU p50 {np.median(cpu):.2f} ms) per 5 s query; DB scored {100 * np.mean(frac):.3f} % per window; hits {hits}/{n_queries};"
          f" {s['bytes_per_window']:.1f} bytes/window; entropy {s['entropy']:.3f},"
          f" largest/mean {s['largest_over_mean']:.2f}, empty {s['empty_share']:.4f}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    benchmark(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
