"""Figures for the notebooks and reports.

Every helper takes `ax` (or `figsize`) and returns `(fig, ax)`, as libfmp does,
so a notebook can place it in its own grid or show it alone. Sections follow
the notebooks' order.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def _fig_ax(ax=None, figsize=(8, 3)):
    """The figure and axes to draw on: `ax`'s own, or a new pair."""
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


# ---- 05_contrastive_learning

def plot_similarity_matrix(S, ax=None, figsize=(4.5, 4), title="cosine similarity", xlabel="distorted window",
                           ylabel="clean window", vmin=-1.0, vmax=1.0, cmap="RdBu_r"):
    """A (B1, B2) similarity matrix as an image: a trained encoder lights up the diagonal.

    Args:
        S: (B1, B2) similarities (numpy or torch), e.g. clean embeddings @ distorted embeddings.T.
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title, xlabel, ylabel: labels.
        vmin, vmax, cmap: colour scale (cosine similarities live in [-1, 1]).

    Returns:
        (fig, ax).

    Notebook: 05_contrastive_learning.ipynb
    """
    S = S.detach().cpu().numpy() if hasattr(S, "detach") else np.asarray(S)
    fig, ax = _fig_ax(ax, figsize)
    im = ax.imshow(S, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return fig, ax


def plot_training_curves(history, val_history=(), loss_keys=("loss",), val_keys=("val_top1",), smooth=10,
                         ax=None, figsize=(8, 3.5), title="training"):
    """Training losses (left axis, smoothed) and validation scores (right axis) against the step.

    Args:
        history: list of per-step dicts with "step" and the `loss_keys` (`Trainer.history`).
        val_history: list of dicts with "step" and the `val_keys` (`Trainer.val_history`).
        loss_keys: which logged losses to draw.
        val_keys: which validation numbers to draw (fractions in [0, 1]).
        smooth: moving-average length for the losses (the raw curve is drawn faint behind).
        ax: axes to draw on (a new figure if None); the scores go on a twin axis.
        figsize: size of a new figure.
        title: the title.

    Returns:
        (fig, ax), ax the loss axis (the twin axis is `ax.right_ax`).

    Notebook: 05_contrastive_learning.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)
    steps = np.array([h["step"] for h in history])
    for i, key in enumerate(loss_keys):
        y = np.array([h[key] for h in history], dtype=float)
        color = f"C{i}"
        ax.plot(steps, y, color=color, alpha=0.25, lw=0.8)
        if len(y) >= smooth > 1:
            ys = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
            ax.plot(steps[smooth - 1:], ys, color=color, label=f"{key} ({smooth}-step mean)")
        else:
            ax.plot(steps, y, color=color, label=key)
    ax.set(xlabel="training step", ylabel="loss", title=title)
    handles, labels = ax.get_legend_handles_labels()
    if val_history:
        right = ax.twinx()
        ax.right_ax = right
        vsteps = [v["step"] for v in val_history]
        for i, key in enumerate(val_keys):
            right.plot(vsteps, [v[key] for v in val_history], "o-", color=f"C{len(loss_keys) + i}", label=key)
        right.set(ylabel="validation score", ylim=(0, 1.02))
        h2, l2 = right.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="center right", fontsize="small")
    return fig, ax


def plot_contrastive_softmax(sims, positive: int, tau: float, ax=None, figsize=(8, 3)):
    """One anchor's softmax over the other samples of the batch at temperature `tau`.

    NT-Xent is the cross-entropy of this distribution against the positive: the bar
    of the positive (orange) should carry the mass, the negatives (blue) none.

    Args:
        sims: (M,) cosine similarities of the anchor to the M other samples.
        positive: index of the positive in `sims`.
        tau: temperature.
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.

    Returns:
        (fig, ax).

    Notebook: 05_contrastive_learning.ipynb
    """
    sims = np.asarray(sims, dtype=np.float64)
    logits = sims / tau
    p = np.exp(logits - logits.max())
    p /= p.sum()
    fig, ax = _fig_ax(ax, figsize)
    colors = ["C1" if j == positive else "C0" for j in range(len(p))]
    ax.bar(np.arange(len(p)), p, color=colors)
    ax.set(xlabel="other sample of the batch (orange: the positive)", ylabel="softmax weight", ylim=(0, 1),
           title=f"tau = {tau:.3g}: p(positive) = {p[positive]:.2f}, loss = {-np.log(p[positive]):.2f}")
    return fig, ax


# ---- 01_audio_and_spectrograms


def _audio_np(x) -> np.ndarray:
    """A numpy float64 copy of a numpy array or torch tensor (on any device)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def plot_waveform(x, sr, ax=None, figsize=(8, 2.5), title=None, t0=0.0, **kw):
    """A signal against time in seconds.

    Args:
        x: (T,) samples, numpy or torch.
        sr: sample rate in Hz.
        ax: axes to draw on (a new figure when None).
        figsize: size of the new figure.
        title: axes title.
        t0: time of the first sample, in seconds.
        **kw: passed to `ax.plot` (color, lw, label...).

    Returns:
        (fig, ax).

    Notebook: 01_audio_and_spectrograms.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)
    x = _audio_np(x).ravel()
    ax.plot(t0 + np.arange(x.size) / sr, x, **{"lw": 0.6, **kw})
    ax.set_xlim(t0, t0 + x.size / sr)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("amplitude")
    if title:
        ax.set_title(title)
    return fig, ax


def plot_spectrogram(S, sr, hop, ax=None, figsize=(8, 3), title=None, freq="linear", db=False,
                     f_min=None, f_max=None, clabel=None, colorbar=True, cmap="magma", vmin=None, vmax=None):
    """A time-frequency image: an STFT power spectrogram or a (log-)mel one.

    Frame k is centred on sample k * hop (a centred STFT), so it is drawn at k * hop / sr seconds.

    Args:
        S: (F, frames) values, numpy or torch; F = n_fft // 2 + 1 bins for `freq="linear"`,
            the mel bands for `freq="mel"`.
        sr: sample rate in Hz.
        hop: hop between frames in samples.
        ax: axes to draw on (a new figure when None).
        figsize: size of the new figure.
        title: axes title.
        freq: "linear" (y axis in Hz, 0 to sr / 2) or "mel" (y axis: band index).
        db: draw 10 log10(S) (S is a power) instead of S.
        f_min, f_max: for `freq="mel"`, the band edges in Hz, shown in the y label.
        clabel: colorbar label (a sensible default otherwise).
        colorbar: add a colorbar.
        cmap, vmin, vmax: passed to `imshow`.

    Returns:
        (fig, ax).

    Notebook: 01_audio_and_spectrograms.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)
    S = _audio_np(S)
    if S.ndim != 2:
        raise ValueError(f"plot_spectrogram expects (F, frames), got shape {S.shape}")
    if db:
        S = 10 * np.log10(np.maximum(S, 1e-12))
    F, N = S.shape
    dt = hop / sr
    if freq == "linear":
        df = sr / 2 / max(F - 1, 1)
        extent = (-dt / 2, (N - 0.5) * dt, -df / 2, sr / 2 + df / 2)
        ylabel = "frequency (Hz)"
    elif freq == "mel":
        extent = (-dt / 2, (N - 0.5) * dt, -0.5, F - 0.5)
        ylabel = "mel band" + (f" ({f_min:g}-{f_max:g} Hz)" if f_min is not None and f_max is not None else "")
    else:
        raise ValueError(f"freq must be 'linear' or 'mel', got {freq!r}")
    im = ax.imshow(S, origin="lower", aspect="auto", extent=extent, cmap=cmap, vmin=vmin, vmax=vmax,
                   interpolation="nearest")
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if colorbar:
        fig.colorbar(im, ax=ax, label=clabel or ("power (dB)" if db else "value"), pad=0.01)
    return fig, ax


