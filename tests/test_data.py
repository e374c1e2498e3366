"""Tests of the embedded corpus (minihash.corpus: songs, their cache, noises, repeats) and training pairs (minihash.pairs)."""
import numpy as np
import pytest
import soundfile as sf
import torch
from scipy import signal

from minihash.corpus import music
from minihash.corpus.music import synth_track, synth_tracks
from minihash.corpus.noise import NOISE_KINDS, noise_bank
from minihash.corpus.repeats import cross_track_duplicates, self_repeat_share, window_features
from minihash.pairs import PairDataset, load_rirs, make_loader, random_windows, training_noise
from minihash.audio import AudioFolder
from minihash.errors import AudioError
from minihash.spectrogram import log_mel

SR = 8000


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # small tensors: on a shared 2-core machine intra-op threads cost more than they give
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIHASH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def corpus():
    return synth_tracks(12, 10.0, seed=0, cache=False)


# ----------------------------------------------------------------------------
# the procedural corpus


def test_synth_deterministic_and_independent_of_n(corpus):
    again = synth_tracks(5, 10.0, seed=0, cache=False)
    for a, b in zip(again, corpus):
        np.testing.assert_array_equal(a, b)
    other = synth_track(0, 10.0, seed=1, cache=False)
    assert not np.allclose(other, corpus[0])
    for x in corpus:
        assert x.dtype == np.float32 and x.shape == (10 * SR,)
        assert np.isfinite(x).all()
        assert abs(np.abs(x).max() - 0.9) < 1e-4
        assert np.sqrt(np.mean(x ** 2)) > 0.03  # music, not near-silence


def test_cache_round_trip_and_corrupt_file(corpus, tmp_cache):
    first = synth_tracks(3, 10.0, seed=0)  # generates and writes
    files = sorted((tmp_cache / "synth").glob("*.npy"))
    assert len(files) == 3
    assert not list((tmp_cache / "synth").glob("*.tmp"))  # atomic writes leave no temp file
    for a, b in zip(first, corpus):
        np.testing.assert_array_equal(a, b)
    # a cached file is what is read back: prove it by planting a valid-looking different track
    planted = synth_track(7, 10.0, seed=0, cache=False)
    np.save(files[1], planted)
    np.testing.assert_array_equal(synth_track(1, 10.0, seed=0), planted)
    # corrupt files (truncated, garbage bytes, wrong shape, pickled object) are regenerated
    for bad in (files[0].read_bytes()[:100], b"\x93NUMPY garbage", None, "pickle"):
        if bad is None:
            np.save(files[0], np.zeros(5, np.float32))
        elif bad == "pickle":
            np.save(files[0], np.array([{"a": 1}], dtype=object), allow_pickle=True)
        else:
            files[0].write_bytes(bad)
        np.testing.assert_array_equal(synth_track(0, 10.0, seed=0), corpus[0])
        np.testing.assert_array_equal(np.load(files[0]), corpus[0])  # and rewritten


def test_a_cache_that_cannot_be_written_only_costs_time(corpus, tmp_cache, monkeypatch):
    def refuse(path, a):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(music, "save_npy", refuse)  # a read-only cache folder
    np.testing.assert_array_equal(synth_track(0, 10.0, seed=0), corpus[0])
    assert not list(tmp_cache.rglob("*.npy"))


def _frame_windows(x):
    """Z-normalised 1 s log-mel windows at every 10 ms frame, from one spectrogram of the whole track."""
    S = log_mel(x)  # (64, frames)
    F = S.unfold(1, 101, 1).permute(1, 0, 2).flatten(1)  # (frames - 100, 64 * 101)
    F = F - F.mean(1, keepdim=True)
    return F / F.norm(dim=1, keepdim=True)


@pytest.fixture(scope="module")
def songs():
    return synth_tracks(12, 30.0, seed=0, cache=False)


def test_sections_repeat_within_tracks(songs):
    # queries every 0.5 s against windows every 10 ms, at least 2 s away: a repeated
    # section must give near-duplicates (log-mel r > 0.8) in every track, most of them r > 0.9
    close, closer = [], []
    for x in songs[:6]:
        D = _frame_windows(x)  # (N, D)
        q = torch.arange(0, len(D), 50)
        S = D[q] @ D.T  # (Q, N)
        S[(q[:, None] - torch.arange(len(D))[None, :]).abs() < 200] = -2.0
        close.append((S.amax(1) > 0.8).float().mean().item())
        closer.append((S.amax(1) > 0.9).float().mean().item())
    assert min(close) > 0.3 and np.mean(close) > 0.6, close
    assert np.mean(closer) > 0.3, closer


