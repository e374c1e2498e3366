"""Does "no match" hold? False matches and true finds of a calibrated index, and its decision scores
compared by ROC curves.

An index calibrated on its own collection (`calibrate.calibrate_index`) is asked two kinds of
queries, drawn and heard as the evaluation's are (`protocol`): excerpts of the tracks it holds
(positives: a true find is the right track with the start within 0.1 s, or at a repeat of the
excerpt) and excerpts of music it does not hold (negatives: any match is false). At the index's
own thresholds this gives the false-match share per query length and condition, and how many true
finds the threshold keeps. Every query is searched without a threshold, so any decision score can
be compared on the same answers: the mean similarity of the alignment, its margin over the best
alignment in another track, the number of windows whose own best candidate agrees with it, and
the logistic combination the index fitted on its collection; the ROC curve of each (true finds
against false matches as the threshold moves) and its true-find rate at 5 % false matches.
`minihash eval-nomatch` runs it.

Notebook: 08_search.ipynb
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import binomtest
from tqdm.auto import tqdm

from ..audio import SR, find_audio, load
from ..errors import AudioError
from ..files import shown
from ..modelfile import load_model
from ..pairs import training_noise
from ..search import load_index
from ..search.store import read_manifest
from ..search.threshold import decision_scores, match_features
from .protocol import EvalConfig, cell_label, draw_queries, eval_rooms, render, score

CANDIDATES = ("similarity", "margin", "agree", "logistic")  # decision scores compared

# ----------------------------------------------------------------------------
# the queries and their answers


def mapped_folder(root) -> dict:
    """name (path relative to `root`) -> read-only memory map of every usable audio file under it, read
    from the decode cache (`audio.load(..., mmap=True)`), so a large folder is not held in memory."""
    out = {}
    for p in find_audio(root):
        try:
            out[p.relative_to(root).as_posix()] = load(p, mmap=True)
        except AudioError:
            continue  # `minihash index` skipped it too
    return out


@dataclass
class NomatchResult:
    """Per query: length, cell, kind ("positive" / "negative"), features, the index's score and
    threshold, hit and repeat-aware hit (positives); and the index's decision per length."""

    lengths: tuple
    cells: tuple
    rows: list = field(default_factory=list)
    decisions: dict = field(default_factory=dict)  # length -> the index's decision (None: the similarity)

    def select(self, L, kind, cell=None) -> list:
        return [r for r in self.rows if r["length_s"] == L and r["kind"] == kind and cell in (None, r["cell"])]


def run_nomatch(index, model, refs: dict, negatives: dict, cfg: EvalConfig, noise, rooms,
                progress: bool = True) -> NomatchResult:
    """Ask an index `cfg.n_queries` excerpts per length of its own tracks and of music it does not hold.

    Args:
        index: a calibrated neural index. model: its Encoder.
        refs: name -> (T,) signal: the tracks the index holds, by the names it holds them under
            (others are left out).
        negatives: name -> (T,) signal of music the index does not hold.
        cfg: lengths, cells (every excerpt is heard in each), n_queries, seed, hop and tolerances.
        noise, rooms: the evaluation's noises and impulse responses.

    Returns:
        a NomatchResult.
    """
    refs = {k: x for k, x in refs.items() if k in set(index.names)}  # skipped files are not in the index
    if not refs:
        raise ValueError("none of the reference tracks is in the index: pass the folder it was built from")
    names, audio = list(refs), list(refs.values())
    neg_names, negatives = list(negatives), list(negatives.values())
    res = NomatchResult(tuple(cfg.lengths), tuple(cfg.cells))
    total = 2 * len(cfg.lengths) * len(cfg.cells) * cfg.n_queries
    with tqdm(total=total, desc="queries", unit="query", disable=not progress) as bar:
        for L in cfg.lengths:
            for kind, tracks, tag in (("positive", audio, 0x706F73), ("negative", negatives, 0x6E6567)):
                rng = np.random.default_rng([cfg.seed, tag, round(1000 * L)])
                qs = draw_queries(tracks, L, cfg.n_queries, rng, len(noise), len(rooms),
                                  ncc_threshold=cfg.ncc_threshold if kind == "positive" else None,
                                  progress=progress)
                for cell in cfg.cells:
                    for q in qs:
                        e, l, s = model.fingerprint_audio(render(tracks, q, cell, noise, rooms, cfg.context_s),
                                                          cfg.query_hop_s)
                        m = index.search(e, l, s, threshold=-np.inf)  # every answer, to move any threshold over
                        res.decisions.setdefault(L, index.decision_for(m.n_windows))
                        res.rows.append(_row(m, kind, L, cell, index, (names if kind == "positive" else neg_names)
                                             [q.track], q, cfg))
                        bar.update()
    return res


