"""The command line: `minihash demo / train / index / query / eval / eval-nomatch / bench-search`.

Every command is parsed and dispatched here, each a thin call into its module. The
contract of `index` and `query` (arguments and JSON output) is fixed by DESIGN.md, since tests,
benchmarks and users rely on it.
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from .audio import AudioFolder, decoded_path, load
from .bench.report import markdown_table
from .bench.report import write_report as write_bench_report
from .bench.run import METHODS as BENCH_METHODS
from .bench.run import BenchConfig, parse_size, run_benchmark
from .distort import CONDITIONS
from .errors import AudioError, MinihashError
from .evaluate.protocol import METHODS as EVAL_METHODS
from .evaluate.nomatch import eval_nomatch
from .evaluate.protocol import EvalConfig, grid
from .evaluate.report import overview_figure
from .evaluate.calibrate import PER_LENGTH, calibrate_index, calibration_summary
from .evaluate.run import load_folders, run_eval
from .modelfile import SHIPPED, load_model
from .recipe import train_from_args
from .search import METHODS as INDEX_METHODS
from .search import load_index
from .search.pipeline import index_audio, query_audio
from .search.store import read_manifest

try:  # optional: numpy's BLAS has its own thread pool, which `--threads` then limits too
    from threadpoolctl import threadpool_limits
except ImportError:
    threadpool_limits = None

# ----------------------------------------------------------------------------
# the commands' arguments


def _add_demo(sub):
    p = sub.add_parser("demo", help="the whole pipeline on the embedded corpus (no files, no downloads): a report")
    p.add_argument("--out", default="minihash-demo", help="report folder")
    p.add_argument("--model", default=None, help="model file (default: the shipped model)")
    p.add_argument("--queries", type=int, default=None, help="queries per length and condition (default 60)")
    p.add_argument("--seed", type=int, default=0)


def _add_train(sub):
    p = sub.add_parser("train", help="train a fingerprinting model (contrastive + OT-balanced hash codes)")
    p.add_argument("--preset", default="tiny", help="model preset: tiny, small, paper, nafp or nafp-small (the CNN baseline)")
    p.add_argument("--synth", type=int, default=200, help="procedural tracks of the embedded corpus to train on (0: none)")
    p.add_argument("--synth-seconds", type=float, default=30.0)
    p.add_argument("--music", nargs="*", default=[], help="folders of music to train on (recursive)")
    p.add_argument("--val-music", nargs="*", default=[], help="folders of held-out music for validation")
    p.add_argument("--noise", nargs="*", default=[], help="folders of noise recordings (default: the procedural noise bank)")
    p.add_argument("--speech", nargs="*", default=[], help="folders of speech, mixed into babble noise")
    p.add_argument("--rirs", nargs="*", default=[], help="folders of room impulse responses (default: synthetic rooms)")
    p.add_argument("--snr", type=float, nargs=2, default=[0.0, 20.0], metavar=("LOW", "HIGH"),
                   help="range of training SNRs in dB")
    p.add_argument("--band", type=float, default=0.0, metavar="P",
                   help="share of training pairs band-limited at random, as a phone records (e.g. 0.2; 0: none, "
                        "as the shipped model)")
    p.add_argument("--mels", type=int, default=None, metavar="N", help="mel bands of the front end (default: the preset's)")
    p.add_argument("--n-fft", type=int, default=None, metavar="N", help="FFT size of the front end (default: the preset's)")
    p.add_argument("--hash", choices=["ot", "sign", "none"], default="ot", help="hash loss: OT-balanced, plain sign (baseline), none")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers producing training pairs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ckpt", default=None, help="checkpoint file, resumed from if present (default: OUT.ckpt)")
    p.add_argument("-o", "--out", required=True, help="model file to write (.safetensors, with a .json beside it)")


def _add_index(sub):
    p = sub.add_parser("index", help="fingerprint every audio file under a folder and write an index")
    p.add_argument("refs", metavar="REFS_DIR", help="folder of reference audio (recursive); tracks are named by "
                                                    "their path relative to it")
    p.add_argument("-o", "--out", required=True, metavar="INDEX_DIR", help="index folder to write")
    p.add_argument("--model", default=None, help="model file (default: the shipped model)")
    p.add_argument("--method", choices=[m for m in INDEX_METHODS if m != "faiss"], default="hash")  # faiss: optional
    p.add_argument("--hop", type=float, default=0.1, help="seconds between fingerprinted windows")
    p.add_argument("--max-false", type=float, default=0.05,
                   help="share of queries of audio not in the index allowed to match (sets the thresholds; "
                        "`minihash query --max-false` changes it later)")
    p.add_argument("--negatives", nargs="+", default=[], metavar="DIR",
                   help="music NOT in the index, to calibrate on besides the collection itself")
    p.add_argument("--calibration", type=int, default=PER_LENGTH, metavar="N",
                   help="excerpts per query length to calibrate the no-match decision on")


def _add_query(sub):
    p = sub.add_parser("query", help="find where query recordings come from")
    p.add_argument("index", metavar="INDEX_DIR")
    p.add_argument("queries", nargs="+", metavar="QUERY_FILE")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--model", default=None, help="model file (default: the one recorded in the index)")
    p.add_argument("--hop", type=float, default=0.5, help="seconds between the query's windows")
    p.add_argument("--max-false", type=float, default=None,
                   help="share of queries of audio not in the index allowed to match (default: the index's)")


def _add_eval(sub):
    p = sub.add_parser("eval", help="the evaluation protocol: every method on the same distorted queries")
    p.add_argument("--refs", nargs="+", default=[], metavar="DIR",
                   help="reference audio (default: the embedded corpus)")
    p.add_argument("--synth", type=int, default=None, metavar="N", help="procedural database tracks when no --refs")
    p.add_argument("--synth-seconds", type=float, default=30.0)
    p.add_argument("--negatives", nargs="+", default=[], metavar="DIR",
                   help="held-out music (not in --refs) for negative queries")
    p.add_argument("--noise", nargs="+", default=[], metavar="DIR", help="noise recordings (their evaluation split)")
    p.add_argument("--speech", nargs="+", default=[], metavar="DIR", help="speech for babble (its evaluation split)")
    p.add_argument("--rirs", nargs="+", default=[], metavar="DIR", help="impulse responses not used in training "
                                                                        "(default: synthetic rooms)")
    p.add_argument("--model", default=None, help="model file (default: the shipped model)")
    p.add_argument("--sign-model", default=None, help="the same model trained with `--hash sign` (unbalanced codes)")
    p.add_argument("--nafp-model", default=None, help="a NAFP-style cnn model (`--preset nafp-small`)")
    p.add_argument("--methods", nargs="+", choices=EVAL_METHODS, default=None)
    p.add_argument("--lengths", nargs="+", type=float, default=None, help="query lengths, seconds")
    p.add_argument("--snrs", nargs="+", type=float, default=None, help="SNRs, dB (default 0 5 10 15 20)")
    p.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=None)
    p.add_argument("--queries", type=int, default=None,
                   help="queries per length and condition (and negatives per length)")
    p.add_argument("--quick", action="store_true", help="minutes: 1 and 3 s, clean / noise 0, 10 / noise+reverb 10, "
                                                        "100 queries, 100 tracks")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--out", default="minihash-eval", help="report folder")


def _add_eval_nomatch(sub):
    p = sub.add_parser("eval-nomatch", help="does no match hold? an index's false matches and true finds, and its "
                                            "decision scores compared by ROC curves")
    p.add_argument("index", metavar="INDEX_DIR")
    p.add_argument("--refs", required=True, metavar="DIR", help="the folder the index was built from")
    p.add_argument("--negatives", nargs="+", required=True, metavar="DIR", help="music that is NOT in the index")
    p.add_argument("--noise", nargs="+", default=[], metavar="DIR", help="noise recordings (their evaluation split)")
    p.add_argument("--speech", nargs="+", default=[], metavar="DIR", help="speech for babble (its evaluation split)")
    p.add_argument("--model", default=None, help="model file (default: the one recorded in the index)")
    p.add_argument("--lengths", nargs="+", type=float, default=[1.0, 2.0, 5.0], help="query lengths, seconds")
    p.add_argument("--snrs", nargs="+", type=float, default=[0.0], help="SNRs of the noisy cells, dB")
    p.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=["clean", "noise"])
    p.add_argument("--queries", type=int, default=200, help="excerpts per length, each heard in every cell "
                                                            "(as many of the negatives)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--out", default="minihash-nomatch", help="folder for nomatch.md and roc.png")


def _add_bench(sub):
    p = sub.add_parser("bench-search", help="search methods side by side: top-1 against DB share scored, latency, "
                                            "memory, bucket occupancy, at 10k/100k/1M windows")
    p.add_argument("--model", default=None, help="model file (default: the shipped model)")
    p.add_argument("--sign-model", default=None, help="a model trained with `minihash train --hash sign`, for the "
                                                      "unbalanced sign hash row (without it the row is skipped)")
    p.add_argument("--sizes", nargs="+", type=parse_size, default=None,
                   help="database sizes in windows (default 10k 100k 1M)")
    p.add_argument("--queries", type=int, default=None, help="number of queries (default 500)")
    p.add_argument("--query-seconds", type=float, default=5.0)
    p.add_argument("--snr", type=float, default=10.0, help="query SNR in dB (evaluation noise bank)")
    p.add_argument("--reverb", type=float, default=0.0, help="share of queries reverberated (evaluation rooms)")
    p.add_argument("--methods", nargs="+", choices=list(BENCH_METHODS), default=list(BENCH_METHODS))
    p.add_argument("--probes", type=int, nargs="+", default=[1, 4, 16, 64, 256], help="n_probes swept")
    p.add_argument("--lsh-tables", type=int, nargs="+", default=[1, 4, 16], help="LSH tables L swept")
    p.add_argument("--lsh-max-probes", type=int, default=1024, help="LSH points with L x n_probes above it are skipped")
    p.add_argument("--max-candidates", type=int, default=4096, help="candidates re-ranked per query window")
    p.add_argument("--faiss-kind", choices=["hnsw", "flat", "multihash"], default="hnsw")
    p.add_argument("--corpus-seed", type=int, default=1)
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="latency clock: wall, or the process's CPU time (for a busy shared machine; use --threads 1)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--out", default="minihash-bench", help="folder for bench-search.md/.csv/.png")
    p.add_argument("--quick", action="store_true", help="sizes 10k and 100k, 200 queries")
    p.add_argument("--no-progress", action="store_true")


# ----------------------------------------------------------------------------
# the commands: each a thin call into its module, and what it prints


def _command(name: str) -> str:
    """This process's command line, as `minihash NAME ...` (run as `minihash NAME ...`), for a report."""
    return shlex.join(["minihash", name, *sys.argv[2:]])


