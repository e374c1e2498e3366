"""The evaluation protocol: NCC repeats against a naive loop, exact SNRs, shared excerpts, hit scoring, a tiny run."""
import csv

import numpy as np
import pytest
import torch

import minihash.modelfile
from minihash import cli
from minihash import evaluate as ev
from minihash.audio import segment
from minihash.distort import snr_db
from minihash.encoder import ModelConfig
from minihash.errors import FormatError
from minihash.modelfile import build_model, save_model
from minihash.search.base import Match


def test_ncc_matches_naive_corrcoef_loop():
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.standard_normal(400)) + 5.0  # a wandering signal with an offset: window means matter
    q = x[100:140] * 0.7 + 0.3 * rng.standard_normal(40)
    naive = np.array([np.corrcoef(q, x[k:k + len(q)])[0, 1] for k in range(len(x) - len(q) + 1)])
    np.testing.assert_allclose(ev.ncc(q, x), naive, atol=1e-9)


def test_ncc_silence_is_zero_not_nan():
    x = np.concatenate([np.zeros(100), np.random.default_rng(1).standard_normal(100)])
    r = ev.ncc(x[120:150], x)
    assert np.all(np.isfinite(r)) and np.all(r[:70] == 0.0)
    assert np.all(ev.ncc(np.zeros(30), x) == 0.0)


def test_repeat_starts_finds_a_planted_repeat():
    rng = np.random.default_rng(2)
    x = rng.standard_normal(8000)
    x[5000:5800] = 0.5 * x[1000:1800]  # a quieter copy: correlation is blind to level
    np.testing.assert_array_equal(ev.repeat_starts(x, 1000, 800, 0.9), [1000, 5000])
    np.testing.assert_array_equal(ev.repeat_starts(x, 3000, 800, 0.9), [3000])


def test_track_ncc_matches_the_naive_loop_for_every_excerpt_and_draw_queries_uses_it():
    from minihash.corpus.repeats import TrackNCC

    rng = np.random.default_rng(4)
    x = np.cumsum(rng.standard_normal(600)) + 3.0
    x[400:440] = 2.0 * x[100:140] - 1.0  # a louder, shifted copy
    track = TrackNCC(x, 40)
    for a in (0, 100, 333, 560):
        q = x[a:a + 40]
        naive = np.array([np.corrcoef(q, x[k:k + 40])[0, 1] for k in range(len(x) - 39)])
        np.testing.assert_allclose(track.ncc(q), naive, atol=1e-9)
    np.testing.assert_array_equal(track.repeat_starts(100, 0.999), [100, 400])
    with pytest.raises(ValueError, match="40 samples"):
        track.ncc(x[:41])
    tracks = [rng.standard_normal(n) for n in (4000, 9000, 6000)]
    tracks[1][4500:] = tracks[1][:4500]  # the second half repeats the first
    qs = ev.draw_queries(tracks, 0.1, 30, np.random.default_rng(5), 4, 3, ncc_threshold=0.9)
    plain = ev.draw_queries(tracks, 0.1, 30, np.random.default_rng(5), 4, 3)  # the same excerpts, no repeats
    assert [(q.track, q.start, q.noise, q.room) for q in qs] == [(q.track, q.start, q.noise, q.room) for q in plain]
    for q in qs:  # each excerpt's repeats, as repeat_starts finds them one by one
        np.testing.assert_array_equal(q.repeats, ev.repeat_starts(tracks[q.track], q.start, q.n, 0.9))
    assert any(len(q.repeats) > 1 for q in qs)


