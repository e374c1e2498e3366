"""Landmark fingerprints: pairs of spectrogram peaks, hashed, voted by time offset.

The classic baseline the learned fingerprints are measured against. Wang (2003,
"An Industrial-Strength Audio Search Algorithm", the Shazam paper) keeps only
the strongest points of the spectrogram (a "constellation"), pairs each anchor
peak with the first few peaks of a target zone just after it, and hashes each
pair as (f1, f2 - f1, dt). A recording that matches shares many hashes with the
query, all at one time offset: search is a histogram of db_t - q_t per track.
We follow Dan Ellis's audfprint (github.com/dpwe/audfprint): its peak picker (a
Gaussian masking threshold spread in frequency and decaying over time, a forward
then a backward pruning pass), its pairing, its 20-bit hash (8 bits f1, 6 df,
6 dt), its +-1 frame tolerance and its sub-hop query shifts.

Adapted to 8 kHz and to short queries (1-5 s), each change measured on the
procedural corpus (`minihash.corpus.synth_tracks`), `preset("audfprint")` being
the original:
- n_fft 512 and hop 256 as audfprint, here 64 ms / 32 ms with 15.6 Hz bins:
  256 bins still fit 8 bits, dt <= 63 frames spans 2 s, |df| <= 31 bins 480 Hz.
  Constants audfprint gives per frame (mask decay, high-pass pole) are rescaled
  through seconds.
- the masking threshold lives in log magnitude and falls `decay_db` dB per
  second. audfprint multiplies the mean-removed log magnitude down, so the
  peaks of an excerpt depend on the excerpt's mean: 80 % of a 5 s query's
  hashes were found at the right place in its track (even on the frame grid),
  97 % now, all of them half a second away from the excerpt's edges.
- audfprint's onset emphasis (a high-pass along time) is off by default: its
  long memory makes the peaks of a 5 s excerpt differ from those of the same
  audio inside the track, and it keeps few peaks in noise (5 s queries at 0 dB
  SNR: top-1 0.43 with it, 0.72 without).
- queries are fingerprinted at 8 sub-hop delays (audfprint --shifts) and every
  hit of every copy votes for where the query starts, in samples: the score of
  a place is the same whatever its phase against the 32 ms frame grid, so a
  place that merely repeats most of the query (a chorus) no longer wins by a
  luckier phase, and the start is found to a few samples.
- a match needs `min_ratio` times the score of the best other track as well as
  `min_count` aligned hashes (see `LandmarkIndex.search`).

The modules: `fingerprint` (the parameters, peaks, pairs and hashes of a signal) and `inverted`
(the index of many signals' hashes, and search).

Notebook: 03_landmarks.ipynb
"""
from .fingerprint import (LandmarkConfig, find_peaks, hashes, landmarks, pack, shifted_hashes, spectrogram,
                          unpack)
from .inverted import LandmarkIndex

__all__ = ["LandmarkConfig", "LandmarkIndex", "find_peaks", "hashes", "landmarks", "pack", "shifted_hashes",
           "spectrogram", "unpack"]