def _row(m, kind, L, cell, index, name, q, cfg) -> dict:
    sc = score(m, name, q.start / SR, q.repeats / SR, cfg.tol_s, cfg.loose_tol_s) if kind == "positive" else {}
    return {"kind": kind, "length_s": L, "cell": cell, "features": match_features([m])[0], "score": m.score,
            "threshold": index.threshold_for(m.n_windows), "hit": sc.get("hit", False),
            "repeat": sc.get("repeat", False), "query": name, "start_s": q.start / SR, "match": m.track,
            "offset_s": m.offset_s}


# ----------------------------------------------------------------------------
# at the index's thresholds, and ROC curves of the candidate scores


def operating_point(res: NomatchResult, pooled: bool = False) -> list[dict]:
    """Per length and cell: false matches of the negatives at the index's thresholds, and the true
    finds of the positives without a threshold and with it (hits within 0.1 s, and repeat-aware).
    `pooled`: after each length's cells, a row of all of them together ("every condition"), the share
    the index promises per length (where there is more than one cell)."""
    out = []
    for L in res.lengths:
        cells = [(cell_label(c), [c]) for c in res.cells]
        cells += [("every condition", list(res.cells))] if pooled and len(res.cells) > 1 else []
        for label, group in cells:
            neg = [r for c in group for r in res.select(L, "negative", c)]
            pos = [r for c in group for r in res.select(L, "positive", c)]
            kept = [r["score"] >= r["threshold"] for r in pos]
            out.append({"length_s": L, "cell": label, "n": len(pos),
                        "threshold": pos[0]["threshold"] if pos else float("nan"),
                        "false": sum(r["score"] >= r["threshold"] for r in neg), "n_neg": len(neg),
                        "hit": sum(r["hit"] for r in pos), "hit_kept": sum(r["hit"] and k for r, k in zip(pos, kept)),
                        "repeat": sum(r["repeat"] for r in pos),
                        "repeat_kept": sum(r["repeat"] and k for r, k in zip(pos, kept))})
    return out


def false_interval(k: int, n: int, level: float = 0.9) -> tuple[float, float]:
    """Where the true false-match share lies, with `level` confidence, when k of n negatives matched:
    the exact (Clopper-Pearson) interval. 200 negatives measure a share of 5 % to about +-2.5 points,
    so a cell can read over the promise by chance; the interval says how far."""
    if n == 0:
        return float("nan"), float("nan")
    ci = binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def candidate_scores(res: NomatchResult, L, rows) -> dict:
    """{candidate: (n,) scores} of rows of length L: the single features, and the index's logistic fit."""
    X = np.array([r["features"] for r in rows]).reshape(-1, 3)
    out = {k: decision_scores({"kind": k}, X) for k in CANDIDATES[:3]}
    d = res.decisions.get(L)
    if d is not None and d.get("kind") == "logistic":
        out["logistic"] = decision_scores(d, X)
    return out


def roc(pos_scores, pos_true, neg_scores):
    """The ROC curve of a score: (false-match rate, true-find rate) at every threshold, from the top.

    A negative passes a threshold t when its score >= t; a positive is a true find when it is right
    (`pos_true`) and passes. Returns (fpr, tpr), each starting at (0, 0) and non-decreasing.

    Notebook: 08_search.ipynb
    """
    s = np.concatenate([pos_scores, neg_scores])
    is_pos = np.r_[np.ones(len(pos_scores), bool), np.zeros(len(neg_scores), bool)]
    good = np.r_[np.asarray(pos_true, bool), np.zeros(len(neg_scores), bool)]
    o = np.argsort(-s, kind="stable")
    last = np.r_[s[o][1:] != s[o][:-1], True]  # a threshold between distinct scores only (ties pass together)
    fpr = np.cumsum(~is_pos[o])[last] / max(len(neg_scores), 1)
    tpr = np.cumsum(good[o])[last] / max(len(pos_scores), 1)
    return np.r_[0.0, fpr], np.r_[0.0, tpr]


