"""The evaluation protocol: the same distorted excerpts, searched by every method side by side.

The protocol of the Neural Audio Fingerprint (Chang et al., ICASSP 2021, arXiv 2010.11910) as
Singh et al. use it (ICASSP 2023, arXiv 2211.11060; FlowHash, TASLP 2024), in data-flow order:
`protocol` (what is measured, the queries, how each is heard, the hit rule), `calibrate` (the
no-match decision, leave-one-track-out on the database itself, as `minihash index` does), `run`
(index every method, calibrate, ask the queries: `run_eval` is `minihash eval` and `minihash
demo`), `report` (tables, markdown, CSV, plots). The names notebooks use are exposed here.

Notebook: 09_benchmark.ipynb
"""
from ..corpus.repeats import ncc, repeat_starts
from .calibrate import calibrate_index, own_excerpts
from .protocol import (CAL_SEED, DB_SEED, METHODS, NEG_SEED, ROOM_SEED, SYSTEMS, EvalConfig, Query, cell_label,
                       draw_queries, eval_rooms, grid, render, score)
from .report import LIKENESS_BINS, EvalResult, machine_info, overview_figure, plot_top1_vs_snr, write_report
from .run import build_systems, evaluate, load_folders, negative_set, run_eval

__all__ = ["CAL_SEED", "DB_SEED", "LIKENESS_BINS", "METHODS", "NEG_SEED", "ROOM_SEED", "SYSTEMS", "EvalConfig",
           "EvalResult", "Query",
           "build_systems", "calibrate_index", "cell_label", "draw_queries",
           "eval_rooms", "evaluate", "grid", "load_folders", "machine_info", "ncc", "negative_set",
           "overview_figure", "own_excerpts", "plot_top1_vs_snr", "render", "repeat_starts", "run_eval", "score", "write_report"]
