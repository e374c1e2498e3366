"""Self-checking exercises for the notebooks.

Each `check_...(your_fn)` runs the learner's function on cases with known answers
(computed by the package or by a library such as POT or scipy) and says what is
wrong, not only that it is wrong: wrong shape, wrong scale, off by a constant, a
marginal that does not sum to one... It prints a short success line when all
cases pass and raises `ExerciseError` with the explanation otherwise, so that a
notebook run under nbmake fails if the reference solution breaks.
"""
from __future__ import annotations

import numpy as np


class ExerciseError(AssertionError):
    """The learner's answer is wrong; the message says how."""


def _ok(name: str) -> None:
    print(f"✓ {name}: all checks passed")


def _close(got, want, what: str, rtol=1e-4, atol=1e-5) -> None:
    """Raise with a helpful message if `got` is not `want` (shape first, then values)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise ExerciseError(f"{what}: expected shape {want.shape}, got {got.shape}")
    if not np.allclose(got, want, rtol=rtol, atol=atol):
        err = np.abs(got - want)
        i = np.unravel_index(np.argmax(err), err.shape) if err.ndim else ()
        raise ExerciseError(f"{what}: largest difference {err.max():.3g} at index {tuple(int(j) for j in i)} "
                            f"(got {got[i]:.6g}, expected {want[i]:.6g})")


# ---- 05_contrastive_learning

def _nt_xent_variants(z1, z2, tau):
    """NT-Xent and the usual ways of getting it wrong, each with what went wrong (float64 torch)."""
    import torch
    import torch.nn.functional as F

    def loss(z1, z2, tau, normalise=True, drop_self=True, keep_positive=True, both=True, reduce="mean",
             scale=lambda s: s / tau):
        B = z1.shape[0]
        z = torch.cat([z1, z2])
        if normalise:
            z = F.normalize(z, dim=1)
        S = scale(z @ z.T)  # (2B, 2B)
        eye = torch.eye(2 * B, dtype=torch.bool)
        pos = torch.cat([torch.arange(B, 2 * B), torch.arange(B)])
        S_pos = S[torch.arange(2 * B), pos]  # (2B,)
        S_den = S.masked_fill(eye, float("-inf")) if drop_self else S
        if not keep_positive:
            S_den = S_den.masked_fill(torch.nn.functional.one_hot(pos, 2 * B).bool(), float("-inf"))
        per = torch.logsumexp(S_den, dim=1) - S_pos  # (2B,)
        per = per if both else per[:B]
        return float(per.sum() if reduce == "sum" else per.mean())

    def cross_view(a, b):
        S = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / tau  # (B, B)
        return float(F.cross_entropy(S, torch.arange(a.shape[0])))

    return loss(z1, z2, tau), [
        (loss(z1, z2, tau, normalise=False), "the embeddings are not L2-normalised: NT-Xent uses cosine "
         "similarities, so normalise each row (F.normalize(z, dim=1)) before the dot products"),
        (loss(z1, z2, tau, drop_self=False), "the anchor is its own negative: mask the diagonal of the (2B, 2B) "
         "similarity matrix (set it to -inf) before the softmax"),
        (loss(z1, z2, tau, keep_positive=False), "the positive is left out of the denominator: the softmax runs "
         "over all 2B - 1 other samples, the positive included"),
        (loss(z1, z2, tau, scale=lambda s: s * tau), "the temperature multiplies the similarities: divide by tau"),
        (loss(z1, z2, tau, scale=lambda s: s) / tau, "tau divides the loss, not the similarities inside the "
         "softmax"),
        (loss(z1, z2, tau, scale=lambda s: s / tau ** 2), "the similarities are divided by tau twice"),
        (loss(z1, z2, tau, both=False), "only the clean windows are anchors: the loss is symmetric, average "
         "over all 2B anchors (rows of z1 AND rows of z2)"),
        (loss(z1, z2, tau, reduce="sum"), "the loss is summed over anchors: take the mean over the 2B anchors"),
        (loss(z2, z1, tau, both=False), "only the distorted windows are anchors: average over all 2B anchors"),
        (cross_view(z1, z2), "only the B x B clean-vs-distorted similarities, one direction: NT-Xent stacks "
         "all 2B samples, and each anchor's candidates are the 2B - 1 others (other clean windows included)"),
        (0.5 * (cross_view(z1, z2) + cross_view(z2, z1)), "only the B x B clean-vs-distorted similarities (CLIP's "
         "loss): NT-Xent stacks all 2B samples, and each anchor's candidates are the 2B - 1 others"),
    ]


def check_nt_xent(fn) -> None:
    """Check `fn(z1, z2, tau) -> scalar` against NT-Xent (SimCLR) on random batches.

    z1, z2 are (B, D) float64 torch tensors (not normalised: that is part of the job),
    row i of z1 and row i of z2 a positive pair.

    Notebook: 05_contrastive_learning.ipynb
    """
    import torch

    g = torch.Generator().manual_seed(5)
    for B, D, tau in ((6, 8, 0.1), (10, 16, 0.5), (4, 3, 1.0)):
        z1 = 3 * torch.randn(B, D, generator=g, dtype=torch.float64)
        z2 = z1 + 2 * torch.randn(B, D, generator=g, dtype=torch.float64)  # related, so mistakes differ
        z2[0] *= 5  # rows of different lengths: normalisation matters
        got = fn(z1.clone(), z2.clone(), tau)
        got = float(got.detach()) if hasattr(got, "detach") else float(np.asarray(got))
        want, variants = _nt_xent_variants(z1, z2, tau)
        if np.isclose(got, want, rtol=1e-5, atol=1e-7):
            continue
        for value, why in variants:
            if np.isclose(got, value, rtol=1e-5, atol=1e-7):
                raise ExerciseError(f"B={B}, tau={tau}: {why} (got {got:.6g}, expected {want:.6g})")
        hint = f" (off by a factor {got / want:.3g})" if want and abs(got / want - round(got / want)) < 1e-6 else ""
        raise ExerciseError(f"B={B}, D={D}, tau={tau}: got {got:.6g}, expected {want:.6g}{hint}; compare your "
                            "loop with minihash.contrastive.nt_xent")
    _ok("nt_xent")


def check_top1(fn) -> None:
    """Check `fn(queries, refs, truth) -> float`: the share of queries whose most similar
    reference (by cosine similarity) is their true one.

    queries (Q, D) and refs (N, D) are numpy float arrays, not normalised; truth (Q,) are
    row indices into refs.

    Notebook: 05_contrastive_learning.ipynb
    """
    rng = np.random.default_rng(7)

    def cos(a, b):
        return (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T

    for Q, N, D, noise in ((12, 30, 8, 0.2), (20, 20, 5, 0.2), (16, 40, 6, 0.6)):
        refs = rng.normal(size=(N, D)) * np.exp(rng.uniform(-1.2, 1.2, size=(N, 1)))  # lengths differ: cosine != dot
        truth = rng.integers(0, N, Q)
        queries = refs[truth] / np.linalg.norm(refs[truth], axis=1, keepdims=True) + noise * rng.normal(size=(Q, D))
        S = cos(queries, refs)  # (Q, N)
        want = float((S.argmax(1) == truth).mean())
        got = fn(queries.copy(), refs.copy(), truth.copy())
        got = float(np.asarray(got.detach() if hasattr(got, "detach") else got))
        if np.isclose(got, want):
            continue
        variants = [
            (float((S.argmax(1) == truth).sum()), "you returned a count: divide by the number of queries"),
            (float(((queries @ refs.T).argmax(1) == truth).mean()), "you ranked by the raw dot product: normalise "
             "queries and references first (cosine similarity), or long reference vectors win"),
            (float((S.argmin(1) == truth).mean()), "you picked the LEAST similar reference: take the argmax of the "
             "similarity (argmin is for distances)"),
        ]
        if Q == N:
            variants.append((float((S.argmax(0) == truth).mean()), "argmax over the wrong axis: for each query "
                             "(row) find the best reference (column), argmax(axis=1)"))
        for value, why in variants:
            if np.isclose(got, value) and not np.isclose(value, want):
                raise ExerciseError(f"Q={Q}, N={N}: {why} (got {got:.4g}, expected {want:.4g})")
        raise ExerciseError(f"Q={Q}, N={N}: got {got:.4g}, expected {want:.4g}")
    _ok("top1")


# ---- 01_audio_and_spectrograms


def _as_float_array(x, what: str) -> np.ndarray:
    """The learner's answer as a float64 numpy array (torch tensors accepted)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ExerciseError(f"{what}: expected numbers (a float or an array), got {type(x).__name__}") from None


def check_hz_to_mel(your_fn) -> None:
    """Check a Hz -> mel conversion against the HTK formula torchaudio (and minihash) use.

    `your_fn(f)` takes frequencies in Hz (a float or a numpy array) and returns mels, the
    same shape. Says so if it is the other common mel scale (Slaney's), a natural log
    where log10 is meant, or off by a factor.

    Notebook: 01_audio_and_spectrograms.ipynb
    """
    import math

    f = np.array([0.0, 100.0, 300.0, 700.0, 1000.0, 1500.0, 2000.0, 3000.0, 4000.0, 8000.0])
    htk = 2595.0 * np.log10(1.0 + f / 700.0)
    logstep = math.log(6.4) / 27.0  # Slaney: linear below 1 kHz (200/3 Hz per mel), log above
    slaney = np.where(f < 1000.0, f / (200.0 / 3), 15.0 + np.log(np.maximum(f, 1.0) / 1000.0) / logstep)
    try:  # the formulas above are torchaudio's: make sure they still are
        from torchaudio.functional.functional import _hz_to_mel
        assert np.allclose([_hz_to_mel(float(v), "htk") for v in f], htk)
        assert np.allclose([_hz_to_mel(float(v), "slaney") for v in f], slaney)
    except ImportError:
        pass
    got = _as_float_array(your_fn(f), "hz_to_mel(array)")
    if got.shape != f.shape:
        raise ExerciseError(f"hz_to_mel(array of shape {f.shape}) returned shape {got.shape}: work element-wise "
                            "(np.log10 on the whole array, no Python loop needed)")
    one = _as_float_array(your_fn(1000.0), "hz_to_mel(1000.0)")
    if one.size != 1:
        raise ExerciseError(f"hz_to_mel(1000.0) should be one number, got shape {one.shape}")

    def close(a, b):
        return np.allclose(a, b, rtol=1e-4, atol=1e-3)

    if close(got, htk):
        if not close(one.item(), htk[4]):
            raise ExerciseError(f"the array is right but hz_to_mel(1000.0) = {one.item():.4g}, "
                                f"expected {htk[4]:.4g}")
        print(f"  1000 Hz = {htk[4]:.1f} mel (HTK puts 1 kHz at ~1000 mel by design)")
        _ok("hz_to_mel")
        return
    if close(got, slaney):
        raise ExerciseError("you implemented the Slaney mel scale (linear below 1 kHz, logarithmic above, 1 kHz = "
                            "15 mel), librosa's default. torchaudio's MelSpectrogram, and so minihash, use the HTK "
                            "scale: mel = 2595 log10(1 + f / 700). Both are 'mel scales'; they only differ in units "
                            "and in the knee")
    if close(got, 2595.0 * np.log(1.0 + f / 700.0)):
        raise ExerciseError("natural log where log10 is meant: 2595 log10(1 + f/700), or equivalently "
                            "1127 ln(1 + f/700) (1127 = 2595 / ln 10)")
    if close(got, 1127.0 * np.log10(1.0 + f / 700.0)):
        raise ExerciseError("1127 goes with the natural log: 1127 ln(1 + f/700) = 2595 log10(1 + f/700)")
    if close(got, 2595.0 * np.log10(f / 700.0 + 1e-300)) or not np.isfinite(got[0]):
        raise ExerciseError("mel(0 Hz) must be 0 and finite: the formula has log10(1 + f/700), not log10(f/700)")
    if close(got, 2595.0 * np.log10(1.0 + f / 1000.0)):
        raise ExerciseError("the break frequency of the HTK scale is 700 Hz: log10(1 + f/700), not f/1000")
    ratio = got[1:] / htk[1:]
    if np.allclose(ratio, ratio[0], rtol=1e-3):
        raise ExerciseError(f"the shape is right but every value is {ratio[0]:.4g} times too large: "
                            "check the constant (2595 with log10)")
    if not np.all(np.diff(got) > 0):
        raise ExerciseError("mel must increase with frequency; yours does not (check the sign and the argument "
                            "of the log)")
    _close(got, htk, "hz_to_mel vs the HTK formula 2595 log10(1 + f/700)", rtol=1e-4, atol=1e-3)


