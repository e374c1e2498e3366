"""The evaluation protocol: what is measured, the queries, how each is heard, and what counts as a hit.

The protocol of the Neural Audio Fingerprint (Chang et al., ICASSP 2021, arXiv 2010.11910) as
Singh et al. use it (ICASSP 2023, arXiv 2211.11060; FlowHash, TASLP 2024): a query is an excerpt
of 1, 2, 3 or 5 s cut at a random start time (any sample, not the 0.1 s grid), heard clean, in
noise at an SNR, in a room, or in a room and noise (the music reverberates with the second before
it, then noise is added at the microphone; the SNR is measured on the reverberant excerpt). A hit
is the right track with the start within 0.1 s (0.5 s is reported too); music repeats itself, so a
repeat-aware score also accepts any start where the clean excerpt recurs in its own track (a
normalised cross-correlation >= 0.9). Every method hears exactly the same excerpts, and
`minihash bench-search` draws, renders and scores its queries here too.

Notebook: 09_benchmark.ipynb
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
from tqdm.auto import tqdm

from ..audio import SR
from ..corpus.repeats import LIKENESS_MEL, TrackNCC, likeness_elsewhere, track_log_mel
from ..distort import CONDITIONS, add_noise, fit_length, reverb, synth_rir
from ..search.base import Match

DB_SEED, CAL_SEED, NEG_SEED = 20_000, 30_000, 40_000  # procedural corpora: none of them is trained on (0, 10_000)
ROOM_SEED = 2  # training rooms use seed 0, validation rooms seed 1
# the one registry of the evaluation's methods: method -> (the model that fingerprints for it, the index kind);
# landmarks hash the audio themselves
SYSTEMS = {"minihash": ("model", "hash"), "sign": ("sign", "hash"), "lsh": ("model", "lsh"),
           "exhaustive": ("model", "exhaustive"), "landmarks": (None, "landmarks"), "nafp": ("nafp", "exhaustive")}
METHODS = tuple(SYSTEMS)
SCORES = {"hit": "hits_0.1", "hit_loose": "hits_0.5", "repeat": "repeat_aware", "right_track": "right_track",
          "false": "false_matches"}

# ----------------------------------------------------------------------------
# configuration


def grid(snrs=(0, 5, 10, 15, 20), conditions=CONDITIONS) -> tuple:
    """The cells of an evaluation: (condition, SNR in dB, or None where no noise is added)."""
    return tuple(cell for c in conditions for cell in ([(c, float(s)) for s in snrs] if "noise" in c else [(c, None)]))


def cell_label(cell) -> str:
    return cell[0] if cell[1] is None else f"{cell[0]} {cell[1]:g} dB"


@dataclass
class EvalConfig:
    """What is measured and how much. `preset("full" | "quick" | "demo")`.

    Notebook: 09_benchmark.ipynb
    """

    lengths: tuple = (1.0, 2.0, 3.0, 5.0)  # query lengths, seconds
    cells: tuple = grid()  # (condition, SNR) pairs
    methods: tuple = METHODS
    n_queries: int = 200  # per length and cell: the same excerpts in every cell
    n_negatives: int = 200  # per length: excerpts of audio not in the database
    n_calibration: int = 200  # per length: excerpts of the database, each searched without its own track
    n_synth: int = 500  # database tracks when no folder is given
    n_neg_tracks: int = 50  # procedural tracks among the negatives
    synth_seconds: float = 30.0
    hop_s: float = 0.1  # between database windows
    query_hop_s: float = 0.5  # between query windows
    tol_s: float = 0.1  # start error of a hit, at most
    loose_tol_s: float = 0.5
    ncc_threshold: float = 0.9  # the clean excerpt recurs where its correlation with the track reaches this
    max_false: float = 0.05  # share of queries of audio not in the database allowed to match
    confidence: float | None = 0.9  # ... promised for new negatives with this confidence (None: for the calibration set)
    rt60: tuple = (0.2, 1.0)  # synthetic evaluation rooms, seconds
    n_rooms: int = 50
    context_s: float = 1.0  # audio before the excerpt that reverberates into it
    seed: int = 0

    @classmethod
    def preset(cls, name: str, **overrides) -> "EvalConfig":
        """`full`: the README table; `quick`: minutes; `demo`: `minihash demo`, < 5 min on 2 cores."""
        short = dict(lengths=(1.0, 3.0), n_neg_tracks=20,
                     cells=(("clean", None), ("noise", 0.0), ("noise", 10.0), ("noise+reverb", 10.0)))
        presets = {"full": {},
                   "quick": dict(short, n_queries=100, n_negatives=100, n_calibration=200, n_synth=100),
                   "demo": dict(short, methods=("minihash", "lsh", "exhaustive", "landmarks"), n_queries=60,
                                n_negatives=60, n_calibration=200, n_synth=200)}  # 60 cannot promise 5 %
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(presets)}")
        return replace(cls(**presets[name]), **overrides)


# ----------------------------------------------------------------------------
# queries: drawn once, heard in every cell


@dataclass
class Query:
    """One excerpt and the noise and room it meets, the same in every cell and for every method."""

    track: int
    start: int  # samples
    n: int  # samples
    noise: int  # which noise recording
    noise_at: float  # where in it, 0..1
    room: int  # which impulse response
    repeats: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (R,) samples, `start` among them
    likeness: float = float("nan")  # Pearson r of its log-mel with the most alike other place of its track


def draw_queries(tracks, length_s: float, n: int, rng, n_noise: int, n_rooms: int, sr: int = SR,
                 ncc_threshold: float | None = None, min_rms: float = 1e-3, progress: bool = False) -> list[Query]:
    """`n` excerpts at random starts (any sample), tracks weighted by length, near-silence drawn again.

    Args:
        tracks: list of (T,) signals.
        length_s: excerpt length.
        rng: np.random.Generator.
        n_noise, n_rooms: how many noises and rooms to pick from.
        ncc_threshold: find each excerpt's repeats in its track (None: don't).
        progress: a bar while the repeats are found (0.1-0.3 s per excerpt of a 10-minute track).

    Returns:
        list of Query.
    """
    L = int(round(length_s * sr))
    n_starts = np.array([max(len(x) - L + 1, 0) for x in tracks])
    if not n_starts.any():
        raise ValueError(f"no track is {length_s:g} s long")
    out = []
    for _ in range(n):
        for _ in range(100):
            k = int(rng.choice(len(tracks), p=n_starts / n_starts.sum()))
            s = int(rng.integers(n_starts[k]))
            if np.sqrt(np.mean(np.square(tracks[k][s:s + L], dtype=np.float64))) >= min_rms:
                break
        out.append(Query(k, s, L, int(rng.integers(n_noise)), float(rng.random()), int(rng.integers(n_rooms))))
    if ncc_threshold is not None:  # track by track: each track's window statistics once, not once per excerpt
        with tqdm(total=n, desc=f"repeats of {length_s:g} s excerpts", unit="excerpt", disable=not progress) as bar:
            for k, group in by_track(out).items():
                track = TrackNCC(tracks[k], L)
                for q in group:
                    q.repeats = track.repeat_starts(q.start, ncc_threshold)
                    bar.update(1)
    return out


def by_track(qs: list[Query]) -> dict[int, list[Query]]:
    """The queries of each track, tracks in order, queries in theirs: work done once per track."""
    groups: dict[int, list[Query]] = {}
    for q in sorted(qs, key=lambda q: q.track):
        groups.setdefault(q.track, []).append(q)
    return groups


def add_likeness(tracks, qs: list[Query], sr: int = SR) -> None:
    """Set each excerpt's `likeness`: how alike the most alike other place of its track sounds
    (`likeness_elsewhere`, at least max(length, 2 s) away), one track's log-mel at a time."""
    hop = LIKENESS_MEL.hop * sr / LIKENESS_MEL.sr  # samples per log-mel frame
    for k, group in by_track(qs).items():
        S = track_log_mel(tracks[k], sr)
        for q in group:
            n, gap = int(round(q.n / hop)), int(round(max(q.n / sr, 2.0) * sr / hop))
            q.likeness = likeness_elsewhere(S, min(int(round(q.start / hop)), S.shape[1] - n), n, gap)


