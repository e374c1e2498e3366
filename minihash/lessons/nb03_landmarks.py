"""Notebook 03: landmark fingerprints, Shazam's method as audfprint implements it, and where it breaks.

Spectrogram peaks (the constellation), anchor and target-zone pairs, 20-bit hashes and the offset
histogram of an inverted index. Figures: the constellation, one anchor's target zone, an offset histogram.
Exercises: packing a hash, the best offset of a query, and the target zone, against `minihash.landmarks`.

References: A. Wang, ISMIR 2003 (Shazam); D. Ellis, audfprint, 2014; M. Müller, FMP section 7.1.
"""
from __future__ import annotations

import itertools

import numpy as np
from matplotlib.patches import Rectangle

from ..landmarks.fingerprint import LandmarkConfig, landmarks, pack
from .common import ExerciseError, _fig_ax, _ok, checker, exercise_decorator, passed

__all__ = ["plot_constellation", "plot_target_zone", "plot_offset_histogram", "check_pack_hash",
           "check_offset_histogram", "check_target_zone",
           "exercise", "passed", "solution_pack_hash", "solution_best_offset", "solution_target_zone"]

exercise = exercise_decorator(globals())  # `@lesson.exercise` in the notebook: see common


# ---- figures

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
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")  # outside: it hid peaks
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


# ---- exercises

_HASH_FIELDS = (("f1", 8), ("df", 6), ("dt", 6))  # most to least significant, as `landmarks.pack`


def _pack_fields(values: dict, order, df_code=lambda d: d & 63) -> np.ndarray:
    """Pack fields in `order` (most significant first), df coded by `df_code`: the hash and its variants."""
    h = np.zeros_like(values["f1"])
    for name, bits in order:
        v = df_code(values[name]) if name == "df" else values[name] & ((1 << bits) - 1)
        h = (h << bits) | v
    return h


@checker
def check_pack_hash(your_fn) -> None:
    """Check `your_fn(f1, df, dt) -> (L,) integer hashes` against `minihash.landmarks.pack`.

    The layout is audfprint's 20 bits: f1 in bits 12-19, df = f2 - f1 (6-bit two's
    complement) in bits 6-11, dt in bits 0-5. Recognises fields in another order, df
    not masked (a negative df spills into f1), df in offset binary, |df|, fields that
    overlap, and says where each input bit lands.

    Notebook: 03_landmarks.ipynb
    """
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


@checker
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


@checker
def check_target_zone(your_fn) -> None:
    """Check `your_fn(t, f, cfg) -> (t1, f1, f2, dt)` against `minihash.landmarks.landmarks`.

    Every anchor peak (t1, f1) pairs with the first `cfg.fanout` peaks (time order, then
    bin order) of its zone min_dt <= t2 - t1 <= max_dt, |f2 - f1| <= max_df. Pairs may
    come in any order. Recognises strict bounds, fan-out off by one or ignored, the
    fan-out counted before the frequency test, targets before the anchor, and df
    returned where f2 is meant.

    Notebook: 03_landmarks.ipynb
    """
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


# ---- solutions: the notebook's exercises answered (`make test` runs it with them)

def solution_pack_hash(f1, df, dt):
    """Exercise 1: f1 in bits 12-19, df (two's complement) in 6-11, dt in 0-5."""
    return (f1 << 12) | ((df & 0b111111) << 6) | (dt & 0b111111)


def solution_best_offset(q_hash, q_t, db_hash, db_t):
    """Exercise 2: the offset db_t - q_t with the most equal-hash pairs, and its count."""
    order = np.argsort(db_hash, kind="stable")
    h_sorted, t_sorted = db_hash[order], db_t[order]
    lo, hi = np.searchsorted(h_sorted, q_hash, "left"), np.searchsorted(h_sorted, q_hash, "right")
    offsets = np.concatenate([t_sorted[a:b] - tq for a, b, tq in zip(lo, hi, q_t)])
    values, counts = np.unique(offsets, return_counts=True)
    return int(values[np.argmax(counts)]), int(counts.max())


def solution_target_zone(t, f, cfg):
    """Exercise 3: each anchor's first cfg.fanout targets in its zone, found by binary search."""
    lo = np.searchsorted(t, t + cfg.min_dt, "left")  # first candidate of each anchor's zone
    hi = np.searchsorted(t, t + cfg.max_dt, "right")  # one past its last
    out = []
    for i in range(len(t)):
        j = np.arange(lo[i], hi[i])
        j = j[np.abs(f[j] - f[i]) <= cfg.max_df][:cfg.fanout]
        out += [(t[i], f[i], f[jj], t[jj] - t[i]) for jj in j]
    return tuple(np.array(c) for c in zip(*out)) if out else tuple(np.zeros(0, int) for _ in range(4))