def plot_filterbank(fb, sr, ax=None, figsize=(8, 3), title="mel filterbank", every=1, **kw):
    """The triangular filters of a mel filterbank against frequency.

    Args:
        fb: (n_freqs, n_mels) weights, as `torchaudio.functional.melscale_fbanks` returns them.
        sr: sample rate in Hz (the bins span 0 to sr / 2).
        ax: axes to draw on (a new figure when None).
        figsize: size of the new figure.
        title: axes title.
        every: draw one filter in `every` (dense banks are easier to read thinned).
        **kw: passed to `ax.plot`.

    Returns:
        (fig, ax).

    Notebook: 01_audio_and_spectrograms.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)
    fb = _audio_np(fb)
    f = np.linspace(0, sr / 2, fb.shape[0])
    ax.plot(f, fb[:, ::every], **{"lw": 1.0, **kw})
    ax.set_xlim(0, sr / 2)
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("weight")
    if title:
        ax.set_title(f"{title} ({fb.shape[1]} bands" + (f", one in {every} drawn)" if every > 1 else ")"))
    return fig, ax


# ---- 02_distortions


def plot_rir_decay(h, sr, ax=None, figsize=(8, 3), title=None, fit_db=(-5.0, -25.0), label=None):
    """An impulse response in dB and its Schroeder energy decay curve, with the T20 fit extrapolated to -60 dB.

    Args:
        h: (L,) impulse response, numpy or torch.
        sr: sample rate in Hz.
        ax: axes to draw on (a new figure when None).
        figsize: size of the new figure.
        title: axes title.
        fit_db: the EDC range (dB) the line is fitted over, as `minihash.distort.rt60_schroeder`.
        label: prefix of the legend entries.

    Returns:
        (fig, ax).

    Notebook: 02_distortions.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)
    h = _audio_np(h).ravel()
    t = np.arange(h.size) / sr
    e = np.square(h)
    edc = np.cumsum(e[::-1])[::-1]  # energy still to come after each instant (Schroeder 1965)
    edc_db = 10 * np.log10(np.maximum(edc / edc[0], 1e-30))
    pre = f"{label}: " if label else ""
    ax.plot(t, 10 * np.log10(np.maximum(e / e.max(), 1e-30)), color="0.75", lw=0.5, label=f"{pre}10 log10 h(t)^2")
    ax.plot(t, edc_db, lw=2, label=f"{pre}Schroeder EDC")
    hi, lo = fit_db
    if edc_db.min() <= lo:
        i, j = np.argmax(edc_db <= hi), np.argmax(edc_db <= lo)
        slope, icpt = np.polyfit(t[i:j + 1], edc_db[i:j + 1], 1)
        tt = np.array([t[i], (-60.0 - icpt) / slope])
        ax.plot(tt, slope * tt + icpt, "k--", lw=1, label=f"{pre}fit {hi:g} to {lo:g} dB: RT60 = {-60 / slope:.2f} s")
        ax.axhline(-60, color="k", lw=0.5, ls=":")
    ax.set_ylim(-80, 3)
    ax.set_xlim(0, t[-1])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("level (dB)")
    ax.legend(loc="upper right", fontsize=8)
    if title:
        ax.set_title(title)
    return fig, ax