def _set_threads(n: int | None, blas: bool = False) -> None:
    if n:
        torch.set_num_threads(n)
        if blas and threadpool_limits is not None:  # oversubscribed BLAS threads slow a busy machine badly
            threadpool_limits(n)


def demo_command(args) -> int:
    """`minihash demo`: `minihash eval` with the demo preset: 200 procedural tracks, the shipped
    model, minihash / LSH / exhaustive / landmarks on 1 and 3 s queries; under 5 min on 2 cores."""
    t0 = time.perf_counter()
    n = {} if args.queries is None else {"n_queries": args.queries, "n_negatives": args.queries}
    cfg = EvalConfig.preset("demo", seed=args.seed, **n)
    print(f"minihash demo: {cfg.n_synth} procedural tracks of {cfg.synth_seconds:g} s as the database; "
          f"{cfg.n_queries} queries of {' and '.join(f'{L:g}' for L in cfg.lengths)} s per condition, "
          f"searched by {', '.join(cfg.methods)}")
    result = run_eval(cfg, args.out, model=args.model, command=_command("demo"))
    out = Path(args.out)
    fig, _, _ = overview_figure(load_model(args.model))  # one query, its match and the votes: the README picture
    fig.savefig(out / "overview.png", dpi=100)
    print(f"\nTop-1 % (right track, start within {cfg.tol_s:g} s):\n")
    print(result.table())
    mins, secs = divmod(time.perf_counter() - t0, 60)
    print(f"\ndone in {int(mins)} min {secs:.0f} s. The report is in {out}/: open {out / 'results.md'} "
          f"(plots: {out}/top1_vs_snr_*.png; one query, its match and the votes: {out}/overview.png).")
    print("Next: `make lab` and open notebooks/00_overview.ipynb to see how each step works.")
    return 0