def tpr_at(fpr, tpr, max_false: float = 0.05) -> float:
    """The true-find rate at the lowest threshold whose false-match rate is <= max_false."""
    return float(tpr[np.flatnonzero(fpr <= max_false + 1e-12)[-1]])


def compare_scores(res: NomatchResult, max_false: float = 0.05, cell=None) -> list[dict]:
    """Per length and candidate: the true-find rate at `max_false` false matches (positives of `cell`,
    or of every cell; negatives of every cell), and which candidate is best for that length."""
    out = []
    for L in res.lengths:
        pos, neg = res.select(L, "positive", cell), res.select(L, "negative")
        sp, sn = candidate_scores(res, L, pos), candidate_scores(res, L, neg)
        truth = np.array([r["hit"] for r in pos])
        rates = {k: tpr_at(*roc(sp[k], truth, sn[k]), max_false) for k in sp}
        best = max(rates, key=lambda k: (round(rates[k], 9), k == "logistic"))  # a tie goes to the index's own
        out += [{"length_s": L, "candidate": k, "tpr": r, "no_threshold": float(truth.mean()), "best": k == best}
                for k, r in rates.items()]
    return out


def plot_roc_curves(curves: dict, max_false: float = 0.05, base: float | None = None, ax=None, figsize=(5, 3.4),
                    title="ROC: true finds against false matches"):
    """ROC curves of decision scores, each with its true-find rate at `max_false` false matches.

    Args:
        curves: name -> (fpr, tpr), as `evaluate.nomatch.roc` returns them (shares, not %).
        max_false: the operating point (a dashed line). base: the true-find rate without a threshold.
        ax, figsize, title: as usual.

    Returns:
        (fig, ax).

    Notebook: 08_search.ipynb
    """
    fig, ax = plt.subplots(figsize=figsize) if ax is None else (ax.figure, ax)
    for name, (fpr, tpr) in curves.items():
        at = tpr[np.flatnonzero(fpr <= max_false + 1e-12)[-1]]
        ax.step(100 * fpr, 100 * tpr, where="post", label=f"{name} ({100 * at:.1f} %)")
    if base is not None:
        ax.axhline(100 * base, color="0.6", lw=0.8, ls=":", label=f"no threshold ({100 * base:.1f} %)")
    ax.axvline(100 * max_false, color="k", lw=0.8, ls="--")
    ax.set(xscale="symlog", xlim=(0, 100), xlabel="false matches %", ylabel="true finds %", title=title)
    ax.legend(fontsize=7, loc="lower right", title=f"true finds at {100 * max_false:g} %", title_fontsize=7)
    return fig, ax


def plot_roc(res: NomatchResult, cell=None, max_false: float = 0.05, axes=None, figsize=(12, 3.4)):
    """ROC curves of the candidate scores, one panel per query length (true finds of positives of
    `cell` or of every cell, against false matches of all negatives); returns (fig, axes)."""
    if axes is None:
        fig, axes = plt.subplots(1, len(res.lengths), figsize=figsize, sharey=True, squeeze=False)
        axes = axes[0]
    for ax, L in zip(axes, res.lengths):
        pos, neg = res.select(L, "positive", cell), res.select(L, "negative")
        sp, sn = candidate_scores(res, L, pos), candidate_scores(res, L, neg)
        truth = np.array([r["hit"] for r in pos])
        plot_roc_curves({k: roc(sp[k], truth, sn[k]) for k in sp}, max_false, truth.mean(), ax=ax,
                        title=f"{L:g} s queries{'' if cell is None else ', ' + cell_label(cell)}")
    axes[0].figure.tight_layout()
    return axes[0].figure, axes


# ----------------------------------------------------------------------------
# the report