def render(tracks, q: Query, cell, noise, rooms, context_s: float = 1.0, sr: int = SR) -> np.ndarray:
    """The query heard in one cell: the excerpt, reverberated with the audio before it, then noise
    at the cell's SNR measured on the (reverberant) excerpt. Returns (q.n,) float32."""
    cond, snr = cell
    x = tracks[q.track]
    if "reverb" in cond:
        a = max(0, q.start - int(round(context_s * sr)))  # the room also rings with what came before
        y = reverb(np.array(x[a:q.start + q.n], np.float32), rooms[q.room])[q.start - a:]  # a copy: x may be
    else:  # a read-only memory map (`audio.load(..., mmap=True)`)
        y = torch.from_numpy(np.array(x[q.start:q.start + q.n], np.float32))
    if "noise" in cond:
        rec = torch.as_tensor(noise[q.noise]).float()
        i = int(q.noise_at * max(len(rec) - q.n + 1, 1))
        y = add_noise(y, fit_length(rec[i:], q.n), snr)
    return y.numpy().astype(np.float32)


def eval_rooms(cfg: EvalConfig) -> list[torch.Tensor]:
    """Synthetic rooms drawn as `distort.Distorter` draws them, from a seed training never uses."""
    g = torch.Generator().manual_seed(ROOM_SEED)
    lo, hi = cfg.rt60
    return [synth_rir(float(lo + (hi - lo) * r), SR, generator=g)
            for r in torch.rand(cfg.n_rooms, generator=g, dtype=torch.float64)]


# ----------------------------------------------------------------------------
# the hit rule


def score(m: Match, name: str, start_s: float, repeats_s=(), tol: float = 0.1, loose_tol: float = 0.5) -> dict:
    """Is a Match a hit? `hit`: right track, start within `tol`; `hit_loose`: within `loose_tol`;
    `repeat`: right track, start within `tol` of any start where the excerpt recurs (or a hit);
    `right_track`: right track, any start (the recording found, the place not); `false`: it names a track
    and is not a repeat-aware hit. No match (track None) is never right."""
    right = m.track is not None and m.track == name
    hit = right and abs(m.offset_s - start_s) <= tol + 1e-9
    rep = np.asarray(repeats_s, dtype=np.float64)
    repeat = hit or (right and rep.size > 0 and float(np.min(np.abs(rep - m.offset_s))) <= tol + 1e-9)
    return {"hit": hit, "hit_loose": right and abs(m.offset_s - start_s) <= loose_tol + 1e-9, "repeat": repeat,
            "right_track": right, "false": m.track is not None and not repeat}