def plot_noise_spectra(bank, sr, ax=None, figsize=(8, 4), nperseg=1024, slopes=True, title="noise spectra (Welch)"):
    """Power spectral densities of several noises on log-log axes, with 1/f and 1/f^2 guides.

    Pink noise falls as 1/f (-10 dB per decade), brown noise as 1/f^2 (-20 dB per decade).

    Args:
        bank: {name: (T,) samples}, e.g. `minihash.data.noise_bank()`.
        sr: sample rate in Hz.
        ax: axes to draw on (a new figure when None).
        figsize: size of the new figure.
        nperseg: Welch segment length.
        slopes: draw the 1/f and 1/f^2 reference lines.
        title: axes title.

    Returns:
        (fig, ax).

    Notebook: 02_distortions.ipynb
    """
    from scipy import signal

    fig, ax = _fig_ax(ax, figsize)
    curves = {}
    for name, x in bank.items():
        f, P = signal.welch(_audio_np(x).ravel(), fs=sr, nperseg=nperseg)
        ax.loglog(f[1:], P[1:], lw=1, label=name)  # the 0 Hz bin has no place on a log axis
        curves[name] = (f, P)
    if slopes and curves:
        fr = np.array([30.0, sr / 2])
        for name, beta, style, text in (("pink", 1.0, "k--", "1/f (-10 dB/decade)"),
                                        ("brown", 2.0, "k:", "1/f² (-20 dB/decade)")):
            f, P = curves.get(name, next(iter(curves.values())))
            ref = 4 * np.interp(100.0, f, P)  # parallel to the named curve, a little above it
            ax.loglog(fr, ref * (fr / 100.0) ** -beta, style, lw=1.2, label=text)
    if curves:
        top = max(P.max() for _, P in curves.values())
        ax.set_ylim(top * 1e-9, top * 5)  # a filter's stopband would otherwise stretch the axis to 1e-20
    ax.set_xlim(10, sr / 2)
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("power spectral density (1/Hz)")
    ax.legend(fontsize=8, ncol=2)
    if title:
        ax.set_title(title)
    return fig, ax