@pytest.mark.parametrize("T, n", [(37, 37), (50, 37), (330, 40), (1000, 40), (5000, 17), (4321, 500)])
def test_track_ncc_overlap_save_blocks_match_the_naive_loop(T, n):
    from minihash.corpus.repeats import TrackNCC

    x = np.cumsum(np.random.default_rng(T).standard_normal(T)) + 2.0
    track = TrackNCC(x, n)  # one block when the track is short, many (the last one padded) when it is long
    for a in (0, T - n, (T - n) // 3):
        q = x[a:a + n]
        naive = np.array([np.corrcoef(q, x[k:k + n])[0, 1] for k in range(T - n + 1)])
        np.testing.assert_allclose(track.ncc(q), naive, atol=1e-9)
    with pytest.raises(ValueError, match="do not fit"):
        TrackNCC(x, T + 1)


def test_likeness_elsewhere_matches_a_naive_corrcoef_loop():
    from minihash.corpus.repeats import likeness_elsewhere

    rng = np.random.default_rng(3)
    S = np.cumsum(rng.standard_normal((6, 300)), axis=1) + 4.0  # (bands, frames), wandering: window means matter
    S[:, 200:230] = 0.8 * S[:, 40:70] + 0.1 * rng.standard_normal((6, 30)) + 2.0  # a near copy, level and offset aside
    for start, n, gap in [(40, 30, 30), (120, 25, 10), (0, 50, 251), (10, 40, 400)]:
        q = S[:, start:start + n].ravel()
        naive = [np.corrcoef(q, S[:, k:k + n].ravel())[0, 1]
                 for k in range(S.shape[1] - n + 1) if abs(k - start) >= gap]
        want = max(naive) if naive else -1.0
        assert likeness_elsewhere(S, start, n, gap) == pytest.approx(want, abs=1e-9), (start, n, gap)
    assert likeness_elsewhere(S, 40, 30, 30) > 0.95  # it finds the copy


def test_likeness_of_a_looped_track_and_of_a_unique_one():
    from minihash.corpus.repeats import likeness_elsewhere, track_log_mel

    rng = np.random.default_rng(4)
    t = np.arange(8000 * 12) / 8000
    unique = np.sin(2 * np.pi * (300 + 40 * t) * t) + 0.05 * rng.standard_normal(t.size)  # a rising chirp
    notes = np.repeat(rng.uniform(300, 2000, 6), 4000)  # six notes of 0.5 s
    bar = np.sin(2 * np.pi * notes * np.arange(notes.size) / 8000)
    looped = np.tile(bar, 4) + 0.01 * rng.standard_normal(8000 * 12)  # a 3 s loop, new faint noise on top
    for x, lo, hi in [(unique, -1.0, 0.8), (looped, 0.9, 1.0)]:
        S = track_log_mel(x.astype(np.float32))
        assert lo <= likeness_elsewhere(S, 60, 25, 50) <= hi  # 1 s at 2.4 s, others 2 s away or more


def _toy(seconds=6.0, n=3, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 8000)) / 8000
    tracks = [(np.sin(2 * np.pi * rng.uniform(200, 800) * t) + 0.3 * rng.standard_normal(t.size)).astype(np.float32)
              for _ in range(n)]
    noise = [rng.standard_normal(20000).astype(np.float32), rng.standard_normal(3000).astype(np.float32)]  # one short
    return tracks, noise, ev.eval_rooms(ev.EvalConfig(n_rooms=3))


def test_query_snr_is_measured_on_the_excerpt():
    tracks, noise, rooms = _toy()
    qs = ev.draw_queries(tracks, 1.0, 8, np.random.default_rng(3), len(noise), len(rooms))
    for q in qs:
        clean = ev.render(tracks, q, ("clean", None), noise, rooms)
        np.testing.assert_array_equal(clean, tracks[q.track][q.start:q.start + q.n])
        wet = ev.render(tracks, q, ("reverb", None), noise, rooms)
        assert wet.shape == clean.shape and not np.allclose(wet, clean)
        for snr in (0.0, 7.5, 20.0):
            assert abs(float(snr_db(clean, ev.render(tracks, q, ("noise", snr), noise, rooms))) - snr) < 0.1
            # noise + reverb: the SNR is that of the noise against the reverberant excerpt
            assert abs(float(snr_db(wet, ev.render(tracks, q, ("noise+reverb", snr), noise, rooms))) - snr) < 0.1


def test_queries_are_seeded_and_off_grid():
    tracks, noise, rooms = _toy()
    a, b = (ev.draw_queries(tracks, 2.0, 20, np.random.default_rng(5), 2, 3) for _ in range(2))
    assert [(q.track, q.start, q.noise, q.room) for q in a] == [(q.track, q.start, q.noise, q.room) for q in b]
    assert all(0 <= q.start <= len(tracks[q.track]) - q.n for q in a)
    assert sum(q.start % 800 != 0 for q in a) >= 18  # continuous starts, not the 0.1 s grid


