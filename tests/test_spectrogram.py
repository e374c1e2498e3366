"""The log-mel front end against a numpy STFT and torchaudio's mel filterbank."""
import numpy as np
import pytest
import torch
import torchaudio.functional as AF

from minihash.spectrogram import LogMel, MelConfig, log_mel


def numpy_log_mel(x, cfg):
    pad = cfg.n_fft // 2
    xp = np.pad(x, pad, mode="reflect")
    n = 1 + (len(xp) - cfg.n_fft) // cfg.hop
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(cfg.n_fft) / cfg.n_fft)  # periodic Hann
    frames = np.stack([xp[i * cfg.hop : i * cfg.hop + cfg.n_fft] * win for i in range(n)])
    P = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (frames, bins)
    fb = AF.melscale_fbanks(cfg.n_fft // 2 + 1, cfg.f_min, cfg.f_max, cfg.n_mels, cfg.sr).numpy()
    return np.log(P @ fb + cfg.eps).T  # (n_mels, frames)


def test_matches_numpy_reference():
    cfg = MelConfig()
    x = np.random.default_rng(0).standard_normal(cfg.sr).astype(np.float64) * 0.1
    S = log_mel(x.astype(np.float32), cfg).numpy()
    ref = numpy_log_mel(x, cfg)
    assert S.shape == ref.shape == (cfg.n_mels, cfg.frames(cfg.sr)) == (64, 101)
    np.testing.assert_allclose(S, ref, atol=1e-3)


def test_tone_lands_in_its_mel_band_and_gain_is_a_shift():
    cfg = MelConfig()
    t = np.arange(cfg.sr) / cfg.sr
    m = LogMel(cfg)
    for f in (500.0, 1000.0, 2500.0):
        S = m(torch.tensor(np.sin(2 * np.pi * f * t), dtype=torch.float32))
        band = int(S[:, 10:-10].mean(1).argmax())
        lo, hi = AF.melscale_fbanks(cfg.n_fft // 2 + 1, cfg.f_min, cfg.f_max, cfg.n_mels, cfg.sr)[:, band].nonzero()[[0, -1]]
        assert lo * cfg.sr / cfg.n_fft <= f <= hi * cfg.sr / cfg.n_fft
    x = torch.randn(2, cfg.sr)
    diff = m(10 * x) - m(x)  # 20 dB louder = + log(100) everywhere
    torch.testing.assert_close(diff, torch.full_like(diff, float(np.log(100))), atol=1e-3, rtol=0)


def test_batched_equals_one_by_one_and_db_mode():
    cfg = MelConfig(log="db")
    m = LogMel(cfg)
    x = torch.randn(3, 8000)
    S = m(x)
    assert S.shape == (3, 64, 101)
    for i in range(3):
        torch.testing.assert_close(S[i], m(x[i]))
    assert (S.amax((-2, -1), keepdim=True) - S).max() <= 80.0 + 1e-4
    with pytest.raises(ValueError):
        LogMel(MelConfig(f_max=5000))


# ---- SpecAugment masks


def test_masks_equal_a_naive_loop():
    from minihash.spectrogram import MaskConfig, apply_masks, draw_masks

    S = torch.randn(6, 64, 101)
    cfg = MaskConfig(p=0.7, time_masks=3, freq_masks=2, cutouts=2)
    draws = draw_masks(6, 64, 101, cfg, torch.Generator().manual_seed(0))
    got = apply_masks(S, draws)
    want = S.clone()
    for b in range(6):
        if not draws["apply"][b]:
            continue
        fill = S[b].mean()
        for (starts, widths), axis in ((draws["time"], "t"), (draws["freq"], "f")):
            for s, w in zip(starts[b].tolist(), widths[b].tolist()):
                for i in range(s, s + w):
                    if axis == "t":
                        want[b, :, i] = fill
                    else:
                        want[b, i, :] = fill
        for (ft, wt), (ff, wf) in zip(zip(*[d[b].tolist() for d in draws["cut_t"]]),
                                      zip(*[d[b].tolist() for d in draws["cut_f"]])):
            want[b, ff:ff + wf, ft:ft + wt] = fill
    torch.testing.assert_close(got, want)
    assert (got != S).any(dim=(1, 2)).tolist() == draws["apply"].tolist() or not draws["apply"].all()


def test_masks_off_and_widths_within_bounds():
    from minihash.spectrogram import MaskConfig, draw_masks, spec_augment

    S = torch.randn(4, 64, 101)
    torch.testing.assert_close(spec_augment(S, MaskConfig(p=0.0)), S)
    d = draw_masks(1000, 64, 101, MaskConfig(time_width=10, freq_width=8), torch.Generator().manual_seed(1))
    s, w = d["time"]
    assert w.min() == 0 and w.max() == 10 and (s + w).max() <= 101 and s.min() >= 0
    s, w = d["freq"]
    assert w.max() == 8 and (s + w).max() <= 64


def test_masks_are_drawn_on_the_cpu_and_applied_on_the_spectrogram_s_device():
    """A GPU run draws the same masks as a CPU run and applies them where the log-mel lives. The meta
    device stands in for a GPU: a mask left on the CPU fails there as it does on CUDA."""
    from minihash.spectrogram import MaskConfig, spec_augment

    S = torch.randn(4, 64, 101, device="meta")
    out = spec_augment(S, MaskConfig(p=1.0), torch.Generator().manual_seed(3))
    assert out.device.type == "meta" and out.shape == S.shape


def test_db_floor_is_per_window():
    from minihash.spectrogram import LogMel, MelConfig

    x = torch.randn(2, 8000)
    x[1] *= 1e-3  # 60 dB quieter: its own floor, not the batch's
    cfg = MelConfig(log="db")
    floored, raw = LogMel(cfg)(x), LogMel(cfg, floor=False)(x)
    for b in range(2):
        torch.testing.assert_close(floored[b], torch.clamp(raw[b], min=float(raw[b].max()) - 80.0))
