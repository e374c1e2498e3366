"""Data: the embedded procedural corpus and noise bank, real audio folders, training pairs.

A fingerprinter learns from pairs (clean window, distorted replica of the same
window) cut from music and degraded by the noise and rooms it will be heard
through (Chang et al. 2021, arXiv 2010.11910; Singh et al. 2023, arXiv
2211.11060). Real sets are large downloads (FMA, MUSAN, ESC-50: see
data/README.md), so minihash also ships a default that needs no files at all:

- `synth_tracks`: deterministic procedural songs: a tempo, a key and mode, chord
  progressions, a melody of repeated and varied motifs, a bass line, drums, and
  three kinds of timbre: additive, FM (Chowning 1973) and the Karplus-Strong
  plucked string (Karplus and Strong 1983). Sections repeat (verse, chorus,
  verse...), so, as in real songs, a window can recur inside its own track but
  not in another one (`cross_track_duplicates` measures the second part). A
  repeat is mostly played again, a near-duplicate: the same notes with new
  timing (a few ms per note), dynamics, ornaments, chord voicings, drum fills,
  parts entering or leaving and a brighter or duller mix. Sometimes (`LOOP_P`)
  an earlier take is pasted again, as a sequencer or a game engine does, with
  some of its bars played anew. So 15-30 % of 1 s windows recur sample for
  sample (`self_repeat_share`), as in game soundtracks, and a 5 s excerpt
  almost never does: a strict score (the right start) stays meaningful.
- `noise_bank`: procedural stand-ins for recorded noise: pink, brown, babble,
  traffic, rain, clicks, mains hum.
- `AudioFolder`: a folder of real audio, deduplicated by content, bad files reported.
- `PairDataset` / `make_loader`: endless batches of (clean, distorted) windows.
- `training_noise` / `load_rirs`: real noise and rooms for the distorter, with
  training and evaluation kept apart.

Notebook: 00_overview.ipynb, 02_distortions.ipynb
"""
from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import numpy as np
import scipy.fft
import torch
from scipy import signal

from .audio import MIN_SECONDS, SR, find_audio, load, segment
from .errors import AudioError
from .spectrogram import MelConfig, log_mel

GENERATOR_VERSION = 3  # bump whenever the synthesiser changes: old cache files are then ignored
PEAK = 0.9  # every procedural track and noise is peak-normalised to this
# a repeat is an earlier take pasted again this often (else played anew), each of its bars kept with KEEP_P (else
# played anew): 15-30 % of 1 s windows then recur sample for sample, a 5 s excerpt (nearly) never
LOOP_P, KEEP_P = 0.6, 0.5

# ----------------------------------------------------------------------------
# music theory: modes, progressions, drum patterns, song forms

SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10), "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10), "harmonic minor": (0, 2, 3, 5, 7, 8, 11),
}
# common progressions as 0-based scale degrees, read in the track's mode (I-V-vi-IV, vi-IV-I-V, ii-V-I...)
PROGRESSIONS = ((0, 4, 5, 3), (5, 3, 0, 4), (0, 5, 3, 4), (1, 4, 0, 0), (0, 3, 4, 3),
                (0, 6, 5, 6), (0, 3, 0, 4), (0, 5, 1, 4), (3, 4, 2, 5), (0, 2, 3, 4))
# drum hits as 16th-note steps of one bar
KICKS = ((0, 8), (0, 10), (0, 6, 8), (0, 7, 10), (0, 8, 11), (0, 3, 8, 10), (0, 4, 8, 12), (0, 6, 11))
SNARES = ((4, 12), (8,), (4, 12, 15), (4, 12, 14), (4, 10, 12), (4, 7, 12))
HATS = (tuple(range(0, 16, 2)), tuple(range(16)), (2, 6, 10, 14), (0, 4, 8, 12), (0, 2, 3, 6, 8, 10, 11, 14))
BASS_RHYTHMS = ((0,), (0, 8), (0, 4, 8, 12), tuple(range(0, 16, 2)), (0, 3, 6, 8, 11, 14), (0, 6, 10), (0, 3, 8, 12))
FORMS = ("ABAB", "AABAB", "ABABCB", "AABB", "ABACAB", "ABCABC", "AABAAB")


def _hz(midi):
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


# ----------------------------------------------------------------------------
# timbres: additive, FM, Karplus-Strong; one note at a time, cached per track


def _instrument(kind: str, rng: np.random.Generator, pad: bool = False) -> dict:
    """Random parameters of one timbre (its envelope, harmonic weights, FM ratio...)."""
    p = {"kind": kind, "a": rng.uniform(0.15, 0.6) if pad else rng.uniform(0.002, 0.03),
         "d": rng.uniform(0.05, 0.5), "s": rng.uniform(0.3, 0.9), "r": rng.uniform(0.03, 0.3),
         "seed": int(rng.integers(2**31)), "vib": rng.uniform(0.0, 0.012) * (rng.random() < 0.5),
         "vib_hz": rng.uniform(4.0, 7.0)}
    if kind == "additive":
        k = np.arange(1, 25)
        odd = np.where(k % 2 == 1, 1.0, rng.uniform(0.05, 1.0))  # clarinet-like when even harmonics are weak
        p.update(w=k ** -rng.uniform(0.5, 2.2) * odd * rng.uniform(0.3, 1.7, k.size),
                 phi=rng.uniform(0, 2 * np.pi, k.size), damp=rng.uniform(0.0, 4.0),
                 trem=rng.uniform(0.0, 0.3), trem_hz=rng.uniform(2.0, 7.0))
    elif kind == "fm":
        p.update(ratio=float(rng.choice([0.5, 1, 1, 2, 2, 3, 4, 1.5, 3.5, 1.41])),
                 index=rng.uniform(0.5, 5.0), tau=rng.uniform(0.05, 1.0))
    else:
        p.update(g=rng.uniform(0.985, 0.999), bright=rng.uniform(0.15, 0.9))
    return p


