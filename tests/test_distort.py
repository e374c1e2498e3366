"""Tests for minihash.distort against independent references (numpy SNR, scipy convolution, analytic decays)."""
import math
import time

import numpy as np
import pytest
import torch
from scipy.signal import correlate, fftconvolve

from scipy.signal import butter, freqs

from minihash.distort import (CONDITIONS, DistortConfig, Distorter, add_noise, band_limit, crop, reverb,
                              rt60_schroeder, snr_db, synth_rir, time_offset)

SR = 8000


def music_like(seconds=1.0, seed=0, sr=SR):
    """Three-note chords of decaying harmonic tones every 125 ms, each with a hi-hat burst: tonal, with onsets."""
    rng = np.random.default_rng(seed)
    T, step = int(seconds * sr), int(0.125 * sr)
    t = np.arange(step) / sr
    x = np.zeros(T)
    for start in range(0, T, step):
        seg = np.zeros(step)
        for f0 in 110 * 2 ** (rng.integers(0, 36, 3) / 12):
            seg += sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 6))
        seg = seg * np.exp(-t / 0.1) + rng.standard_normal(step) * np.exp(-t / 0.015)
        x[start:start + step] = seg[:T - start]
    return (0.05 * x).astype(np.float32)


def np_snr(clean, noisy):
    clean, noisy = np.asarray(clean, np.float64), np.asarray(noisy, np.float64)
    return 10 * np.log10(np.mean(clean ** 2, -1) / np.mean((noisy - clean) ** 2, -1))


# ----------------------------------------------------------------------------
# noise


def test_add_noise_hits_requested_snr():
    rng = np.random.default_rng(0)
    snrs = np.array([-5.0, 0.0, 5.0, 10.0, 20.0, 30.0])
    B, T = len(snrs), 8000
    x = rng.standard_normal((B, T)) * rng.uniform(0.01, 1.0, (B, 1))  # different levels per item
    x[0] = music_like()
    noise = np.cumsum(rng.standard_normal((B, 12000)), -1) * 0.01 + 0.3  # brown, with DC, longer than x
    y = add_noise(torch.tensor(x, dtype=torch.float32), torch.tensor(noise, dtype=torch.float32),
                  torch.tensor(snrs)).numpy()
    xf = x.astype(np.float32)
    err = np_snr(xf, y) - snrs
    assert np.abs(err).max() < 0.1, err
    # the noise is the first T samples of the recording, scaled
    for b in range(B):
        scale = np.dot(y[b] - xf[b], noise[b, :T]) / np.dot(noise[b, :T], noise[b, :T])
        np.testing.assert_allclose(y[b] - xf[b], scale * noise[b, :T], atol=1e-5 * np.abs(y[b]).max())
    np.testing.assert_allclose(snr_db(xf, y).numpy(), np_snr(xf, y), atol=1e-6)
    # one float SNR for a batch, and 1-d inputs
    y = add_noise(torch.tensor(xf), torch.tensor(noise[0], dtype=torch.float32), 7.5)
    assert np.abs(np_snr(xf, y.numpy()) - 7.5).max() < 0.1
    y1 = add_noise(xf[1], noise[1, :T], -3.0)  # numpy in
    assert y1.shape == (T,) and abs(np_snr(xf[1], y1.numpy()) + 3.0) < 0.1


def test_add_noise_tiles_short_noise_and_guards_zero_power():
    x = torch.tensor(music_like(0.5))
    short = torch.randn(300)
    y = add_noise(x, short, 10.0)
    n = (y - x).numpy()
    tiled = np.tile(short.numpy(), 14)[:x.shape[0]]
    np.testing.assert_allclose(n / n[:300].std(), tiled / short.numpy().std(), atol=1e-3)
    assert abs(np_snr(x.numpy(), y.numpy()) - 10.0) < 0.1
    y = add_noise(x, torch.zeros(4000), 0.0)  # silent noise: nothing added, no NaN
    assert torch.equal(y, x)
    y = add_noise(torch.zeros(2, 4000), torch.randn(2, 4000), 0.0)  # silent signal stays silent
    assert torch.isfinite(y).all() and y.abs().max() == 0