def check_stft_frames(your_fn) -> None:
    """Check a frame-count formula against what `torch.stft` actually returns.

    `your_fn(T, n_fft, hop, center)` returns the number of STFT frames of a T-sample
    signal. Says whether it is one too many or too few, or treats centring the wrong way.

    Notebook: 01_audio_and_spectrograms.ipynb
    """
    import torch

    cases = [(8000, 512, 80, True), (8000, 512, 80, False), (8000, 256, 100, True), (8000, 256, 100, False),
             (8001, 512, 80, True), (8050, 512, 80, False), (1000, 400, 160, True), (1000, 400, 160, False),
             (512, 512, 128, False), (600, 512, 100, False), (6000, 1024, 1, False), (4000, 128, 33, True)]
    for T, n_fft, hop, center in cases:
        # the reference is torch itself (constant padding so short signals are allowed)
        want = torch.stft(torch.zeros(T), n_fft, hop, window=torch.ones(n_fft), center=center,
                          pad_mode="constant", return_complex=True).shape[-1]
        got = your_fn(T, n_fft, hop, center)
        try:
            got_i = int(got)
        except (TypeError, ValueError):
            raise ExerciseError(f"frames({T}, {n_fft}, {hop}, center={center}) returned {got!r}, "
                                "expected an integer") from None
        if got_i != got:
            raise ExerciseError(f"frames({T}, {n_fft}, {hop}, center={center}) = {got}: a frame count is a whole "
                                "number; use integer division // (frames start at whole multiples of hop)")
        if got_i == want:
            continue
        where = (f"frames(T={T}, n_fft={n_fft}, hop={hop}, center={center}) = {got_i}, torch.stft gives {want}")
        centred, plain = T // hop + 1, (T - n_fft) // hop + 1
        if center and got_i == plain:
            raise ExerciseError(f"{where}: with center=True the signal is padded by n_fft // 2 on both sides, so a "
                                "frame is centred on every multiple of hop: T // hop + 1 frames, independent of n_fft")
        if not center and got_i == centred:
            raise ExerciseError(f"{where}: with center=False there is no padding; the last frame must fit "
                                "entirely in the signal: 1 + (T - n_fft) // hop")
        if abs(got_i - want) == 1:
            more = "one frame too many" if got_i > want else "one frame too few"
            hint = ("frames start at 0, hop, 2 hop, ... and the first one counts too (the + 1)" if got_i < want else
                    "the last frame must still fit: floor division, not rounding up, and only one + 1")
            raise ExerciseError(f"{where}: off by one, {more}. {hint}")
        raise ExerciseError(where)
    _ok("stft_frames")


def check_log_mel(your_fn) -> None:
    """Check a hand-made log-mel spectrogram against `minihash.spectrogram.LogMel`.

    `your_fn(x, cfg)` takes (T,) float32 samples and a `MelConfig` and returns the
    (n_mels, frames) natural log of (mel power + cfg.eps). Recognises a transposed
    result, log10 or decibels, magnitude instead of power, a constant offset (a
    scaled FFT) and a missing or different eps.

    Notebook: 01_audio_and_spectrograms.ipynb
    """
    import math

    import torch

    from .spectrogram import LogMel, MelConfig

    sr = 8000
    t = np.arange(sr) / sr
    rng = np.random.default_rng(0)
    x = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1250 * t * (1 + 0.3 * t))
         + 0.02 * rng.standard_normal(sr)).astype(np.float32)
    x[3000:5000] = 0.0  # a quarter second of digital silence: log(0) is -inf without eps
    for cfg in (MelConfig(), MelConfig(n_fft=256, hop=100, n_mels=40, f_min=0.0)):
        with torch.no_grad():
            want = LogMel(cfg)(torch.from_numpy(x)).numpy().astype(np.float64)  # (n_mels, frames)
        got = _as_float_array(your_fn(x.copy(), cfg), "log_mel(x, cfg)")
        what = f"log_mel with n_fft={cfg.n_fft}, hop={cfg.hop}, n_mels={cfg.n_mels}"
        if got.ndim == 3 and got.shape[0] == 1:
            raise ExerciseError(f"{what}: got shape {got.shape}, with a batch axis; return (n_mels, frames) "
                                f"= {want.shape} for a 1-d signal")
        if got.shape == want.shape[::-1] and want.shape[0] != want.shape[1]:
            raise ExerciseError(f"{what}: transposed: got (frames, n_mels) = {got.shape}, expected "
                                f"(n_mels, frames) = {want.shape} (mel bands are rows, as in an image)")
        if got.shape != want.shape:
            msg = f"{what}: expected shape (n_mels, frames) = {want.shape}, got {got.shape}"
            if got.ndim == 2 and got.shape[0] == want.shape[0]:
                msg += (f"; the centred STFT gives T // hop + 1 = {want.shape[1]} frames "
                        f"(uncentred: {1 + (x.size - cfg.n_fft) // cfg.hop})")
            raise ExerciseError(msg)
        if not np.all(np.isfinite(got)):
            raise ExerciseError(f"{what}: -inf or NaN where the signal is silent: the mel power is exactly 0 there; "
                                f"add eps inside the log: log(S + eps) with eps = cfg.eps = {cfg.eps:g}")
        # where the power is far above eps (and not far below the peak) eps plays no part, so any
        # log base, power-vs-magnitude or scale mistake shows as got = a * want + b there
        loud = (want > math.log(cfg.eps) + 10) & (want > want.max() - 8)
        a, b = np.polyfit(want[loud], got[loud], 1)
        fit_ok = np.allclose(a * want[loud] + b, got[loud], atol=0.02)
        if not fit_ok and 0.4 < a < 0.65 and np.corrcoef(want[loud], got[loud])[0, 1] > 0.95:
            raise ExerciseError(f"{what}: about half the expected values: you used the magnitude |X| where the power "
                                "|X|^2 is meant (log |X|^2 = 2 log |X|); square before the mel filterbank")
        if fit_ok and not (abs(a - 1) < 1e-3 and abs(b) < 1e-2):
            if abs(a - 1 / math.log(10)) < 1e-3:
                raise ExerciseError(f"{what}: log10 where minihash uses the natural log (torch.log / np.log)")
            if abs(a - 10 / math.log(10)) < 1e-2:
                raise ExerciseError(f"{what}: decibels (10 log10); minihash's 'log' mode is the natural log "
                                    "ln(S + eps): dB = 4.34 ln, a rescaling the network would have to undo")
            if abs(a - 0.5) < 1e-3:
                raise ExerciseError(f"{what}: half the expected values: you used the magnitude |X| where the power "
                                    "|X|^2 is meant (log |X|^2 = 2 log |X|); square before the mel filterbank")
            if abs(a - 1) < 1e-3:
                raise ExerciseError(f"{what}: shifted by a constant {b:+.4g} (a factor exp({b:.3g}) = {math.exp(b):.4g}"
                                    " on the power): a normalised FFT (norm='ortho'?), a scaled window, or a mel "
                                    "filterbank with area normalisation (norm='slaney')? Use a plain rfft, the Hann "
                                    "window, and triangles that peak at 1")
            raise ExerciseError(f"{what}: your values are {a:.4g} x the expected ones {b:+.4g}: a wrong log base "
                                "or scale factor")
        if fit_ok:  # right wherever the signal is loud: the difference is in the quiet part, i.e. eps
            quiet = ~loud
            err = np.abs(got[quiet] - want[quiet]).max()
            if err > 5e-3:
                floor = got.min()
                raise ExerciseError(f"{what}: right where the signal is loud but off by up to {err:.3g} where it is "
                                    f"quiet: the eps is different (your floor is {floor:.4g}, log(eps) = "
                                    f"{math.log(cfg.eps):.4g}). Use log(S + eps) with eps = cfg.eps, not "
                                    "log(max(S, eps)) or log(S) + eps")
        _close(got, want, what, rtol=1e-3, atol=5e-3)  # float32 vs float64 differ by ~1e-3 where S ~ eps
    _ok("log_mel")


# ---- 02_distortions


def _snr_cases(seed: int = 0):
    """Clean and noise signals of varied powers (independently varied, so errors can be told apart)."""
    rng = np.random.default_rng(seed)
    T = 4000
    t = np.arange(T) / 8000
    x0 = np.sin(2 * np.pi * 330 * t) + 0.5 * np.sin(2 * np.pi * 1100 * t + 1) + 0.1 * rng.standard_normal(T)
    n0 = rng.standard_normal(T)
    x0, n0 = x0 / np.sqrt(np.mean(x0 ** 2)), n0 / np.sqrt(np.mean(n0 ** 2))  # unit power
    cases = []
    for i, (gx_db, gn_db, snr) in enumerate([(0, 0, 10.0), (-20, 0, 0.0), (0, -20, 5.0), (-10, 6, 20.0),
                                             (-26, -14, -5.0), (3, -30, 15.0), (-6, -6, 3.0), (-15, 10, 12.0)]):
        x = 10 ** (gx_db / 20) * x0
        n = 10 ** (gn_db / 20) * np.roll(n0, 97 * i)
        cases.append((x, n, snr, float(gx_db), float(gn_db)))  # powers in dB are gx_db and gn_db
    return cases


def check_snr_db(your_fn) -> None:
    """Check an SNR measurement `your_fn(clean, noisy) -> dB` against `minihash.distort.snr_db`.

    Recognises 20 log10 of powers, 10 log10 of amplitudes, the ratio upside down, and the
    noisy mix used where the noise (noisy - clean) is meant.

    Notebook: 02_distortions.ipynb
    """
    from .distort import snr_db

    for x, n, snr, _, _ in _snr_cases():
        y = x + n
        want = float(snr_db(x, y))
        got_a = _as_float_array(your_fn(x.copy(), y.copy()), "snr_db(clean, noisy)")
        if got_a.size != 1:
            raise ExerciseError(f"snr_db(clean, noisy) should be one number for 1-d signals, got shape {got_a.shape}")
        got = float(got_a)
        if abs(got - want) < 1e-3:
            continue
        where = f"snr_db: got {got:.4g} dB, expected {want:.4g} dB"
        px, pn, py = np.mean(x ** 2), np.mean(n ** 2), np.mean(y ** 2)
        if abs(want) > 0.5 and abs(got - 2 * want) < 1e-3:
            raise ExerciseError(f"{where} (twice): 20 log10 is for amplitude (RMS) ratios; the SNR is a power "
                                "ratio: 10 log10(P_clean / P_noise)")
        if abs(want) > 0.5 and abs(got - want / 2) < 1e-3:
            raise ExerciseError(f"{where} (half): 10 log10 of an amplitude (RMS) ratio; use powers (mean squares) "
                                "with 10 log10, or RMS with 20 log10")
        if abs(want) > 0.5 and abs(got + want) < 1e-3:
            raise ExerciseError(f"{where} (opposite sign): signal over noise, P_clean / P_noise, not the reverse")
        if abs(got - 10 * np.log10(px / py)) < 1e-3:
            raise ExerciseError(f"{where}: you divided by the power of the noisy mix; the noise is noisy - clean")
        if abs(got - 10 * np.log10(py / pn)) < 1e-3:
            raise ExerciseError(f"{where}: the numerator is the clean signal's power, not the mix's")
        raise ExerciseError(where)
    _ok("snr_db")