def plot_xcorr(x, y, sr, max_lag_s=0.05, phat=False, ax=None, figsize=(8, 2.5), title=None):
    """Cross-correlation of two signals against lag, with its peak marked.

    A positive lag means `y` is late: y(t) ~ x(t - lag). Music correlates with itself
    at many lags (held notes, beats), which blurs the plain cross-correlation; `phat`
    whitens the cross-spectrum first (GCC-PHAT, Knapp and Carter 1976), leaving a sharp
    peak at the delay, for a reverberant `y` at its direct path.

    Args:
        x, y: (T,) signals, numpy or torch.
        sr: sample rate in Hz.
        max_lag_s: the largest lag drawn, in seconds.
        phat: whiten (GCC-PHAT) instead of the plain normalised cross-correlation.
        ax: axes to draw on (a new figure when None).
        figsize: size of the new figure.
        title: axes title.

    Returns:
        (fig, ax).

    Notebook: 02_distortions.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)
    x, y = _audio_np(x).ravel(), _audio_np(y).ravel()
    n = x.size + y.size - 1  # long enough that the circular correlation is the linear one
    C = np.fft.rfft(y, n) * np.conj(np.fft.rfft(x, n))
    if phat:
        C = C / (np.abs(C) + 1e-12 * np.abs(C).max())
    c = np.roll(np.fft.irfft(C, n), x.size - 1)  # (n,) lags -(len(x) - 1) ... len(y) - 1
    lags = np.arange(n) - (x.size - 1)
    if not phat:
        c = c / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-30)
    keep = np.abs(lags) <= max_lag_s * sr
    lags, c = lags[keep], c[keep]
    k = int(np.argmax(c))
    ax.plot(1000 * lags / sr, c, lw=1)
    ax.plot(1000 * lags[k] / sr, c[k], "ro", label=f"peak at {1000 * lags[k] / sr:.1f} ms ({lags[k]} samples)")
    ax.set_xlabel("lag (ms)")
    ax.set_ylabel("GCC-PHAT" if phat else "correlation")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return fig, ax


# ---- 04_patch_transformer

def _patch_np(x):
    """A numpy view of an array or tensor (detached, on the CPU)."""
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def plot_patch_grid(S, patch=(64, 10), hop_s: float = 0.01, ax=None, figsize=(6, 3), title=None, cmap="magma"):
    """A log-mel image with the grid of non-overlapping patches a transformer cuts it into.

    Args:
        S: (n_mels, frames) log-mel image.
        patch: (mel bands, frames) of one patch: (n_mels, 10) are Singh et al.'s full-band
            100 ms patches, (16, 16) ViT/AST-style squares.
        hop_s: seconds per frame.
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title: the title (default: the patch count).
        cmap: colour map.

    Returns:
        (fig, ax). Frames and bands left over after the last whole patch are shaded.

    Notebook: 04_patch_transformer.ipynb
    """
    from matplotlib.patches import Rectangle

    S = _patch_np(S)
    M, F = S.shape
    pm, pf = patch
    nm, nf = M // pm, F // pf
    fig, ax = _fig_ax(ax, figsize)
    im = ax.imshow(S, origin="lower", aspect="auto", cmap=cmap, extent=(0, F * hop_s, 0, M))
    fig.colorbar(im, ax=ax, label="log power", fraction=0.046, pad=0.02)
    for i in range(nm):
        for j in range(nf):
            ax.add_patch(Rectangle((j * pf * hop_s, i * pm), pf * hop_s, pm, fill=False, ec="w", lw=1.2))
    if nf * pf < F:
        ax.axvspan(nf * pf * hop_s, F * hop_s, color="k", alpha=0.5)
    if nm * pm < M:
        ax.axhspan(nm * pm, M, color="k", alpha=0.5)
    ax.set(xlabel="time (s)", ylabel="mel band",
           title=title or f"{pm} x {pf} patches: {nm} x {nf} = {nm * nf} tokens")
    return fig, ax


def plot_attention(A, ax=None, figsize=(4.5, 4), title="attention", patch_s: float = 0.1, vmax=None):
    """An (N, N) attention matrix: row i is where token i looks (rows sum to 1).

    Args:
        A: (N, N) attention weights, e.g. `model.attention_maps(x)[0, layer, head]`.
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title: the title.
        patch_s: seconds per token (ticks show each token's start time).
        vmax: top of the colour scale (default: the largest weight).

    Returns:
        (fig, ax).

    Notebook: 04_patch_transformer.ipynb
    """
    A = _patch_np(A)
    N = A.shape[0]
    fig, ax = _fig_ax(ax, figsize)
    im = ax.imshow(A, cmap="viridis", vmin=0, vmax=vmax or A.max(), interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="weight")
    ticks = np.arange(N)
    labels = [f"{t * patch_s:.1f}" for t in ticks]
    ax.set_xticks(ticks, labels, rotation=90, fontsize="small")
    ax.set_yticks(ticks, labels, fontsize="small")
    ax.set(xlabel="key token (start, s)", ylabel="query token (start, s)", title=title)
    return fig, ax


def plot_token_attention(S, weights, query: int | None = None, hop_s: float = 0.01, ax=None, figsize=(6, 3),
                         title=None):
    """The spectrogram with each full-band patch tinted by the attention it receives.

    Args:
        S: (n_mels, frames) log-mel image.
        weights: (N,) attention over the N patches (one row of an attention matrix, or a mean).
        query: the query token, outlined (None: no outline).
        hop_s: seconds per frame.
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title: the title.

    Returns:
        (fig, ax).

    Notebook: 04_patch_transformer.ipynb
    """
    from matplotlib.patches import Rectangle

    S, w = _patch_np(S), _patch_np(weights).astype(float)
    M, F = S.shape
    N = len(w)
    P = F // N
    fig, ax = _fig_ax(ax, figsize)
    ax.imshow(S, origin="lower", aspect="auto", cmap="gray", extent=(0, F * hop_s, 0, M))
    for j in range(N):
        ax.add_patch(Rectangle((j * P * hop_s, 0), P * hop_s, M, color="orange", alpha=0.75 * w[j] / max(w.max(), 1e-12),
                               lw=0))
        ax.text((j + 0.5) * P * hop_s, M * 1.01, f"{w[j]:.2f}", ha="center", va="bottom", fontsize="x-small")
    if query is not None:
        ax.add_patch(Rectangle((query * P * hop_s, 0), P * hop_s, M, fill=False, ec="cyan", lw=2))
    ax.set(xlabel="time (s)", ylabel="mel band", ylim=(0, M * 1.08))
    ax.set_title(title or ("attention received per patch" if query is None else
                           f"where token {query} (cyan) looks"), pad=12)
    return fig, ax


def plot_positional_encoding(PE, ax=None, figsize=(6, 3), title="positional encoding"):
    """An (N, D) positional encoding as an image: one row per position, one column per dimension.

    Args:
        PE: (N, D) positional encodings.
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title: the title.

    Returns:
        (fig, ax).

    Notebook: 04_patch_transformer.ipynb
    """
    PE = _patch_np(PE)
    fig, ax = _fig_ax(ax, figsize)
    m = np.abs(PE).max()
    im = ax.imshow(PE, cmap="RdBu_r", vmin=-m, vmax=m, aspect="auto", interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    ax.set(xlabel="dimension", ylabel="position (token)", title=title)
    return fig, ax


# ---- 03_landmarks


def plot_constellation(S, t_frames, f_bins, sr, hop, n_fft, ax=None, figsize=(9, 3.5), title=None, colorbar=True,
                       cmap="gray_r", color="C3", label="peaks", **kw):
    """A landmark spectrogram with its constellation of peaks drawn over it.

    Args:
        S: (F, frames) log-magnitude spectrogram (`landmarks.spectrogram`); bin f is f * sr / n_fft Hz,
            frame t is centred on t * hop / sr seconds.
        t_frames, f_bins: (P,) the peaks' frames and bins (`landmarks.find_peaks`); empty to draw none.
        sr, hop, n_fft: sample rate (Hz), hop and FFT size (samples) of the spectrogram.
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title: axes title (default: the number of peaks per second).
        colorbar: add a colorbar.
        cmap: colour map of the spectrogram.
        color, label, **kw: passed to `ax.scatter` for the peaks.

    Returns:
        (fig, ax).

    Notebook: 03_landmarks.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)
    S = np.asarray(S, dtype=np.float64)
    F, N = S.shape
    dt, df = hop / sr, sr / n_fft
    im = ax.imshow(S, origin="lower", aspect="auto", cmap=cmap, interpolation="nearest",
                   extent=(-dt / 2, (N - 0.5) * dt, -df / 2, (F - 0.5) * df))
    if colorbar:
        fig.colorbar(im, ax=ax, label="log magnitude", pad=0.01)
    t_frames, f_bins = np.asarray(t_frames), np.asarray(f_bins)
    ax.scatter(t_frames * dt, f_bins * df, s=kw.pop("s", 12), color=color, label=label, **kw)
    ax.set_xlim(-dt / 2, (N - 0.5) * dt)
    ax.set_ylim(-df / 2, (F - 0.5) * df)
    ax.set(xlabel="time (s)", ylabel="frequency (Hz)",
           title=title or f"constellation: {len(t_frames)} peaks, {len(t_frames) / max(N * dt, 1e-9):.1f} per second")
    return fig, ax


