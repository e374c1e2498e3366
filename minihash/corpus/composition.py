"""The composition of a procedural song: modes, progressions, motifs, variations and drum bars.

A song is a form of labelled sections (ABAB, AABAB...); each label owns a chord
progression, a phrase of one-bar motifs (a motif, its variation, a cadence) and drum
patterns. A repeat of a section is played again with variation: ornaments, changed
pitches, drum fills, as in real songs, so a window recurs inside its own track.
Everything here is symbolic (steps and scale degrees); `music` renders it to audio.
"""
from __future__ import annotations

import numpy as np

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


# ----------------------------------------------------------------------------
# motifs, variations, ornaments, drum bars and sections


def motif(rng: np.random.Generator, busy: float, steps: int = 16) -> list:
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


def vary(bar: list, rng: np.random.Generator) -> list:
    """The same rhythm with its last one to three pitches changed: repetition with variation."""
    out = list(bar)
    for i in range(max(0, len(out) - int(rng.integers(1, 4))), len(out)):
        s, d, deg = out[i]
        out[i] = (s, d, int(np.clip((deg or 0) + rng.choice([-2, -1, 1, 2]), -3, 9)))
    return out


def ornament(bar: list, rng: np.random.Generator, amount: float) -> list:
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


def drum_bar(S: dict, rng: np.random.Generator, fill: bool) -> dict:
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


def section(rng: np.random.Generator, nbars: int, busy: float, prog: tuple, drums: bool) -> dict:
    """The material of one section label: a progression, a phrase of motifs and drum patterns."""
    m1 = motif(rng, busy)
    m2, m3 = vary(m1, rng), motif(rng, busy)
    cad = [(0, 4, int(rng.choice([0, 2, 4]))), (4, 12, 0)]  # a long note closes the phrase
    forms = [[m1, m2, m1, cad], [m1, m3, m1, m2], [m1, m1, m3, cad]] if nbars == 4 else [[m1, cad], [m1, m2]]
    phrase = forms[rng.integers(len(forms))]
    return {"prog": prog, "phrase": phrase, "busy": busy, "seed": int(rng.integers(2**31)), "drums": drums,
            "kick": KICKS[rng.integers(len(KICKS))], "snare": SNARES[rng.integers(len(SNARES))],
            "hat": HATS[rng.integers(len(HATS))], "vel": rng.uniform(0.5, 1.0, 16)}