def check_add_noise(your_fn) -> None:
    """Check `your_fn(x, noise, snr_db) -> y` adds noise at exactly the SNR asked, measured on `x`.

    Fits the measured-minus-asked SNR over cases where the SNR, the signal power and the
    noise power vary independently, so the kind of mistake can be named: amplitude vs
    power (factor 2 in dB), the wrong sign, the signal's and noise's powers swapped (SNR
    measured on the noise), a missing square root, a power ignored, the signal rescaled.

    Notebook: 02_distortions.ipynb
    """
    import torch

    from .distort import add_noise

    rows, errs, cases = [], [], _snr_cases(1)
    for x, n, snr, px_db, pn_db in cases:
        y = _as_float_array(your_fn(x.copy(), n.copy(), snr), "add_noise(x, noise, snr_db)")
        if y.shape != x.shape:
            raise ExerciseError(f"add_noise: expected the shape of x, {x.shape}, got {y.shape}")
        if not np.all(np.isfinite(y)):
            raise ExerciseError("add_noise returned NaN or Inf")
        # y should be x + g n: solve y = a x + g n in the least-squares sense
        (a, g), *_ = np.linalg.lstsq(np.stack([x, n], 1), y, rcond=None)
        if np.abs(a * x + g * n - y).max() > 1e-6 * (np.abs(y).max() + 1e-12):
            raise ExerciseError("add_noise: the output is not the clean signal plus a multiple of the noise "
                                "(did you crop, shift or filter something?)")
        if abs(a - 1) > 1e-6:
            raise ExerciseError(f"add_noise: the clean signal came out multiplied by {a:.4g}: scale the noise, not "
                                "the music (the query must keep the reference's level; the SNR is measured on x)")
        if g == 0:
            raise ExerciseError("add_noise: no noise was added")
        measured = 10 * np.log10(np.mean(x ** 2) / np.mean((g * n) ** 2))
        rows.append([snr, px_db, pn_db, 1.0])
        errs.append(measured - snr)
    errs = np.array(errs)
    if np.abs(errs).max() < 1e-3:
        for x, n, snr, _, _ in cases[:3]:  # and it equals the package's
            want = add_noise(torch.from_numpy(x), torch.from_numpy(n), snr).numpy()
            _close(your_fn(x.copy(), n.copy(), snr), want, f"add_noise at {snr} dB vs minihash.distort.add_noise",
                   rtol=1e-5, atol=1e-7)
        _ok("add_noise")
        return
    # measured - asked = c_snr * snr + c_x * P_x(dB) + c_n * P_noise(dB) + c0
    coef, *_ = np.linalg.lstsq(np.array(rows), errs, rcond=None)
    fits = np.abs(np.array(rows) @ coef - errs).max() < 1e-2
    c = np.round(coef[:3] * 2) / 2 if fits else None
    worst = int(np.argmax(np.abs(errs)))
    example = (f"(asked {cases[worst][2]:g} dB, measured {cases[worst][2] + errs[worst]:.2f} dB with P_x = "
               f"{cases[worst][3]:g} dB and P_noise = {cases[worst][4]:g} dB)")
    known = {
        (1, 0, 0): "the SNR comes out twice the one asked: amplitude and power mixed up. The noise amplitude gain "
                   "is 10^(-snr/20) (its power gain 10^(-snr/10)); you used the power factor on the amplitude",
        (-0.5, 0, 0): "the SNR comes out half the one asked: amplitude and power mixed up (10^(-snr/40)?). The "
                      "amplitude gain is sqrt(P_x / (P_noise 10^(snr/10)))",
        (-2, 0, 0): "wrong sign: a higher SNR must mean quieter noise; the gain is 10^(-snr/20), not 10^(+snr/20)",
        (0, 2, -2): "the SNR is measured on the noise instead of the signal: P_x and P_noise are swapped in the "
                    "gain. It is g = sqrt(P_x / (P_noise 10^(snr/10)))",
        (0, -1, 1): "missing square root: P_x / P_noise is a power ratio, the gain on the noise samples is its "
                    "square root",
        (0, 0, -1): "the noise's own power is ignored (right only for unit-power noise): divide by P_noise",
        (0, 1, 0): "the signal's power is ignored: the SNR is measured on x, so the noise level must follow P_x",
        (0, 1, -1): "the noise is scaled to a fixed level, ignoring both powers: the gain must depend on P_x / P_noise",
    }
    if c is not None and abs(coef[3]) < 1e-2 and tuple(float(v) for v in c) in known:
        raise ExerciseError(f"add_noise: {known[tuple(float(v) for v in c)]} {example}")
    if c is not None:
        raise ExerciseError(f"add_noise: the SNR error is {coef[0]:+.3g} x snr {coef[1]:+.3g} x P_x(dB) "
                            f"{coef[2]:+.3g} x P_noise(dB) {coef[3]:+.3g} dB; it should be 0 {example}")
    raise ExerciseError(f"add_noise: wrong SNR {example}")


def _schroeder_variants(h: np.ndarray, sr: int) -> dict:
    """RT60 computed in several wrong ways, to name the learner's mistake."""
    e = np.square(h)

    def fit(curve_db, hi, lo, t0=None):
        i = 0 if t0 is not None else int(np.argmax(curve_db <= hi))
        j = int(np.argmax(curve_db <= lo)) if curve_db.min() <= lo else len(curve_db) - 1
        if j <= i:
            return np.nan
        t = np.arange(i, j + 1) / sr
        return float(-60.0 / np.polyfit(t, curve_db[i:j + 1], 1)[0])

    edc = np.cumsum(e[::-1])[::-1]
    edc_db = 10 * np.log10(np.maximum(edc / edc[0], 1e-300))
    raw_db = 10 * np.log10(np.maximum(e / e.max(), 1e-300))
    fwd = np.cumsum(e)
    fwd_db = 10 * np.log10(np.maximum(fwd / fwd[-1], 1e-300))
    ok = edc_db > -200
    t = np.arange(len(h)) / sr
    out = {
        "no backward integration: the line is fitted to 10 log10 h(t)^2 itself, so the -25 dB point is the first "
        "near-zero sample of the noisy tail": fit(raw_db, -5, -25),
        "forward integration (cumsum from the start): Schroeder's curve is the energy still to come, "
        "integrated from the end backwards": fit(fwd_db, -5, -25),
        "fit from 0 dB, including the direct path's drop; start at -5 dB": fit(edc_db, 0, -25, t0=0),
        "fit over the whole curve, down to the truncation at the end where the EDC plunges; stop at -25 dB":
            float(-60.0 / np.polyfit(t[ok], edc_db[ok], 1)[0]),
        "early decay time (0 to -10 dB) instead of T20 (-5 to -25 dB)": fit(edc_db, 0, -10, t0=0),
        "T30 (a fit from -5 to -35 dB): a valid estimate too, but this exercise, like minihash, uses T20 "
        "(-5 to -25 dB)": fit(edc_db, -5, -35),
    }
    return out


def check_rt60(your_fn) -> None:
    """Check a Schroeder RT60 estimator `your_fn(h, sr) -> seconds` against `minihash.distort.rt60_schroeder`.

    Runs on synthetic impulse responses of several reverberation times (and two sample
    rates). Names the mistake when it can: no backward integration, forward integration,
    the wrong fit range, T20 not extrapolated to 60 dB, samples instead of seconds.

    Notebook: 02_distortions.ipynb
    """
    import torch

    from .distort import rt60_schroeder, synth_rir

    for k, (rt, sr) in enumerate([(0.3, 8000), (0.6, 8000), (0.9, 8000), (0.5, 16000)]):
        h = synth_rir(rt, sr=sr, generator=torch.Generator().manual_seed(100 + k)).numpy().astype(np.float64)
        want = rt60_schroeder(h, sr)
        got_a = _as_float_array(your_fn(h.copy(), sr), "rt60(h, sr)")
        if got_a.size != 1:
            raise ExerciseError(f"rt60(h, sr) should be one number (seconds), got shape {got_a.shape}")
        got = float(got_a)
        if abs(got - want) <= 0.02 * want:
            continue
        where = (f"rt60 of a synthetic RIR (RT60 {rt} s, sr {sr} Hz): got {got:.4g}, "
                 f"minihash.distort.rt60_schroeder gives {want:.4g} s")
        if not np.isfinite(got):
            raise ExerciseError(f"{where}: not a finite number (log of 0? clip the EDC above 0 before the log)")
        if got < 0:
            raise ExerciseError(f"{where}: negative: your decay curve rises. Integrate the energy backwards, from "
                                "the end: EDC(t) = sum of h^2 from t to the end; it falls from 0 dB")
        for ratio, msg in ((1 / 3, "you returned the time of the 20 dB span (-5 to -25 dB); extrapolate the line to "
                                   "a 60 dB decay: RT60 = -60 / slope"),
                           (sr, "that is in samples: divide by the sample rate"),
                           (sr / 8000, "the sample rate is hard-coded to 8000: use the `sr` argument")):
            if ratio != 1 and abs(got - ratio * want) <= 0.02 * ratio * want:
                raise ExerciseError(f"{where}: {msg}")
        variants = _schroeder_variants(h, sr)
        best = min(variants, key=lambda m: abs(variants[m] - got) if np.isfinite(variants[m]) else np.inf)
        if np.isfinite(variants[best]) and abs(variants[best] - got) <= 0.03 * abs(variants[best]):
            raise ExerciseError(f"{where}: it looks like {best}")
        if got < 0.25 * want:
            raise ExerciseError(f"{where}: far too short. Did you integrate backwards? Fitted to 10 log10 h(t)^2 "
                                "itself, the -25 dB point is the first near-zero sample of the noisy tail, a few "
                                "samples after the direct path. EDC(t) = sum of h^2 from t to the end")
        raise ExerciseError(f"{where}: EDC(t) = 10 log10 of the backward-integrated energy, normalised to 0 dB at "
                            "t = 0; fit a line between the first samples below -5 and -25 dB; RT60 = -60 / slope")
    _ok("rt60")


# ---- 04_patch_transformer

def _patch_f64(x):
    """A float64 numpy copy of an array or tensor, so answers in either form can be compared."""
    return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)


def _first_matching_mistake(got, candidates, rtol=1e-6, atol=1e-9):
    """The message of the first (array, message) candidate equal to `got` (same shape), else None."""
    for value, why in candidates:
        value = np.asarray(value, dtype=np.float64)
        if value.shape == got.shape and np.allclose(got, value, rtol=rtol, atol=atol):
            return why
    return None