def plot_target_zone(t_frames, f_bins, anchor: int, pairs, cfg, ax=None, figsize=(9, 3.5), title=None):
    """One anchor peak, its target zone and the pairs (landmarks) it forms.

    Args:
        t_frames, f_bins: (P,) the constellation (frames, bins).
        anchor: index of the anchor peak in the constellation.
        pairs: (t1, f1, f2, dt) arrays as `landmarks.landmarks` returns; the anchor's are drawn.
        cfg: a `LandmarkConfig` (sr, hop, n_fft and the zone: min_dt, max_dt, max_df, fanout).
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title: axes title.

    Returns:
        (fig, ax).

    Notebook: 03_landmarks.ipynb
    """
    from matplotlib.patches import Rectangle

    fig, ax = _fig_ax(ax, figsize)
    t, f = np.asarray(t_frames), np.asarray(f_bins)
    dt, df = cfg.hop / cfg.sr, cfg.sr / cfg.n_fft
    ta, fa = int(t[anchor]), int(f[anchor])
    ax.scatter(t * dt, f * df, s=8, color="0.6", label="peaks")
    zone = Rectangle(((ta + cfg.min_dt) * dt, (fa - cfg.max_df) * df), (cfg.max_dt - cfg.min_dt) * dt,
                     2 * cfg.max_df * df, facecolor="C0", alpha=0.15, edgecolor="C0", lw=1.5, label="target zone")
    ax.add_patch(zone)
    t1, f1, f2, ddt = (np.asarray(a) for a in pairs)
    mine = (t1 == ta) & (f1 == fa)
    for k, (b, d) in enumerate(zip(f2[mine], ddt[mine])):
        ax.plot([ta * dt, (ta + d) * dt], [fa * df, b * df], color="C1", lw=1.5, label="pairs" if k == 0 else None)
    ax.scatter((ta + ddt[mine]) * dt, f2[mine] * df, s=30, color="C1", zorder=3)
    ax.scatter([ta * dt], [fa * df], s=60, color="C3", marker="*", zorder=4, label="anchor")
    ax.set(xlabel="time (s)", ylabel="frequency (Hz)",
           title=title or f"anchor at {ta * dt:.2f} s, {fa * df:.0f} Hz: {int(mine.sum())} of at most {cfg.fanout} "
                          "targets")
    ax.legend(loc="upper right", fontsize="small")
    return fig, ax


