"""What each `minihash` command does, once its arguments are parsed: a thin call into its module."""
from __future__ import annotations

import json
import math
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..audio import AudioFolder, decoded_path, load
from ..bench.report import markdown_table
from ..bench.report import write_report as write_bench_report
from ..bench.run import BenchConfig, run_benchmark
from ..bench.train_step import markdown as train_step_markdown
from ..bench.train_step import train_step_benchmark
from ..corpus import synth_tracks
from ..distort import CONDITIONS, DistortConfig
from ..errors import AudioError, FormatError, NothingToIndex
from ..evaluate.calibrate import calibrate_index, calibration_summary
from ..evaluate.nomatch import eval_nomatch
from ..evaluate.protocol import EvalConfig, grid
from ..evaluate.report import overview_figure
from ..evaluate.run import load_folders, run_eval
from ..files import shown
from ..modelfile import SHIPPED, load_model
from ..pairs import training_noise
from ..recipe import export_checkpoint, held_out_tracks, make_validation
from ..search import load_index
from ..search.pipeline import check_fits, index_audio, query_audio
from ..search.store import check_model, check_target
from ..train import checkpoint_record, plot_records, record_markdown

try:  # optional: numpy's BLAS has its own thread pool, which `--threads` then limits too
    from threadpoolctl import threadpool_limits
except ImportError:
    threadpool_limits = None



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
    """`minihash index REFS_DIR -o INDEX_DIR`: check the arguments, stream the folder, fingerprint,
    calibrate on the collection itself, save; every file or folder skipped is listed on stderr, with a
    count on stdout."""
    check_target(args.out)  # before any work: never refuse the index after fingerprinting a folder
    for d in args.negatives:
        if not Path(d).exists():
            raise AudioError(d, "no such folder (--negatives)")
    folder = AudioFolder(args.refs, lazy=True)  # raises AudioError when missing or unreadable
    model = load_model(args.model)
    model_path = str(Path(args.model or SHIPPED).resolve())
    paths, held = dict(folder.files), {}

    def stream():  # each track once; calibration reads its excerpts back from the decode cache
        for name, x in folder.stream():
            yield name, x
            held[name] = load(paths[name], mmap=True) if decoded_path(paths[name]).is_file() else x

    t0 = time.perf_counter()
    try:
        if not folder.files:
            raise AudioError(args.refs, "no audio files (wav, flac, ogg, opus, mp3) in it")
        index = index_audio(model, stream(), method=args.method, hop_s=args.hop, total=len(folder.files),
                            meta={"model_path": model_path, "refs": str(Path(args.refs).resolve())})
    except NothingToIndex:
        raise AudioError(args.refs, f"nothing to index: all {len(folder.files)} audio files in it were skipped "
                                    "(listed above)") from None
    finally:
        _list_skipped(folder.errors, folder.duplicates)
    index_s = time.perf_counter() - t0
    notes = []
    extra = list(load_folders(args.negatives, notes).values()) if args.negatives else []
    for line in notes:
        print(shown(line), file=sys.stderr)
    cal = calibrate_index(index, model, held, max_false=args.max_false, per_length=args.calibration, negatives=extra)
    try:
        index.save(args.out)
    except OSError as e:
        raise FormatError(args.out, f"cannot write the index ({e.strerror or e}): choose another -o") from None
    st = index.stats()
    print(f"indexed {len(index.names)} track{'s' if len(index.names) != 1 else ''}, {st['n_windows']} windows "
          f"({args.method}, {st['bytes_per_window']:.0f} bytes/window) into {shown(args.out)} in {index_s:.0f} s; "
          f"skipped {len(folder.errors)} unreadable files or folders, {len(folder.duplicates)} duplicate files and "
          f"{len(notes)} negatives (listed on stderr)")
    print(calibration_summary(cal, index, index_s))
    return 0


def _list_skipped(errors, duplicates) -> None:
    for name, reason in errors:
        print(shown(f"skipped {name}: {reason}"), file=sys.stderr)  # a reason may quote the name
    for dup, orig in duplicates:
        print(shown(f"skipped {dup}: same content as {orig}"), file=sys.stderr)


def _query_model(args, index):
    """The model to query with: --model, else the one recorded in the index, which must still be there."""
    path = args.model or index.meta.get("model_path")
    if args.model is None and path and not Path(path).is_file():
        raise FormatError(path, "the model this index was built with is not there any more: pass its new path "
                                "with --model MODEL_FILE")
    model = load_model(path)
    check_model(args.index, index.meta.get("model"), model.model_id)
    check_fits(index, model, args.index)
    return model