def test_score_strict_loose_and_repeat_aware():
    def m(track, offset):
        return Match(track, offset, 0.9, 10, 1.0)

    cases = [  # (match, truth start, repeats (s), expected hit / hit_loose / repeat / right_track / false)
        (m("a", 10.05), 10.0, [], (True, True, True, True, False)),
        (m("a", 10.1), 10.0, [], (True, True, True, True, False)),  # the tolerance is inclusive
        (m("a", 10.3), 10.0, [], (False, True, False, True, True)),
        (m("a", 10.6), 10.0, [], (False, False, False, True, True)),
        (m("a", 22.04), 10.0, [10.0, 22.0], (False, False, True, True, False)),  # where the excerpt recurs
        (m("a", 22.3), 10.0, [10.0, 22.0], (False, False, False, True, True)),
        (m("b", 10.0), 10.0, [10.0], (False, False, False, False, True)),  # wrong track
        (m(None, 10.0), 10.0, [10.0], (False, False, False, False, False)),  # no match: not right, not false
    ]
    for match, start, reps, want in cases:
        s = ev.score(match, "a", start, reps, tol=0.1, loose_tol=0.5)
        assert (s["hit"], s["hit_loose"], s["repeat"], s["right_track"], s["false"]) == want, (match, s)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    torch.manual_seed(0)
    save_model(build_model(ModelConfig.preset("tiny")), tmp / "tiny.safetensors")  # untrained: the plumbing only
    cfg = ev.EvalConfig(lengths=(1.0,), cells=(("clean", None), ("noise+reverb", 10.0)),
                        methods=("minihash", "exhaustive", "landmarks", "sign"), n_queries=3, n_negatives=3,
                        n_calibration=4, n_synth=4, n_neg_tracks=2, synth_seconds=8.0, n_rooms=4)
    result = ev.run_eval(cfg, tmp / "out", model=tmp / "tiny.safetensors", command="minihash eval (test)",
                         progress=False)
    return result, tmp / "out"


def test_tiny_run_writes_the_report(tiny_run):
    result, out = tiny_run
    md = (out / "results.md").read_text()
    for method in ("minihash", "exhaustive", "landmarks"):
        assert f"| {method} | 1 s |" in md
    assert "sign: skipped" in md and "minihash eval (test)" in md
    rows = list(csv.DictReader(open(out / "results.csv")))
    got = sorted((r["method"], r["condition"], r["snr_db"]) for r in rows)
    want = sorted((m, c, s) for m in ("minihash", "exhaustive", "landmarks")
                  for c, s in (("clean", ""), ("noise+reverb", "10.0"), ("negatives", "")))
    assert got == want
    assert all(r["n"] == "3" and r["length_s"] == "1.0" for r in rows)
    # the right recording is found at least as often as the right place in it; negatives have none
    assert all(int(r["right_track"]) >= int(r["hits_0.1"]) for r in rows) and "## Right recording %" in md
    assert all(r["right_track"] == "0" for r in rows if r["condition"] == "negatives")
    assert (out / "top1_vs_snr_1s.png").stat().st_size > 1000
    # queries.csv: every query of every method, and its rows add up to the table's
    queries = list(csv.DictReader(open(out / "queries.csv")))
    assert len(queries) == len(result.records) == sum(int(r["n"]) for r in rows)
    for r in rows:
        neg = r["condition"] == "negatives"
        mine = [q for q in queries if q["method"] == r["method"] and q["length_s"] == r["length_s"]
                and q["kind"] == ("negative" if neg else "positive")
                and (neg or (q["condition"], q["snr_db"]) == (r["condition"], r["snr_db"]))]
        assert len(mine) == int(r["n"]) and sum(q["hit"] == "True" for q in mine) == int(r["hits_0.1"])
    assert all(q["track"] for q in queries if q["kind"] == "positive")
    # every positive query knows how alike the most alike other place of its track sounds
    pos = [r for r in result.records if r["kind"] == "positive"]
    assert all(-1.0 <= r["likeness"] <= 1.0 for r in pos)
    assert all(q["likeness"] == "" for q in queries if q["kind"] == "negative")
    assert "## Top-1 % by how alike" in md
    lines = [ln for ln in result.likeness_table().splitlines()[2:] if ln.startswith("| minihash | 1 s |")]
    assert sum(int(ln.split("|")[4].split()[0]) for ln in lines) == 3  # the bins hold every query once
    clean = [r for r in pos if r["method"] == "minihash" and r["condition"] == "clean"]
    for ln in lines:
        label, n = ln.split("|")[3].strip(), int(ln.split("|")[4].split()[0])
        lo, hi = next((lo, hi) for lo, hi, lab in ev.LIKENESS_BINS if lab == label)
        inside = [r for r in clean if lo <= r["likeness"] < hi]
        assert len(inside) == n
        if n:
            assert float(ln.split("|")[5]) == pytest.approx(100 * np.mean([r["hit"] for r in inside]), abs=0.05)


