"""The embedded corpus: procedural songs and noises that need no download.

A fingerprinter learns from music degraded by the noise and rooms it will be heard
through (Chang et al. 2021, arXiv 2010.11910; Singh et al. 2023, arXiv 2211.11060).
Real sets are large downloads (FMA, MUSAN, ESC-50: see data/README.md), so minihash
ships a default that needs no files at all, deterministic in its seed:

- `music`: procedural songs (`synth_track`, `synth_tracks`), cached on disk;
  `composition` and `timbres` are their score and their instruments.
- `noise`: procedural noises (`noise_bank`): pink, brown, babble, traffic, rain, clicks, hum.
- `repeats`: how often music repeats itself, across tracks and inside one.

Notebook: 00_overview.ipynb
"""
from .music import synth_track, synth_tracks
from .noise import noise_bank

__all__ = ["noise_bank", "synth_track", "synth_tracks"]
