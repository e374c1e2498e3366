"""The no-match decision against references: search without a track against the index that never held
it, the match's features against loops, the logistic regression against Newton's method, the
thresholds kept in the index against a fresh calibration, and leave-one-track-out calibration."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from minihash.corpus.music import synth_tracks
from minihash.encoder import ModelConfig
from minihash.evaluate.calibrate import FEW_TRACKS, calibrate_index, calibration_summary, own_excerpts
from minihash.evaluate.nomatch import NomatchResult, false_interval, false_match_lines, operating_point, roc, tpr_at
from minihash.modelfile import build_model
from minihash.search import load_index
from minihash.search.base import AGREE_HOPS, Match
from minihash.search.baselines import ExhaustiveIndex, LSHIndex
from minihash.search.hash import HashIndex
from minihash.search.pipeline import index_audio
from minihash.search.threshold import (calibrate_threshold, decision_scores, fit_logistic, match_features)

sys.path.insert(0, str(Path(__file__).parent))
from test_index import Toy, build, queries  # noqa: E402  the synthetic tracks of the index tests

# ----------------------------------------------------------------------------
# searching without a track


@pytest.fixture(scope="module")
def toy():
    return Toy()


@pytest.mark.parametrize("cls, kw", [(HashIndex, {}), (LSHIndex, {"L": 2, "K": 8}), (ExhaustiveIndex, {})])
def test_search_without_a_track_equals_the_index_that_never_held_it(toy, cls, kw):
    full = build(cls, toy, **kw)
    for t in (0, 3, 5):
        rest = [i for i in range(len(toy.names)) if i != t]
        without = build(cls, toy, rest, **kw)
        for _, _, (q, ql, qs) in queries(toy, n=8, noise=1.0, logit_noise=1.0, seed=t):
            for over in ({}, {"max_candidates": 30}):  # a tight budget: only kept rows may spend it
                a = full.search(q, ql, qs, exclude=toy.names[t], **over)
                b = without.search(q, ql, qs, **over)
                assert (a.track, a.offset_s, a.n_scored, a.agree) == (b.track, b.offset_s, b.n_scored, b.agree)
                assert (a.score, a.similarity, a.margin, a.frac_scored) == (b.score, b.similarity, b.margin,
                                                                             b.frac_scored)
    m = full.search(*queries(toy, n=1)[0][2], exclude=[toy.names[0], 1, 2])  # names or ids, several at once
    assert m.track not in (toy.names[0], toy.names[1], toy.names[2])
    assert full.search(*queries(toy, n=1)[0][2], exclude=range(len(toy.names))).track is None


def test_margin_and_agreement_against_their_definitions(toy):
    index = build(HashIndex, toy)
    everything = {"n_probes": 2 ** toy.K, "max_candidates": 10 ** 9}  # every row a candidate
    E = index.emb.astype(np.float32)
    for _, _, (q, ql, qs) in queries(toy, n=10, noise=1.5, logit_noise=1.0):
        m = index.search(q, ql, qs, **everything)
        # the margin: over the best alignment of the index without the matched track
        other = index.search(q, ql, qs, exclude=m.track, **everything)
        assert m.margin == pytest.approx(m.similarity - other.similarity, abs=1e-6)
        # agreement: each window's most similar row, by brute force, at the alignment
        best = np.argmax(q.astype(np.float32) @ E.T, axis=1)  # (M,)
        want = sum(index.names[index.track_ids[r]] == m.track and
                   abs(index.starts[r] - qs[i] - m.offset_s) <= AGREE_HOPS * index.hop_s for i, r in enumerate(best))
        assert m.agree == want and m.n_windows == len(q)


# ----------------------------------------------------------------------------
# the decision score


def newton_logistic(Xs, y, l2, steps=50):
    """The same objective as `fit_logistic` (classes weigh a half each, ridge on w), by Newton's method."""
    n, d = Xs.shape
    A = np.c_[Xs, np.ones(n)]
    wt = np.where(y, 0.5 / y.sum(), 0.5 / (~y).sum())
    R = np.diag([l2] * d + [0.0])  # the bias is not penalised
    theta = np.zeros(d + 1)
    for _ in range(steps):
        p = 1 / (1 + np.exp(-A @ theta))
        g = A.T @ (wt * (p - y)) + R @ theta
        H = A.T @ (A * (wt * p * (1 - p))[:, None]) + R
        theta -= np.linalg.solve(H, g)
    return theta