def _envelope(n: int, r: int, sr: int, a: float, d: float, s: float) -> np.ndarray:
    """Attack-decay-sustain over the `n` gate samples, then an exponential release over `r`."""
    t = np.arange(n) / sr
    gate = np.where(t < a, t / a, s + (1.0 - s) * np.exp(-(t - a) / d))
    last = gate[-1] if n else 0.0
    return np.concatenate([gate, last * np.exp(-np.arange(r) / max(r / 6.0, 1.0))])


def _note(p: dict, midi: int, n: int, sr: int) -> np.ndarray:
    """One note of `n` gate samples plus its release, peak 1."""
    f, r = float(_hz(midi)), int(p["r"] * sr)
    L = n + r
    t = np.arange(L) / sr
    # vibrato: the frequency wobbles by a fraction `vib` (up to 20 cents), fading in over 0.3 s
    wobble = np.minimum(t / 0.3, 1.0) * np.cos(2 * np.pi * p["vib_hz"] * t) / (2 * np.pi * p["vib_hz"])
    phase = 2 * np.pi * f * (t - p["vib"] * wobble)  # (L,)
    if p["kind"] == "additive":
        # sum_k w_k exp(-damp (k-1) t) sin(k phase + phi_k) = Im(z P(u)), z = e^{i phase}, u = e^{-damp t} z,
        # P(u) = sum_k w_k e^{i phi_k} u^(k-1) by Horner: K complex multiply-adds instead of K x L sines.
        # High harmonics die first (the damping), as in struck strings.
        K = max(1, min(24, int(0.45 * sr / f)))  # no harmonic above 0.45 sr: no aliasing
        z = np.exp(1j * phase)  # (L,)
        u = np.exp(-p["damp"] * t) * z
        c = p["w"][:K] * np.exp(1j * p["phi"][:K])  # (K,)
        acc = np.full(L, c[-1])
        for ck in c[-2::-1]:
            acc = acc * u + ck
        x = (z * acc).imag * (1.0 - p["trem"] * np.sin(2 * np.pi * p["trem_hz"] * t))
        env = _envelope(n, r, sr, p["a"], p["d"], p["s"])
    elif p["kind"] == "fm":
        fm = p["ratio"] * f
        index = min(p["index"], max(0.0, (0.45 * sr - f) / (2 * fm) - 1))  # Carson's rule keeps it below Nyquist
        x = np.sin(phase + index * np.exp(-t / p["tau"]) * np.sin(2 * np.pi * fm * t))
        env = _envelope(n, r, sr, p["a"], p["d"], p["s"])
    else:
        # Karplus-Strong: a noise burst circulates in a delay line of one period, averaged
        # (low-passed) on each pass; the averaging and a linear interpolation give the
        # fractional delay P = sr / f, so pitch is exact. As an IIR filter it runs in C.
        P = sr / f
        N = max(1, int(P - 0.5))
        fr = P - 0.5 - N
        a = np.zeros(N + 3)
        a[0] = 1.0
        a[N:] = -p["g"] * np.array([0.5 * (1 - fr), 0.5, 0.5 * fr])
        burst = np.random.default_rng([p["seed"], midi]).standard_normal(N)
        burst = signal.lfilter([p["bright"]], [1.0, p["bright"] - 1.0], burst)  # darker burst, duller string
        x = signal.lfilter([1.0], a, np.pad(burst, (0, L - N)))
        env = _envelope(n, r, sr, 0.001, 1.0, 1.0)
    x = x * env
    return x / (np.abs(x).max() + 1e-9)


def _drum_kit(rng: np.random.Generator, sr: int) -> dict:
    """A kick (pitched sweep), a snare (band-passed noise and a tone) and hats (high-passed noise)."""
    t = np.arange(int(0.4 * sr)) / sr
    f0, f1 = rng.uniform(90, 200), rng.uniform(40, 65)
    sweep = f1 + (f0 - f1) * np.exp(-t / rng.uniform(0.01, 0.05))
    kick = np.sin(2 * np.pi * np.cumsum(sweep) / sr) * np.exp(-t / rng.uniform(0.08, 0.3))
    kick[:40] += rng.uniform(0.1, 0.6) * rng.standard_normal(40) * np.exp(-np.arange(40) / 6.0)  # beater click
    lo = rng.uniform(500, 2000)
    b, a = signal.butter(2, [lo, min(lo * rng.uniform(1.5, 4.0), 0.475 * sr)], "bandpass", fs=sr)
    snare = signal.lfilter(b, a, rng.standard_normal(t.size)) * np.exp(-t / rng.uniform(0.05, 0.2))
    snare += rng.uniform(0.2, 1.0) * np.sin(2 * np.pi * rng.uniform(150, 280) * t) * np.exp(-t / rng.uniform(0.03, 0.1))
    b, a = signal.butter(2, rng.uniform(2000, 3500), "highpass", fs=sr)
    hiss = signal.lfilter(b, a, rng.standard_normal(t.size))
    hat = hiss * np.exp(-t / rng.uniform(0.01, 0.06))
    return {k: v / np.abs(v).max() for k, v in (("kick", kick), ("snare", snare), ("hat", hat))}


# ----------------------------------------------------------------------------
# composition: sections of chords, bass, melody and drums


def _motif(rng: np.random.Generator, busy: float, steps: int = 16) -> list:
    """One bar of melody: (step, duration in steps, scale degree above the chord root, or None: a rest)."""
    notes, pos, deg = [], 0, int(rng.choice([0, 2, 4]))
    durs, p = np.array([1, 2, 3, 4, 6, 8]), np.array([busy, 1.0, 0.4, 1.0 - 0.5 * busy, 0.3, 0.3])
    while pos < steps:
        dur = int(min(rng.choice(durs, p=p / p.sum()), steps - pos))
        if pos > 0 and rng.random() < 0.15:
            notes.append((pos, dur, None))
        else:
            notes.append((pos, dur, deg))
            deg = int(np.clip(deg + rng.choice([-3, -2, -1, -1, 0, 1, 1, 2, 3]), -3, 9))
        pos += dur
    return notes


