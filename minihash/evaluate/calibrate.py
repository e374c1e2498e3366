"""No match, calibrated on the collection itself: each excerpt searched without its own track.

An index must say "no match" to music it does not hold, and for that it needs queries of music it
does not hold: negatives. The collection itself gives them, leave-one-track-out: an excerpt of an
indexed track, searched as if the index did not hold that track (`BaseIndex.search(exclude=...)`),
is a query of real music, like the user's, that is not in the index. The same excerpt searched
normally is a positive, found or not, and the two together fit the decision score of each query
length (`search.threshold.fit_logistic` on the match's similarity, margin and agreeing windows).
The excerpts are drawn and heard as the evaluation's queries are (`protocol.draw_queries`,
`protocol.render`: clean, in noise at 0-20 dB, in rooms, in rooms and noise, in turn), with the
evaluation's noise and rooms, which training never hears. A small collection gives its excerpts
overlapping, and they count for the confidence as the excerpts that fit end to end (`own_excerpts`);
procedural songs stand in only where the collection gives none (one track); music known not to be in
the index adds more.

`minihash index`, `minihash eval` and `minihash demo` all calibrate here.

Notebook: 08_search.ipynb
"""
from __future__ import annotations

import time

import numpy as np
from tqdm.auto import tqdm

from ..audio import SR
from ..corpus import synth_tracks
from ..pairs import training_noise
from .protocol import CAL_SEED, EvalConfig, draw_queries, eval_rooms, render

LENGTHS = (1.0, 2.0, 3.0, 5.0)  # query lengths calibrated, seconds
PER_LENGTH = 200  # negatives per query length (200 keep 5 % with 90 % confidence at 2.5 % passing)
FEW_TRACKS = 50  # a collection of fewer tracks is a narrow sample of the music it does not hold: said so

# ----------------------------------------------------------------------------
# how many excerpts a collection gives