def index_command(args) -> int:
    """`minihash index REFS_DIR -o INDEX_DIR`: stream the folder, fingerprint, calibrate, save."""
    model = load_model(args.model)
    folder = AudioFolder(args.refs, lazy=True)
    if not folder.files:
        raise SystemExit(f"minihash index: no audio files (wav, flac, ogg, opus, mp3) under {args.refs}")
    model_path = str(Path(args.model or SHIPPED).resolve())
    paths, held = dict(folder.files), {}

    def stream():  # each track once; calibration reads its excerpts back from the decode cache
        for name, x in folder.stream():
            yield name, x
            held[name] = load(paths[name], mmap=True) if decoded_path(paths[name]).is_file() else x

    t0 = time.perf_counter()
    index = index_audio(model, stream(), method=args.method, hop_s=args.hop, total=len(folder.files),
                        meta={"model_path": model_path, "refs": str(Path(args.refs).resolve())})
    index_s = time.perf_counter() - t0
    for name, reason in folder.errors:
        print(f"skipped {name}: {reason}", file=sys.stderr)
    for dup, orig in folder.duplicates:
        print(f"skipped {dup}: same content as {orig}", file=sys.stderr)
    extra = list(load_folders(args.negatives).values()) if args.negatives else []
    cal = calibrate_index(index, model, held, max_false=args.max_false, per_length=args.calibration, negatives=extra)
    index.save(args.out)
    st = index.stats()
    print(f"indexed {len(index.names)} tracks, {st['n_windows']} windows ({args.method}, "
          f"{st['bytes_per_window']:.0f} bytes/window) into {args.out} in {index_s:.0f} s; "
          f"{len(folder.errors)} unreadable and {len(folder.duplicates)} duplicate files skipped")
    print(calibration_summary(cal, index, index_s))
    return 0