def query_command(args) -> int:
    """`minihash query INDEX_DIR QUERY_FILE... [--json]`: load the index and model once, answer each file."""
    index = load_index(args.index)
    model = _query_model(args, index)
    if args.max_false is not None:
        try:
            index.set_max_false(args.max_false)
        except ValueError as e:
            raise FormatError(args.index, str(e)) from None
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
                print(shown(f"{q}: error: {e.reason}"), file=sys.stderr)
            continue
        if args.json:
            print(json.dumps({"query": q, "match": m.track, "offset_s": round(m.offset_s, 3),
                              "score": round(m.score, 4),
                              "threshold": round(m.threshold, 4) if math.isfinite(m.threshold) else None,
                              "time_ms": round(m.time_ms, 2)}), flush=True)
        elif m.track is None:
            print(f"{shown(q)}: no match (best score {m.score:.3f} under the threshold {m.threshold:.3f}; "
                  f"{m.time_ms:.1f} ms)")
        else:
            print(f"{shown(q)}: {shown(m.track)} at {m.offset_s:.2f} s (score {m.score:.3f}, threshold "
                  f"{m.threshold:.3f}; {m.time_ms:.1f} ms)")
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
    print(f"\nwrote {Path(args.out) / 'results.md'}, results.csv, queries.csv and plots "
          f"in {result.info['elapsed_s']:.0f} s")
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


def bench_train_command(args) -> int:
    """`minihash bench-train`: see `minihash bench-train --help`."""
    _set_threads(args.threads)
    tracks = [t for d in args.music for t in AudioFolder(d).tracks] or synth_tracks(40, 30.0)
    rows = train_step_benchmark(tracks, training_noise(args.noise, (), split="train"), preset=args.preset,
                                batch=args.batch, steps=args.steps, compile=args.compile, bf16=args.bf16 or None)
    print(train_step_markdown(rows, torch.get_num_threads()))
    if not any("bf16" in r["variant"] for r in rows):
        print("bfloat16 rows left out: this CPU has no native bfloat16 (AVX512-BF16 or AMX); --bf16 measures them")
    return 0


def validate_command(args) -> int:
    """`minihash validate`: see `minihash validate --help`."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if not 0.0 <= args.band <= 1.0:
        raise SystemExit(f"minihash validate: --band is a share of windows, between 0 and 1, got {args.band}")
    models = [(m, load_model(None if m == "shipped" else m)) for m in args.models]  # all checked before the work
    val = [t for d in args.val_music for t in AudioFolder(d, mmap=True).tracks]
    validate = make_validation(val or held_out_tracks(), args.noise, args.speech,
                               DistortConfig(snr_db=tuple(args.snr), p_band=args.band), n=args.windows)
    print(f"{args.windows} windows of {', '.join(args.val_music) or 'procedural tracks'}; val_top1: distorted "
          f"as training does (SNR {args.snr[0]:g} to {args.snr[1]:g} dB, {args.band:g} band-limited); the others "
          f"at 0 dB; noise: the evaluation split of {', '.join(args.noise + args.speech) or 'the procedural bank'}\n")
    rows = []
    for name, model in tqdm(models, desc="validating", unit="model", disable=len(models) < 2):
        with torch.no_grad():
            rows.append((name, validate(model.eval())))
    keys = list(rows[0][1])
    print("| model | " + " | ".join(keys) + " |\n| --- |" + " --- |" * len(keys))
    for name, r in rows:
        print(f"| {name} | " + " | ".join(f"{r[k]:.4f}" for k in keys) + " |")
    return 0


def _labels(paths) -> list[str]:
    """The shortest tails of the paths (file name, then folder/file name, ...) that tell them apart."""
    parts = [Path(p).resolve().parts for p in paths]
    for k in range(1, max(map(len, parts)) + 1):
        labels = ["/".join(q[-k:]) for q in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [str(p) for p in paths]  # the same file twice


def checkpoint_command(args) -> int:
    """`minihash checkpoint`: see `minihash checkpoint --help`."""
    if args.export and len(args.ckpt) > 1:
        raise SystemExit(f"minihash checkpoint: --export writes the weights of one checkpoint, got {len(args.ckpt)}")
    records = {}
    for i, ckpt in enumerate(args.ckpt):
        records[ckpt] = checkpoint_record(ckpt)
        print(("\n" if i else "") + (f"## {ckpt}\n\n" if len(args.ckpt) > 1 else "")
              + record_markdown(records[ckpt], every=args.every))
    if args.plot:
        fig = plot_records(dict(zip(_labels(args.ckpt), records.values())))
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=110)
        print(f"\nwrote {args.plot}: the validations against steps and against hours of step time")
    if args.export:
        out = export_checkpoint(args.ckpt[0], args.export)
        print(f"\nwrote {out} and {out.with_suffix('.json').name}: the weights at the checkpoint's step")
    return 0