@pytest.mark.parametrize("l2, separable", [(1e-3, False), (0.1, False), (1e-3, True)])
def test_logistic_regression_against_newtons_method(l2, separable):
    rng = np.random.default_rng(4)
    y = rng.random(300) < 0.3
    X = rng.normal(size=(300, 3)) * [1.0, 0.1, 5.0] + np.outer(y, [1.5, 0.2, 2.0]) * (4 if separable else 1)
    fit = fit_logistic(X, y, l2)
    mean, std = X.mean(0), X.std(0)
    np.testing.assert_allclose(fit["mean"], mean) and np.testing.assert_allclose(fit["std"], std)
    want = newton_logistic((X - mean) / std, y, l2)
    np.testing.assert_allclose(np.r_[fit["w"], fit["b"]], want, atol=1e-5, rtol=1e-4)
    p = decision_scores(fit, X)  # the probability, from the fitted weights
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-(((X - mean) / std) @ want[:-1] + want[-1]))), atol=1e-6)
    with pytest.raises(ValueError, match="both classes"):
        fit_logistic(X, np.ones(300, bool))


def test_single_feature_decisions_and_constant_features():
    X = np.array([[0.9, 0.1, 1.0], [0.5, 0.4, 0.0], [0.7, 0.3, 1.0]])
    np.testing.assert_array_equal(decision_scores(None, X), X[:, 0])
    np.testing.assert_array_equal(decision_scores({"kind": "margin"}, X), X[:, 1])
    assert np.argsort(decision_scores({"kind": "agree"}, X)).tolist() == [1, 2, 0]  # ties broken by similarity
    ms = [Match("a", 0, 0, 0, 0, similarity=s, margin=g, agree=a, n_windows=3) for s, g, a in X * [1, 1, 3]]
    np.testing.assert_allclose(match_features(ms), X)
    y = np.array([True, False, True, False] * 10)
    Xc = np.c_[np.linspace(0, 1, 40) + y, np.ones(40), np.zeros(40)]  # agreement of 1-window queries: constant
    fit = fit_logistic(Xc, y)
    assert fit["w"][1] == fit["w"][2] == 0.0 and np.all(np.isfinite(fit["w"]))


# ----------------------------------------------------------------------------
# thresholds kept in the index


def test_max_false_changes_without_searching_again(toy, tmp_path):
    index = build(HashIndex, toy)
    rng = np.random.default_rng(3)
    neg = [index.search(*toy.negative(rng, L)) for L in np.repeat([1.0, 2.0, 5.0], 60)]
    scores, counts = np.array([m.score for m in neg]), np.array([m.n_windows for m in neg])
    index.calibrate(neg, 0.05, counts, confidence=0.9)
    index.save(tmp_path / "i")
    back = load_index(tmp_path / "i")
    for f in (0.01, 0.1, 0.3, 0.05):
        back.set_max_false(f)
        assert back.threshold == calibrate_threshold(scores, f, 0.9)
        want = {int(n): calibrate_threshold(scores[counts == n], f, 0.9) for n in np.unique(counts)
                if np.sum(counts == n) >= np.ceil(1 / f - 1e-9)}
        assert back.thresholds == want
    assert back.thresholds == index.thresholds  # back at the calibrated share
    # negatives searched in half the index (their own track left out) allow half the share to pass
    index.calibrate(neg, 0.1, counts, 0.9, searched=np.r_[np.full(90, 0.5), np.ones(90)])
    assert index.thresholds[1] == calibrate_threshold(scores[counts == 1], 0.05, 0.9)
    assert index.thresholds[9] == calibrate_threshold(scores[counts == 9], 0.1, 0.9)
    assert index.threshold == calibrate_threshold(scores, 0.075, 0.9)
    fresh = build(HashIndex, toy)
    with pytest.raises(ValueError, match="no calibration scores"):
        fresh.set_max_false(0.1)
    with pytest.raises(ValueError, match="share"):
        back.set_max_false(1.5)


def test_fit_decision_per_length_and_the_score_it_gives(toy):
    index = build(HashIndex, toy)
    rng = np.random.default_rng(5)
    neg = [index.search(*toy.negative(rng, L)) for L in np.repeat([1.0, 3.0], 40)]
    pos = [index.search(*q) for L in (1.0, 3.0) for _, _, q in queries(toy, n=40, length=L, noise=2.0, seed=int(L))]
    right = [m.track is not None for m in pos]
    fits = index.fit_decision(neg, pos, right, min_class=10)
    assert sorted(fits) == [1, 5]  # 1 s: one window, 3 s: five
    m = index.search(*queries(toy, n=1, length=3.0)[0][2], threshold=-np.inf)
    want = decision_scores(fits[5], match_features([m]))[0]
    assert m.score == pytest.approx(want) and 0 < m.score < 1
    assert index.decision_for(9) is index.decision_for(5) and index.decision_for(0) is None
    np.testing.assert_allclose(index.rescore(neg[:3]), [decision_scores(fits[1], match_features([n]))[0]
                                                        for n in neg[:3]])


