"""The evaluation's report: the result tables, markdown, CSV and plots, and the README's overview picture.

Top-1 % per method, query length and cell (condition, SNR), as the Neural Audio Fingerprint
(Chang et al., ICASSP 2021, arXiv 2010.11910) and Singh et al. (ICASSP 2023, arXiv 2211.11060)
report it, with the repeat-aware and loose scores, false matches on audio not in the database,
the share of the database scored, latency and index size beside it; and the facts of the machine
a timing needs (`minihash.machine`, which `minihash bench-search` reports too).

Notebook: 09_benchmark.ipynb
"""
from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..audio import SR
from ..corpus import noise_bank, synth_tracks
from ..distort import synth_rir
from ..lessons.nb00_overview import plot_offset_votes, plot_spectrogram
from ..machine import machine, machine_info
from ..ot import pack_codes
from ..search.base import top_per_window
from ..search.pipeline import index_audio, query_audio
from ..spectrogram import log_mel
from .protocol import DB_SEED, ROOM_SEED, SCORES, EvalConfig, Query, cell_label, render

# ----------------------------------------------------------------------------
# the results


LIKENESS_BINS = ((-1.0, 0.9, "r < 0.9"), (0.9, 0.95, "0.9 <= r < 0.95"), (0.95, 1.01, "r >= 0.95 (a near copy)"))


@dataclass
class EvalResult:
    """Every query's answer (`records`), index statistics, notes and facts about the run."""

    cfg: EvalConfig
    records: list
    index_stats: dict
    notes: list = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def groups(self) -> dict:
        """Records by (method, kind, length, condition, SNR)."""
        g = defaultdict(list)
        for r in self.records:
            g[r["method"], r["kind"], r["length_s"], r["condition"], r["snr_db"]].append(r)
        return g

    def rows(self) -> list[dict]:
        """One row per method x condition x SNR x length (and one of negatives per method x length)."""
        agg = defaultdict(list)
        for (m, kind, L, c, snr), rs in self.groups().items():
            agg[(m, L, c, snr) if kind == "positive" else (m, L, "negatives", None)] += rs
        rows = []
        for (m, L, c, snr), rs in agg.items():
            col = lambda k: np.array([r[k] for r in rs], dtype=np.float64)  # noqa: E731
            rows.append({"method": m, "condition": c, "snr_db": snr, "length_s": L, "n": len(rs),
                         **{v: int(col(k).sum()) for k, v in SCORES.items()}, "frac_scored": col("frac_scored").mean(),
                         **{f"{t}_ms_p{p}": float(np.percentile(col(f"{t}_ms"), p)) for t in ("search", "total")
                            for p in (50, 95)}})
        return rows

    def table(self, key: str = "hit", extras: bool = True) -> str:
        """Markdown: method x query length against the cells (top-1 %), then (`extras`) false matches,
        DB scored, latency and size."""
        g = self.groups()
        head = ["method", "query"] + [cell_label(c) for c in self.cfg.cells] + [
            "false match %", "DB scored %", "p50 ms search / total", "bytes/window"][:4 * extras]
        lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for m in self.index_stats:
            for L in self.cfg.lengths:
                cells = [g.get((m, "positive", L, *c), []) for c in self.cfg.cells]
                pos = [r for rs in cells for r in rs]
                neg = [r for k, rs in g.items() if k[:3] == (m, "negative", L) for r in rs]
                pct = [f"{100 * np.mean([r[key] for r in rs]):.1f}" if rs else "-" for rs in cells]
                more = [f"{100 * np.mean([r['false'] for r in neg]):.1f}" if neg else "-",
                        f"{100 * np.mean([r['frac_scored'] for r in pos]):.2f}",
                        f"{np.median([r['search_ms'] for r in pos]):.1f} / "
                        f"{np.median([r['total_ms'] for r in pos]):.1f}",
                        f"{self.index_stats[m]['bytes_per_window']:.0f}"]
                lines.append("| " + " | ".join([m, f"{L:g} s", *pct, *more[:4 * extras]]) + " |")
        return "\n".join(lines)

    def likeness_table(self, bins=LIKENESS_BINS) -> str:
        """Markdown: top-1 % by how alike the most alike other place of the excerpt's track sounds
        (`Query.likeness`, Pearson r of clean log-mels): method, query length and bin against the cells,
        with each bin's share of the queries. A near copy (r >= 0.95) is one right answer beside a wrong
        one that sounds the same: what a noise-robust embedding is built to confuse."""
        g = self.groups()
        head = ["method", "query", "likeness elsewhere in the track", "queries"]
        head += [cell_label(c) for c in self.cfg.cells]
        lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for m in self.index_stats:
            for L in self.cfg.lengths:
                cells = [g.get((m, "positive", L, *c), []) for c in self.cfg.cells]
                for lo, hi, label in bins:
                    inside = [[r for r in rs if lo <= r["likeness"] < hi] for rs in cells]
                    n, total = len(inside[0]), len(cells[0])
                    if not total:
                        continue
                    pct = [f"{100 * np.mean([r['hit'] for r in rs]):.1f}" if rs else "-" for rs in inside]
                    share = f"{n} ({100 * n / total:.0f} %)"
                    lines.append("| " + " | ".join([m, f"{L:g} s", label, share, *pct]) + " |")
        return "\n".join(lines)


