"""`minihash bench-search`: every search method on one database, at 10k, 100k and 1M windows.

In data-flow order: `corpus` (the database: corpus windows fingerprinted once, cached in chunks),
`run` (the methods, the evaluation's queries, every operating point at every size), `report` (the
README's targets checked from the numbers, markdown, CSV, the trade-off plot). The comparison is
that of Singh, Demuynck and Arora (ICASSP 2023, arXiv 2211.11060) and FlowHash (TASLP 2024).
"""
from .corpus import CHUNK_TRACKS, corpus_embeddings, corpus_key, plan_chunks, windows_per_track
from .report import COLUMNS, check_targets, markdown_table, plot_tradeoff, write_report
from .run import METHODS, BenchConfig, make_queries, measure, parse_size, run_benchmark, size_label

__all__ = ["CHUNK_TRACKS", "COLUMNS", "METHODS", "BenchConfig", "check_targets", "corpus_embeddings", "corpus_key",
           "make_queries", "markdown_table", "measure", "parse_size", "plan_chunks", "plot_tradeoff",
           "run_benchmark", "size_label", "windows_per_track", "write_report"]