def test_repeats_are_near_duplicates_not_copies(songs):
    # most repeats are played again (new timing, dynamics, ornaments): 15-30 % of windows recur
    # sample for sample on 40 tracks; a dozen are lumpier (one looped track weighs 8 %)
    share = self_repeat_share(songs)
    assert 0.1 <= share <= 0.4, share
    # the measure can fail: a track that is one section looped recurs everywhere
    loop = np.tile(songs[0][SR: 4 * SR], 4)  # (12 s,)
    assert self_repeat_share([loop]) == 1.0
    assert self_repeat_share([loop], min_gap_s=7.0) == pytest.approx(10 / 23)  # 9 s apart: 0-2 s and 9-11 s


def test_self_repeat_share_matches_naive_loop():
    sr, rng = 500, np.random.default_rng(7)
    x = rng.standard_normal(12 * sr)
    x[6 * sr: 8 * sr] = -0.5 * x[sr: 3 * sr]  # a copy, inverted and quieter: NCC -1, never a repeat
    x[9 * sr: 11 * sr] = 2.0 * x[2 * sr: 4 * sr] + 0.3 * rng.standard_normal(2 * sr)  # louder, NCC ~0.96
    x[4 * sr: 5 * sr] = 0.0  # silence is left out
    tracks = [x, x[: 5 * sr].copy()]
    for thr, gap in ((0.9, 2.0), (0.5, 2.0), (0.9, 7.5)):
        found = total = 0
        for y in tracks:
            views = np.lib.stride_tricks.sliding_window_view(y, sr)  # (L, W) every lag, directly
            for s in range(0, len(y) - sr + 1, sr // 2):
                w = y[s: s + sr]
                if np.sqrt(np.mean(w ** 2)) < 1e-3:
                    continue
                far = np.abs(np.arange(len(views)) - s) >= gap * sr
                ncc = views[far] @ w / (np.linalg.norm(w) * np.linalg.norm(views[far], axis=1) + 1e-9)
                found, total = found + (ncc.max(initial=-1.0) >= thr), total + 1
        assert self_repeat_share(tracks, sr=sr, threshold=thr, min_gap_s=gap) == pytest.approx(found / total)
    assert self_repeat_share(tracks, sr=sr) == pytest.approx(6 / 30)  # 2-3 s and 9-10 s, of 30 loud windows


def test_tracks_are_not_copies_of_each_other(corpus):
    share = cross_track_duplicates(corpus)
    assert share < 0.01
    # the measure can fail: a corpus holding a copy (here gain-changed) is caught
    dup = cross_track_duplicates(corpus[:3] + [0.5 * corpus[1]])
    assert dup > 0.45


def test_cross_track_duplicates_matches_naive_loop(corpus):
    tracks = [x[: 4 * SR] for x in corpus[:4]] + [np.roll(corpus[0][: 4 * SR], 2000)]
    feats = [window_features(x) for x in tracks]
    best = []
    for i, Fi in enumerate(feats):
        for f in Fi:
            others = [np.corrcoef(f.numpy(), g.numpy())[0, 1] for j, Fj in enumerate(feats) if j != i for g in Fj]
            best.append(max(others))
    for thr in (0.5, 0.8, 0.95):
        expect = np.mean(np.array(best) > thr)
        assert cross_track_duplicates(tracks, threshold=thr, block=7) == pytest.approx(expect, abs=1e-6)


# ----------------------------------------------------------------------------
# the noise bank


@pytest.fixture(scope="module")
def bank():
    return noise_bank(8.0, seed=0)


def _slope_db_per_octave(x):
    f, P = signal.welch(x, fs=SR, nperseg=4096)
    m = (f >= 50) & (f <= 3000)
    return np.polyfit(np.log2(f[m]), 10 * np.log10(P[m]), 1)[0]


def test_noise_bank_kinds_and_determinism(bank):
    assert set(bank) == set(NOISE_KINDS) == {"pink", "brown", "babble", "traffic", "rain", "clicks", "hum"}
    again, other = noise_bank(8.0, seed=0), noise_bank(8.0, seed=1)
    for k, x in bank.items():
        assert x.dtype == np.float32 and x.shape == (8 * SR,)
        assert np.isfinite(x).all() and np.sqrt(np.mean(x ** 2)) > 5e-3
        np.testing.assert_array_equal(x, again[k])
        assert np.abs(x - other[k]).max() > 0.1


def test_noise_spectral_shapes(bank):
    assert _slope_db_per_octave(bank["pink"]) == pytest.approx(-3.01, abs=0.4)
    assert _slope_db_per_octave(bank["brown"]) == pytest.approx(-6.02, abs=0.4)
    for seed in (0, 1, 2, 3):
        hum = noise_bank(4.0, seed=seed)["hum"]
        f, P = signal.welch(hum, fs=SR, nperseg=8192)
        peak = f[np.argmax(P)]
        assert min(abs(peak - 50), abs(peak - 60)) < 1.5, peak
    # traffic is a low rumble, rain and babble sit in the speech band
    for k, lo, hi in (("traffic", 0, 500), ("babble", 100, 3000), ("rain", 400, 3600)):
        f, P = signal.welch(bank[k], fs=SR, nperseg=2048)
        assert P[(f >= lo) & (f <= hi)].sum() > 0.7 * P.sum(), k


# ----------------------------------------------------------------------------
# training pairs


def scaled_noisy(x, generator=None):
    """A picklable stand-in for distort.Distorter: gain and noise from the generator."""
    return 0.5 * x + 0.01 * torch.randn(x.shape, generator=generator)


def test_pair_dataset_batches(corpus):
    tracks = corpus[:4] + [np.zeros(3 * SR, np.float32)]  # a silent track is never drawn
    ds = PairDataset(tracks, scaled_noisy, batch_size=16, seed=3)
    clean, dist = next(iter(ds))
    assert clean.shape == dist.shape == (16, SR) and clean.dtype == dist.dtype == torch.float32
    assert (clean.pow(2).mean(1).sqrt() >= 1e-3).all()
    # each clean window is a real excerpt of one of the tracks
    flat = np.concatenate(corpus[:4])
    for w in clean[:4].numpy():
        hits = np.flatnonzero(flat[:-SR] == w[0])
        assert any(np.array_equal(flat[h:h + SR], w) for h in hits)
    # the distortion is applied to the window itself, with the dataset's generator
    assert (dist - 0.5 * clean).abs().max() < 0.1 and (dist - 0.5 * clean).std() > 1e-3
    a = [b for _, b in zip(range(3), iter(ds))]
    b = [b for _, b in zip(range(3), iter(PairDataset(tracks, scaled_noisy, batch_size=16, seed=3)))]
    c = next(iter(PairDataset(tracks, scaled_noisy, batch_size=16, seed=4)))
    for (c1, d1), (c2, d2) in zip(a, b):
        assert torch.equal(c1, c2) and torch.equal(d1, d2)
    assert not torch.equal(a[0][0], c[0])
    assert not torch.equal(a[0][0], a[1][0])


def test_pair_dataset_draws_several_windows_per_track():
    # track i is the level 0.01 (i + 1) plus a ramp of 1e-4 per second: a window's first sample says its track and start
    tracks = [np.float32(0.01 * (i + 1)) + 1e-4 * np.arange(20 * SR, dtype=np.float32) / SR for i in range(30)]

    def tracks_and_starts(per_track):
        clean, _ = next(iter(PairDataset(tracks, scaled_noisy, batch_size=24, seed=5, per_track=per_track)))
        level = clean[:, 0].numpy().astype(np.float64)
        t = np.floor(100 * level + 1e-3).astype(int) - 1  # the ramp adds under 0.002
        return t, (level - 0.01 * (t + 1)) / 1e-4

    t, starts = tracks_and_starts(4)
    assert (t.reshape(6, 4) == t.reshape(6, 4)[:, :1]).all()  # four windows of one track, in turn
    assert all(np.ptp(s) > 0.01 for s in starts.reshape(6, 4))  # at their own places in it
    assert len(set(tracks_and_starts(1)[0])) > 12  # one window per draw: 24 draws of 30 tracks
    with pytest.raises(ValueError, match="per_track"):
        PairDataset(tracks, scaled_noisy, per_track=0)
    with pytest.raises(ValueError, match="per_track"):  # more than a batch holds
        PairDataset(tracks, scaled_noisy, batch_size=8, per_track=9)


def test_pair_dataset_context_and_loader_workers(corpus):
    ds = PairDataset(corpus[:3], lambda x, generator=None: x * 2, batch_size=4, context_s=0.25)
    clean, dist = next(iter(ds))
    assert clean.shape == dist.shape == (4, SR) and torch.allclose(dist, 2 * clean)
    loader = make_loader(corpus[:4], scaled_noisy, batch_size=8, num_workers=2, seed=0)
    batches = [b for _, b in zip(range(4), loader)]
    assert all(c.shape == (8, SR) and d.shape == (8, SR) for c, d in batches)
    assert not torch.equal(batches[0][0], batches[1][0])  # workers 0 and 1 draw different streams
    # worker 0's stream is the single-process stream with the same seed
    single = next(iter(PairDataset(corpus[:4], scaled_noisy, batch_size=8, seed=0)))
    assert torch.equal(batches[0][0], single[0])


def test_pair_dataset_over_tracks_mapped_from_the_cache(corpus, tmp_path):
    # what `minihash train` does: tracks mapped read-only from the decode cache, drawn by forked workers
    for i, x in enumerate(corpus[:4]):
        sf.write(tmp_path / f"t{i}.wav", x, SR, subtype="FLOAT")
    AudioFolder(tmp_path, progress=False)  # decodes into the cache
    mapped = AudioFolder(tmp_path, mmap=True, progress=False).tracks
    assert not any(t.flags.writeable for t in mapped)
    copies = [np.array(t) for t in mapped]
    a = [b for _, b in zip(range(3), make_loader(mapped, scaled_noisy, batch_size=8, num_workers=2, seed=1))]
    b = [b for _, b in zip(range(3), make_loader(copies, scaled_noisy, batch_size=8, num_workers=2, seed=1))]
    for (c1, d1), (c2, d2) in zip(a, b):
        assert torch.equal(c1, c2) and torch.equal(d1, d2)
    flat = np.concatenate(copies)
    for w in a[0][0][:3].numpy():  # excerpts of the tracks, as in memory
        hits = np.flatnonzero(flat[:-SR] == w[0])
        assert any(np.array_equal(flat[h:h + SR], w) for h in hits)


def test_random_windows(corpus):
    a = random_windows(corpus[:3], 10, seed=5)
    assert a.shape == (10, SR) and a.dtype == torch.float32
    assert torch.equal(a, random_windows(corpus[:3], 10, seed=5))
    assert not torch.equal(a, random_windows(corpus[:3], 10, seed=6))


# ----------------------------------------------------------------------------
# real noise and rooms


def test_training_noise_and_rirs(tmp_path):
    rng = np.random.default_rng(1)
    for d in ("noise", "speech", "rirs"):
        (tmp_path / d).mkdir()
    for i in range(20):
        sf.write(tmp_path / "noise" / f"n{i:02d}.wav", (0.1 * rng.standard_normal(SR)).astype(np.float32), SR)
    for i in range(10):
        sf.write(tmp_path / "speech" / f"s{i}.wav", (0.1 * rng.standard_normal(SR)).astype(np.float32), SR)
    t = np.arange(800) / SR
    sf.write(tmp_path / "rirs" / "room.wav", (rng.standard_normal(800) * np.exp(-t / 0.02)).astype(np.float32), SR)

    procedural = training_noise(split="train")
    assert len(procedural) == len(NOISE_KINDS)
    assert not np.array_equal(procedural[0], training_noise(split="eval")[0])
    train = training_noise([tmp_path / "noise"], [tmp_path / "speech"], split="train", seconds=2.0)
    evaln = training_noise([tmp_path / "noise"], [tmp_path / "speech"], split="eval", seconds=2.0)
    real_train, real_eval = [x for x in train if x.size == SR], [x for x in evaln if x.size == SR]
    assert len(real_train) + len(real_eval) == 20 and real_train and real_eval
    assert not any(np.array_equal(a, b) for a in real_train for b in real_eval)  # disjoint splits
    babble = [x for x in train if x.size == 2 * SR]
    assert babble and all(np.isfinite(x).all() and x.std() > 0.01 for x in babble)
    rirs = load_rirs(tmp_path / "rirs")
    assert len(rirs) == 1 and rirs[0].shape == (800,)
    (tmp_path / "empty").mkdir()
    for missing in (tmp_path / "empty", tmp_path / "missing"):
        with pytest.raises(AudioError):
            load_rirs([missing])


def test_pair_dataset_with_the_distorter(corpus):
    distort = pytest.importorskip("minihash.distort")
    d = distort.Distorter(distort.DistortConfig(), noise_bank(2.0, seed=0), None, n_rirs=4)
    clean, dist = next(iter(PairDataset(corpus[:4], d, batch_size=8, seed=0)))
    assert clean.shape == dist.shape == (8, SR) and torch.isfinite(dist).all()
    assert not torch.equal(clean, dist)
