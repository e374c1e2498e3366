"""Procedural songs, the embedded default corpus, and their cache on disk.

`synth_tracks` gives deterministic songs: a tempo, a key and mode, chord
progressions, a melody of repeated and varied motifs, a bass line, drums, and
three kinds of timbre (`timbres`: additive, FM after Chowning 1973, the
Karplus-Strong string of Karplus and Strong 1983). Sections repeat (verse, chorus,
verse...), so, as in real songs, a window can recur inside its own track but not in
another one (`repeats.cross_track_duplicates` measures the second part). A repeat is
mostly played again, a near-duplicate: the same notes with new timing (a few ms per
note), dynamics, ornaments, chord voicings, drum fills, parts entering or leaving and
a brighter or duller mix. Sometimes (`LOOP_P`) an earlier take is pasted again, as a
sequencer or a game engine does, with some of its bars played anew. So 15-30 % of
1 s windows recur sample for sample (`repeats.self_repeat_share`), as in game
soundtracks, and a 5 s excerpt almost never does: a strict score (the right start)
stays meaningful.

A song is rendered in four steps: `_compose` draws everything a track keeps
throughout (tempo, key, instruments, sections), `_Performance` plays one section,
`_arrange` lays the sections out in the song's form, `_master` adds a room, a tone
and fades. Tracks are cached as .npy under `files.cache_dir()`; a cache that cannot be
written only costs time, and a cache file that does not read back as a valid track
is generated again.

Notebook: 00_overview.ipynb
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import signal
from tqdm.auto import tqdm

from ..audio import PEAK, SR, peak_normalise
from ..files import cache_dir, save_npy
from .composition import BASS_RHYTHMS, FORMS, PROGRESSIONS, SCALES, drum_bar, motif, ornament, section, vary
from .timbres import drum_kit, instrument, note

GENERATOR_VERSION = 3  # bump whenever the synthesiser changes: old cache files are then ignored
# a repeat is an earlier take pasted again this often (else played anew), each of its bars kept with KEEP_P (else
# played anew): 15-30 % of 1 s windows then recur sample for sample, a 5 s excerpt (nearly) never
LOOP_P, KEEP_P = 0.6, 0.5

# ----------------------------------------------------------------------------
# a song: what a track keeps throughout


@dataclass
class _Song:
    """Everything drawn once per track: tempo, key, players, mix, sections and form."""

    sr: int
    step: float  # one 16th note, in seconds
    nbars: int  # bars per section
    scale: tuple
    tonic: int
    swing: float
    players: dict  # part -> instrument parameters (pad: None when the song has no pad)
    kit: dict | None  # drum -> sample, None: no drums
    bases: dict  # part -> its lowest MIDI note
    gain: dict  # part -> level in the mix
    busy: float
    legato: float
    comp_style: int  # sustained, pulsed, stabs, arpeggio
    comp_hits: tuple
    bass_hits: tuple
    sevenths: bool
    labels: dict  # "A", "B", "C" -> the section's material (`composition.section`)
    form: str
    jitter: tuple  # timing spread of (players, drummer), samples
    vel_db: float  # velocity spread
    drift_db: float  # how the lead's level drifts per repeat

    @property
    def sec_steps(self) -> int:
        return 16 * self.nbars

    @property
    def sec_len(self) -> float:
        return self.sec_steps * self.step * self.sr  # samples, fractional

    @property
    def tail(self) -> int:
        return int(1.0 * self.sr)  # room for the last notes' release

    def midi(self, deg: int, base: int) -> int:
        """Scale degree (any integer) to a MIDI note above `base`."""
        return base + self.tonic + 12 * (deg // 7) + self.scale[deg % 7]


def _compose(rng: np.random.Generator, sr: int) -> _Song:
    """Draw a song's tempo, key, instruments, mix, sections and form (the draws in a fixed order)."""
    step = 60.0 / rng.uniform(70, 160) / 4  # one 16th note, in seconds
    nbars = 4 if 64 * step <= 8.5 else 2  # a section lasts 4 to 8.5 s
    scale = SCALES[list(SCALES)[rng.integers(len(SCALES))]]
    tonic = int(rng.integers(0, 12))
    swing = float(rng.choice([0.0, 0.0, 0.1, 0.2, 0.33]))  # odd 16ths come late
    kinds = ("additive", "fm", "pluck")
    lead, comp, bass = (instrument(kinds[rng.integers(3)], rng) for _ in range(3))
    pad = instrument("additive", rng, pad=True) if rng.random() < 0.5 else None
    kit = drum_kit(rng, sr) if rng.random() < 0.9 else None
    lead_base, comp_base, bass_base = int(rng.integers(52, 64)), int(rng.integers(46, 56)), int(rng.integers(28, 40))
    levels = {"lead": 0.35, "comp": 0.18, "bass": 0.35, "pad": 0.12, "kick": 0.45, "snare": 0.3, "hat": 0.12}
    gain = {k: g * 10 ** (rng.uniform(-4, 4) / 20) for k, g in levels.items()}  # the mix: +-4 dB per part
    busy = rng.uniform(0.0, 1.0)
    legato = rng.uniform(0.5, 1.0)
    comp_style = int(rng.integers(4))  # sustained, pulsed, stabs, arpeggio
    stabs = (0, 6, 10) if rng.random() < 0.5 else (2, 6, 10, 14)
    comp_hits = ((0,), (0, 4, 8, 12), stabs, tuple(range(0, 16, 2)))[comp_style]
    bass_hits = BASS_RHYTHMS[rng.integers(len(BASS_RHYTHMS))]
    sevenths = rng.random() < 0.4
    first = PROGRESSIONS[rng.integers(len(PROGRESSIONS))] if rng.random() < 0.75 else (0, *rng.integers(0, 7, 3))
    others = [PROGRESSIONS[rng.integers(len(PROGRESSIONS))] if rng.random() < 0.6 else tuple(rng.integers(0, 7, 4))
              for _ in range(2)]
    drums_in_a = kit is not None and rng.random() < 0.8
    labels = {"A": section(rng, nbars, busy, first, drums_in_a),
              "B": section(rng, nbars, min(1.0, busy + 0.3), others[0], kit is not None),
              "C": section(rng, nbars, busy, others[1], kit is not None and rng.random() < 0.5)}
    form = FORMS[rng.integers(len(FORMS))]
    # the players: timing spread (ms, the drummer tighter), velocity spread (dB), how the mix drifts per repeat
    jitter = rng.uniform(2.0, 8.0) * sr / 1000, rng.uniform(1.0, 4.0) * sr / 1000  # samples
    vel_db, drift_db = rng.uniform(0.5, 2.0), rng.uniform(-1.5, 1.5)
    return _Song(sr, step, nbars, scale, tonic, swing, {"lead": lead, "comp": comp, "bass": bass, "pad": pad}, kit,
                 {"lead": lead_base, "comp": comp_base, "bass": bass_base}, gain, busy, legato, comp_style, comp_hits,
                 bass_hits, sevenths, labels, form, jitter, vel_db, drift_db)