# ----------------------------------------------------------------------------
# impulse responses and RT60


def test_schroeder_measures_analytic_exponential_decay():
    for rt60 in (0.25, 0.5, 1.5):
        t = np.arange(int(2 * rt60 * SR)) / SR
        h = np.exp(-math.log(1000) * t / rt60)  # energy 60 dB down at rt60
        assert abs(rt60_schroeder(h, SR) - rt60) / rt60 < 0.01
        noisy = h * np.random.default_rng(1).standard_normal(t.size)  # a diffuse tail on the same decay
        assert abs(rt60_schroeder(noisy, SR) - rt60) / rt60 < 0.05
    with pytest.raises(ValueError):
        rt60_schroeder(np.ones(100), SR)


@pytest.mark.parametrize("rt60", [0.3, 0.6, 1.0])
def test_synth_rir_has_requested_rt60(rt60):
    measured = []
    for seed in range(5):
        h = synth_rir(rt60, SR, generator=torch.Generator().manual_seed(seed))
        assert h.dtype == torch.float32 and h.ndim == 1 and h.shape[0] == round(1.2 * rt60 * SR)
        assert h[0] == 1.0 and h.abs().argmax() == 0  # the direct path is the strongest tap
        measured.append(rt60_schroeder(h, SR))
    errors = np.abs(np.array(measured) - rt60) / rt60
    assert errors.max() < 0.15, measured
    assert abs(np.mean(measured) - rt60) / rt60 < 0.05, measured
    assert synth_rir(0.05, SR).shape[0] == int(0.1 * SR)  # at least 0.1 s long