# ----------------------------------------------------------------------------
# the report: markdown, CSV, plots


def plot_top1_vs_snr(rows, length_s: float, key: str = "hits_0.1", axes=None, figsize=(10, 3.6)):
    """Top-1 % against SNR, one line per method: noise (left), room + noise (right); the clean and
    room-only scores stand at the right end of each panel.

    Args:
        rows: `EvalResult.rows()`.
        length_s: which query length.
        key: "hits_0.1", "hits_0.5" or "repeat_aware".
        axes: two axes to draw on (a new figure if None).

    Returns:
        (fig, axes).

    Notebook: 09_benchmark.ipynb
    """
    fig, axes = plt.subplots(1, 2, figsize=figsize, sharey=True) if axes is None else (axes[0].figure, axes)
    rows = [r for r in rows if r["length_s"] == length_s and r["condition"] != "negatives"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    pct = {(r["method"], r["condition"], r["snr_db"]): 100.0 * r[key] / r["n"] for r in rows}
    for ax, cond, end in zip(axes, ("noise", "noise+reverb"), ("clean", "reverb")):
        snrs = sorted({r["snr_db"] for r in rows if r["condition"] == cond})
        x_end = max(snrs, default=0.0) + 5.0
        for i, m in enumerate(methods):  # a marker and a dash each: methods that score alike stay visible
            style = dict(color=f"C{i}", marker="o^sDvP"[i % 6], mfc="none", ms=9 - i,
                         ls=("-", "--", "-.", ":")[i % 4])
            ax.plot(snrs, [pct[m, cond, s] for s in snrs], label=m, **style)
            if (m, end, None) in pct:
                ax.plot([x_end], [pct[m, end, None]], **{**style, "ls": "none"})
        has_end = any((m, end, None) in pct for m in methods)
        ax.set_xticks(snrs + [x_end] * has_end, [f"{s:g}" for s in snrs] + [end] * has_end)
        ax.set(title=f"{cond}, {length_s:g} s queries", xlabel="SNR (dB)", ylim=(-2, 102))
        ax.grid(alpha=0.3)
    what = {"hits_0.1": "start within 0.1 s", "hits_0.5": "start within 0.5 s", "repeat_aware": "repeat-aware"}
    axes[0].set_ylabel(f"top-1 % ({what.get(key, key)})")
    axes[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: no curve hidden
    fig.tight_layout()
    return fig, axes


def report_markdown(result: EvalResult) -> str:
    cfg, info = result.cfg, result.info
    occ = ["| method | entries | bytes/window | threshold (per query length) | bucket entropy | largest / mean | empty share | "
           "fingerprint s | build s |", "|" + " --- |" * 9]
    for m, st in result.index_stats.items():
        f = lambda k, fmt: format(st[k], fmt) if k in st else "-"  # noqa: E731
        thr = " / ".join(f"{v:.3f}" for v in st["thresholds"].values()) if st.get("thresholds") else f("threshold", ".3f")
        occ.append(f"| {m} | {st['n_windows']} | {st['bytes_per_window']:.0f} | "
                   f"{thr if m != 'landmarks' else 'own rule'} | {f('entropy', '.3f')} | "
                   f"{f('largest_over_mean', '.1f')} | {f('empty_share', '.3f')} | {st['fingerprint_s']:.1f} | "
                   f"{st['build_s']:.2f} |")
    rep = ", ".join(f"{100 * v:.0f} % of {L:g} s" for L, v in info.get("repeat_share", {}).items())
    return "\n".join([
        "# minihash evaluation", "",
        f"- command: `{info.get('command', '')}`", f"- machine: {info.get('machine', machine())}",
        f"- database: {info.get('database', '')}, fingerprinted every {cfg.hop_s:g} s",
        f"- queries: {cfg.n_queries} per length and condition, the same excerpts everywhere (seed {cfg.seed}); "
        f"{cfg.n_negatives} negatives per length; the neural indexes' decision and thresholds per query length "
        f"calibrated as `minihash index` does, on {cfg.n_calibration} excerpts per length of the database itself, "
        f"each searched without its own track (at most {100 * cfg.max_false:g} % false matches"
        + (f", promised with {100 * cfg.confidence:g} % confidence)" if cfg.confidence else ")"),
        f"- noise: {info.get('noise', '')}; rooms: {info.get('rooms', '')}; negatives: {info.get('negatives', '')}",
        f"- excerpts that recur elsewhere in their track (NCC >= {cfg.ncc_threshold:g}): {rep}",
        f"- models: {info.get('models', '')}",
        f"- run time: {info.get('elapsed_s', 0):.0f} s ({info.get('cpu_s', 0):.0f} s of CPU in this process)", "",
        f"## Top-1 % (right track, start within {cfg.tol_s:g} s)", "", result.table("hit"), "",
        "## Top-1 %, repeat-aware (a start where the clean excerpt recurs counts)", "",
        result.table("repeat", False), "",
        f"## Top-1 % (start within {cfg.loose_tol_s:g} s)", "", result.table("hit_loose", False), "",
        "## Right recording % (any start: the track found, not always the place)", "",
        result.table("right_track", False), "",
        "## Top-1 % by how alike the excerpt's most alike other place in its track sounds", "",
        "Pearson r between the clean excerpt's log-mel and that of the most alike excerpt of its track as long, "
        "at least max(length, 2 s) away (64 bands, dB). Hits as in the first table.", "",
        result.likeness_table(), "",
        "## Indexes", "", *occ, "",
        "False match %: share of negative queries (audio not in the database) that named a track. DB scored %: "
        "inner products (landmarks: hash hits) per query over query windows x database windows. Landmarks: "
        "bytes per 0.1 s of audio, search time includes hashing the query.", "",
        *(["## Notes", ""] + [f"- {n}" for n in result.notes] + [""] if result.notes else [])])


def _write_csv(path: Path, rows: list) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({k: ("" if v is None else round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                    for r in rows)


def write_report(result: EvalResult, out) -> list[Path]:
    """results.md, results.csv (one row per method and cell), queries.csv (one row per query and method:
    its track and start, the answer and the scores, to see which queries fail and where) and
    top1_vs_snr_{L}s.png per query length, into the folder `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(report_markdown(result))
    rows = result.rows()
    _write_csv(out / "results.csv", rows)
    _write_csv(out / "queries.csv", result.records)
    paths = [out / "results.md", out / "results.csv", out / "queries.csv"]
    for L in result.cfg.lengths:
        fig, _ = plot_top1_vs_snr(rows, L)
        paths.append(out / f"top1_vs_snr_{L:g}s.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


# ----------------------------------------------------------------------------
# the whole system in one picture


def overview_figure(model, n_tracks: int = 20, query_s: float = 3.0, snr_db: float = 5.0, rt60: float = 0.6,
                    seed: int = 3, figsize=(15, 3.6)):
    """The whole system in one picture (the README's, `minihash demo`'s overview.png): a noisy,
    reverberant query, the excerpt it was matched to, and the offset votes that chose the start time.

    A hash index of `n_tracks` procedural songs never trained on; the query is `query_s` seconds
    of one of them at a random continuous start, in an evaluation room, with babble at `snr_db`.

    Returns:
        (fig, axes, Match).
    """
    tracks = synth_tracks(n_tracks, 30.0, seed=DB_SEED)
    names = [f"song_{i:02d}" for i in range(n_tracks)]
    index = index_audio(model, dict(zip(names, tracks)), method="hash", hop_s=0.1, progress=False)
    rng = np.random.default_rng(seed)
    k = int(rng.integers(n_tracks))
    n = int(round(query_s * SR))
    start = int(rng.integers(SR, len(tracks[k]) - n))  # any sample, not the 0.1 s grid
    room = synth_rir(rt60, SR, generator=torch.Generator().manual_seed(ROOM_SEED))  # an evaluation room
    babble = noise_bank(seconds=20.0, seed=1)["babble"]  # evaluation noise, from its start
    q = Query(k, start, n, noise=0, noise_at=0.0, room=0)
    query = render(tracks, q, ("noise+reverb", snr_db), [babble], [room])  # (n,) the room rings with the second before
    m = query_audio(index, model, query, threshold=-np.inf)
    e, l, q_starts = model.fingerprint_audio(query, 0.5)  # (M, D), (M, K), (M,): the windows `search` sees
    win, rows = index.table.probe(pack_codes(l), np.abs(l), index.cfg.n_probes, index.cfg.max_candidates)  # as `search`
    sims = np.einsum("cd,cd->c", index.emb[rows].astype(np.float32), e[win])  # (C,) inner products: the re-ranking
    win, rows, sims = top_per_window(win, rows, sims, index.cfg.top_k)  # each window's best few vote
    offsets = index.starts[rows] - q_starts[win]  # (C,) seconds
    mine = index.track_ids[rows] == index.names.index(m.track)
    a = int(round(m.offset_s * SR))
    matched = tracks[index.names.index(m.track)][max(a, 0):max(a, 0) + n]
    mel = replace(model.cfg.mel, log="db")  # the model's mel bands, in dB whatever its front end's log
    S_q, S_m = log_mel(query, mel), log_mel(matched, mel)  # (n_mels, frames)
    top = float(max(S_q.max(), S_m.max()))
    fig, axes = plt.subplots(1, 3, figsize=figsize, gridspec_kw={"width_ratios": [1, 1, 1.4]})
    kw = dict(sr=SR, hop=mel.hop, freq="mel", f_min=mel.f_min, f_max=mel.f_max, clabel="power (dB)",
              vmin=top - 60, vmax=top)
    plot_spectrogram(S_q, ax=axes[0], title=f"query: {query_s:g} s in a room, babble at {snr_db:g} dB", **kw)
    plot_spectrogram(S_m, ax=axes[1], title=f"match: {m.track} from {m.offset_s:.2f} s", **kw)
    plot_offset_votes(offsets[mine], sims[mine], hop_s=index.hop_s, others=(offsets[~mine], sims[~mine]),
                      truth_s=start / SR if m.track == names[k] else None, found_s=m.offset_s, ax=axes[2],
                      title=f"votes of {len(q_starts)} query windows, {n_tracks} songs indexed")
    fig.tight_layout()
    return fig, axes, m