def plot_offset_histogram(offset, count, hop_s=None, ax=None, figsize=(8, 3), title=None, label=None, color=None,
                          mark=None):
    """A histogram of time offsets db_t - q_t: a true match piles its hashes into one bin.

    Args:
        offset: (B,) offsets in frames (the bins that got votes).
        count: (B,) votes in each.
        hop_s: seconds per frame; the x axis is in seconds if given, else in frames.
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title: axes title.
        label, color: for the bars (call again on the same axes to overlay another track).
        mark: an offset (frames) to mark with a dashed line, e.g. the true start of the query.

    Returns:
        (fig, ax).

    Notebook: 03_landmarks.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)
    scale = hop_s if hop_s else 1.0
    x = np.asarray(offset, dtype=np.float64) * scale
    if mark is not None:  # drawn first, faint, so that the bar it marks stays visible
        ax.axvline(mark * scale, color="0.5", ls="--", lw=1, zorder=0, label="true offset")
    # one-frame bars are too thin to see over a whole track: stems keep their width at any zoom
    ax.vlines(x, 0, np.asarray(count), colors=color or "C0", lw=1.5, label=label)
    ax.set_ylim(bottom=0)
    ax.set(xlabel="offset db_t - q_t (" + ("s)" if hop_s else "frames)"), ylabel="aligned hashes",
           title=title or "offset histogram")
    if label is not None or mark is not None:
        ax.legend(fontsize="small")
    return fig, ax


# ---- 07_balanced_hashing


def plot_bucket_sizes(codes, K: int, ax=None, figsize=(8, 3.5), title=None):
    """Sorted bucket sizes of one or more code sets, log-log: balanced codes stay flat.

    Args:
        codes: dict name -> (N,) integer codes (or one array).
        K: bits per code (2^K buckets).
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title: axes title.

    Returns:
        (fig, ax).

    Notebook: 07_balanced_hashing.ipynb
    """
    from .ot import bucket_stats

    fig, ax = _fig_ax(ax, figsize)
    codes = codes if isinstance(codes, dict) else {"codes": codes}
    n = 0
    for name, c in codes.items():
        c = np.asarray(c).ravel()
        _, counts = np.unique(c, return_counts=True)
        sizes = np.sort(counts)[::-1]
        st = bucket_stats(c, K)
        # bucket r spans [r, r + 1) on the rank axis, so that even a single bucket shows
        ax.stairs(sizes, np.arange(1, len(sizes) + 2), baseline=None, lw=1.8,
                  label=f"{name}: entropy {st['entropy_norm']:.2f}, largest {st['largest']}, "
                        f"{st['n_buckets_used']} bucket{'s' if st['n_buckets_used'] != 1 else ''}")
        n = max(n, len(c))
    if n:
        level = max(1.0, n / 2 ** K)  # a perfect spread: N / 2^K per bucket, or one item in each of N buckets
        ax.hlines(level, 1, min(n, 2 ** K) + 1, color="k", ls="--", lw=1,
                  label=f"perfectly balanced ({level:.3g} each)")
        ax.set_ylim(0.7, 1.5 * n)
    ax.set(xscale="log", yscale="log", xlabel="bucket rank (largest first)", ylabel="items in bucket",
           title=title or f"bucket sizes, K = {K} bits ({2 ** K} buckets)")
    ax.legend(fontsize="small")
    return fig, ax


def plot_search_tradeoff(results, ax=None, figsize=(7, 3.5), title="top-1 against the share of the database scored"):
    """Top-1 against the fraction of the database scored, one curve per method (e.g. an n_probes sweep).

    Args:
        results: dict name -> list of (fraction scored, top-1) points, in sweep order.
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title: axes title.

    Returns:
        (fig, ax).

    Notebook: 07_balanced_hashing.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)
    for i, (name, pts) in enumerate(results.items()):
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        # markers of decreasing size and hollow, so that methods landing on the same point all show
        ax.plot(pts[:, 0], pts[:, 1], "-" if len(pts) > 1 else "", marker="osD^v*"[i % 6], ms=max(4, 12 - 2 * i),
                fillstyle="none", mew=1.5, label=name)
    ax.set(xscale="log", xlabel="share of the database scored per query window", ylabel="top-1", ylim=(0, 1.02),
           title=title)
    ax.legend(fontsize="small")
    return fig, ax


# ---- 00_overview