def query_command(args) -> int:
    """`minihash query INDEX_DIR QUERY_FILE... [--json]`: load the index and model once, answer each file."""
    meta = read_manifest(args.index).get("meta", {})
    model = load_model(args.model or meta.get("model_path"))
    index = load_index(args.index, expect_model=model.model_id)
    if args.max_false is not None:
        try:
            index.set_max_false(args.max_false)
        except ValueError as e:
            raise SystemExit(f"minihash query: {args.index}: {e}") from None
    failed = 0
    for q in args.queries:
        try:
            m = query_audio(index, model, load(q), hop_s=args.hop)
        except AudioError as e:
            failed += 1
            if args.json:
                print(json.dumps({"query": q, "match": None, "offset_s": None, "score": None, "threshold": None,
                                  "time_ms": None, "error": e.reason}))
            else:
                print(f"{q}: error: {e.reason}", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps({"query": q, "match": m.track, "offset_s": round(m.offset_s, 3),
                              "score": round(m.score, 4),
                              "threshold": round(m.threshold, 4) if math.isfinite(m.threshold) else None,
                              "time_ms": round(m.time_ms, 2)}), flush=True)
        elif m.track is None:
            print(f"{q}: no match (best score {m.score:.3f} under the threshold {m.threshold:.3f}; "
                  f"{m.time_ms:.1f} ms)")
        else:
            print(f"{q}: {m.track} at {m.offset_s:.2f} s (score {m.score:.3f}, threshold {m.threshold:.3f}; "
                  f"{m.time_ms:.1f} ms)")
    return 1 if failed == len(args.queries) else 0