# ----------------------------------------------------------------------------
# a performance: one section played once


class _Performance:
    """Performance `perf` of a section (0: as written), bar b from its take `takes[b]` (0: the first).

    Args:
        song: the track.
        label: which section ("A", "B", "C").
        perf, takes: which performance, and which take of each bar.
        notes: (part, midi, samples) -> waveform, shared by the whole track: each distinct note is rendered once.
    """

    def __init__(self, song: _Song, label: str, perf: int, takes: tuple, notes: dict):
        self.song, self.label, self.perf, self.takes, self.notes = song, label, perf, takes, notes
        S = self.S = song.labels[label]
        self.buf = np.zeros(int(song.sec_len) + song.tail + 1)
        pr = np.random.default_rng([S["seed"], perf])  # what a performance changes throughout
        self.phrase = list(S["phrase"])
        self.ornate = 0.0
        if perf and label == "A":  # a verse comes back with a new melody (new words, in a song)
            self.phrase = [motif(pr, S["busy"]) if pr.random() < 0.5 else vary(m, pr) for m in self.phrase]
        elif perf:  # a chorus comes back ornamented
            self.ornate = pr.uniform(0.1, 0.4)
        self.inversion = int(pr.integers(3)) if perf else 0
        self.mix = {k: 10 ** ((pr.normal(0, 1.0) + song.drift_db * perf * (k == "lead")) / 20) for k in song.gain}
        self.mute = {"comp": perf and pr.random() < 0.15, "hat": perf and pr.random() < 0.2,
                     "pad": song.players["pad"] is None or (label == "A" and (not perf or pr.random() < 0.7))}
        self.tilt = pr.uniform(-3, 3) if perf else 0.0  # dB of brightness, split at 1 kHz

    def put(self, x: np.ndarray, s: int, g: float, sd: float, br: np.random.Generator) -> None:
        """Add `x` at step `s` with gain `g`, late or early by N(0, sd) samples, at a random velocity."""
        song, buf = self.song, self.buf
        i = max(0, int(round((s + song.swing * (s % 2)) * song.step * song.sr + br.normal(0, sd))))
        j = min(i + x.size, buf.size)
        buf[i:j] += g * 10 ** (br.normal(0, song.vel_db) / 20) * x[: j - i]

    def play(self, name: str, m: int, s: int, d: int, br: np.random.Generator, vel: float = 1.0) -> None:
        """Part `name` plays MIDI note `m` at step `s` for `d` steps."""
        song = self.song
        n = max(int(d * song.step * song.sr * song.legato), 16)
        key = (name, m, n)
        if key not in self.notes:
            self.notes[key] = note(song.players[name], m, n, song.sr)
        self.put(self.notes[key], s, song.gain[name] * self.mix[name] * vel, song.jitter[0], br)

    def chord_at(self, s: int) -> int:
        """The root degree of the chord sounding at step s."""
        return int(self.S["prog"][s * 4 // self.song.sec_steps])

    def bar(self, b: int, bar: list) -> None:
        """Bar `b` of the phrase: melody, bass, chords, pad and drums."""
        song, S, takes, midi = self.song, self.S, self.takes, self.song.midi
        last = b == song.nbars - 1
        br = np.random.default_rng([S["seed"], self.perf, b, takes[b]])  # the bar's timing, dynamics, variations
        if self.ornate:
            bar = ornament(bar, br, self.ornate)
        if takes[b]:
            bar = vary(bar, br)
        for s, d, deg in bar:
            if deg is not None:
                deg += self.chord_at(16 * b + s)
                self.play("lead", midi(deg - 7 * (deg > 10), song.bases["lead"]), 16 * b + s, d, br,
                          1.0 if s % 4 else 1.25)
        for i, s in enumerate(song.bass_hits):
            nxt = song.bass_hits[i + 1] if i + 1 < len(song.bass_hits) else 16
            root = self.chord_at(16 * b + s)
            deg = root + 4 if (i % 2 and song.busy > 0.5) else root  # the fifth on some off-beats
            self.play("bass", midi(deg, song.bases["bass"]), 16 * b + s, nxt - s, br)
        inv = int(br.integers(3)) if self.perf and br.random() < 0.25 else self.inversion
        for i, s in enumerate(() if self.mute["comp"] else song.comp_hits):
            root = self.chord_at(16 * b + s)
            tones = (root, root + 2, root + 4, root + 6) if song.sevenths else (root, root + 2, root + 4)
            tones = tones[inv:] + tuple(t + 7 for t in tones[:inv])  # an inversion: the lowest tones an octave up
            if song.comp_style == 3:  # arpeggio: one chord tone per 8th note
                self.play("comp", midi(tones[i % len(tones)], song.bases["comp"]), 16 * b + s, 2, br)
            else:
                for deg in tones:
                    self.play("comp", midi(deg, song.bases["comp"]), 16 * b + s, (16, 3, 2)[song.comp_style], br)
        if not self.mute["pad"]:
            for c in range(4 // song.nbars if song.nbars < 4 else 1):
                s = 16 * b + c * song.sec_steps // 4
                for deg in (self.chord_at(s), self.chord_at(s) + 2, self.chord_at(s) + 4):
                    self.play("pad", midi(deg, song.bases["comp"] + 12), s, song.sec_steps // 4, br)
        if S["drums"]:
            hits = drum_bar(S, br, fill=last and (takes[b] > 0 or (self.perf > 0 and br.random() < 0.5)))
            for name, steps in hits.items():
                for s, v in ({} if (name == "hat" and self.mute["hat"]) else steps).items():
                    self.put(song.kit[name], 16 * b + s, song.gain[name] * self.mix[name] * v, song.jitter[1], br)

    def render(self) -> np.ndarray:
        """The section's audio: (int(sec_len) + tail + 1,) float64."""
        for b, bar in enumerate(self.phrase):
            self.bar(b, bar)
        buf = self.buf
        if self.tilt:
            bb, aa = signal.butter(1, 1000, fs=self.song.sr)
            lo = signal.lfilter(bb, aa, buf)
            g = 10 ** (self.tilt / 40)
            buf = lo / g + (buf - lo) * g
        return buf


# ----------------------------------------------------------------------------
# the song: sections in the form, then a room, a tone and fades


def _arrange(song: _Song, rng: np.random.Generator, n_total: int) -> np.ndarray:
    """The sections laid out in the song's form, each repeat played anew or an earlier take pasted again."""
    sec_len = song.sec_len
    n_sec = int(np.ceil(n_total / sec_len))
    seq = (song.form * n_sec)[:n_sec]
    out = np.zeros(n_total + int(sec_len) + song.tail + 1)
    notes = {}  # (part, midi, samples) -> waveform: each distinct note is rendered once per track
    sections, played = {}, {}  # (label, perf, takes) -> audio; label -> the (perf, takes) played so far
    loud = {label: 10 ** (rng.uniform(-3, 3) / 20) for label in "ABC"}  # a chorus may be louder than the verse
    for k, label in enumerate(seq):
        before = played.setdefault(label, [])
        if before and rng.random() < LOOP_P:  # an earlier take pasted again, some bars played anew
            perf, takes = before[int(rng.integers(len(before)))]
            takes = tuple(t if rng.random() < KEEP_P else 1 + max(tk[b] for p, tk in before if p == perf)
                          for b, t in enumerate(takes))
        else:  # played again: same notes, new timing, dynamics, ornaments, voicings and drum variations
            perf, takes = len({p for p, _ in before}), (0,) * song.nbars
        before.append((perf, takes))
        if (label, perf, takes) not in sections:
            sections[label, perf, takes] = _Performance(song, label, perf, takes, notes).render()
        i = int(round(k * sec_len))
        out[i: i + sections[label, perf, takes].size] += loud[label] * sections[label, perf, takes]
    return out[:n_total]


def _master(x: np.ndarray, rng: np.random.Generator, n_total: int, sr: int) -> np.ndarray:
    """A light room, a spectral tilt, a fade in and out, and the peak at `PEAK`: float32."""
    # a light room: exponentially decaying noise (RT60 0.2-1.2 s), mixed in at -20 to -6 dB
    t = np.arange(int(0.8 * sr)) / sr
    ir = rng.standard_normal(t.size) * np.exp(-6.9 * t / rng.uniform(0.2, 1.2))
    wet = signal.fftconvolve(x, ir / np.sqrt(np.sum(ir ** 2)))[:n_total]
    x = x + 10 ** (rng.uniform(-20, -6) / 20) * wet

    # a random spectral tilt (a one-pole split at 300-1500 Hz): tracks differ in brightness, as masters do
    b, a = signal.butter(1, rng.uniform(300, 1500), fs=sr)
    lo = signal.lfilter(b, a, x)
    tilt = 10 ** (rng.uniform(-8, 8) / 40)
    x = lo / tilt + (x - lo) * tilt
    fi, fo = (min(int(rng.uniform(*r) * sr), n_total // 10) for r in ((0.3, 1.5), (1.0, 3.0)))
    x[:fi] *= 0.5 - 0.5 * np.cos(np.pi * np.arange(fi) / max(fi, 1))
    x[n_total - fo:] *= 0.5 + 0.5 * np.cos(np.pi * np.arange(fo) / max(fo, 1))
    return peak_normalise(x)


def _song(rng: np.random.Generator, n_total: int, sr: int) -> np.ndarray:
    """Compose and render one track of `n_total` samples: (n_total,) float32, peak `PEAK`."""
    song = _compose(rng, sr)
    return _master(_arrange(song, rng, n_total), rng, n_total, sr)


# ----------------------------------------------------------------------------
# the corpus, cached on disk


def _cache_path(seed: int, index: int, seconds: float, sr: int) -> Path:
    return cache_dir() / "synth" / f"v{GENERATOR_VERSION}_seed{seed}_{index:05d}_{seconds:g}s_{sr}hz.npy"


def _read_cache(path: Path, n: int):
    """The cached track, or None when missing or corrupt (never trusted blindly)."""
    try:
        x = np.load(path, allow_pickle=False)
    except Exception:  # truncated, garbage, pickled, unreadable: whatever it is, generate again
        return None
    if x.dtype != np.float32 or x.shape != (n,) or not np.isfinite(x).all() or abs(np.abs(x).max() - PEAK) > 1e-4:
        return None
    return x


def _write_cache(path: Path, x: np.ndarray) -> None:
    """Write atomically (`files.save_npy`); a cache that cannot be written only costs time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_npy(path, x)
    except OSError:  # a read-only cache only costs time
        pass


def synth_track(index: int, seconds: float = 30.0, seed: int = 0, sr: int = SR, cache: bool = True) -> np.ndarray:
    """Track `index` of the procedural corpus `seed` (the same whatever the corpus size).

    Args:
        index: which track.
        seconds: its duration.
        seed: which corpus.
        sr: sample rate.
        cache: read and write the on-disk cache (see `files.cache_dir`).

    Returns:
        (round(seconds * sr),) float32, peak 0.9.
    """
    n = int(round(seconds * sr))
    path = _cache_path(seed, index, seconds, sr)
    if cache and (x := _read_cache(path, n)) is not None:
        return x
    x = _song(np.random.default_rng([0x6D75, seed, index]), n, sr)
    if cache:
        _write_cache(path, x)
    return x


def synth_tracks(n: int, seconds: float = 30.0, seed: int = 0, sr: int = SR, cache: bool = True,
                 progress: bool = False) -> list[np.ndarray]:
    """The embedded default corpus: `n` procedural songs, deterministic in (seed, index).

    Args:
        n: number of tracks.
        seconds: duration of each.
        seed: which corpus (e.g. one seed for training, another for evaluation).
        sr: sample rate.
        cache: read and write the on-disk cache.
        progress: show a tqdm bar.

    Returns:
        list of n (round(seconds * sr),) float32 arrays.

    Notebook: 00_overview.ipynb
    """
    return [synth_track(i, seconds, seed, sr, cache) for i in tqdm(range(n), desc="synth", disable=not progress)]