def plot_offset_votes(offsets_s, weights, hop_s=0.1, others=None, truth_s=None, found_s=None, ax=None,
                      figsize=(8, 3), title="votes per offset"):
    """The offset histogram of one query: summed similarities of its candidates per offset bin.

    A query window at q seconds whose candidate DB window starts at d seconds votes for the offset
    d - q; the right alignment collects votes from every query window, a wrong one from few.

    Args:
        offsets_s: (C,) offsets (DB start - query window start, seconds) of the candidates in one track.
        weights: (C,) their votes (inner products; negative ones count 0).
        hop_s: bin width, seconds (the DB hop).
        others: optional (offsets_s, weights) of the candidates in every other track, drawn grey.
        truth_s: the true start time, marked with a dashed line (None: not drawn).
        found_s: the start time the search returned (refined below the hop), marked with a dotted line.
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title: the title.

    Returns:
        (fig, ax).

    Notebook: 00_overview.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)

    def hist(off, w):
        b = np.rint(np.asarray(off, dtype=np.float64) / hop_s).astype(np.int64)
        keys, inv = np.unique(b, return_inverse=True)
        return keys * hop_s, np.bincount(inv, weights=np.maximum(np.asarray(w, dtype=np.float64), 0.0))

    if others is not None and len(others[0]):
        x, y = hist(*others)
        ax.bar(x, y, width=hop_s, color="0.7", label="all other tracks")
    if len(offsets_s):
        x, y = hist(offsets_s, weights)
        ax.bar(x, y, width=hop_s, color="C0", label="matched track")
    if truth_s is not None:
        ax.axvline(truth_s, color="C3", ls="--", lw=1, label=f"true start {truth_s:.2f} s")
    if found_s is not None:
        ax.axvline(found_s, color="k", ls=":", lw=1, label=f"found {found_s:.2f} s")
    ax.set(xlabel="offset = DB window start - query window start (s)", ylabel="summed similarity", title=title)
    ax.legend(loc="upper right", fontsize=8)
    return fig, ax


# ---- 08_search


def plot_probe_sets(masks, conf, costs=None, ax=None, figsize=(8, 4), title="multi-probe: bits flipped per probe"):
    """Which bits each probe flips: a (probes x bits) grid, bits ordered from least to most confident.

    Args:
        masks: (P,) integer XOR masks, in probe order (the first, 0, probes the window's own bucket).
        conf: (K,) the window's confidences |logit|.
        costs: (P,) summed |logit| of the flipped bits, written beside each row (None: computed).
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title: the title.

    Returns:
        (fig, ax).

    Notebook: 08_search.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)
    conf = np.abs(np.asarray(conf, dtype=np.float64))
    K = len(conf)
    bits = np.argsort(conf, kind="stable")
    masks = np.asarray(masks, dtype=np.uint64)
    F = ((masks[:, None] >> bits[None, :].astype(np.uint64)) & np.uint64(1)).astype(float)  # (P, K)
    if costs is None:
        costs = F @ conf[bits]
    ax.imshow(F, aspect="auto", cmap="Greys", vmin=0, vmax=1.5, interpolation="nearest")
    ax.set_xticks(range(K))
    ax.set_xticklabels([f"{k}\n{conf[k]:.2f}" for k in bits], fontsize=6)
    ax.set(xlabel="bit (and its |logit|), least confident first", ylabel="probe (cheapest first)", title=title)
    step = max(1, len(masks) // 16)
    ax.set_yticks(range(0, len(masks), step))
    ax.set_yticklabels([f"{i}: cost {costs[i]:.2f}" for i in range(0, len(masks), step)], fontsize=7)
    return fig, ax


def plot_score_histograms(pos, neg, threshold=None, ax=None, figsize=(7, 3.2), bins=30,
                          title="best score: queries in the DB vs not in it"):
    """Histograms of the best scores of positive queries (in the DB) and negative ones, and the threshold.

    Args:
        pos: scores of queries whose audio is in the DB.
        neg: scores of queries whose audio is not.
        threshold: the no-match threshold (a vertical line), or None.
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        bins: number of bins shared by both histograms.
        title: the title.

    Returns:
        (fig, ax).

    Notebook: 08_search.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)
    pos, neg = np.asarray(pos, dtype=float), np.asarray(neg, dtype=float)
    edges = np.histogram_bin_edges(np.concatenate([pos, neg]), bins=bins)
    ax.hist(neg, bins=edges, alpha=0.6, color="C3", label=f"not in the DB ({len(neg)})")
    ax.hist(pos, bins=edges, alpha=0.6, color="C0", label=f"in the DB ({len(pos)})")
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:.3f}")
    ax.set(xlabel="score (mean inner product over the query's windows)", ylabel="queries", title=title)
    ax.legend(fontsize=8)
    return fig, ax


def plot_alignment_peak(bins, scores, hop_s, peak_s=None, truth_s=None, ax=None, figsize=(6, 3),
                        title="sub-hop refinement"):
    """Alignment scores at a few offset bins, the parabola through the best three and its peak.

    Args:
        bins: (B,) consecutive offset bins (in hops), B >= 3.
        scores: (B,) mean similarity of the query at each.
        hop_s: bin width, seconds.
        peak_s: the refined start time (None: computed from the parabola through the best bin and its neighbours).
        truth_s: the true start time (None: not drawn).
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title: the title.

    Returns:
        (fig, ax).

    Notebook: 08_search.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)
    bins, scores = np.asarray(bins, dtype=float), np.asarray(scores, dtype=float)
    i = 1 + int(np.argmax(scores[1:-1]))
    a, m, b = scores[i - 1:i + 2]
    c2, c1 = (a - 2 * m + b) / 2, (b - a) / 2  # y = m + c1 u + c2 u^2, u in hops from bins[i]
    u = np.linspace(-1, 1, 50)
    ax.plot(bins * hop_s, scores, "o", color="C0", label="alignment score per bin")
    ax.plot((bins[i] + u) * hop_s, m + c1 * u + c2 * u ** 2, color="C0", lw=1, label="parabola through 3 bins")
    if peak_s is None and c2 < 0:
        peak_s = (bins[i] + np.clip(-c1 / (2 * c2), -0.5, 0.5)) * hop_s
    if peak_s is not None:
        ax.axvline(peak_s, color="k", ls=":", lw=1, label=f"refined {peak_s:.3f} s")
    if truth_s is not None:
        ax.axvline(truth_s, color="C3", ls="--", lw=1, label=f"true {truth_s:.3f} s")
    ax.set(xlabel="start time in the track (s)", ylabel="mean similarity", title=title)
    ax.legend(fontsize=8)
    return fig, ax


# ---- 10_your_own_audio


def plot_frequency_response(sos, sr, band=None, ax=None, figsize=(7, 3), title="frequency response", label=None):
    """Gain in dB against frequency of a filter given as second-order sections.

    Args:
        sos: (S, 6) second-order sections (`scipy.signal.butter(..., output="sos")`).
        sr: sample rate in Hz.
        band: (low, high) Hz, shaded (e.g. the telephone band 300-3400 Hz), or None.
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title: the title.
        label: legend label of the curve.

    Returns:
        (fig, ax).

    Notebook: 10_your_own_audio.ipynb
    """
    from scipy.signal import sosfreqz

    fig, ax = _fig_ax(ax, figsize)
    f, h = sosfreqz(sos, worN=2048, fs=sr)
    ax.plot(f, 20 * np.log10(np.maximum(np.abs(h), 1e-10)), label=label)
    if band is not None:
        ax.axvspan(*band, color="C2", alpha=0.12, label=f"{band[0]:g}-{band[1]:g} Hz")
    ax.set(xlabel="frequency (Hz)", ylabel="gain (dB)", title=title, ylim=(-60, 5), xlim=(0, sr / 2))
    ax.grid(alpha=0.3)
    if band is not None or label is not None:
        ax.legend(fontsize=8)
    return fig, ax