def _vary(motif: list, rng: np.random.Generator) -> list:
    """The same rhythm with its last one to three pitches changed: repetition with variation."""
    out = list(motif)
    for i in range(max(0, len(out) - int(rng.integers(1, 4))), len(out)):
        s, d, deg = out[i]
        out[i] = (s, d, int(np.clip((deg or 0) + rng.choice([-2, -1, 1, 2]), -3, 9)))
    return out


def _ornament(bar: list, rng: np.random.Generator, amount: float) -> list:
    """A bar played again with ornaments: passing notes, grace notes, a neighbour pitch, each with prob `amount`."""
    out = []
    for s, d, deg in bar:
        r = rng.random() / amount
        if deg is None or r >= 1.0:
            out.append((s, d, deg))
        elif d >= 2 and r < 1 / 3:  # a passing note: the note's second half a step away
            out += [(s, d // 2, deg), (s + d // 2, d - d // 2, int(np.clip(deg + rng.choice([-1, 1]), -3, 9)))]
        elif d >= 2 and r < 2 / 3:  # a grace note: a 16th a step above, then the note
            out += [(s, 1, min(deg + 1, 9)), (s + 1, d - 1, deg)]
        else:
            out.append((s, d, int(np.clip(deg + rng.choice([-2, 2]), -3, 9))))
    return out


def _drum_bar(S: dict, rng: np.random.Generator, fill: bool) -> dict:
    """One bar of drums, {drum: {step: velocity}}: the section's pattern with a ghost note, an extra kick,
    a dropped or added hat here and there, and a snare roll over the last beat when `fill`."""
    bar = {name: {s: S["vel"][s] for s in S[name]} for name in ("kick", "snare", "hat")}
    if rng.random() < 0.3:
        bar["snare"].setdefault(int(rng.choice([3, 6, 7, 9, 11, 14])), 0.3)
    if rng.random() < 0.25:
        bar["kick"].setdefault(int(rng.choice([2, 3, 7, 10, 11, 14, 15])), 0.8)
    if rng.random() < 0.3:
        s = int(rng.integers(16))
        bar["hat"].pop(s) if s in bar["hat"] else bar["hat"].setdefault(s, 0.6)
    if fill:
        start = int(rng.choice([8, 12, 14]))
        bar["snare"].update({s: 0.5 + 0.5 * (s - start) / (16 - start) for s in range(start, 16)})
        bar["hat"] = {s: v for s, v in bar["hat"].items() if s < start}
    return bar


def _section(rng: np.random.Generator, nbars: int, busy: float, prog: tuple, drums: bool) -> dict:
    """The material of one section label: a progression, a phrase of motifs and drum patterns."""
    m1 = _motif(rng, busy)
    m2, m3 = _vary(m1, rng), _motif(rng, busy)
    cad = [(0, 4, int(rng.choice([0, 2, 4]))), (4, 12, 0)]  # a long note closes the phrase
    forms = [[m1, m2, m1, cad], [m1, m3, m1, m2], [m1, m1, m3, cad]] if nbars == 4 else [[m1, cad], [m1, m2]]
    phrase = forms[rng.integers(len(forms))]
    return {"prog": prog, "phrase": phrase, "busy": busy, "seed": int(rng.integers(2**31)), "drums": drums,
            "kick": KICKS[rng.integers(len(KICKS))], "snare": SNARES[rng.integers(len(SNARES))],
            "hat": HATS[rng.integers(len(HATS))], "vel": rng.uniform(0.5, 1.0, 16)}


def _song(rng: np.random.Generator, n_total: int, sr: int) -> np.ndarray:
    """Compose and render one track of `n_total` samples."""
    step = 60.0 / rng.uniform(70, 160) / 4  # one 16th note, in seconds
    nbars = 4 if 64 * step <= 8.5 else 2  # a section lasts 4 to 8.5 s
    sec_steps = 16 * nbars
    scale = SCALES[list(SCALES)[rng.integers(len(SCALES))]]
    tonic = int(rng.integers(0, 12))
    swing = float(rng.choice([0.0, 0.0, 0.1, 0.2, 0.33]))  # odd 16ths come late

    def midi(deg, base):  # scale degree (any integer) to a MIDI note above `base`
        return base + tonic + 12 * (deg // 7) + scale[deg % 7]

    kinds = ("additive", "fm", "pluck")
    lead, comp, bass = (_instrument(kinds[rng.integers(3)], rng) for _ in range(3))
    pad = _instrument("additive", rng, pad=True) if rng.random() < 0.5 else None
    kit = _drum_kit(rng, sr) if rng.random() < 0.9 else None
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
    labels = {"A": _section(rng, nbars, busy, first, drums_in_a),
              "B": _section(rng, nbars, min(1.0, busy + 0.3), others[0], kit is not None),
              "C": _section(rng, nbars, busy, others[1], kit is not None and rng.random() < 0.5)}
    form = FORMS[rng.integers(len(FORMS))]
    # the players: timing spread (ms, the drummer tighter), velocity spread (dB), how the mix drifts per repeat
    jitter = rng.uniform(2.0, 8.0) * sr / 1000, rng.uniform(1.0, 4.0) * sr / 1000  # samples
    vel_db, drift_db = rng.uniform(0.5, 2.0), rng.uniform(-1.5, 1.5)

    sec_len = sec_steps * step * sr  # samples, fractional
    tail = int(1.0 * sr)
    notes = {}  # (instrument, midi, samples) -> waveform: each distinct note is rendered once per track

    def render(label: str, perf: int, takes: tuple) -> np.ndarray:
        """Performance `perf` of a section (0: as written), bar b from its take `takes[b]` (0: the first)."""
        S = labels[label]
        buf = np.zeros(int(sec_len) + tail + 1)
        pr = np.random.default_rng([S["seed"], perf])  # what a performance changes throughout
        phrase = list(S["phrase"])
        ornate = 0.0
        if perf and label == "A":  # a verse comes back with a new melody (new words, in a song)
            phrase = [_motif(pr, S["busy"]) if pr.random() < 0.5 else _vary(m, pr) for m in phrase]
        elif perf:  # a chorus comes back ornamented
            ornate = pr.uniform(0.1, 0.4)
        inversion = int(pr.integers(3)) if perf else 0
        mix = {k: 10 ** ((pr.normal(0, 1.0) + drift_db * perf * (k == "lead")) / 20) for k in gain}
        mute = {"comp": perf and pr.random() < 0.15, "hat": perf and pr.random() < 0.2,
                "pad": pad is None or (label == "A" and (not perf or pr.random() < 0.7))}
        tilt = pr.uniform(-3, 3) if perf else 0.0  # dB of brightness, split at 1 kHz

        def put(x, s, g, sd, br):
            i = max(0, int(round((s + swing * (s % 2)) * step * sr + br.normal(0, sd))))
            j = min(i + x.size, buf.size)
            buf[i:j] += g * 10 ** (br.normal(0, vel_db) / 20) * x[: j - i]

        def play(name, p, m, s, d, br, vel=1.0):
            n = max(int(d * step * sr * legato), 16)
            key = (name, m, n)
            if key not in notes:
                notes[key] = _note(p, m, n, sr)
            put(notes[key], s, gain[name] * mix[name] * vel, jitter[0], br)

        def chord_at(s):  # the root degree of the chord sounding at step s
            return int(S["prog"][s * 4 // sec_steps])

        for b, bar in enumerate(phrase):
            last = b == nbars - 1
            br = np.random.default_rng([S["seed"], perf, b, takes[b]])  # the bar's timing, dynamics, variations
            if ornate:
                bar = _ornament(bar, br, ornate)
            if takes[b]:
                bar = _vary(bar, br)
            for s, d, deg in bar:
                if deg is not None:
                    deg += chord_at(16 * b + s)
                    play("lead", lead, midi(deg - 7 * (deg > 10), lead_base), 16 * b + s, d, br, 1.0 if s % 4 else 1.25)
            for i, s in enumerate(bass_hits):
                nxt = bass_hits[i + 1] if i + 1 < len(bass_hits) else 16
                root = chord_at(16 * b + s)
                deg = root + 4 if (i % 2 and busy > 0.5) else root  # the fifth on some off-beats
                play("bass", bass, midi(deg, bass_base), 16 * b + s, nxt - s, br)
            inv = int(br.integers(3)) if perf and br.random() < 0.25 else inversion
            for i, s in enumerate(() if mute["comp"] else comp_hits):
                root = chord_at(16 * b + s)
                tones = (root, root + 2, root + 4, root + 6) if sevenths else (root, root + 2, root + 4)
                tones = tones[inv:] + tuple(t + 7 for t in tones[:inv])  # an inversion: the lowest tones an octave up
                if comp_style == 3:  # arpeggio: one chord tone per 8th note
                    play("comp", comp, midi(tones[i % len(tones)], comp_base), 16 * b + s, 2, br)
                else:
                    for deg in tones:
                        play("comp", comp, midi(deg, comp_base), 16 * b + s, (16, 3, 2)[comp_style], br)
            if not mute["pad"]:
                for c in range(4 // nbars if nbars < 4 else 1):
                    s = 16 * b + c * sec_steps // 4
                    for deg in (chord_at(s), chord_at(s) + 2, chord_at(s) + 4):
                        play("pad", pad, midi(deg, comp_base + 12), s, sec_steps // 4, br)
            if S["drums"]:
                hits = _drum_bar(S, br, fill=last and (takes[b] > 0 or (perf > 0 and br.random() < 0.5)))
                for name, steps in hits.items():
                    for s, v in ({} if (name == "hat" and mute["hat"]) else steps).items():
                        put(kit[name], 16 * b + s, gain[name] * mix[name] * v, jitter[1], br)
        if tilt:
            bb, aa = signal.butter(1, 1000, fs=sr)
            lo = signal.lfilter(bb, aa, buf)
            g = 10 ** (tilt / 40)
            buf = lo / g + (buf - lo) * g
        return buf

    n_sec = int(np.ceil(n_total / sec_len))
    seq = (form * n_sec)[:n_sec]
    out = np.zeros(n_total + int(sec_len) + tail + 1)
    sections, played = {}, {}  # (label, perf, takes) -> audio; label -> the (perf, takes) played so far
    loud = {label: 10 ** (rng.uniform(-3, 3) / 20) for label in "ABC"}  # a chorus may be louder than the verse
    for k, label in enumerate(seq):
        before = played.setdefault(label, [])
        if before and rng.random() < LOOP_P:  # an earlier take pasted again, some bars played anew
            perf, takes = before[int(rng.integers(len(before)))]
            takes = tuple(t if rng.random() < KEEP_P else 1 + max(tk[b] for p, tk in before if p == perf)
                          for b, t in enumerate(takes))
        else:  # played again: same notes, new timing, dynamics, ornaments, voicings and drum variations
            perf, takes = len({p for p, _ in before}), (0,) * nbars
        before.append((perf, takes))
        if (label, perf, takes) not in sections:
            sections[label, perf, takes] = render(label, perf, takes)
        i = int(round(k * sec_len))
        out[i: i + sections[label, perf, takes].size] += loud[label] * sections[label, perf, takes]
    x = out[:n_total]

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
    return (PEAK * x / (np.abs(x).max() + 1e-12)).astype(np.float32)


# ----------------------------------------------------------------------------
# the corpus, cached on disk


def cache_dir() -> Path:
    """Where generated audio is cached: `$MINIHASH_CACHE`, default `~/.cache/minihash`."""
    return Path(os.environ.get("MINIHASH_CACHE", "~/.cache/minihash")).expanduser()


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
    """Write atomically (temp file + rename), so a crash or a parallel writer never leaves half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.save(f, x, allow_pickle=False)
        os.replace(tmp, path)
    except OSError:  # a read-only cache only costs time
        tmp.unlink(missing_ok=True)


def synth_track(index: int, seconds: float = 30.0, seed: int = 0, sr: int = SR, cache: bool = True) -> np.ndarray:
    """Track `index` of the procedural corpus `seed` (the same whatever the corpus size).

    Args:
        index: which track.
        seconds: its duration.
        seed: which corpus.
        sr: sample rate.
        cache: read and write the on-disk cache (see `cache_dir`).

    Returns:
        (round(seconds * sr),) float32, peak 0.9.

    Notebook: 00_overview.ipynb
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
    from tqdm.auto import tqdm

    return [synth_track(i, seconds, seed, sr, cache) for i in tqdm(range(n), desc="synth", disable=not progress)]


# ----------------------------------------------------------------------------
# noise: procedural stand-ins for recorded noise (MUSAN, ESC-50 in real use)

NOISE_KINDS = ("pink", "brown", "babble", "traffic", "rain", "clicks", "hum")
GLOTTIS = np.convolve([1.0, -0.95], [1.0, -0.85])  # two poles: the glottal pulse's -12 dB/octave
# formants F1-F3 (Hz) of the vowels of hod, head, heed, hawed, who'd, had (Peterson and Barney 1952, men)
VOWELS = ((730, 1090, 2440), (530, 1840, 2480), (270, 2290, 3010), (570, 840, 2410), (300, 870, 2240),
          (660, 1720, 2410))


def _colored(rng: np.random.Generator, n: int, sr: int, beta: float, f_lo: float = 20.0) -> np.ndarray:
    """Noise with power spectrum 1/f^beta above f_lo (flat below): beta=1 pink, beta=2 brown."""
    f = np.fft.rfftfreq(n, 1.0 / sr)
    X = np.fft.rfft(rng.standard_normal(n)) * np.maximum(f, f_lo) ** (-beta / 2)
    X[0] = 0.0
    return np.fft.irfft(X, n)


def _resonators(formants, sr: int) -> np.ndarray:
    """Denominator of a cascade of two-pole resonators, one per formant (bandwidths widen with frequency)."""
    a = np.ones(1)
    for F in formants:
        r = np.exp(-np.pi * (50.0 + 0.05 * F) / sr)
        a = np.convolve(a, [1.0, -2 * r * np.cos(2 * np.pi * F / sr), r * r])
    return a


def _babble(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """4-8 talkers: glottal pulse trains with gliding pitch through vowel formants, in syllables."""
    out = np.zeros(n + sr)
    for _ in range(rng.integers(4, 9)):
        f0, g = rng.uniform(85, 240), rng.uniform(0.5, 1.0)
        size = rng.uniform(0.9, 1.2)  # shorter vocal tracts, higher formants
        pos = int(rng.integers(0, sr // 2))
        while pos < n:
            if rng.random() < 0.12:  # a pause between phrases
                pos += int(rng.uniform(0.2, 0.7) * sr)
                continue
            L = int(rng.uniform(0.1, 0.3) * sr)
            pitch = f0 * np.linspace(*rng.uniform(0.85, 1.15, 2), L)  # (L,) intonation glides
            pulses = np.diff(np.floor(np.cumsum(pitch / sr)), prepend=0.0)  # one impulse per glottal period
            # the glottal pulse falls at -12 dB/oct (two poles), the lips give +6 back (a difference below)
            src = signal.lfilter([1.0], GLOTTIS, pulses) + 0.01 * rng.standard_normal(L)  # plus breath
            a = _resonators(np.array(VOWELS[rng.integers(len(VOWELS))]) * size, sr)
            y = np.diff(signal.lfilter([a.sum()], a, src), prepend=0.0)  # lip radiation: a first difference
            y *= np.sin(np.pi * np.arange(L) / L) ** 0.7  # the syllable's rise and fall (~4-5 Hz)
            out[pos: pos + L] += g * y / (np.abs(y).max() + 1e-9)
            pos += L + int(rng.uniform(0.0, 0.08) * sr)
    return out[:n]


def _traffic(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Low-passed brown rumble with slow swells, plus passing cars (noise and a Doppler-gliding engine)."""
    t = np.arange(n) / sr
    b, a = signal.butter(2, rng.uniform(150, 400), fs=sr)
    x = signal.lfilter(b, a, _colored(rng, n, sr, 2.0)) * (1 + 0.3 * np.sin(2 * np.pi * t / rng.uniform(5, 12)))
    x /= x.std()
    b, a = signal.butter(2, 900, fs=sr)
    hiss = signal.lfilter(b, a, rng.standard_normal(n))
    for tc in np.cumsum(rng.exponential(4.0, size=int(n / sr / 2) + 2)):
        w = rng.uniform(0.8, 3.0)
        env = np.exp(-0.5 * ((t - tc) / w) ** 2)
        fe = rng.uniform(30, 90) * (1 + 0.06 * np.tanh(-(t - tc) / w))  # higher approaching, lower leaving
        ph = 2 * np.pi * np.cumsum(fe) / sr
        x += rng.uniform(1, 3) * env * (hiss + 0.5 * np.sin(ph) + 0.3 * np.sin(2 * ph))
    return x


def _rain(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Dense random drops (heavy-tailed amplitudes, each a short decay) through a band-pass, on a hiss."""
    drops = (rng.random(n) < rng.uniform(0.2, 0.5)) * rng.lognormal(0.0, 1.0, n)
    drops = signal.lfilter([1.0], [1.0, -0.6], drops)
    hiss = rng.uniform(0.1, 0.4) * drops.std() * rng.standard_normal(n)
    b, a = signal.butter(2, [rng.uniform(400, 800), rng.uniform(2800, 3600)], "bandpass", fs=sr)
    return signal.lfilter(b, a, drops + hiss)


def _clicks(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Sparse clicks (a few per second, each a 2 ms ring) on a faint floor."""
    imp = (rng.random(n) < rng.uniform(2, 6) / sr) * rng.uniform(0.2, 1.0, n) * rng.choice([-1, 1], n)
    b, a = signal.butter(2, [rng.uniform(500, 1500), 3500], "bandpass", fs=sr)
    return signal.lfilter(b, a, imp) + 1e-3 * rng.standard_normal(n)


def _hum(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Mains hum: 50 or 60 Hz and its harmonics (odd ones strongest), plus a little noise."""
    t = np.arange(n) / sr
    f = float(rng.choice([50.0, 60.0]))
    x = np.zeros(n)
    for k in range(1, 12):
        x += (1.0 if k == 1 else rng.uniform(0.1, 0.6) / k ** (0.5 if k % 2 else 1.0)) * np.sin(
            2 * np.pi * k * f * t + rng.uniform(0, 2 * np.pi))
    return x * (1 + 0.05 * np.sin(2 * np.pi * 0.3 * t)) + 0.02 * rng.standard_normal(n)


def noise_bank(seconds: float = 20.0, seed: int = 0, sr: int = SR) -> dict[str, np.ndarray]:
    """Procedural noises, a stand-in for real recorded noise (MUSAN, ESC-50: data/README.md).

    Train on one seed and evaluate on another (`seed=0` for training, `seed=1` for
    evaluation), so the evaluation noise is never heard in training.

    Args:
        seconds: duration of each noise.
        seed: which bank.
        sr: sample rate.

    Returns:
        {kind: (round(seconds * sr),) float32, peak 0.9} for kind in `NOISE_KINDS`.

    Notebook: 02_distortions.ipynb
    """
    n = int(round(seconds * sr))
    makers = {"pink": lambda r: _colored(r, n, sr, 1.0), "brown": lambda r: _colored(r, n, sr, 2.0),
              "babble": lambda r: _babble(r, n, sr), "traffic": lambda r: _traffic(r, n, sr),
              "rain": lambda r: _rain(r, n, sr), "clicks": lambda r: _clicks(r, n, sr), "hum": lambda r: _hum(r, n, sr)}
    bank = {}
    for i, kind in enumerate(NOISE_KINDS):
        x = makers[kind](np.random.default_rng([0x6E6F, seed, i]))
        bank[kind] = (PEAK * x / (np.abs(x).max() + 1e-12)).astype(np.float32)
    return bank


# ----------------------------------------------------------------------------
# real audio: a folder, deduplicated, bad files skipped and reported


class AudioFolder:
    """Every audio file under a folder (recursive), loaded as mono 8 kHz float32.

    Order is deterministic (sorted relative paths). A file with the same bytes as
    an earlier one is listed once (`.duplicates` holds (duplicate, original)); a
    file that cannot be used is skipped (`.errors` holds (name, reason)).

    Args:
        path: a folder (or one file).
        sr: target sample rate.
        min_s: shortest duration accepted.
        progress: show a tqdm bar.

    Notebook: 00_overview.ipynb
    """

    def __init__(self, path, sr: int = SR, min_s: float = MIN_SECONDS, progress: bool = True, lazy: bool = False):
        self.root, self.sr, self.min_s, self.progress = Path(path), sr, min_s, progress
        self.names, self.tracks, self.errors, self.duplicates = [], [], [], []
        files = find_audio(self.root)  # raises AudioError when the folder does not exist
        self.files = sorted((p.relative_to(self.root).as_posix() if self.root.is_dir() else p.name, p) for p in files)
        if not lazy:
            for name, x in self.stream():
                self.names.append(name)
                self.tracks.append(x)

    def stream(self):
        """Yield (name, signal) one file at a time, so that a large folder is never held in memory;
        `.errors` and `.duplicates` fill up as it goes (a lazy folder is read here, not at creation)."""
        from tqdm.auto import tqdm

        self.errors.clear(), self.duplicates.clear()
        originals = {}  # sha1 of the bytes -> name of the first good file with them
        for name, p in tqdm(self.files, desc=f"loading {self.root.name}", unit="file", disable=not self.progress):
            try:
                digest = hashlib.sha1(p.read_bytes()).hexdigest()
            except OSError as e:
                self.errors.append((name, f"unreadable ({e.strerror or e})"))
                continue
            if digest in originals:
                self.duplicates.append((name, originals[digest]))
                continue
            try:
                x = load(p, self.sr, self.min_s)
            except AudioError as e:
                self.errors.append((name, e.reason))
                continue
            originals[digest] = name
            yield name, x

    def __len__(self) -> int:
        return len(self.tracks)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.tracks[i]

    @property
    def hours(self) -> float:
        return sum(x.size for x in self.tracks) / self.sr / 3600

    def summary(self) -> str:
        """Tracks, hours, duplicates and skipped files with their reasons, as text."""
        def count(k, what):
            return f"{k} {what}{'s' if k != 1 else ''}"

        lines = [f"{count(len(self), 'track')}, {self.hours:.2f} h ({self.hours * 60:.1f} min) from {self.root}"]
        if self.duplicates:
            lines.append(f"{count(len(self.duplicates), 'duplicate file')} listed once:")
            lines += [f"  {d} (same bytes as {o})" for d, o in self.duplicates]
        if self.errors:
            lines.append(f"{count(len(self.errors), 'file')} skipped:")
            lines += [f"  {name}: {reason}" for name, reason in self.errors]
        return "\n".join(lines)


# ----------------------------------------------------------------------------
# training pairs: (clean window, distorted replica), generated on the fly


class PairDataset(torch.utils.data.IterableDataset):
    """Endless batches of (clean, distorted) windows from random places in random tracks.

    A track is picked with probability proportional to its number of start
    positions (its length), the start is uniform over samples (not on a grid), and
    nearly silent windows are drawn again. The distorter (noise, reverb, time
    offset: `minihash.distort.Distorter`) is applied to the window, or to a crop
    `context_s` longer at the front so that reverb carries over from earlier audio.
    Each DataLoader worker draws its own stream, seeded by (seed, worker id).

    Args:
        tracks: sequence of (T,) float arrays (an `AudioFolder` or `synth_tracks(...)`).
        distorter: callable `(x (B, T) tensor, generator=torch.Generator) -> (B, T)`.
        win_s: window length in seconds.
        sr: sample rate.
        batch_size: B.
        seed: seed of the stream.
        min_rms: windows quieter than this (-60 dBFS) are resampled.
        context_s: extra audio before the window handed to the distorter.

    Yields:
        (clean (B, W), distorted (B, W)) float32 tensors, W = win_s * sr.

    Notebook: 02_distortions.ipynb
    """

    def __init__(self, tracks, distorter, win_s: float = 1.0, sr: int = SR, batch_size: int = 64, seed: int = 0,
                 min_rms: float = 1e-3, context_s: float = 0.0):
        super().__init__()
        self.distorter, self.batch_size, self.seed, self.min_rms = distorter, batch_size, seed, min_rms
        self.W, self.C = int(round(win_s * sr)), int(round(context_s * sr))
        L = self.W + self.C
        arrays = [np.asarray(x, dtype=np.float32).ravel() for x in tracks]
        arrays = [np.pad(x, (L - x.size, 0)) if x.size < L else x for x in arrays]
        if not arrays:
            raise ValueError("PairDataset needs at least one track")
        lengths = np.array([x.size for x in arrays])
        self.audio = torch.from_numpy(np.concatenate(arrays))  # (sum T,): one buffer, shared by forked workers
        self.offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        self.n_starts = lengths - L + 1
        self.p = self.n_starts / self.n_starts.sum()

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info is not None else 0])
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        while True:
            yield self.batch(rng, gen)

    def windows(self, rng: np.random.Generator, B: int) -> torch.Tensor:
        """B non-silent crops (context + window) at random continuous positions, drawn with `rng`."""
        L = self.W + self.C
        found, n = [], 0
        for _ in range(100):
            k = rng.choice(self.p.size, size=B, p=self.p)
            start = self.offsets[k] + (rng.random(B) * self.n_starts[k]).astype(np.int64)
            crops = self.audio[torch.from_numpy(start)[:, None] + torch.arange(L)]  # (B, L)
            crops = crops[crops[:, self.C:].pow(2).mean(1).sqrt() >= self.min_rms]
            found.append(crops)
            n += crops.shape[0]
            if n >= B:
                return torch.cat(found)[:B]  # (B, L)
        raise RuntimeError(f"no window louder than {self.min_rms} RMS found: are the tracks silent?")

    def batch(self, rng: np.random.Generator, gen: torch.Generator):
        """One batch drawn with `rng` (positions) and `gen` (the distorter's randomness)."""
        crops = self.windows(rng, self.batch_size)  # (B, C + W)
        distorted = self.distorter(crops, generator=gen)[:, self.C:]  # (B, W)
        return crops[:, self.C:].contiguous(), distorted.float().contiguous()


def make_loader(tracks, distorter, batch_size: int, num_workers: int = 0, seed: int = 0, **kw):
    """A DataLoader over `PairDataset` (which batches itself, hence batch_size=None).

    Args:
        tracks, distorter, batch_size, seed: as `PairDataset`; **kw: its other arguments.
        num_workers: worker processes generating batches in parallel.

    Returns:
        torch DataLoader yielding (clean (B, W), distorted (B, W)) forever.

    Notebook: 02_distortions.ipynb
    """
    ds = PairDataset(tracks, distorter, batch_size=batch_size, seed=seed, **kw)
    return torch.utils.data.DataLoader(ds, batch_size=None, num_workers=num_workers,
                                       persistent_workers=num_workers > 0)


def random_windows(tracks, n: int, win_s: float = 1.0, sr: int = SR, seed: int = 0) -> torch.Tensor:
    """A fixed set of clean windows at random continuous positions (for validation), as `PairDataset` draws them.

    Args:
        tracks: sequence of (T,) arrays.
        n: number of windows.
        win_s, sr: window length and sample rate.
        seed: which set.

    Returns:
        (n, W) float32 tensor.
    """
    return PairDataset(tracks, None, win_s, sr, batch_size=n, seed=seed).windows(np.random.default_rng([seed]), n)


# ----------------------------------------------------------------------------
# real noise and rooms for the distorter, kept apart between training and evaluation


def _in_split(name: str, split: str) -> bool:
    """One file in five (by a hash of its name, so stable as a folder grows) is for evaluation."""
    return (int(hashlib.sha1(name.encode()).hexdigest(), 16) % 5 == 0) == (split == "eval")


def training_noise(noise_dirs=(), speech_dirs=(), split: str = "train", seconds: float = 20.0,
                   sr: int = SR) -> list[np.ndarray]:
    """Noise for `distort.Distorter`: recordings from folders, else the procedural bank.

    Files are split by a hash of their relative path: four in five for "train", one
    in five for "eval", so evaluation noise is never heard in training (a folder too
    small to give its split any file falls back on the procedural bank of that split).
    Speech files are summed 4 to 8 at a time into babble.

    Args:
        noise_dirs: folders of noise recordings (none: `noise_bank(seed=0 or 1)`).
        speech_dirs: folders of speech, for babble.
        split: "train" or "eval".
        seconds: length of the procedural noises and of each babble mix.
        sr: sample rate.

    Returns:
        list of (T,) float32 arrays.

    Notebook: 02_distortions.ipynb
    """
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    folders = [AudioFolder(d, sr, progress=False) for d in noise_dirs]
    noise = [x for f in folders for name, x in zip(f.names, f.tracks) if _in_split(name, split)]
    if not noise:
        noise = list(noise_bank(seconds, seed=0 if split == "train" else 1, sr=sr).values())
    folders = [AudioFolder(d, sr, progress=False) for d in speech_dirs]
    speech = [x for f in folders for name, x in zip(f.names, f.tracks) if _in_split(name, split)]
    rng, n = np.random.default_rng([0x6261, split == "eval"]), int(round(seconds * sr))
    for _ in range(max(1, len(speech) // 4) if speech else 0):
        mix = np.zeros(n)
        for i in rng.choice(len(speech), size=int(rng.integers(4, 9))):
            talker = np.resize(speech[i], n + speech[i].size)  # looped to length, then a random start
            start = int(rng.integers(speech[i].size))
            mix += talker[start:start + n] / (np.sqrt(np.mean(speech[i] ** 2)) + 1e-9)
        noise.append((PEAK * mix / (np.abs(mix).max() + 1e-12)).astype(np.float32))
    return noise


def load_rirs(rir_dirs, sr: int = SR) -> list[np.ndarray]:
    """Room impulse responses from folders (any length from 5 ms), for `distort.Distorter`.

    Args:
        rir_dirs: folders (or one folder) of impulse responses, one per file.
        sr: sample rate.

    Returns:
        list of (L,) float32 arrays.

    Raises:
        AudioError: no usable impulse response in the folders.
    """
    rir_dirs = [rir_dirs] if isinstance(rir_dirs, (str, Path)) else list(rir_dirs)
    rirs = [x for d in rir_dirs for x in AudioFolder(d, sr, min_s=0.005, progress=False).tracks]
    if not rirs:
        raise AudioError(", ".join(map(str, rir_dirs)), "no usable impulse response found")
    return rirs


# ----------------------------------------------------------------------------
# how unique is a corpus? near-duplicate windows across tracks


def window_features(x, sr: int = SR, win_s: float = 1.0, hop_s: float = 0.5) -> torch.Tensor:
    """Flattened log-mel of each window, z-normalised to unit length: dot products are Pearson r.

    Args:
        x: (T,) samples.
        sr, win_s, hop_s: the windowing (only whole windows are kept).

    Returns:
        (N, n_mels * frames) float32.
    """
    w, _ = segment(np.asarray(x, dtype=np.float32), sr, win_s, hop_s, pad=False)  # (N, W)
    if len(w) == 0:
        return torch.zeros(0, 0)
    F = log_mel(torch.from_numpy(w), MelConfig(sr=sr)).flatten(1)  # (N, n_mels * frames)
    F = F - F.mean(1, keepdim=True)
    return F / F.norm(dim=1, keepdim=True).clamp_min(1e-12)


def cross_track_duplicates(tracks, sr: int = SR, threshold: float = 0.95, win_s: float = 1.0, hop_s: float = 0.5,
                           block: int = 2048) -> float:
    """Share of windows whose best match in ANOTHER track has Pearson r above `threshold`.

    Repeats inside a track are expected (choruses); across tracks they mean the
    corpus has copies, which would make retrieval look harder (or easier) than it is.
    Exact: every pair of windows, by blocks of a matrix product, each block pair once.

    Args:
        tracks: sequence of (T,) arrays.
        sr, win_s, hop_s: windowing (1 s windows, 0.5 s hop by default).
        threshold: Pearson correlation of z-normalised log-mel above which two windows are duplicates.
        block: rows per block (memory is block**2 floats).

    Returns:
        the share in [0, 1].

    Notebook: 00_overview.ipynb
    """
    feats = [window_features(x, sr, win_s, hop_s) for x in tracks]
    owner = torch.cat([torch.full((len(f),), i) for i, f in enumerate(feats)])  # (M,)
    F = torch.cat([f for f in feats if len(f)])  # (M, D)
    best = torch.full((len(F),), -2.0)
    with torch.no_grad():
        for i in range(0, len(F), block):
            for j in range(i, len(F), block):
                S = F[i:i + block] @ F[j:j + block].T  # (b, b') Pearson r
                S[owner[i:i + block, None] == owner[None, j:j + block]] = -2.0  # same track: not a duplicate
                best[i:i + block] = torch.maximum(best[i:i + block], S.amax(1))
                best[j:j + block] = torch.maximum(best[j:j + block], S.amax(0))
    return float((best > threshold).float().mean()) if len(F) else 0.0


def self_repeat_share(tracks, sr: int = SR, threshold: float = 0.9, min_gap_s: float = 2.0, win_s: float = 1.0,
                      hop_s: float = 0.5) -> float:
    """Share of windows whose waveform recurs elsewhere in their OWN track (normalised cross-correlation).

    The repeat-aware score of the evaluation protocol forgives a start time where
    the excerpt recurs (NCC >= 0.9); this says how often that can happen. In game
    soundtracks 15-30 % of excerpts recur in their own track. Each window is
    correlated with every position of its track at once, by FFT, and divided by
    the sliding norm of the track; positions closer than `min_gap_s` (the window
    overlapping itself) do not count. Near-silent windows (RMS < 1e-3) are left out.

    Args:
        tracks: sequence of (T,) arrays.
        sr, win_s, hop_s: windowing (1 s windows, 0.5 s hop by default; only whole windows).
        threshold: NCC <w, x[l:l+W]> / (|w| |x[l:l+W]|) at or above which a window recurs.
        min_gap_s: the least distance between a window and its repeat.

    Returns:
        the share in [0, 1].

    Notebook: 00_overview.ipynb
    """
    W, H, G = int(round(win_s * sr)), int(round(hop_s * sr)), int(round(min_gap_s * sr))
    found = total = 0
    for x in tracks:
        x = np.asarray(x, dtype=np.float32).ravel()
        if x.size < W:
            continue
        L = x.size - W + 1  # lags
        n = scipy.fft.next_fast_len(x.size + W)
        X = scipy.fft.rfft(x, n)
        e = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
        quiet = 1e-3 * np.sqrt(W)  # the norm of a window at -60 dBFS RMS
        norm = np.sqrt(np.maximum(e[W:] - e[:-W], quiet ** 2))  # (L,) |x[l:l+W]|, silence floored: no 0/0
        for block in np.array_split(np.arange(0, L, H), max(1, L // (16 * H))):  # 16 windows at a time
            w = x[block[:, None] + np.arange(W)]  # (b, W)
            wn = np.linalg.norm(w, axis=1)  # (b,)
            C = scipy.fft.irfft(X * np.conj(scipy.fft.rfft(w, n, axis=1)), n, axis=1)[:, :L]  # (b, L) <w, x[l:l+W]>
            ncc = C / (np.maximum(wn, quiet)[:, None] * norm[None, :])
            ncc[np.abs(np.arange(L)[None, :] - block[:, None]) < G] = -1.0  # itself and its neighbours
            loud = wn >= quiet
            found += int(((ncc.max(1) >= threshold) & loud).sum())
            total += int(loud.sum())
    return found / total if total else 0.0