def test_tiny_run_same_excerpts_everywhere_and_exhaustive_scores_all(tiny_run):
    result, _ = tiny_run
    pos = [r for r in result.records if r["kind"] == "positive"]
    seen = {}
    for r in pos:
        seen.setdefault(r["query"], set()).add((r["track"], r["start_s"]))
    assert len(seen) == 3 and all(len(v) == 1 for v in seen.values())  # one excerpt per query index
    assert len({(r["method"], r["condition"]) for r in pos}) == 6
    assert all(r["frac_scored"] == 1.0 for r in result.records if r["method"] == "exhaustive")
    assert all(r["frac_scored"] < 1.0 for r in result.records if r["method"] == "minihash")
    assert "threshold" in result.index_stats["minihash"]


def test_eval_arguments():
    p = cli.build_parser()
    cfg = cli.eval_config(p.parse_args(["eval", "--quick", "--snrs", "5", "--conditions", "clean", "noise",
                                        "--queries", "7", "--methods", "lsh", "landmarks"]))
    assert cfg.cells == (("clean", None), ("noise", 5.0)) and cfg.n_queries == cfg.n_negatives == 7
    assert cfg.methods == ("lsh", "landmarks") and cfg.lengths == (1.0, 3.0) and cfg.n_synth == 100
    full = cli.eval_config(p.parse_args(["eval"]))
    assert len(full.cells) == 12 and full.lengths == (1.0, 2.0, 3.0, 5.0)


def test_demo_without_the_shipped_model_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setattr(minihash.modelfile, "SHIPPED", tmp_path / "missing.safetensors")
    with pytest.raises(FormatError, match="shipped model is missing"):
        cli.demo_command(cli.build_parser().parse_args(["demo", "--out", str(tmp_path / "demo")]))


def test_a_front_end_hop_that_does_not_divide_the_db_hop_is_windowed_from_the_samples():
    torch.manual_seed(0)
    tiny, nafp = build_model(ModelConfig.preset("tiny")), build_model(ModelConfig.preset("nafp-small"))
    assert tiny.slices_mel(0.1) and tiny.slices_mel(0.5)  # 10 ms hop: one log-mel, sliced
    assert not nafp.slices_mel(0.1) and not nafp.slices_mel(0.5)  # 32 ms hop: windows cut from the samples
    x = np.random.default_rng(0).standard_normal(25_000).astype(np.float32)
    e, z, s = nafp.fingerprint_audio(x, 0.1)
    windows, starts = segment(x, 8000, 1.0, 0.1)
    ref_e, ref_z = nafp.fingerprint(windows)
    np.testing.assert_allclose(s, starts)
    np.testing.assert_allclose(e, ref_e, atol=1e-6)
    np.testing.assert_allclose(z, ref_z, atol=1e-5)
    assert len(s) == 1 + (25_000 - 8000) // 800


def test_overview_figure_shows_the_query_its_match_and_the_votes():
    torch.manual_seed(0)
    model = build_model(ModelConfig.preset("tiny"))  # untrained: the plumbing only
    fig, axes, m = ev.overview_figure(model, n_tracks=6, snr_db=20.0, rt60=0.3)
    assert m.track in {f"song_{i:02d}" for i in range(6)}
    assert axes[1].get_title().startswith(f"match: {m.track} from")
    bars = [p.get_height() for p in axes[2].patches]  # the vote histogram
    assert bars and max(bars) > 0
    assert any(ln.get_xdata()[0] == pytest.approx(m.offset_s) for ln in axes[2].get_lines())  # the start found