def test_synth_rir_is_seeded():
    a = synth_rir(0.5, generator=torch.Generator().manual_seed(3))
    b = synth_rir(0.5, generator=torch.Generator().manual_seed(3))
    c = synth_rir(0.5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (synth_rir(0.5, early=False, generator=torch.Generator().manual_seed(3)).abs()[1:] < 0.5).all()


# ----------------------------------------------------------------------------
# reverb


def delayed_rir(seed, delay=37):
    """A measured-style response: a pre-delay with a little noise before the direct path."""
    rng = np.random.default_rng(seed)
    h = synth_rir(0.4, generator=torch.Generator().manual_seed(seed)).numpy()
    return np.concatenate([rng.standard_normal(delay) * 1e-3, h]).astype(np.float32)


def test_reverb_equals_scipy_fftconvolve():
    rng = np.random.default_rng(0)
    T = 4000
    x = np.stack([rng.standard_normal(T), music_like(0.5, seed=1), music_like(0.5, seed=2)]).astype(np.float32)
    h = [delayed_rir(0), synth_rir(0.8, generator=torch.Generator().manual_seed(1)).numpy(), delayed_rir(2, 5)]
    L = max(len(r) for r in h)
    rirs = np.stack([np.pad(r, (0, L - len(r))) for r in h])
    y = reverb(torch.tensor(x), torch.tensor(rirs)).numpy()
    for b in range(3):
        d = int(np.argmax(np.abs(h[b])))
        ref = fftconvolve(x[b].astype(np.float64), h[b].astype(np.float64))[d:d + T]
        ref *= np.sqrt(np.mean(x[b].astype(np.float64) ** 2) / np.mean(ref ** 2))
        np.testing.assert_allclose(y[b], ref, atol=2e-5 * np.abs(ref).max())
    # one response for the whole batch, and 1-d in, 1-d out
    y_shared = reverb(torch.tensor(x), torch.tensor(h[0])).numpy()
    np.testing.assert_allclose(y_shared[0], y[0], atol=1e-5)
    np.testing.assert_allclose(reverb(x[1], h[1]).numpy(), y[1], atol=1e-5)  # numpy in, 1-d out


def xcorr_lag(y, x):
    """Lag (samples y lags x) of the peak of the plain cross-correlation."""
    c = correlate(np.float64(y), np.float64(x), mode="full", method="fft")
    return int(np.argmax(c)) - (len(x) - 1)


def phat_lag(y, x):
    """Lag of the peak of the GCC-PHAT cross-correlation (whitened, so tonal music has no spurious peaks)."""
    n = 2 * len(x)
    C = np.fft.rfft(np.float64(y), n) * np.conj(np.fft.rfft(np.float64(x), n))
    lag = int(np.argmax(np.fft.irfft(C / np.maximum(np.abs(C), 1e-12), n)))
    return lag if lag < n // 2 else lag - n


def test_reverb_adds_no_delay_and_keeps_rms():
    T = 8000
    for seed in range(4):
        noise, music = np.random.default_rng(seed).standard_normal(T).astype(np.float32), music_like(1.0, seed=seed)
        short, long = (synth_rir(rt, generator=torch.Generator().manual_seed(seed)) for rt in (0.3, 0.9))
        delayed = torch.tensor(delayed_rir(seed))
        for x, h in [(noise, short), (noise, long), (noise, delayed), (music, short), (music, delayed)]:
            y = reverb(torch.tensor(x), h).numpy()
            assert xcorr_lag(y, x) == 0
            np.testing.assert_allclose(np.sqrt(np.mean(np.float64(y) ** 2)), np.sqrt(np.mean(np.float64(x) ** 2)),
                                       rtol=1e-5)
        # under a long tail the plain correlation of tonal music has near-ties at multiples of the periods,
        # so the whitened (GCC-PHAT) correlation measures the delay there
        for h in (short, long, delayed):
            assert phat_lag(reverb(torch.tensor(music), h).numpy(), music) == 0
        # control: convolving without the alignment delays by the pre-delay, and the measure sees it
        unaligned = fftconvolve(music, delayed.numpy())[:T]
        assert xcorr_lag(unaligned, music) == phat_lag(unaligned, music) == 37


def test_reverb_alignment_is_exact():
    x = torch.tensor(music_like(0.5))
    delta = torch.zeros(300)
    delta[123] = -2.0  # a pure delayed (and inverted, louder) direct path
    np.testing.assert_allclose(reverb(x, delta).numpy(), -x.numpy(), atol=1e-6)
    h = synth_rir(0.5, generator=torch.Generator().manual_seed(0))
    padded = torch.cat([torch.zeros(250), h, torch.zeros(100)])  # pre-delay and trailing zeros change nothing
    np.testing.assert_allclose(reverb(x, padded).numpy(), reverb(x, h).numpy(), atol=1e-6)


# ----------------------------------------------------------------------------
# offsets


def test_time_offset_matches_loop():
    x = torch.randn(64, 100)
    y, shift = time_offset(x, 10, generator=torch.Generator().manual_seed(0), return_shift=True)
    assert shift.abs().max() <= 10 and len(set(shift.tolist())) > 10
    ref = np.zeros((64, 100), np.float32)
    for b, s in enumerate(shift.tolist()):
        for t in range(100):
            if 0 <= t - s < 100:
                ref[b, t] = x[b, t - s]
    np.testing.assert_array_equal(y.numpy(), ref)
    assert torch.equal(time_offset(x, 0), x)


def test_crop_pads_with_zeros():
    x = np.arange(1, 11, dtype=np.float32)
    for start, length in [(2, 5), (-3, 5), (8, 5), (-2, 15), (20, 3)]:
        ref = np.array([x[i] if 0 <= i < 10 else 0 for i in range(start, start + length)], np.float32)
        np.testing.assert_array_equal(crop(x, start, length).numpy(), ref)


# ----------------------------------------------------------------------------
# the training chain


def make_bank():
    rng = np.random.default_rng(0)
    return {"white": rng.standard_normal(20000).astype(np.float32),
            "brown": np.cumsum(rng.standard_normal(30000)).astype(np.float32) * 0.01,
            "short": rng.standard_normal(700).astype(np.float32)}


def test_distorter_is_seeded():
    x = torch.randn(32, 8000)
    d1 = Distorter(DistortConfig.train(), make_bank(), n_rirs=20)
    d2 = Distorter(DistortConfig.train(), make_bank(), n_rirs=20)
    a = d1(x, generator=torch.Generator().manual_seed(5))
    b = d2(x, generator=torch.Generator().manual_seed(5))
    c = d1(x, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert not torch.equal(Distorter(DistortConfig.train(), make_bank(), n_rirs=20, seed=1).rirs, d1.rirs)


def test_distorter_condition_mix_and_labels():
    cfg = DistortConfig(p_clean=0.1, p_noise=0.3, p_reverb=0.2, p_noise_reverb=0.4, snr_db=(0.0, 20.0),
                        rt60=(0.1, 0.2), max_offset_s=0.0)
    dist = Distorter(cfg, make_bank(), n_rirs=30)
    x = torch.randn(2000, 256) * torch.rand(2000, 1)
    y, cond = dist(x, generator=torch.Generator().manual_seed(0), return_conditions=True)
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()
    freq = torch.bincount(cond, minlength=4).double() / len(cond)
    np.testing.assert_allclose(freq.numpy(), cfg.probs().numpy(), atol=0.04)
    xn, yn = x.double().numpy(), y.double().numpy()
    ratio_db = 10 * np.log10(np.mean(yn ** 2, -1) / np.mean(xn ** 2, -1))
    clean, noise, rev, both = (cond == k for k in range(len(CONDITIONS)))
    assert torch.equal(y[clean], x[clean])
    s = np_snr(xn[noise], yn[noise])
    assert s.min() > -0.01 and s.max() < 20.01 and s.std() > 3  # uniform over (0, 20) dB
    np.testing.assert_allclose(ratio_db[rev], 0, atol=1e-4)  # reverb keeps the level...
    changed = np.abs(yn - xn).max(-1) / np.abs(xn).max(-1)
    assert (changed[rev | both] > 1e-2).all()  # ...but changes the signal


def test_distorter_reverberates_then_adds_noise():
    # a DC "noise" recording makes every crop identical, so the expected output can be computed exactly
    h = synth_rir(0.5, generator=torch.Generator().manual_seed(0))
    x = torch.tensor(np.stack([music_like(1.0, seed=s) for s in range(4)]))
    y = Distorter(DistortConfig.only("noise+reverb", 10.0), [np.ones(5000, np.float32)], rirs=[h])(x)
    wet = np.stack([fftconvolve(np.float64(xb), np.float64(h))[:8000] for xb in x.numpy()])
    wet *= np.sqrt(np.mean(np.float64(x.numpy()) ** 2, -1, keepdims=True) / np.mean(wet ** 2, -1, keepdims=True))
    dc = np.sqrt(np.mean(wet ** 2, -1, keepdims=True) / 10.0)  # 10 dB below the reverberant excerpt
    np.testing.assert_allclose(y.numpy(), wet + dc, atol=1e-5)


def test_eval_presets_and_dtypes():
    x = torch.tensor(np.stack([music_like(1.0, seed=s) for s in range(8)]), dtype=torch.float64)
    y = Distorter(DistortConfig.eval_noise(5.0), make_bank())(x, torch.Generator().manual_seed(0))
    assert y.dtype == torch.float64 and np.abs(np_snr(x.numpy(), y.numpy()) - 5.0).max() < 0.1
    y = Distorter(DistortConfig.only("reverb"), [], n_rirs=5)(x.float(), torch.Generator().manual_seed(0))
    np.testing.assert_allclose(y.pow(2).mean(-1), x.float().pow(2).mean(-1), rtol=1e-4)
    assert torch.equal(Distorter(DistortConfig.only("clean"), [])(x), x)
    cfg = DistortConfig(gain_db=(-6.0, 6.0), p_clean=1, p_noise=0, p_reverb=0, p_noise_reverb=0, max_offset_s=0)
    g = 10 * torch.log10(Distorter(cfg, [])(x).pow(2).mean(-1) / x.pow(2).mean(-1))
    assert g.abs().max() <= 6.0 + 1e-6 and g.std() > 1
    with pytest.raises(ValueError):
        Distorter(DistortConfig.train(), [])  # noise asked for, none given


def scipy_band_gain(f, low, high, order):
    """|H| of scipy's analogue Butterworth high-pass at `low` times its low-pass at `high`, at f Hz."""
    w = 2 * np.pi * np.asarray(f, dtype=np.float64)
    _, h_hp = freqs(*butter(order, 2 * np.pi * low, "highpass", analog=True), worN=w)
    _, h_lp = freqs(*butter(order, 2 * np.pi * high, "lowpass", analog=True), worN=w)
    return np.abs(h_hp * h_lp)


def test_band_limit_matches_scipy_butterworth():
    rng = np.random.default_rng(0)
    T = 8000
    bins = np.arange(1, T // 2)  # every bin but DC and Nyquist: 1 Hz apart
    X = np.zeros(T // 2 + 1, complex)
    X[bins] = np.exp(2j * np.pi * rng.random(len(bins)))
    x = np.fft.irfft(X, n=T)  # all bins at unit magnitude, random phases
    bands = [(300.0, 3400.0, 4), (150.0, 2800.0, 2), (600.0, 3800.0, 6)]
    y = band_limit(torch.tensor(np.stack([x] * 3)), *(torch.tensor(v) for v in zip(*bands)), sr=T).numpy()
    for yb, (lo, hi, n) in zip(y, bands):
        Y = np.fft.rfft(yb)
        np.testing.assert_allclose(np.abs(Y[bins]), scipy_band_gain(bins, lo, hi, n), atol=1e-9)
        passed = scipy_band_gain(bins, lo, hi, n) > 1e-3  # where the phase is more than rounding noise
        np.testing.assert_allclose(np.angle(Y[bins] / X[bins])[passed], 0, atol=1e-6)  # zero phase: no delay
    one = band_limit(torch.tensor(x, dtype=torch.float32), 300.0, 3400.0, 4, sr=T)
    assert one.shape == (T,) and one.dtype == torch.float32
    np.testing.assert_allclose(one.numpy(), y[0], atol=1e-5)


def test_distorter_band_limits_a_share_of_items():
    x = torch.tensor(np.stack([music_like(1.0, seed=s) for s in range(400)]))
    base = dict(p_clean=1, p_noise=0, p_reverb=0, p_noise_reverb=0, max_offset_s=0)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(Distorter(DistortConfig(**base), [])(x, g), x)  # p_band = 0: untouched
    y = Distorter(DistortConfig(**base, p_band=0.3), [])(x, g)
    hf = lambda v: np.abs(np.fft.rfft(v.double().numpy(), axis=-1))[:, 3900:].sum(-1)  # above 3.9 kHz
    cut = hf(y) < 0.9 * hf(x)  # the gentlest band (2nd order, 3.8 kHz) keeps 0.68 of 3.9 kHz
    changed = (y - x).abs().amax(-1) > 1e-6
    assert torch.equal(torch.from_numpy(cut), changed)  # what changed lost its top band
    assert 0.24 < changed.double().mean() < 0.36


def test_noise_crops_are_contiguous_excerpts():
    ramp = np.arange(1000, dtype=np.float32)
    dist = Distorter(DistortConfig.eval_noise(0.0), [ramp], n_rirs=2)
    crops = dist.noise_crops(50, 2500, torch.Generator().manual_seed(0)).numpy()
    steps = np.diff(crops, axis=1)
    assert set(np.unique(steps)) <= {1.0, -999.0}  # consecutive samples of the (tiled) recording
    assert len(set(crops[:, 0].tolist())) > 20  # random start phases


def test_distorter_is_fast():
    dist = Distorter(DistortConfig.train(), make_bank())
    x, g = torch.randn(256, 8000), torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        dist(x, g)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            dist(x, g)
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    assert min(times) < 0.5, times  # about 25 ms on one core; a loose bound against gross regressions


def test_band_share_with_no_item_drawn_leaves_the_batch_alone():
    x = torch.randn(3, 8000)
    d = Distorter(DistortConfig(p_clean=1, p_noise=0, p_reverb=0, p_noise_reverb=0, max_offset_s=0.0, p_band=1e-9),
                  noise_bank=[np.random.default_rng(0).standard_normal(16000).astype(np.float32)])
    torch.testing.assert_close(d(x, generator=torch.Generator().manual_seed(0)), x)