# ----------------------------------------------------------------------------
# leave-one-track-out calibration, end to end


def test_own_excerpts():
    assert own_excerpts([10.0], 1.0) == 0  # one track: nothing left once it is excluded
    assert own_excerpts([10.0, 4.5, 7.0], 2.0) == 5 + 2 + 3


def test_calibrate_index_on_its_own_collection(monkeypatch):
    torch.manual_seed(0)
    model = build_model(ModelConfig.preset("tiny"))
    tracks = {f"t{i}": x for i, x in enumerate(synth_tracks(4, 12.0, seed=91))}
    index = index_audio(model, tracks, progress=False)
    searched = []
    real = HashIndex.search

    def spy(self, *a, exclude=None, **kw):
        searched.append(exclude)
        return real(self, *a, exclude=exclude, **kw)

    monkeypatch.setattr(HashIndex, "search", spy)
    cal = calibrate_index(index, model, tracks, per_length=30, lengths=(1.0, 5.0), progress=False)
    # 4 tracks of about 12 s: 30 one-second excerpts fit end to end, only two of five seconds from each
    n5 = sum(len(x) // (5 * 8000) for x in tracks.values())
    assert (cal[1.0]["collection"], cal[1.0]["apart"], cal[1.0]["procedural"]) == (30, 30, 0)
    assert (cal[5.0]["collection"], cal[5.0]["apart"], cal[5.0]["procedural"]) == (30, n5, 0) and n5 == 8
    assert cal[5.0]["negatives"] == 30 and cal[5.0]["positives"] == 30
    own = [e for e in searched if e is not None]
    assert len(own) == 60 and set(own) <= set(tracks)  # each own excerpt searched without its track ...
    assert searched.count(None) == 60  # ... and with it
    for L, w in ((1.0, 1), (5.0, 9)):
        assert cal[L]["windows"] == w and cal[L]["threshold"] == index.threshold_for(w)
    assert sorted(index.thresholds) == [1, 9] and index.meta["calibration"]["confidence"] == 0.9
    # the 30 overlapping five-second excerpts count as the 8 that fit end to end
    kept = index.meta["calibration"]
    worth, n_windows = np.array(kept["worth"]), np.array(kept["n_windows"])
    np.testing.assert_allclose(worth[n_windows == 9], n5 / 30)
    np.testing.assert_allclose(worth[n_windows == 1], 1.0)
    five = np.array(kept["scores"])[n_windows == 9]
    assert index.thresholds[9] == calibrate_threshold(five, 0.05 * np.mean(np.array(kept["searched"])[n_windows == 9]),
                                                      0.9, worth=n5)
    assert "worth the 8 that fit end to end" in calibration_summary(cal, index)


def test_calibrate_index_of_one_track_falls_back_on_procedural_songs():
    torch.manual_seed(0)
    model = build_model(ModelConfig.preset("tiny"))
    tracks = {"only": synth_tracks(1, 12.0, seed=92)[0]}
    index = index_audio(model, tracks, progress=False)
    cal = calibrate_index(index, model, tracks, per_length=20, lengths=(1.0,), progress=False)
    assert (cal[1.0]["collection"], cal[1.0]["procedural"], cal[1.0]["positives"]) == (0, 20, 0)
    assert "20 of procedural songs (the collection gives none)" in calibration_summary(cal, index)


# ----------------------------------------------------------------------------
# ROC curves


def test_roc_against_every_threshold():
    rng = np.random.default_rng(8)
    pos, neg = np.round(rng.normal(1, 1, 60), 1), np.round(rng.normal(0, 1, 80), 1)  # rounded: ties
    right = rng.random(60) < 0.7
    fpr, tpr = roc(pos, right, neg)
    for t in np.unique(np.r_[pos, neg]):  # every threshold between distinct scores is one point of the curve
        f, r = np.mean(neg >= t), np.mean(right & (pos >= t))
        assert np.any(np.isclose(fpr, f) & np.isclose(tpr, r))
    assert len(fpr) == len(np.unique(np.r_[pos, neg])) + 1 and (fpr[0], tpr[0]) == (0, 0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    want = max(np.mean(right & (pos >= t)) for t in np.r_[pos, neg, np.inf] if np.mean(neg >= t) <= 0.05)
    assert tpr_at(fpr, tpr, 0.05) == pytest.approx(want)


def test_false_matches_are_listed_highest_first_one_cell_per_name():
    rng = np.random.default_rng(3)
    res = NomatchResult((1.0, 2.0), (("clean", None), ("noise", 0.0)))
    for i in range(40):
        kind = "negative" if i % 3 else "positive"
        res.rows.append({"kind": kind, "length_s": 1.0 + i % 2, "cell": res.cells[i % 2], "score": rng.random(),
                         "threshold": 0.6, "query": f"game{i}|a\nb.ogg", "start_s": 1.5 * i, "match": f"t{i % 4}.ogg",
                         "offset_s": 0.1 * i})
    passed = sorted((r for r in res.rows if r["kind"] == "negative" and r["score"] >= r["threshold"]),
                    key=lambda r: -r["score"])  # the reference: every negative at or above its threshold
    def table_rows(lines):
        return [ln for ln in lines if ln.startswith("| ") and "query" not in ln and "---" not in ln]

    lines = false_match_lines(res)
    table = table_rows(lines)
    assert f"{len(passed)} negatives matched" in lines[1] and len(table) == len(passed) > 0
    assert [float(ln.split("|")[-3]) for ln in table] == [round(r["score"], 3) for r in passed]
    assert all(ln.count(" | ") == 7 and "\n" not in ln for ln in table)  # "|" and the newline escaped
    assert len(table_rows(false_match_lines(res, most=2))) == 2
    res.rows = [r for r in res.rows if r["kind"] == "positive"]
    assert false_match_lines(res)[-1] == "No negative matched."


@pytest.mark.parametrize("tracks, added, warned", [(6, 0, True), (6, 200, False), (FEW_TRACKS, 0, False)])
def test_the_summary_says_when_the_negatives_come_from_few_tracks(tracks, added, warned):
    class Index:  # what calibration_summary reads of an index
        names = [f"t{i}" for i in range(tracks)]
        meta = {"calibration": {"confidence": 0.9}, "max_false": 0.05}
    row = {"collection": 200, "apart": 200, "procedural": 0, "added": added, "negatives": 200 + added, "right": 180,
           "positives": 200, "threshold": 0.7}
    text = calibration_summary({1.0: row, 2.0: dict(row), "seconds": 3.0}, Index())
    assert ("excerpts of only" in text) == warned and "calibrated in 3 s" in text


@pytest.mark.parametrize("k, n", [(0, 200), (1, 200), (12, 200), (10, 200), (40, 1200), (200, 200)])
def test_false_interval_is_where_the_binomial_tails_hold_five_percent(k, n):
    from scipy.stats import binom
    lo, hi = false_interval(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0
    # the exact interval's ends, by definition: at lo, k or more pass with 5 %; at hi, k or fewer
    if k > 0:
        assert binom.sf(k - 1, n, lo) == pytest.approx(0.05, abs=1e-6)
    else:
        assert lo == 0.0
    if k < n:
        assert binom.cdf(k, n, hi) == pytest.approx(0.05, abs=1e-6)
    else:
        assert hi == 1.0
    assert false_interval(12, 200)[0] < 0.05 < false_interval(12, 200)[1]  # 6 % of 200 is not over 5 % for sure


def test_operating_point_pools_the_cells_of_each_length():
    rng = np.random.default_rng(3)
    res = NomatchResult((1.0, 2.0), (("clean", None), ("noise", 0.0)))
    for i in range(120):
        res.rows.append({"kind": "negative" if i % 2 else "positive", "length_s": 1.0 + i % 3 // 2,
                         "cell": res.cells[i % 4 // 2], "score": rng.random(), "threshold": 0.7, "hit": bool(i % 5),
                         "repeat": bool(i % 5 or i % 7)})
    rows = operating_point(res, pooled=True)
    assert [r["cell"] for r in rows] == ["clean", "noise 0 dB", "every condition"] * 2
    for L in res.lengths:  # the reference: a naive count over every row of the length
        neg = [r for r in res.rows if r["length_s"] == L and r["kind"] == "negative"]
        pos = [r for r in res.rows if r["length_s"] == L and r["kind"] == "positive"]
        every = next(r for r in rows if r["length_s"] == L and r["cell"] == "every condition")
        assert every["false"] == sum(r["score"] >= 0.7 for r in neg) and every["n_neg"] == len(neg)
        assert every["hit_kept"] == sum(r["hit"] and r["score"] >= 0.7 for r in pos) and every["n"] == len(pos)
        cells = [r for r in rows if r["length_s"] == L and r["cell"] != "every condition"]
        assert every["false"] == sum(r["false"] for r in cells) and every["repeat"] == sum(r["repeat"] for r in cells)
    assert len(operating_point(res)) == 4  # not pooled unless asked