def plot_accuracy_vs_length(lengths, curves, ax=None, figsize=(6, 3.5), title="accuracy against query length"):
    """Hit rates against query length, one curve per score.

    Args:
        lengths: (L,) query lengths, seconds.
        curves: {label: (L,) fractions in [0, 1]}.
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title: the title.

    Returns:
        (fig, ax).

    Notebook: 10_your_own_audio.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)
    for label, acc in curves.items():
        ax.plot(lengths, acc, "o-", label=label)
    ax.set(xlabel="query length (s)", ylabel="share of queries", title=title, ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig, ax


# ---- 06_optimal_transport

def plot_transport_plan(xs, xt, P, ax=None, figsize=(5, 4.5), title="transport plan", a=None, b=None,
                        min_share: float = 1e-3):
    """Two 2-d point clouds and the mass a plan moves between them, one line per pair.

    Args:
        xs: (n, 2) source points. xt: (m, 2) target points.
        P: (n, m) transport plan; line i-j is drawn with opacity and width growing with P[i, j].
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title: the title.
        a, b: (n,), (m,) masses of the points (marker areas); uniform if None.
        min_share: pairs carrying less than this share of the largest entry are not drawn.

    Returns:
        (fig, ax).

    Notebook: 06_optimal_transport.ipynb
    """
    xs, xt = np.asarray(xs), np.asarray(xt)
    P = P.detach().cpu().numpy() if hasattr(P, "detach") else np.asarray(P)
    n, m = P.shape
    a = np.full(n, 1.0 / n) if a is None else np.asarray(a)
    b = np.full(m, 1.0 / m) if b is None else np.asarray(b)
    fig, ax = _fig_ax(ax, figsize)
    top = P.max()
    for i, j in zip(*np.nonzero(P > min_share * top)):
        w = P[i, j] / top
        ax.plot([xs[i, 0], xt[j, 0]], [xs[i, 1], xt[j, 1]], color="k", alpha=float(0.1 + 0.8 * w), lw=0.5 + 2.5 * w)
    ax.scatter(xs[:, 0], xs[:, 1], s=2000 * a, c="C0", label="source (a)", zorder=3, edgecolors="w")
    ax.scatter(xt[:, 0], xt[:, 1], s=2000 * b, c="C1", label="target (b)", zorder=3, edgecolors="w", marker="s")
    ax.set(title=title, xlabel="x", ylabel="y", aspect="equal")
    ax.legend(fontsize="small", loc="best")
    return fig, ax


def plot_plan_matrix(P, ax=None, figsize=(4.5, 4), title="plan P", xlabel="target j", ylabel="source i",
                     cmap="Greys"):
    """A transport plan as an image, with its row and column sums in the title.

    Args:
        P: (n, m) plan (numpy or torch).
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title, xlabel, ylabel: labels.
        cmap: colour map.

    Returns:
        (fig, ax).

    Notebook: 06_optimal_transport.ipynb
    """
    P = P.detach().cpu().numpy() if hasattr(P, "detach") else np.asarray(P)
    fig, ax = _fig_ax(ax, figsize)
    im = ax.imshow(P, cmap=cmap, aspect="auto", interpolation="nearest", vmin=0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="mass")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return fig, ax


def plot_ot_code_counts(counts: dict, K: int, ax=None, figsize=(8, 3), title=None):
    """Items per code for a few ways of coding a batch (2^K bars per way; small K only).

    Args:
        counts: {label: (2^K,) items (or expected items) per code}.
        K: bits (codes are labelled by their bits, bit K-1 first).
        ax: axes to draw on (a new figure if None).
        figsize: size of a new figure.
        title: the title.

    Returns:
        (fig, ax). A dashed line marks the uniform share B / 2^K.

    Notebook: 06_optimal_transport.ipynb
    """
    fig, ax = _fig_ax(ax, figsize)
    n_codes, n_ways = 2 ** K, len(counts)
    width = 0.8 / n_ways
    for k, (label, c) in enumerate(counts.items()):
        c = np.asarray(c, dtype=float)
        ax.bar(np.arange(n_codes) + (k - (n_ways - 1) / 2) * width, c, width, label=label)
    B = float(np.asarray(next(iter(counts.values())), dtype=float).sum())
    ax.axhline(B / n_codes, color="k", ls="--", lw=1, label=f"uniform: B / 2^K = {B / n_codes:.3g}")
    ax.set_xticks(np.arange(n_codes), [format(j, f"0{K}b") for j in range(n_codes)], fontsize="small")
    ax.set(xlabel="code (bits K-1 ... 0)", ylabel="items", title=title or f"items per code, K = {K}")
    ax.legend(fontsize="small")
    return fig, ax