def own_excerpts(seconds, length_s: float) -> int:
    """How many independent `length_s` excerpts a collection of tracks `seconds` long gives as
    leave-one-track-out negatives: as many as fit end to end (more overlap, repeating the same audio,
    and count as that many), and none from fewer than two tracks (with one track excluded, nothing is
    left to match).
    """
    return 0 if len(seconds) < 2 else int(sum(s // length_s for s in seconds))


# ----------------------------------------------------------------------------
# searching excerpts


def _excerpts(tracks, length_s, n, cfg, noise, rooms, rng):
    """n excerpts drawn and heard as the evaluation's queries, the cells of `cfg` in turn."""
    qs = draw_queries(tracks, length_s, n, rng, len(noise), len(rooms)) if n else []
    return [(q, render(tracks, q, cfg.cells[i % len(cfg.cells)], noise, rooms, cfg.context_s)) for i, q in enumerate(qs)]


def search_excerpts(index, model, tracks, names, length_s, n, cfg, noise, rooms, rng, hop_s=0.5, own=True, bar=None):
    """Search n excerpts of `tracks`: without their own track (the negatives) and, where the
    index holds them (`own`), also with it (the positives).

    Args:
        tracks: list of (T,) signals (arrays or read-only memory maps). names: their names in the index.
        length_s, n: excerpt length and number.
        cfg: an EvalConfig (its cells, in turn, and context). noise, rooms: as `render` takes them.
        rng: np.random.Generator. hop_s: the query windows' hop.
        own: whether the index holds `tracks`.

    Returns:
        (negatives, positives, right, which): Matches (positives empty unless `own`), whether each
        positive names its own track, and which track each excerpt is of.
    """
    neg, pos, right, which = [], [], [], []
    for q, x in _excerpts(tracks, length_s, n, cfg, noise, rooms, rng):
        which.append(q.track)
        e, l, s = model.fingerprint_audio(x, hop_s)
        neg.append(index.search(e, l, s, threshold=-np.inf, exclude=names[q.track] if own else None))
        if own:
            pos.append(index.search(e, l, s, threshold=-np.inf))
            right.append(pos[-1].track == names[q.track])
        if bar is not None:
            bar.update()
    return neg, pos, right, which


# ----------------------------------------------------------------------------
# calibrating an index


def calibrate_index(index, model, tracks: dict, max_false: float = 0.05, confidence: float | None = 0.9,
                    per_length: int = PER_LENGTH, negatives=(), lengths=LENGTHS, hop_s: float = 0.5, seed: int = 0,
                    progress: bool = True) -> dict:
    """Fit the index's decision score and set its no-match thresholds on its own collection.

    Per query length: `per_length` excerpts of the indexed tracks, each searched without its own
    track (negatives) and with it (positives); where fewer fit end to end (`own_excerpts`), they
    overlap and count for the confidence as those that fit; procedural songs stand in only where the
    collection gives none; `per_length` excerpts of `negatives` (music not in the index) are added.
    The decision score of each length is fitted on them (`index.fit_decision`), then the thresholds
    are set on the negatives' scores (`index.calibrate`).

    Args:
        index: a neural index (`search.BaseIndex`). model: the Encoder that fingerprinted it.
        tracks: name -> (T,) signal of the indexed tracks (read-only memory maps will do).
        max_false: the share of queries of music not in the index allowed to match, per length.
        confidence: promise it for new queries with this confidence (Clopper-Pearson); None: for these.
        per_length: excerpts per query length.
        negatives: list of (T,) signals of music that is not in the index, to add.
        lengths: query lengths, seconds. hop_s: the query windows' hop.
        seed: which excerpts.
        progress: show a progress bar.

    Returns:
        a summary: {length_s: {"windows", "collection", "apart" (what the collection's excerpts are
        worth: as many as fit end to end), "procedural", "added", "negatives", "positives", "right",
        "threshold"}}, and "seconds": the time it took.

    Notebook: 00_overview.ipynb, 08_search.ipynb, 10_your_own_audio.ipynb
    """
    t0 = time.perf_counter()
    cfg = EvalConfig(lengths=tuple(lengths), seed=seed)
    noise, rooms = training_noise(split="eval"), eval_rooms(cfg)
    names, audio = list(tracks), list(tracks.values())
    seconds = [len(x) / SR for x in audio]
    apart = {L: min(per_length, own_excerpts(seconds, L)) for L in lengths}  # independent excerpts
    own = {L: per_length if apart[L] else 0 for L in lengths}  # drawn, overlapping where they must
    synth = synth_tracks(20, cfg.synth_seconds, seed=CAL_SEED) if not all(own.values()) else []
    negatives = list(negatives)
    total = sum(per_length + (per_length if negatives else 0) for _ in lengths)
    neg, pos, right, searched, worth, summary = [], [], [], [], [], {}
    share = np.bincount(index.track_ids, minlength=len(index.names)) / max(len(index), 1)  # of the index's windows
    share = {name: share[i] for i, name in enumerate(index.names)}
    with tqdm(total=total, desc="calibrating", unit="query", disable=not progress) as bar:
        for L in lengths:
            rng = np.random.default_rng([seed, 0x6C6F6F, round(1000 * L)])  # this length's excerpts
            n_, p_, r_, w_ = search_excerpts(index, model, audio, names, L, own[L], cfg, noise, rooms, rng, hop_s,
                                             bar=bar)
            s_ = search_excerpts(index, model, synth, None, L, per_length - own[L], cfg, noise, rooms, rng, hop_s,
                                 own=False, bar=bar)[0]
            n_added = per_length if any(len(x) >= L * SR for x in negatives) else 0
            a_ = search_excerpts(index, model, negatives, None, L, n_added, cfg, noise, rooms, rng, hop_s, own=False,
                                 bar=bar)[0]
            neg += n_ + s_ + a_
            pos += p_
            right += r_
            searched += [1.0 - share[names[k]] for k in w_] + [1.0] * len(s_ + a_)
            worth += [apart[L] / own[L] if own[L] else 1.0] * len(n_) + [1.0] * len(s_ + a_)
            summary[L] = {"windows": (n_ + s_ + a_)[0].n_windows, "collection": len(n_), "apart": apart[L],
                          "procedural": len(s_), "added": len(a_), "negatives": len(n_ + s_ + a_),
                          "positives": len(p_), "right": int(sum(r_))}
    index.fit_decision(neg, pos, right)
    index.calibrate(index.rescore(neg), max_false, [m.n_windows for m in neg], confidence, searched, worth)
    for L, row in summary.items():
        row["threshold"] = index.threshold_for(row["windows"])
    return {**summary, "seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------
# what it says


def calibration_summary(cal: dict, index, index_s: float | None = None) -> str:
    """What the thresholds of `calibrate_index` rest on and promise, as `minihash index` prints it.

    Notebook: 00_overview.ipynb, 10_your_own_audio.ipynb
    """
    conf = index.meta["calibration"]["confidence"]
    promise = f", promised with {100 * conf:g} % confidence" if conf else ""
    lines = [f"no match: thresholds per query length, so that at most {100 * index.meta['max_false']:g} % of queries "
             f"of music not in the index match{promise}; `minihash query --max-false` changes the share"]
    rows = {L: r for L, r in cal.items() if L != "seconds"}
    for L, r in rows.items():
        overlap = f" (overlapping: worth the {r['apart']} that fit end to end)" if r["apart"] < r["collection"] else ""
        parts = [f"{r['collection']} excerpts of the collection{overlap}, each searched without its own track"] \
            if r["collection"] else []
        parts += [f"{r['procedural']} of procedural songs (the collection gives none)"] if r["procedural"] else []
        parts += [f"{r['added']} of --negatives"] if r["added"] else []
        lines.append(f"  {L:g} s: threshold {r['threshold']:.3f} on {r['negatives']} negatives ({'; '.join(parts)}); "
                     f"decision fitted on them and {r['right']} of {r['positives']} excerpts found in their track")
    n = len(index.names)
    if n < FEW_TRACKS and not any(r["added"] for r in rows.values()):
        lines.append(f"  note: these negatives are excerpts of only {n} track{'s' * (n != 1)}, a narrow sample of "
                     f"the music the index does not hold; music unlike them may match more often than promised: "
                     f"add music you did not index with --negatives DIR")
    share = f" ({100 * cal['seconds'] / index_s:.0f} % of the indexing time)" if index_s else ""
    lines.append(f"calibrated in {cal['seconds']:.0f} s{share}")
    return "\n".join(lines)