def nomatch_markdown(res: NomatchResult, max_false: float = 0.05) -> str:
    """The operating point and the comparison of scores, as markdown tables."""
    lines = ["| query | condition | threshold | false matches | 90 % interval | true finds, no threshold | with it | "
             "kept | repeat-aware, no threshold | with it | kept |", "|" + " --- |" * 11]
    for r in operating_point(res, pooled=True):
        pct = lambda k, n: f"{100 * r[k] / max(n, 1):.1f} %"  # noqa: E731
        lo, hi = false_interval(r["false"], r["n_neg"])
        lines.append(f"| {r['length_s']:g} s | {r['cell']} | {r['threshold']:.3f} | {r['false']} of {r['n_neg']} "
                     f"({pct('false', r['n_neg'])}) | {100 * lo:.1f}-{100 * hi:.1f} % | {pct('hit', r['n'])} | "
                     f"{pct('hit_kept', r['n'])} | "
                     f"{pct('hit_kept', r['hit'])} | {pct('repeat', r['n'])} | {pct('repeat_kept', r['n'])} | "
                     f"{pct('repeat_kept', r['repeat'])} |")
    cells = [None] + [c for c in res.cells if c[1] is not None or c[0] != "clean"]
    for cell in cells:
        rows = compare_scores(res, max_false, cell)
        kinds = list(dict.fromkeys(r["candidate"] for r in rows))
        lines += ["", f"True finds at {100 * max_false:g} % false matches, positives "
                      f"{'of every condition' if cell is None else cell_label(cell)} (no threshold: the last column):",
                  "", "| query | " + " | ".join(kinds) + " | no threshold |", "|" + " --- |" * (len(kinds) + 2)]
        for L in res.lengths:
            rs = {r["candidate"]: r for r in rows if r["length_s"] == L}
            lines.append(f"| {L:g} s | " + " | ".join(f"{'**' * rs[k]['best']}{100 * rs[k]['tpr']:.1f} %"
                                                      f"{'**' * rs[k]['best']}" for k in kinds)
                         + f" | {100 * rs[kinds[0]]['no_threshold']:.1f} % |")
    return "\n".join(lines + false_match_lines(res))


def false_match_lines(res: NomatchResult, most: int = 50) -> list:
    """The negatives that matched (at most `most`, highest scores first), as a markdown table: what
    music was taken for what, so a user can see whether it resembles the index's."""
    rows = sorted((r for r in res.rows if r["kind"] == "negative" and r["score"] >= r["threshold"]),
                  key=lambda r: -r["score"])
    if not rows:
        return ["", "No negative matched."]
    head = f"the {most} highest-scoring of them" if len(rows) > most else "every one"
    lines = ["", f"False matches: {len(rows)} negatives matched; {head}:", "",
             "| query | condition | excerpt of | from | taken for | at | score | threshold |", "|" + " --- |" * 8]
    for r in rows[:most]:
        name, match = (shown(r[k]).replace("|", "\\|") for k in ("query", "match"))  # one table cell each
        lines.append(f"| {r['length_s']:g} s | {cell_label(r['cell'])} | {name} | {r['start_s']:.1f} s | "
                     f"{match} | {r['offset_s']:.1f} s | {r['score']:.3f} | {r['threshold']:.3f} |")
    return lines


def eval_nomatch(index_dir, refs_dir, negative_dirs, cfg: EvalConfig, noise_dirs=(), speech_dirs=(), model=None,
                 out="minihash-nomatch", command: str = "", progress: bool = True) -> str:
    """`minihash eval-nomatch`: load the index, its model and the audio, run, write nomatch.md and roc.png.

    Returns:
        the markdown.
    """
    model = load_model(model or read_manifest(index_dir).get("meta", {}).get("model_path"))
    index = load_index(index_dir, expect_model=model.model_id)
    negatives = {f"{Path(d).name}/{k}" if len(negative_dirs) > 1 else k: x
                 for d in negative_dirs for k, x in mapped_folder(Path(d)).items()}
    if not negatives:
        raise ValueError(f"no audio files under {' '.join(map(str, negative_dirs))}")
    noise, rooms = training_noise(noise_dirs, speech_dirs, split="eval"), eval_rooms(cfg)
    res = run_nomatch(index, model, mapped_folder(Path(refs_dir)), negatives, cfg, noise, rooms, progress)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md = nomatch_markdown(res, index.meta.get("max_false", 0.05))
    (out / "nomatch.md").write_text(f"`{command}`\n\n{md}\n")
    fig, _ = plot_roc(res, cell=cfg.cells[-1])
    fig.savefig(out / "roc.png", dpi=100)
    plt.close(fig)
    return md