def check_patchify(fn) -> None:
    """Check `fn(S, P) -> patches`: full-band time patches, as `minihash.encoder.PatchEmbed` cuts them.

    S is a (B, n_mels, frames) numpy array and P the frames per patch; the answer is
    (B, N, n_mels * P) with N = frames // P (leftover frames dropped), patch n holding frames
    n*P ... n*P + P - 1 of every band, flattened band by band (mel-major: entry m * P + t).

    Notebook: 04_patch_transformer.ipynb
    """
    rng = np.random.default_rng(4)
    for B, M, F, P in ((2, 6, 27, 5), (1, 4, 21, 3), (3, 8, 101, 10)):
        S = rng.normal(size=(B, M, F))
        N = F // P
        X = S[:, :, :N * P].reshape(B, M, N, P)  # (B, M, N, P)
        want = X.transpose(0, 2, 1, 3).reshape(B, N, M * P)
        got = _patch_f64(fn(S.copy(), P))
        if got.shape == want.shape and np.allclose(got, want):
            continue
        if got.ndim == 3 and got.shape[0] == B and got.shape[2] == M * P and got.shape[1] == -(-F // P) != N:
            raise ExerciseError(f"{F} frames, P={P}: expected {N} patches, got {got.shape[1]}: drop the "
                                f"{F - N * P} leftover frames (S[:, :, :N * P]) instead of padding a last patch")
        if got.shape != want.shape:
            hint = ""
            if got.ndim == 3 and got.shape[1] == M // P:
                hint = ": did you cut along the mel axis? Patches are slices of TIME (the last axis), full band"
            raise ExerciseError(f"S of shape {S.shape}, P={P}: expected patches of shape {want.shape} "
                                f"(B, frames // P, n_mels * P), got {got.shape}{hint}")
        why = _first_matching_mistake(got, [
            (X.transpose(0, 2, 3, 1).reshape(B, N, M * P), "each patch is flattened frame by frame (time-major, "
             "entry t * n_mels + m): PatchEmbed flattens band by band (mel-major, entry m * P + t), like a Conv2d "
             "weight; permute to (B, N, M, P) before the last reshape"),
            (S[:, :, :N * P].reshape(B, N, M * P), "a plain reshape of (B, M, N*P) to (B, N, M*P) mixes up "
             "frequency and time (each 'patch' is a run of consecutive values of a few bands): reshape to "
             "(B, M, N, P), permute to (B, N, M, P), then flatten"),
            (want[:, ::-1], "the patches come in reverse time order"),
        ])
        raise ExerciseError(f"S of shape {S.shape}, P={P}: " + (why or "wrong values: patch n must hold frames "
                            "n*P ... n*P+P-1 of all bands, flattened band by band; compare with a small S = "
                            "np.arange(...) by eye"))
    _ok("patchify")


def check_attention(fn) -> None:
    """Check `fn(Q, K, V) -> (Y, A)`: single-head scaled dot-product attention.

    Q, K, V are (B, N, d) float64 torch tensors; A = softmax(Q K^T / sqrt(d)) over the keys
    (the last axis: every row sums to 1) is (B, N, N), and Y = A V is (B, N, d).

    Notebook: 04_patch_transformer.ipynb
    """
    import torch

    g = torch.Generator().manual_seed(2)
    for B, N, d in ((2, 5, 16), (1, 7, 4), (3, 4, 64)):
        Q, K, V = (2 * torch.randn(B, N, d, generator=g, dtype=torch.float64) for _ in range(3))
        S = Q @ K.transpose(-2, -1)  # (B, N, N) raw scores
        A = (S / d ** 0.5).softmax(-1)
        out = fn(Q.clone(), K.clone(), V.clone())
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise ExerciseError("return a pair (Y, A): the output (B, N, d) and the attention weights (B, N, N)")
        Y, A_got = _patch_f64(out[0]), _patch_f64(out[1])
        if A_got.shape != (B, N, N):
            raise ExerciseError(f"A should be (B, N, N) = {(B, N, N)}, got {A_got.shape}")
        if not np.allclose(A_got, A.numpy(), rtol=1e-6, atol=1e-9):
            why = _first_matching_mistake(A_got, [
                (S.softmax(-1).numpy(), "the scores are not scaled: divide Q K^T by sqrt(d) before the softmax "
                 "(without it, large d makes the softmax nearly one-hot and its gradients vanish)"),
                ((S / d).softmax(-1).numpy(), "the scores are divided by d: divide by sqrt(d)"),
                ((S * d ** 0.5).softmax(-1).numpy(), "the scores are multiplied by sqrt(d): divide by it"),
                ((S / d ** 0.5).softmax(-2).numpy(), "the softmax runs over the queries (axis -2), so columns sum "
                 "to 1: it must run over the keys (axis -1), so that each query's weights sum to 1"),
                ((S / d ** 0.5).softmax(-1).transpose(-2, -1).numpy(), "A is transposed: row i (query i) should "
                 "hold the weights over the keys"),
                ((S / d ** 0.5).numpy(), "A holds the scaled scores: apply the softmax over the keys"),
                ((Q @ Q.transpose(-2, -1) / d ** 0.5).softmax(-1).numpy(), "the scores use Q Q^T: use Q K^T"),
            ])
            rows = A_got.sum(-1)
            if why is None and not np.allclose(rows, 1):
                why = f"rows of A should sum to 1 (a softmax over the keys), they sum to {rows.ravel()[:3]}..."
            raise ExerciseError(f"B={B}, N={N}, d={d}: " + (why or "A differs from softmax(Q K^T / sqrt(d))"))
        if Y.shape != (B, N, d):
            raise ExerciseError(f"Y should be (B, N, d) = {(B, N, d)}, got {Y.shape}")
        if not np.allclose(Y, (A @ V).numpy(), rtol=1e-6, atol=1e-9):
            why = _first_matching_mistake(Y, [
                ((A.transpose(-2, -1) @ V).numpy(), "Y uses A^T: Y = A V (row i mixes the values with query i's "
                 "weights)"),
                ((A @ K).numpy(), "Y mixes the keys: Y = A V"),
                ((A @ Q).numpy(), "Y mixes the queries: Y = A V"),
            ])
            raise ExerciseError(f"B={B}, N={N}, d={d}: " + (why or "A is right but Y is not A V"))
    _ok("attention")


def _sinusoidal(N: int, D: int, base: float = 10000.0, start: int = 0, layout: str = "interleaved",
                expo: str = "2i", swap: bool = False) -> np.ndarray:
    pos = np.arange(start, start + N)[:, None]  # (N, 1)
    i = np.arange(D // 2)[None, :]  # (1, D/2)
    e = 2 * i / D if expo == "2i" else i / D
    ang = pos / base ** e  # (N, D/2)
    s, c = (np.cos(ang), np.sin(ang)) if swap else (np.sin(ang), np.cos(ang))
    if layout == "concat":
        return np.concatenate([s, c], axis=1)
    PE = np.empty((N, D))
    PE[:, 0::2], PE[:, 1::2] = s, c
    return PE


def check_positional_encoding(fn) -> None:
    """Check `fn(N, D) -> PE`: the sinusoidal positional encoding of Vaswani et al. (2017).

    PE[p, 2i] = sin(p / 10000^(2i / D)) and PE[p, 2i + 1] = cos(p / 10000^(2i / D)) for
    positions p = 0 ... N - 1 and even D; an (N, D) numpy array or tensor.

    Notebook: 04_patch_transformer.ipynb
    """
    for N, D in ((10, 16), (50, 64), (3, 4)):
        want = _sinusoidal(N, D)
        got = _patch_f64(fn(N, D))
        if got.shape != want.shape:
            hint = " (transposed?)" if got.shape == want.shape[::-1] else ""
            raise ExerciseError(f"N={N}, D={D}: expected shape {want.shape} (positions x dimensions), got "
                                f"{got.shape}{hint}")
        if np.allclose(got, want, atol=1e-6):
            continue
        why = _first_matching_mistake(got, [
            (_sinusoidal(N, D, layout="concat"), "sines in the first half and cosines in the second: a valid "
             "encoding too (tensor2tensor's), but the paper interleaves them: sin in even columns, cos in odd"),
            (_sinusoidal(N, D, swap=True), "sin and cos are swapped: sin in the even columns (2i), cos in the odd"),
            (_sinusoidal(N, D, start=1), "positions start at 1: the first token is position 0"),
            (_sinusoidal(N, D, expo="i"), "the exponent uses i / D: the frequency of pair i is 1 / 10000^(2i / D)"),
            (_sinusoidal(N, D, base=1000.0), "the base is 1000: it is 10000"),
        ], atol=1e-6)
        raise ExerciseError(f"N={N}, D={D}: " + (why or "values differ from sin/cos(p / 10000^(2i / D)); check "
                            "PE[1, 0] = sin(1) = 0.841 and PE[0, 1] = cos(0) = 1"))
    _ok("positional_encoding")


# ---- 03_landmarks

_HASH_FIELDS = (("f1", 8), ("df", 6), ("dt", 6))  # most to least significant, as `landmarks.pack`


def _pack_fields(values: dict, order, df_code=lambda d: d & 63) -> np.ndarray:
    """Pack fields in `order` (most significant first), df coded by `df_code`: the hash and its variants."""
    h = np.zeros_like(values["f1"])
    for name, bits in order:
        v = df_code(values[name]) if name == "df" else values[name] & ((1 << bits) - 1)
        h = (h << bits) | v
    return h


def check_pack_hash(your_fn) -> None:
    """Check `your_fn(f1, df, dt) -> (L,) integer hashes` against `minihash.landmarks.pack`.

    The layout is audfprint's 20 bits: f1 in bits 12-19, df = f2 - f1 (6-bit two's
    complement) in bits 6-11, dt in bits 0-5. Recognises fields in another order, df
    not masked (a negative df spills into f1), df in offset binary, |df|, fields that
    overlap, and says where each input bit lands.

    Notebook: 03_landmarks.ipynb
    """
    import itertools

    from .landmarks import LandmarkConfig, pack

    rng = np.random.default_rng(3)
    n = 3000
    v = {"f1": np.r_[rng.integers(0, 256, n), 0, 255, 255, 0, 1],
         "df": np.r_[rng.integers(-31, 32, n), 0, -31, 31, -1, 1],
         "dt": np.r_[rng.integers(1, 64, n), 1, 63, 1, 63, 2]}
    cfg = LandmarkConfig(n_fft=512, f_bits=8, df_bits=6, dt_bits=6, max_df=31, max_dt=63)
    want = pack(v["f1"], v["df"], v["dt"], cfg).astype(np.int64)
    try:
        got = your_fn(v["f1"].copy(), v["df"].copy(), v["dt"].copy())
    except Exception as e:
        raise ExerciseError(f"pack_hash raised {type(e).__name__}: {e} (inputs: three int64 arrays of equal length)")
    got = np.asarray(got)
    if got.shape != want.shape:
        raise ExerciseError(f"pack_hash: expected shape {want.shape} (one hash per landmark), got {got.shape}")
    if not np.issubdtype(got.dtype, np.integer):
        raise ExerciseError(f"pack_hash: return integers (got {got.dtype}): hashes are bit patterns, use << and |")
    got = got.astype(np.int64)
    if np.array_equal(got, want):
        _ok("pack_hash")
        return
    for order in itertools.permutations(_HASH_FIELDS):
        if order != _HASH_FIELDS and np.array_equal(got, _pack_fields(v, order)):
            names = " | ".join(f"{a} ({b} bits)" for a, b in order)
            raise ExerciseError(f"pack_hash: the fields are in the wrong order, you packed {names} (most "
                                "significant first); the layout is f1 (8 bits) | df (6 bits) | dt (6 bits)")
    if np.array_equal(got, _pack_fields(v, _HASH_FIELDS, lambda d: (d + 32) & 63)):
        raise ExerciseError("pack_hash: df is in offset binary (df + 32); pack stores it in two's complement: "
                            "df & 0b111111 (-1 -> 63), which `unpack` sign-extends back")
    if np.array_equal(got, _pack_fields(v, _HASH_FIELDS, np.abs)):
        raise ExerciseError("pack_hash: you stored |df|: a target below the anchor and one above it get the same "
                            "hash. Keep the sign: df & 0b111111 (two's complement)")
    unmasked = (v["f1"] << 12) | (v["df"] << 6) | v["dt"]
    if np.array_equal(got, unmasked) or (np.any(got < 0) and np.all(v["df"][got < 0] < 0)):
        raise ExerciseError("pack_hash: a negative df was not masked: in Python -1 << 6 has every high bit set, "
                            "so it overwrites f1 (and the hash goes negative). Mask it first: (df & 0b111111) << 6")
    if got.min() < 0 or got.max() >= 1 << 20:
        raise ExerciseError(f"pack_hash: hashes must fit 20 bits (0 .. {(1 << 20) - 1}), yours span "
                            f"{got.min()} .. {got.max()}: check the shifts (f1 << 12, df << 6) and the masks")
    keys = np.stack([v["f1"], v["df"], v["dt"]], 1)
    uniq, first, inv = np.unique(got, return_index=True, return_inverse=True)
    clash = np.flatnonzero(np.any(keys != keys[first[inv.ravel()]], axis=1))
    if clash.size:
        i, j = clash[0], first[inv.ravel()[clash[0]]]
        a, b = tuple(int(x) for x in keys[j]), tuple(int(x) for x in keys[i])
        raise ExerciseError(f"pack_hash: two different landmarks share a hash ({a} and {b} "
                            f"(f1, df, dt) both give {int(got[i])}): the fields overlap. Shift each past the bits "
                            "of the fields below it: f1 << 12, df << 6, dt << 0")
    zero = {k: np.zeros(1, np.int64) for k in v}
    base = int(np.asarray(your_fn(*(z.copy() for z in zero.values())), dtype=np.int64).ravel()[0])
    for name, bits in _HASH_FIELDS:
        shift = {"f1": 12, "df": 6, "dt": 0}[name]
        for b in range(bits - 1 if name == "df" else bits):
            probe = dict(zero, **{name: np.array([1 << b], np.int64)})
            out = int(np.asarray(your_fn(probe["f1"], probe["df"], probe["dt"]), dtype=np.int64).ravel()[0])
            moved = [k for k in range(64) if ((out ^ base) >> k) & 1]
            if moved != [shift + b]:
                raise ExerciseError(f"pack_hash: bit {b} of {name} lands on hash bit(s) {moved}, expected bit "
                                    f"{shift + b} (f1 in bits 12-19, df in 6-11, dt in 0-5)")
    i = int(np.flatnonzero(got != want)[0])
    raise ExerciseError(f"pack_hash{tuple(int(v[k][i]) for k in v)} = {got[i]}, expected {want[i]} "
                        f"(binary {want[i]:020b})")


def _offset_cases():
    """(q_hash, q_t, db_hash, db_t) cases with one clear best offset db_t - q_t (one negative)."""
    rng = np.random.default_rng(7)
    cases = []
    for offset, n_db, n_hash, t_max in ((400, 3000, 500, 1000), (-25, 1500, 300, 200), (3, 400, 50, 120)):
        db_h = rng.integers(0, n_hash, n_db)
        db_t = rng.integers(max(0, -offset), t_max, n_db)
        pick = rng.choice(np.flatnonzero((db_t >= max(offset, 0)) & (db_t < max(offset, 0) + 60)), 40, replace=False)
        noise = 60
        q_h = np.r_[db_h[pick], rng.integers(0, n_hash, noise)]
        q_t = np.r_[db_t[pick] - offset, rng.integers(0, 60, noise)]
        order = rng.permutation(len(q_h))
        cases.append((q_h[order], q_t[order], db_h, db_t))
    return cases


def _offset_hist(q_h, q_t, db_h, db_t):
    """Brute force: every (query, db) pair with equal hashes votes for db_t - q_t."""
    same = q_h[:, None] == db_h[None, :]  # (Q, N)
    off = (db_t[None, :] - q_t[:, None])[same]
    return np.unique(off, return_counts=True)


def check_offset_histogram(your_fn) -> None:
    """Check `your_fn(q_hash, q_t, db_hash, db_t) -> (best_offset, count)` against a brute-force count.

    The offset of a pair of equal hashes is db_t - q_t (where the query starts in the
    track); `count` is how many (query entry, database entry) pairs with equal hashes
    have the best offset. Recognises the offset's sign flipped, a histogram bin index
    returned instead of an offset, negative offsets not handled, and counts of all
    matching hashes rather than the aligned ones.

    Notebook: 03_landmarks.ipynb
    """
    for k, (q_h, q_t, db_h, db_t) in enumerate(_offset_cases()):
        off, cnt = _offset_hist(q_h, q_t, db_h, db_t)
        best, best_count = int(off[np.argmax(cnt)]), int(cnt.max())
        assert np.sum(cnt == best_count) == 1  # the cases have one clear peak
        try:
            out = your_fn(q_h.copy(), q_t.copy(), db_h.copy(), db_t.copy())
        except Exception as e:
            hint = (" Offsets can be negative here (a hash later in the query than in the track): np.bincount "
                    "needs nonnegative integers, so shift by the smallest offset or use np.unique"
                    if off.min() < 0 else "")
            raise ExerciseError(f"best_offset raised {type(e).__name__}: {e}.{hint}")
        try:
            got, got_count = (int(np.asarray(o).item()) for o in out)
        except (TypeError, ValueError):
            raise ExerciseError(f"best_offset should return two integers (offset, count), got {out!r}")
        if got == best and got_count == best_count:
            continue
        where = f"case {k}: got offset {got} with count {got_count}, expected {best} with count {best_count}"
        if got == -best and best != 0:
            raise ExerciseError(f"{where}: the sign is flipped. The offset is db_t - q_t: the query's frame 0 sits "
                                "at frame db_t - q_t of the track (you computed q_t - db_t)")
        if got == best - int(off.min()) and off.min() != 0:
            raise ExerciseError(f"{where}: that is the index of the histogram bin, not the offset: add back the "
                                f"smallest offset ({int(off.min())})")
        if got == best:
            if got_count == int(cnt.sum()):
                raise ExerciseError(f"{where}: the count is every matching hash at any offset; count only those "
                                    "whose db_t - q_t equals the best offset")
            raise ExerciseError(f"{where}: the offset is right but the count is not: count every (query entry, "
                                "database entry) pair with equal hashes and db_t - q_t == offset")
        raise ExerciseError(where)
    _ok("best_offset")


def _zone_pairs(t, f, cfg, lo=lambda d, m: d >= m, hi=lambda d, m: d <= m, fz=lambda a, m: a <= m,
                fanout=None, time_first=False, sign=1):
    """Brute-force target-zone pairing, with switches for the usual mistakes: a set of (t1, f1, f2, dt)."""
    fanout = cfg.fanout if fanout is None else fanout
    out = set()
    for i in range(len(t)):
        n = 0
        for j in range(len(t)):
            d = sign * (int(t[j]) - int(t[i]))
            if not (lo(d, cfg.min_dt) and hi(d, cfg.max_dt)):
                continue
            if time_first:  # fan-out counted before the frequency test
                n += 1
                if n <= fanout and fz(abs(int(f[j]) - int(f[i])), cfg.max_df):
                    out.add((int(t[i]), int(f[i]), int(f[j]), d))
            elif fz(abs(int(f[j]) - int(f[i])), cfg.max_df) and n < fanout:
                n += 1
                out.add((int(t[i]), int(f[i]), int(f[j]), d))
    return out


def check_target_zone(your_fn) -> None:
    """Check `your_fn(t, f, cfg) -> (t1, f1, f2, dt)` against `minihash.landmarks.landmarks`.

    Every anchor peak (t1, f1) pairs with the first `cfg.fanout` peaks (time order, then
    bin order) of its zone min_dt <= t2 - t1 <= max_dt, |f2 - f1| <= max_df. Pairs may
    come in any order. Recognises strict bounds, fan-out off by one or ignored, the
    fan-out counted before the frequency test, targets before the anchor, and df
    returned where f2 is meant.

    Notebook: 03_landmarks.ipynb
    """
    from .landmarks import LandmarkConfig, landmarks

    rng = np.random.default_rng(11)
    cases = []
    for P, frames, cfg in ((60, 400, LandmarkConfig(min_dt=3, max_dt=20, max_df=12, fanout=100)),
                           (400, 300, LandmarkConfig(min_dt=2, max_dt=30, max_df=20, fanout=3)),
                           (300, 250, LandmarkConfig(min_dt=1, max_dt=63, max_df=31, fanout=5))):
        key = np.unique(rng.integers(0, frames, P) * 256 + rng.integers(0, 200 if P < 100 else 256, P))
        t, f = (key // 256).astype(np.int32), (key % 256).astype(np.int32)  # sorted by time, then bin
        cases.append((t, f, cfg))
    for k, (t, f, cfg) in enumerate(cases):
        want = set(zip(*(a.tolist() for a in landmarks((t, f), cfg))))
        assert want == _zone_pairs(t, f, cfg)  # the package agrees with the brute force
        try:
            out = your_fn(t.copy(), f.copy(), cfg)
            got = set(zip(*(np.asarray(a).astype(int).tolist() for a in out)))
        except Exception as e:
            raise ExerciseError(f"target_zone raised {type(e).__name__}: {e} (return four arrays t1, f1, f2, dt)")
        n_out = len(np.asarray(out[0]))
        if got == want and n_out == len(want):
            continue
        zone = f"(case {k}: min_dt={cfg.min_dt}, max_dt={cfg.max_dt}, max_df={cfg.max_df}, fanout={cfg.fanout})"
        if got == want:
            raise ExerciseError(f"target_zone: {n_out} pairs but only {len(want)} distinct: each pair once {zone}")
        variants = [
            (_zone_pairs(t, f, cfg, lo=lambda d, m: d > m), "the zone starts at dt = min_dt (inclusive), not after"),
            (_zone_pairs(t, f, cfg, hi=lambda d, m: d < m), "the zone ends at dt = max_dt inclusive (<=, not <)"),
            (_zone_pairs(t, f, cfg, fz=lambda a, m: a < m), "|f2 - f1| <= max_df is inclusive (<=, not <)"),
            (_zone_pairs(t, f, cfg, fanout=10 ** 9), "no fan-out limit: keep only the first `fanout` targets of each "
                                                     "anchor (time order, then bin order)"),
            (_zone_pairs(t, f, cfg, fanout=cfg.fanout + 1), "one target too many per anchor: stop at `fanout`"),
            (_zone_pairs(t, f, cfg, fanout=cfg.fanout - 1), "one target too few per anchor: keep `fanout`"),
            (_zone_pairs(t, f, cfg, time_first=True), "the fan-out counts peaks that fail the frequency test: count "
                                                      "only peaks inside the zone (time AND frequency)"),
            (_zone_pairs(t, f, cfg, sign=-1), "the targets are before the anchor: the zone is AFTER it, "
                                              "dt = t2 - t1 > 0"),
            ({(a, b, c - b, d) for a, b, c, d in want}, "the third array should be f2, the target's bin, not f2 - f1"),
            ({(a, b, c, -d) for a, b, c, d in want}, "dt has the wrong sign: dt = t2 - t1"),
        ]
        for pairs, why in variants:
            if got == pairs:
                raise ExerciseError(f"target_zone: {why} {zone}")
        extra, missing = sorted(got - want), sorted(want - got)
        raise ExerciseError(f"target_zone: {len(got)} pairs, expected {len(want)} {zone}; e.g. "
                            + (f"unexpected (t1, f1, f2, dt) = {extra[0]}" if extra else f"missing {missing[0]}"))
    _ok("target_zone")


# ---- 07_balanced_hashing


def _code_cases():
    """(codes, K) cases: skewed, fewer items than buckets, one bucket, perfectly even."""
    rng = np.random.default_rng(5)
    return [(np.minimum(rng.geometric(0.05, 2000), 255).astype(np.int64), 8),
            (rng.integers(0, 2 ** 16, 300) & rng.integers(0, 2 ** 16, 300), 16),
            (np.full(500, 1234, dtype=np.int64), 16),
            (np.repeat(np.arange(64), 5), 6),
            (rng.integers(0, 2 ** 12, 20000) >> rng.integers(0, 6, 20000), 12)]


def check_bucket_entropy(your_fn) -> None:
    """Check `your_fn(codes, K) -> normalised entropy` against `minihash.ot.bucket_stats`.

    The entropy of the bucket occupancy p_b = n_b / N in bits, divided by the most N
    codes can reach, log2(min(N, 2^K)). Recognises natural logs mixed with log2, the
    raw entropy, normalising by K or by the buckets in use, and empty buckets that turn
    into NaN (0 log 0) or are counted in N.

    Notebook: 07_balanced_hashing.ipynb
    """
    from .ot import bucket_stats

    for k, (codes, K) in enumerate(_code_cases()):
        st = bucket_stats(codes, K)
        want = st["entropy_norm"]
        try:
            got = float(np.asarray(your_fn(codes.copy(), K)).item())
        except Exception as e:
            raise ExerciseError(f"bucket_entropy raised {type(e).__name__}: {e} (return one number)")
        if abs(got - want) < 1e-6:
            continue
        N, used = len(codes), st["n_buckets_used"]
        H = st["entropy_bits"]
        where = f"case {k} (N={N}, K={K}, {used} buckets used): got {got:.6g}, expected {want:.6g}"
        if np.isnan(got):
            raise ExerciseError(f"{where}: NaN. Empty buckets give 0 * log(0) = nan: they add nothing to the "
                                "entropy, so sum only over the buckets in use (np.unique(..., return_counts=True))")
        bound = np.log2(min(N, 2 ** K))
        variants = [
            (want * np.log(2), "the entropy is in nats (natural log) but the bound is in bits: use log2 in both"),
            (want / np.log(2), "the entropy is in bits but the bound in nats: use log2 in both"),
            (H, "that is the raw entropy in bits: divide by log2(min(N, 2^K)), the most N codes can reach"),
            (H * np.log(2), "that is the raw entropy in nats: use log2, then divide by log2(min(N, 2^K))"),
            (H / K, "you divided by K = log2(2^K): N items can fill at most N buckets, so divide by "
                    "log2(min(N, 2^K))"),
            (H / np.log2(used) if used > 1 else np.nan, "you divided by log2 of the buckets in use: that is 1 for "
                                                        "any set of equally full buckets, however few. Divide by "
                                                        "log2(min(N, 2^K))"),
        ]
        p_wrong = np.unique(codes, return_counts=True)[1] / 2 ** K  # counts over the number of buckets
        variants.append((float(-(p_wrong * np.log2(p_wrong)).sum() / bound),
                         "p_b is n_b / N (the share of items in bucket b), not n_b / 2^K"))
        for value, why in variants:
            if np.isfinite(value) and abs(got - value) < 1e-6:
                raise ExerciseError(f"{where}: {why}")
        raise ExerciseError(where)
    _ok("bucket_entropy")


def check_pack_codes(your_fn) -> None:
    """Check `your_fn(logits (N, K)) -> (N,) integer codes` against `minihash.index.pack_codes`.

    Bit k of the code is set where logit k > 0 (strictly): logit 0 is the least
    significant bit. Recognises the bit order reversed, >= for >, inverted bits, +-1
    weights, and overflow of signed 32-bit integers.

    Notebook: 07_balanced_hashing.ipynb
    """
    from .index import pack_codes

    rng = np.random.default_rng(9)
    for K in (16, 8, 32, 5):
        L = rng.standard_normal((400, K)).astype(np.float32)
        L[rng.random(L.shape) < 0.05] = 0.0  # exact zeros: the sign convention shows
        L[0] = 1.0  # every bit set
        want = pack_codes(L).astype(np.uint64)
        try:
            got = np.asarray(your_fn(L.copy()))
        except Exception as e:
            raise ExerciseError(f"pack_codes raised {type(e).__name__}: {e} (input: a (N, K) float array)")
        if got.shape != want.shape:
            raise ExerciseError(f"pack_codes (K={K}): expected shape {want.shape}, one code per row, got {got.shape}")
        if not np.issubdtype(got.dtype, np.integer):
            raise ExerciseError(f"pack_codes: return integers (got {got.dtype})")
        if np.any(got.astype(np.int64) < 0):
            raise ExerciseError(f"pack_codes (K={K}): negative codes: a signed integer overflowed when the top bit "
                                "was set; use an unsigned type wide enough (np.uint32 for K <= 32, np.uint64 above)")
        got = got.astype(np.uint64)
        if np.array_equal(got, want):
            continue
        where = f"pack_codes (K={K})"
        bits = (L > 0).astype(np.uint64)
        w = np.uint64(1) << np.arange(K, dtype=np.uint64)
        if np.array_equal(got, (bits * w[::-1]).sum(1, dtype=np.uint64)):
            raise ExerciseError(f"{where}: the bit order is reversed: logit 0 is bit 0, the least significant "
                                "(weight 2^0), logit k has weight 2^k")
        if np.array_equal(got, ((L >= 0).astype(np.uint64) * w).sum(1, dtype=np.uint64)):
            raise ExerciseError(f"{where}: a logit of exactly 0 gave a 1 bit: the bit is logit > 0 (strict)")
        if np.array_equal(got, ((L < 0).astype(np.uint64) * w).sum(1, dtype=np.uint64)) or \
                np.array_equal(got, ((L <= 0).astype(np.uint64) * w).sum(1, dtype=np.uint64)):
            raise ExerciseError(f"{where}: the bits are inverted: a bit is 1 where the logit is positive")
        signed = ((2 * bits.astype(np.int64) - 1) * w.astype(np.int64)).sum(1)
        if np.array_equal(got.astype(np.int64), signed):
            raise ExerciseError(f"{where}: you weighted +-1 signs: a code's bits are 0/1 (logit > 0)")
        i = int(np.flatnonzero(got != want)[0])
        raise ExerciseError(f"{where}: row {i} gives {int(got[i])} = 0b{int(got[i]):b}, expected {int(want[i])} = "
                            f"0b{int(want[i]):b} (bit k set where logit k > 0)")
    _ok("pack_codes")


def check_expected_candidates(your_fn) -> None:
    """Check `your_fn(codes) -> expected candidates per probe` = sum_b n_b^2 / N.

    A query distributed like the data lands in bucket b with probability n_b / N and
    then scores its n_b items. Recognises the mean bucket size, the collision
    probability (no factor N), a missing 1 / N, the largest bucket and n_b - 1.

    Notebook: 07_balanced_hashing.ipynb
    """
    for k, (codes, K) in enumerate(_code_cases() + [(np.array([3, 3, 3, 7, 9, 9, 11]), 4)]):
        n = np.unique(codes, return_counts=True)[1].astype(np.float64)
        N = n.sum()
        want = float((n ** 2).sum() / N)
        try:
            got = float(np.asarray(your_fn(codes.copy())).item())
        except Exception as e:
            raise ExerciseError(f"expected_candidates raised {type(e).__name__}: {e} (return one number)")
        if abs(got - want) <= 1e-6 * max(1.0, want):
            continue
        where = f"case {k} (N={int(N)}, {len(n)} buckets used): got {got:.6g}, expected {want:.6g}"
        variants = [
            (N / len(n), "that is the mean size of the buckets in use; but a query falls in bucket b with "
                         "probability n_b / N (it is distributed like the data), so big buckets count more: "
                         "sum_b (n_b / N) * n_b"),
            (want / N, "that is the probability that two random items share a bucket; multiply by N to count "
                       "candidates"),
            (want * N, "divide by N: sum_b n_b^2 / N"),
            (n.max(), "that is the largest bucket, the worst case; the expectation weighs every bucket by n_b / N"),
            (float((n * (n - 1)).sum() / N), "you used n_b - 1: a query is not in the database, it scores all n_b "
                                             "items of its bucket"),
        ]
        for value, why in variants:
            if abs(got - value) <= 1e-6 * max(1.0, abs(value)) and abs(value - want) > 1e-9:
                raise ExerciseError(f"{where}: {why}")
        raise ExerciseError(where)
    _ok("expected_candidates")


# ---- 00_overview


def check_is_hit(your_fn) -> None:
    """Check `your_fn(match, track, start_s, tol=0.1) -> bool`: the evaluation protocol's hit.

    A hit names the right track and a start time within `tol` seconds of the true one, either side;
    "no match" (`match.track is None`) is never a hit.

    Notebook: 00_overview.ipynb
    """
    from .index import Match

    def m(track, offset):
        return Match(track, offset, 0.8, 100, 1.0)

    cases = [  # (match, track, start_s, tol, expected, what a wrong answer means)
        (m("song_a", 10.05), "song_a", 10.0, 0.1, True, "the right track 0.05 s late is a hit"),
        (m("song_a", 9.96), "song_a", 10.0, 0.1, True, "the right track 0.04 s early is a hit"),
        (m("song_a", 9.0), "song_a", 10.0, 0.1,
         False, "a start 1 s too early is not a hit: compare the absolute error |offset - start| with tol"),
        (m("song_a", 11.0), "song_a", 10.0, 0.1, False, "a start 1 s too late is not a hit"),
        (m("song_b", 10.0), "song_a", 10.0, 0.1,
         False, "the wrong track at the right time is not a hit: check match.track == track"),
        (m(None, 10.0), "song_a", 10.0, 0.1, False, "no match (match.track is None) is never a hit"),
        (m("song_a", 10.4), "song_a", 10.0, 0.5,
         True, "with tol=0.5 a start 0.4 s late is a hit: use the tol argument, not a fixed 0.1"),
        (m("song_a", 10.099), "song_a", 10.0, 0.1, True, "an error just under tol is a hit"),
    ]
    for match, track, start_s, tol, want, why in cases:
        got = your_fn(match, track, start_s, tol=tol)
        if not isinstance(got, (bool, np.bool_)):
            raise ExerciseError(f"return True or False, got {type(got).__name__} {got!r}")
        if bool(got) != want:
            raise ExerciseError(f"is_hit(Match(track={match.track!r}, offset_s={match.offset_s}), {track!r}, "
                                f"start_s={start_s}, tol={tol}) returned {got}: {why}")
    _ok("check_is_hit")


# ---- 08_search


def check_bucket_lookup(your_fn) -> None:
    """Check `your_fn(codes_sorted, code) -> (lo, hi)`: the rows of one bucket, `codes_sorted[lo:hi]`.

    Compared with `index.BucketTable` (its `bucket_codes`, `bucket_start`) on codes with repeats, on
    the first and last buckets, on a bucket of one row, and on codes that are in no bucket (below,
    between and above the stored ones), where the range must be empty (lo == hi).

    Notebook: 08_search.ipynb
    """
    from .index import BucketTable

    rng = np.random.default_rng(8)
    codes = np.sort(rng.choice(np.arange(10, 200, 3), size=120).astype(np.uint32))  # repeats, gaps
    codes = np.sort(np.append(codes, np.uint32(5)))  # a bucket of exactly one row, at the start
    table = BucketTable(codes)
    present = table.bucket_codes
    absent = np.setdiff1d(np.arange(0, 260, dtype=np.uint32), present)
    sizes = np.diff(table.bucket_start)
    probes = [present[np.argmax(sizes)], present[0], present[-1], absent[0], absent[len(absent) // 2], np.uint32(259)]
    probes += list(rng.choice(present, 6)) + list(rng.choice(absent, 4))
    for code in probes:
        b = int(np.searchsorted(table.bucket_codes, code))
        there = b < len(table.bucket_codes) and table.bucket_codes[b] == code
        want = (int(table.bucket_start[b]), int(table.bucket_start[b + 1])) if there else None
        try:
            got = your_fn(codes, code)
        except IndexError as e:
            where = "larger than every stored code" if code > codes[-1] else "in no bucket"
            raise ExerciseError(f"code {int(code)} ({where}) raised IndexError ({e}): np.searchsorted can return "
                                "len(bucket_codes); check the bucket index before reading bucket_codes[b]") from None
        try:
            lo, hi = (int(v) for v in got)
        except (TypeError, ValueError):
            raise ExerciseError(f"return two integers (lo, hi), got {got!r}") from None
        if want is None:
            if hi > lo:
                raise ExerciseError(f"code {int(code)} is in no bucket, but your range [{lo}, {hi}) holds rows of "
                                    f"code {int(codes[lo]) if lo < len(codes) else '?'}: check that the bucket "
                                    "searchsorted lands on really holds the code")
            continue
        wlo, whi = want
        if (lo, hi) == want:
            continue
        if lo == wlo and hi == whi - 1:
            raise ExerciseError(f"code {int(code)}: you return [{lo}, {hi}), the bucket is [{wlo}, {whi}): hi is the "
                                "last row, not one past it (off by one; codes_sorted[lo:hi] must hold every row)")
        if lo == wlo and hi == whi + 1:
            raise ExerciseError(f"code {int(code)}: you return [{lo}, {hi}), the bucket is [{wlo}, {whi}): one row "
                                "too many at the end (off by one: hi is one past the last row already)")
        if hi == whi and abs(lo - wlo) == 1:
            raise ExerciseError(f"code {int(code)}: you return [{lo}, {hi}), the bucket is [{wlo}, {whi}): lo is off "
                                "by one (the bucket begins at bucket_start[b], or searchsorted(..., side='left'))")
        if lo == hi:
            raise ExerciseError(f"code {int(code)} has {whi - wlo} rows [{wlo}, {whi}), your range is empty: "
                                "the end of a bucket is where the next one starts (bucket_start[b + 1]), or "
                                "searchsorted(..., side='right')")
        raise ExerciseError(f"code {int(code)}: you return [{lo}, {hi}), the bucket is [{wlo}, {whi})")
    _ok("check_bucket_lookup")


def _subset_costs(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every subset of K bits as a mask, with its cost sum(w[bits]) (K <= 16)."""
    K = len(w)
    masks = np.arange(2 ** K, dtype=np.uint64)
    bits = (masks[:, None] >> np.arange(K, dtype=np.uint64)) & np.uint64(1)  # (2^K, K)
    return masks, bits.astype(np.float64) @ w


def check_probe_order(your_fn) -> None:
    """Check `your_fn(logits, n_probes) -> masks`: the multi-probe flip-sets, cheapest first.

    A flip-set costs the summed |logit| of its bits; mask 0 (the window's own bucket) comes first.
    Compared with `index.probe_order` and a brute-force sort of every subset; ties in cost may come
    in any order.

    Notebook: 08_search.ipynb
    """
    from .index import probe_order

    rng = np.random.default_rng(3)
    cases = [(rng.normal(0, 2, 8), 20), (rng.normal(0, 2, 16), 64), (rng.normal(0, 1, 4), 16),
             (rng.normal(0, 3, 12), 40), (rng.normal(0, 1, 6), 1)]
    for logits, P in cases:
        K = len(logits)
        conf = np.abs(logits)
        ref_masks, ref_costs = probe_order(conf, P)
        got = your_fn(logits.copy(), P)
        try:
            masks = np.array([int(v) for v in got], dtype=np.uint64)
        except (TypeError, ValueError):
            raise ExerciseError(f"return a sequence of integer masks, got {got!r}") from None
        where = f"(K={K}, n_probes={P})"
        single = max(bin(int(v)).count("1") for v in ref_masks) > 1 >= max(bin(int(v)).count("1") for v in masks)
        if single:
            raise ExerciseError(f"{where}: you only flip one bit at a time; flipping two unsure bits together "
                                "can cost less than flipping one confident bit, and K bits give 2^K flip-sets")
        if len(masks) != len(ref_masks):
            raise ExerciseError(f"{where}: expected {len(ref_masks)} masks, got {len(masks)}")
        if masks[0] != 0:
            raise ExerciseError(f"{where}: the first probe must be the window's own bucket, the empty flip-set "
                                f"(mask 0); got {int(masks[0])}")
        if len(np.unique(masks)) != len(masks):
            raise ExerciseError(f"{where}: a mask comes twice: each flip-set should be probed once")
        if masks.max() >= 2 ** K:
            raise ExerciseError(f"{where}: mask {int(masks.max())} flips a bit beyond the K={K} bits")
        all_masks, cost_abs = _subset_costs(conf)
        costs = cost_abs[masks.astype(np.int64)]
        if np.allclose(costs, ref_costs, rtol=0, atol=1e-9):
            continue
        signed = _subset_costs(logits)[1][masks.astype(np.int64)]
        negative = sum(1 << k for k in range(K) if logits[k] < 0)
        if (np.all(np.diff(signed) >= -1e-9) or int(masks[1]) in (1 << int(np.argmin(logits)), negative)
                or int(masks[1]) == 1 << int(np.argmax(logits)) != int(ref_masks[1])):
            raise ExerciseError(f"{where}: your probes follow the signed logits; a bit is unsure when its logit "
                                "is near 0 from either side: the cost of flipping it is |logit|")
        if np.all(np.diff(costs[1:]) <= 1e-9):
            raise ExerciseError(f"{where}: your probes come most expensive first: flip the LEAST confident bits "
                                "(smallest |logit|) first")
        if set(masks.tolist()) == set(ref_masks.tolist()):
            raise ExerciseError(f"{where}: the right flip-sets in the wrong order: pop them cheapest first "
                                "(a heap keyed by the summed |logit|)")
        i = int(np.flatnonzero(~np.isclose(costs, ref_costs, rtol=0, atol=1e-9))[0])
        raise ExerciseError(f"{where}: probe {i} flips bits {[k for k in range(K) if int(masks[i]) >> k & 1]} at "
                            f"cost {costs[i]:.4f}; the cheapest flip-set not yet probed costs {ref_costs[i]:.4f} "
                            f"(bits {[k for k in range(K) if int(ref_masks[i]) >> k & 1]})")
    _ok("check_probe_order")


def _vote_case(kind: str, rng):
    """Synthetic candidates for `check_vote`: a true (track, bin) and a decoy that one mistake prefers."""
    hop, n_tracks, n_rows = 0.1, 3, 300
    track_ids = np.repeat(np.arange(n_tracks), n_rows).astype(np.int32)
    starts = np.tile(np.arange(n_rows) * hop, n_tracks).astype(np.float32)
    M = 10 if kind == "negative" else 6
    q_starts = np.arange(M) * 0.5 + (0.003 if kind == "floor" else 0.0)  # windows a little off the DB grid
    win, rows, sims = [], [], []

    def add(w, track, bin_, s):
        j = int(round((q_starts[w] + bin_ * hop) / hop))
        win.append(w), rows.append(track * n_rows + j), sims.append(s)

    true_t, true_b = 2, 57
    found_by = range(4) if kind == "count" else range(6)
    for w in found_by:
        add(w, true_t, true_b, 0.75 + 0.03 * w)
    for w in range(M):
        for k in rng.choice(n_tracks * 40, 3, replace=False):  # background: weak candidates, distinct pairs
            add(w, int(k) // 40, int(k) % 40, float(rng.uniform(0.0, 0.2)))
    if kind == "count":  # a pair found by more windows, each weakly: counting votes prefers it
        for w in range(M):
            add(w, 0, 120, 0.3)
    if kind == "negative":  # more windows see the true pair, dissimilar: they count 0, not minus
        for w in range(6, M):
            add(w, true_t, true_b, -0.6)
        for w in range(1, M):
            add(w, 0, 120, 0.45)
    o = np.argsort(win, kind="stable")  # candidates come grouped by query window, as the index gives them
    return (np.array(win)[o], np.array(rows)[o], np.array(sims, dtype=np.float32)[o], q_starts, track_ids, starts, hop)


def check_vote(your_fn) -> None:
    """Check `your_fn(win, rows, sims, q_starts, track_ids, starts, hop_s) -> (track, offset_bin)`.

    The best (track, offset bin) by summed similarity, offset = DB window start - query window start,
    rounded to the nearest hop; negative similarities count 0. Compared with `index.vote`, and
    recognises the flipped sign, truncation instead of rounding, counting instead of summing and
    summing negative similarities.

    Notebook: 08_search.ipynb
    """
    from .index import vote

    def variant(args, sign=1.0, rnd=np.rint, weight="sum"):
        win, rows, sims, q_starts, track_ids, starts, hop = args
        tr = track_ids[rows].astype(np.int64)
        b = rnd(sign * (starts[rows] - q_starts[win]) / hop).astype(np.int64)
        w = {"sum": np.maximum(sims, 0), "count": np.ones_like(sims), "raw": sims}[weight]
        keys, inv = np.unique(tr * 100000 + b + 50000, return_inverse=True)
        s = np.bincount(inv, weights=w)
        k = keys[np.argmax(s)]
        return int(k // 100000), int(k % 100000 - 50000)

    rng = np.random.default_rng(5)
    for kind in ("basic", "floor", "count", "negative"):
        args = _vote_case(kind, rng)
        t, b, _ = vote(*args, n_best=1)
        want = (int(t[0]), int(b[0]))
        got = your_fn(*args)
        try:
            got = tuple(int(v) for v in got)
            assert len(got) == 2
        except (TypeError, ValueError, AssertionError):
            raise ExerciseError(f"return (track, offset_bin), two integers; got {got!r}") from None
        if got == want:
            continue
        if got == (want[0], -want[1]) or got == variant(args, sign=-1.0):
            raise ExerciseError(f"you found offset bin {got[1]}, the answer is {want[1]}: the offset is the DB "
                                "window's start minus the query window's start (where the query begins in the "
                                "track), not q_start - db_start")
        if got == variant(args, rnd=np.floor) or got == variant(args, rnd=np.trunc):
            raise ExerciseError(f"you found offset bin {got[1]}, the answer is {want[1]}: round the offset to the "
                                "nearest hop (np.rint); int() and floor() turn 56.97 hops into 56, not 57")
        if got == variant(args, weight="count"):
            raise ExerciseError(f"you found {got}, the answer is {want}: you count votes; sum their similarities, "
                                "so that many weak candidates do not outvote a few strong ones")
        if got == variant(args, weight="raw"):
            raise ExerciseError(f"you found {got}, the answer is {want}: negative similarities should count 0 "
                                "(np.maximum(sims, 0)), not subtract from a pair's votes")
        raise ExerciseError(f"case {kind!r}: you found (track, bin) {got}, the answer is {want}")
    _ok("check_vote")


# ---- 10_your_own_audio


def _tone_gain_db(fn, f: float, sr: int) -> float:
    t = np.arange(sr) / sr
    x = (0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32)  # 1 s tone
    y = np.asarray(fn(x.copy(), sr), dtype=np.float64)
    if y.shape != x.shape:
        raise ExerciseError(f"a ({len(x)},) signal came back as shape {y.shape}: keep the length (filter, do not "
                            "convolve in 'full' mode)")
    if not np.all(np.isfinite(y)):
        raise ExerciseError("your filter returned NaN or Inf (an unstable filter? use output='sos')")
    mid = slice(sr // 4, sr - sr // 10)  # skip the filter's start-up and end transients
    return 10 * np.log10(np.mean(y[mid] ** 2) / np.mean(x[mid].astype(np.float64) ** 2) + 1e-20)


def check_phone_filter(your_fn) -> None:
    """Check `your_fn(x, sr) -> y`: a telephone band-pass, 300-3400 Hz, at any sample rate.

    Pure tones through it: 500, 1000, 2000 and 2500 Hz must pass within 3 dB; 100 Hz and a
    frequency well above 3400 Hz must be cut by at least 12 dB. Run at 8 kHz and 16 kHz.

    Notebook: 10_your_own_audio.ipynb
    """
    for sr, high in ((8000, 3900.0), (16000, 6000.0)):
        try:
            g = {f: _tone_gain_db(your_fn, f, sr) for f in (100.0, 500.0, 1000.0, 2000.0, 2500.0, high)}
        except ValueError as e:
            raise ExerciseError(f"at sr={sr} your filter raised ValueError ({e}): give scipy.signal.butter the band "
                                "edges in Hz with fs=sr (or divided by the Nyquist frequency sr / 2)") from None
        passband = np.array([g[500.0], g[1000.0], g[2000.0], g[2500.0]])
        table = ", ".join(f"{f:g} Hz: {v:+.1f} dB" for f, v in g.items())
        where = f"at sr={sr} ({table})"
        if np.all(np.abs(passband - passband.mean()) <= 1.5) and abs(passband.mean()) > 3:
            raise ExerciseError(f"{where}: the whole passband is {passband.mean():+.1f} dB: a gain factor slipped "
                                "in; a band-pass leaves the band at 0 dB")
        if np.any(np.abs(passband) > 3):
            hint = (" (and it works at 8 kHz: the band edges must come from sr, not a fixed 8000)"
                    if sr == 16000 else ": are the band edges in Hz with fs=sr, or divided by the Nyquist frequency?")
            raise ExerciseError(f"{where}: the passband 500-2500 Hz should be within 3 dB of 0 dB{hint}")
        if g[100.0] > -12:
            raise ExerciseError(f"{where}: 100 Hz passes at {g[100.0]:+.1f} dB: a phone's microphone and codec cut "
                                "the bass below about 300 Hz; your filter needs a high-pass side")
        if g[high] > -12:
            msg = (" (and it works at 8 kHz: the band edges must come from sr, not a fixed 8000)" if sr == 16000
                   else ": the low-pass side at 3400 Hz is missing")
            raise ExerciseError(f"{where}: {high:g} Hz passes at {g[high]:+.1f} dB{msg}")
    _ok("check_phone_filter")


def check_excerpt(your_fn) -> None:
    """Check `your_fn(x, start_s, length_s, sr) -> excerpt`: x[a:a+n], a = round(start_s sr), n = round(length_s sr).

    The signal tested is 0, 1, 2, ... so the excerpt's first sample names the start it used. The
    start times include ones where start_s * sr lands just under an integer in floating point
    (2.01 * 8000 = 16079.999999999998): truncating with int() is then one sample early.

    Notebook: 10_your_own_audio.ipynb
    """
    cases = [(8000, 2.01, 3.0), (8000, 1.00009, 3.0), (8000, 0.0, 1.0), (8000, 7.123456, 2.0),
             (44100, 0.57, 1.13), (8000, 1.0000375, 2.0000375), (16000, 2.99999, 2.0)]
    for sr, start_s, length_s in cases:
        T = int(round((start_s + length_s) * sr)) + sr
        x = np.arange(T, dtype=np.float64)
        a, n = int(round(start_s * sr)), int(round(length_s * sr))
        y = np.asarray(your_fn(x, start_s, length_s, sr))
        where = f"excerpt(start_s={start_s}, length_s={length_s}, sr={sr})"
        if y.ndim != 1:
            raise ExerciseError(f"{where}: return a 1-d array, got shape {y.shape}")
        if len(y) == 0:
            raise ExerciseError(f"{where}: empty excerpt; the expected length is {n} samples")
        first = int(y[0])
        if first != a:
            if first == int(start_s * sr) or first == int(np.floor(start_s * sr)):
                why = (f"start_s * sr = {start_s * sr!r}: int() or floor() truncate it to {first}; round it to the "
                       f"nearest sample, {a}")
            elif first == int(np.ceil(start_s * sr)):
                why = f"start_s * sr = {start_s * sr!r}: ceil gives {first}; round it to the nearest sample, {a}"
            elif first == int(round(start_s * 8000)) and sr != 8000:
                why = "you use 8000 Hz whatever sr is"
            else:
                why = f"start_s * sr = {start_s * sr!r}"
            raise ExerciseError(f"{where}: the excerpt starts at sample {first}, expected {a}: {why}")
        if len(y) != n:
            if len(y) == int(length_s * sr) or len(y) == int(np.floor(length_s * sr)):
                why = f"length_s * sr = {length_s * sr!r} truncated; round it: {n} samples"
            elif len(y) == int(round((start_s + length_s) * sr)) - a:
                why = ("you cut up to round((start_s + length_s) * sr): the length then depends on the start; "
                       "take n = round(length_s * sr) samples from a")
            else:
                why = f"expected round(length_s * sr) = {n}"
            raise ExerciseError(f"{where}: {len(y)} samples, expected {n}: {why}")
        if not np.array_equal(y, x[a:a + n]):
            raise ExerciseError(f"{where}: the samples are not x[{a}:{a + n}] (reordered or modified?)")
    _ok("check_excerpt")


# ---- 06_optimal_transport

def _ot_f64(x):
    return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)


def _ot_marginal_report(P, a, b) -> tuple[float, float]:
    """Largest error of the row sums against a and of the column sums against b."""
    return float(np.abs(P.sum(1) - a).max()), float(np.abs(P.sum(0) - b).max())


def check_sinkhorn(fn) -> None:
    """Check `fn(a, b, C, eps, n_iter) -> P`: the entropic OT plan, against POT's `ot.sinkhorn`.

    a (n,), b (m,) are the marginals (positive, summing to 1), C (n, m) the cost, eps the
    regularisation (the plan minimises <P, C> - eps H(P)) and n_iter the iterations to run
    (enough to converge here). P is (n, m) with P.sum(1) == a and P.sum(0) == b.

    Notebook: 06_optimal_transport.ipynb
    """
    import warnings

    import ot

    rng = np.random.default_rng(6)
    for n, m, eps, n_iter in ((7, 9, 0.05, 300), (5, 12, 0.01, 1500), (10, 10, 0.5, 100)):
        xs, xt = rng.normal(size=(n, 2)), rng.normal(size=(m, 2)) + 1.0
        C = ot.dist(xs, xt)
        C /= C.max()  # costs in [0, 1], so eps has its usual scale
        a, b = rng.uniform(0.5, 1.5, n), rng.uniform(0.5, 1.5, m)
        a, b = a / a.sum(), b / b.sum()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # POT warns when a variant below does not converge
            want = ot.sinkhorn(a, b, C, eps, numItermax=n_iter, stopThr=0)
            got = _ot_f64(fn(a.copy(), b.copy(), C.copy(), eps, n_iter))
            case = f"n={n}, m={m}, eps={eps}"
            if got.shape != want.shape:
                raise ExerciseError(f"{case}: P should be (n, m) = {want.shape}, got {got.shape}")
            if not np.isfinite(got).all():
                raise ExerciseError(f"{case}: P has NaN or inf values: either exp(-C / eps) underflowed to 0 "
                                    "(small eps: work in the log domain, with logsumexp), or the scalings blew up "
                                    "because the masses disagree (u = a / (K v) and v = b / (K^T u), with a and b)")
            if np.allclose(got, want, rtol=1e-5, atol=1e-9):
                continue
            if (got < -1e-12).any():
                raise ExerciseError(f"{case}: P has negative entries: a plan moves non-negative mass")
            variants = [
                (ot.sinkhorn(a, b, C, 1.0 / eps, numItermax=n_iter, stopThr=0), "eps is used as 1/eps: the "
                 "kernel is exp(-C / eps) (a small eps gives a sharp plan), not exp(-C * eps)"),
                (ot.sinkhorn(a, b, -C, eps, numItermax=n_iter, stopThr=0), "the kernel is exp(+C / eps): mass "
                 "goes to the MOST expensive pairs; use exp(-C / eps)"),
                (ot.emd(a, b, C), "this is the exact (unregularised) plan: Sinkhorn gives the entropic one, "
                 "blurred by eps"),
                (np.outer(a, b), "this is the independent coupling a b^T (the plan for eps -> infinity): did the "
                 "kernel lose C?"),
            ]
        for value, why in variants:
            if np.allclose(got, value, rtol=1e-5, atol=1e-9):
                raise ExerciseError(f"{case}: {why}")
        row_err, col_err = _ot_marginal_report(got, a, b)
        if np.allclose(got.sum(0), 1.0 / m) and not np.allclose(b, 1.0 / m):
            raise ExerciseError(f"{case}: column marginals are uniform (1/m): they must be b")
        if np.allclose(got.sum(1), 1.0 / n) and not np.allclose(a, 1.0 / n):
            raise ExerciseError(f"{case}: row marginals are uniform (1/n): they must be a")
        close = np.abs(got - want).max() < 0.3 * want.max()
        if close and min(row_err, col_err) < 1e-9 < max(row_err, col_err):
            which = "column" if col_err > row_err else "row"
            raise ExerciseError(f"{case}: the {which} marginals are off by up to {max(row_err, col_err):.2g} while "
                                f"the other ones are exact: Sinkhorn stopped before converging; run all n_iter = "
                                f"{n_iter} iterations (each update fixes one marginal and disturbs the other)")
        if row_err > 1e-6 and col_err > 1e-6:
            raise ExerciseError(f"{case}: neither marginal is matched (rows off by {row_err:.2g}, columns by "
                                f"{col_err:.2g}): P = diag(u) K diag(v) with u = a / (K v), v = b / (K^T u)")
        if row_err > 1e-6 or col_err > 1e-6:
            which, err, want_name = ("row", row_err, "a") if row_err > col_err else ("column", col_err, "b")
            raise ExerciseError(f"{case}: the {which} marginals are not matched: P.sum({int(which == 'column')}) "
                                f"should equal {want_name} (largest error {err:.2g})")
        raise ExerciseError(f"{case}: both marginals are right but P is not the entropic plan (largest difference "
                            f"{np.abs(got - want).max():.2g}): check the kernel K = exp(-C / eps)")
    _ok("sinkhorn")


def _balanced_plan_reference(logits, eps, n_iter, bit_order=1, sign=1.0, squash=True):
    """The balanced plan on the full (B, 2^K) cost matrix, and variants with the usual mistakes."""
    import torch

    from .ot import sinkhorn

    B, K = logits.shape
    j = np.arange(2 ** K)
    shifts = np.arange(K) if bit_order == 1 else np.arange(K)[::-1]
    V = 2.0 * ((j[:, None] >> shifts[None, :]) & 1) - 1.0  # (2^K, K) vertex j, bit k at column k
    h = np.tanh(logits) if squash else logits
    C = -sign * (h @ V.T) / K  # (B, 2^K)
    return sinkhorn(torch.as_tensor(C), eps=eps, n_iter=n_iter, tol=0).numpy()


def check_balanced_assignment(fn) -> None:
    """Check `fn(logits, eps, n_iter) -> P`: the balanced assignment of a batch to the 2^K codes.

    logits is a (B, K) numpy array. Code j is the vertex v of {-1, +1}^K with v_k = +1 where
    bit k of j is set ((j >> k) & 1, bit 0 the lowest). The cost of item i and code j is
    -<v_j, tanh(logits_i)> / K; P (B, 2^K) is the entropic OT plan with every row summing to
    1/B and every column to 1/2^K (`minihash.ot.sinkhorn` on that cost, or
    `minihash.ot.balanced_assignment(..., return_plan=True)`).

    Notebook: 06_optimal_transport.ipynb
    """
    rng = np.random.default_rng(8)
    for B, K, eps, n_iter in ((24, 3, 0.1, 200), (40, 4, 0.05, 300), (16, 2, 0.2, 200)):
        logits = rng.normal(size=(B, K)) + rng.normal(size=K)  # a shared bias: the codes start collapsed
        want = _balanced_plan_reference(logits, eps, n_iter)
        got = _ot_f64(fn(logits.copy(), eps, n_iter))
        case = f"B={B}, K={K}, eps={eps}"
        if got.shape != want.shape:
            raise ExerciseError(f"{case}: P should be (B, 2^K) = {want.shape}, got {got.shape}")
        if np.allclose(got, want, rtol=1e-4, atol=1e-9):
            continue
        variants = [
            (B * want, "you returned B * P (each row a distribution over codes): return the plan itself, rows "
             "summing to 1/B"),
            (_balanced_plan_reference(logits, eps, n_iter, bit_order=-1), "the codes number the bits the other way "
             "round: bit k of code j is (j >> k) & 1, bit 0 the lowest"),
            (_balanced_plan_reference(logits, eps, n_iter, sign=-1.0), "items go to the codes that disagree most: "
             "the cost is MINUS the agreement <v, tanh(l)> / K"),
            (_balanced_plan_reference(logits, eps, n_iter, squash=False), "the scores use the raw logits: use "
             "tanh(logits), the mean of each +-1 bit"),
            (_balanced_plan_reference(logits, eps / K, n_iter), "the scores are not divided by K: the cost is the "
             "MEAN agreement over bits, <v, tanh(l)> / K"),
        ]
        for value, why in variants:
            if np.allclose(got, value, rtol=1e-4, atol=1e-9):
                raise ExerciseError(f"{case}: {why}")
        row_err = float(np.abs(got.sum(1) - 1.0 / B).max())
        col_err = float(np.abs(got.sum(0) - 1.0 / 2 ** K).max())
        if col_err > 1e-6:
            raise ExerciseError(f"{case}: codes are not balanced: every code must receive 1/2^K = {1 / 2 ** K:.4g} "
                                f"(column sums range {got.sum(0).min():.4g} ... {got.sum(0).max():.4g})")
        if row_err > 1e-6:
            raise ExerciseError(f"{case}: every item must send 1/B = {1 / B:.4g} (row sums range "
                                f"{got.sum(1).min():.4g} ... {got.sum(1).max():.4g})")
        raise ExerciseError(f"{case}: the marginals are right but the plan differs from the reference by up to "
                            f"{np.abs(got - want).max():.2g}: check the cost -<v_j, tanh(l_i)> / K and eps")
    _ok("balanced_assignment")


# ---- 09_benchmark


def check_ncc(your_fn) -> None:
    """Check a normalised cross-correlation `your_fn(q, x) -> (len(x) - len(q) + 1,)` against
    `minihash.evaluate.ncc`, and say which classic mistake it makes."""
    from .evaluate import ncc

    rng = np.random.default_rng(9)
    x = rng.standard_normal(400) + 0.5  # an offset: forgetting to remove means shows
    q = x[120:160].copy()
    want = ncc(q, x)
    got = np.asarray(your_fn(q, x), dtype=np.float64)
    if got.shape != want.shape:
        raise ExerciseError(f"expected {want.shape[0]} lags (len(x) - len(q) + 1), got shape {got.shape}: "
                            "a window must fit entirely inside x")
    if np.allclose(got, want, atol=1e-6):
        if not np.isclose(got[120], 1.0, atol=1e-6):
            raise ExerciseError("the excerpt should correlate perfectly (r = 1) with itself at lag 120")
        _ok("check_ncc")
        return
    raw = np.array([q @ x[k:k + len(q)] for k in range(len(want))])
    if np.allclose(got, raw, rtol=1e-5):
        raise ExerciseError("this is the raw cross-correlation: divide by the norms (of q and of each window)")
    no_mean = np.array([q @ x[k:k + len(q)] / (np.linalg.norm(q) * np.linalg.norm(x[k:k + len(q)]) + 1e-12)
                        for k in range(len(want))])
    if np.allclose(got, no_mean, atol=1e-6):
        raise ExerciseError("cosine similarity, not Pearson r: subtract the mean of q and of each window first")
    global_norm = np.array([(q - q.mean()) @ (x[k:k + len(q)] - x[k:k + len(q)].mean()) for k in range(len(want))])
    global_norm /= np.linalg.norm(q - q.mean()) * np.linalg.norm(x - x.mean()) / np.sqrt(len(x) / len(q))
    if np.corrcoef(got, global_norm)[0, 1] > 0.999 and not np.allclose(got, want, atol=1e-3):
        raise ExerciseError("normalise by each window's own energy, not the whole signal's")
    _close(got, want, "ncc", atol=1e-6)


def check_threshold(your_fn) -> None:
    """Check `your_fn(negative_scores, max_false) -> threshold` (a score >= threshold is a match)
    against `minihash.index.calibrate_threshold`."""
    from .index import calibrate_threshold

    rng = np.random.default_rng(3)
    for n, max_false in ((100, 0.05), (40, 0.05), (10, 0.0), (7, 0.3)):
        s = rng.uniform(0.2, 0.9, n)
        thr = float(your_fn(s.copy(), max_false))
        false = np.mean(s >= thr)
        if false > max_false + 1e-12:
            raise ExerciseError(f"with {n} negatives and max_false={max_false}, {false:.0%} of them still match "
                                f"(score >= {thr:.4f}): the threshold is too low (check >= against >)")
        want = calibrate_threshold(s, max_false)
        if np.mean(s >= want) > false + 1e-12:
            raise ExerciseError(f"with {n} negatives and max_false={max_false}, your threshold {thr:.4f} lets only "
                                f"{false:.0%} through where {np.mean(s >= want):.0%} is allowed: it is higher than "
                                "needed, and costs true matches")
    _ok("check_threshold")