def eval_config(args) -> EvalConfig:
    """The EvalConfig a `minihash eval` command line asks for."""
    cfg = EvalConfig.preset("quick" if args.quick else "full", seed=args.seed, synth_seconds=args.synth_seconds)
    if args.snrs is not None or args.conditions is not None:
        cfg = replace(cfg, cells=grid(args.snrs or (0, 5, 10, 15, 20), args.conditions or CONDITIONS))
    over = {"methods": tuple(args.methods) if args.methods else None, "n_synth": args.synth,
            "lengths": tuple(args.lengths) if args.lengths else None, "n_queries": args.queries,
            "n_negatives": args.queries}
    return replace(cfg, **{k: v for k, v in over.items() if v is not None})


def eval_command(args) -> int:
    """`minihash eval`: the protocol on folders (or the embedded corpus); a report in --out."""
    _set_threads(args.threads)
    result = run_eval(eval_config(args), args.out, args.model, args.sign_model, args.nafp_model, args.refs,
                      args.negatives, args.noise, args.speech, args.rirs, command=_command("eval"))
    print(result.table())
    for n in result.notes:
        print(f"note: {n}")
    print(f"\nwrote {Path(args.out) / 'results.md'}, results.csv and plots in {result.info['elapsed_s']:.0f} s")
    return 0


def eval_nomatch_command(args) -> int:
    """`minihash eval-nomatch INDEX_DIR --refs DIR --negatives DIR...`: see its --help."""
    _set_threads(args.threads)
    cfg = EvalConfig(lengths=tuple(args.lengths), cells=grid(args.snrs, args.conditions), n_queries=args.queries,
                     seed=args.seed)
    try:
        md = eval_nomatch(args.index, args.refs, args.negatives, cfg, args.noise, args.speech, args.model, args.out,
                          _command("eval-nomatch"))
    except ValueError as e:
        raise SystemExit(f"minihash eval-nomatch: {e}") from None
    print(md)
    print(f"\nwrote {Path(args.out) / 'nomatch.md'} and {Path(args.out) / 'roc.png'}")
    return 0


def bench_config(args) -> BenchConfig:
    """The BenchConfig a `minihash bench-search` command line asks for."""
    cfg = BenchConfig.preset("quick" if args.quick else "full", query_s=args.query_seconds, snr_db=args.snr,
                             p_reverb=args.reverb, methods=tuple(args.methods), probes=tuple(args.probes),
                             lsh_tables=tuple(args.lsh_tables), lsh_max_probes=args.lsh_max_probes,
                             max_candidates=args.max_candidates,
                             faiss_kind=args.faiss_kind, clock=args.clock, corpus_seed=args.corpus_seed)
    if args.sizes:
        cfg = replace(cfg, sizes=tuple(args.sizes))
    if args.queries:
        cfg = replace(cfg, n_queries=args.queries)
    return cfg


def bench_command(args) -> int:
    """`minihash bench-search`: see `minihash bench-search --help`."""
    _set_threads(args.threads, blas=True)
    cfg = bench_config(args)
    model = load_model(args.model)
    sign_model = load_model(args.sign_model) if args.sign_model else None
    result = run_benchmark(model, cfg, sign_model, progress=not args.no_progress)
    rep = write_bench_report(result, args.out, _command("bench-search"))
    print(markdown_table([r for r in result["rows"] if r["default"]]))
    print("\n".join(f"{t['verdict']:4s} {t['target']}: {t['detail']}" for t in rep["targets"]))
    print(f"wrote {rep['md']}, {rep['csv']}, {rep['png']}")
    return 0


# ----------------------------------------------------------------------------
# parse and dispatch

COMMANDS = {"demo": (_add_demo, demo_command), "train": (_add_train, train_from_args),
            "index": (_add_index, index_command), "query": (_add_query, query_command),
            "eval": (_add_eval, eval_command), "eval-nomatch": (_add_eval_nomatch, eval_nomatch_command),
            "bench-search": (_add_bench, bench_command)}


def build_parser() -> argparse.ArgumentParser:
    """The `minihash` parser, one subcommand per entry of COMMANDS."""
    parser = argparse.ArgumentParser(prog="minihash", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.cmd][1](args)
    except MinihashError as e:
        print(f"minihash {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"minihash {args.cmd}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
