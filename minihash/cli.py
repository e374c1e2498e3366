"""The command line: `minihash demo / train / index / query / eval / bench-search`.

Each subcommand is a thin layer over the modules; the contract of `index` and
`query` (arguments and JSON output) is fixed by DESIGN.md, since tests,
benchmarks and users rely on it.
"""
from __future__ import annotations

import argparse
import sys

from .errors import MinihashError


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
    p.add_argument("--method", choices=["hash", "lsh", "exhaustive"], default="hash")
    p.add_argument("--hop", type=float, default=0.1, help="seconds between fingerprinted windows")
    p.add_argument("--max-false", type=float, default=0.05,
                   help="share of queries of audio not in the index allowed to match (sets the thresholds)")
    p.add_argument("--negatives", nargs="+", default=[], metavar="DIR",
                   help="music NOT in the index (the threshold calibrates on it besides procedural tracks)")


def _add_query(sub):
    p = sub.add_parser("query", help="find where query recordings come from")
    p.add_argument("index", metavar="INDEX_DIR")
    p.add_argument("queries", nargs="+", metavar="QUERY_FILE")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--model", default=None, help="model file (default: the one recorded in the index)")
    p.add_argument("--hop", type=float, default=0.5, help="seconds between the query's windows")


def index_command(args) -> int:
    """`minihash index REFS_DIR -o INDEX_DIR`: stream the folder, fingerprint, calibrate, save."""
    from pathlib import Path

    from .data import AudioFolder
    from .encoder import SHIPPED, load_model
    from .index import calibrate_on_negatives, index_audio

    model = load_model(args.model)
    folder = AudioFolder(args.refs, lazy=True)
    if not folder.files:
        raise SystemExit(f"minihash index: no audio files (wav, flac, ogg, opus, mp3) under {args.refs}")
    model_path = str(Path(args.model or SHIPPED).resolve())
    index = index_audio(model, folder.stream(), method=args.method, hop_s=args.hop, total=len(folder.files),
                        meta={"model_path": model_path, "refs": str(Path(args.refs).resolve())})
    for name, reason in folder.errors:
        print(f"skipped {name}: {reason}", file=sys.stderr)
    for dup, orig in folder.duplicates:
        print(f"skipped {dup}: same content as {orig}", file=sys.stderr)
    calibrate_on_negatives(index, model, calibration_negatives(args.negatives), max_false=args.max_false)
    index.save(args.out)
    st = index.stats()
    thr = ", ".join(f"{n} windows {t:.3f}" for n, t in sorted(index.thresholds.items()))
    print(f"indexed {len(index.names)} tracks, {st['n_windows']} windows ({args.method}, "
          f"{st['bytes_per_window']:.0f} bytes/window) into {args.out}; thresholds by query length: {thr}; "
          f"{len(folder.errors)} unreadable and {len(folder.duplicates)} duplicate files skipped")
    return 0


def calibration_negatives(folders=(), per_length: int = 50, seed: int = 0):
    """Queries of audio that is in no index, as `minihash eval` calibrates on: 1, 2, 3 and 5 s excerpts
    of procedural tracks of a seed kept for this (and of the files under `folders`: music the
    user's index does not hold), clean, in noise at 0-20 dB, in rooms, in rooms and noise. They set
    the no-match thresholds, one per query length."""
    from .data import synth_tracks, training_noise
    from .evaluate import CAL_SEED, EvalConfig, calibration_queries, eval_rooms, load_folders

    cfg = EvalConfig(n_calibration=per_length, seed=seed)
    tracks = synth_tracks(20, cfg.synth_seconds, seed=CAL_SEED) + list(load_folders(folders).values())
    return calibration_queries(tracks, cfg, training_noise(split="eval"), eval_rooms(cfg))


def query_command(args) -> int:
    """`minihash query INDEX_DIR QUERY_FILE... [--json]`: load the index and model once, answer each file."""
    import json

    from .audio import load
    from .encoder import load_model
    from .errors import AudioError
    from .index import load_index, query_audio, read_manifest

    meta = read_manifest(args.index).get("meta", {})
    model = load_model(args.model or meta.get("model_path"))
    index = load_index(args.index, expect_model=model.model_id)
    failed = 0
    for q in args.queries:
        try:
            m = query_audio(index, model, load(q), hop_s=args.hop)
        except AudioError as e:
            failed += 1
            if args.json:
                print(json.dumps({"query": q, "match": None, "offset_s": None, "score": None, "time_ms": None,
                                  "error": e.reason}))
            else:
                print(f"{q}: error: {e.reason}", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps({"query": q, "match": m.track, "offset_s": round(m.offset_s, 3),
                              "score": round(m.score, 4), "time_ms": round(m.time_ms, 2)}), flush=True)
        elif m.track is None:
            print(f"{q}: no match (best score {m.score:.3f} under the threshold {m.threshold:.3f}; "
                  f"{m.time_ms:.1f} ms)")
        else:
            print(f"{q}: {m.track} at {m.offset_s:.2f} s (score {m.score:.3f}, {m.time_ms:.1f} ms)")
    return 1 if failed == len(args.queries) else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="minihash", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    from . import benchmark, evaluate  # their parsers; heavy imports happen inside the commands

    evaluate.add_demo_parser(sub)
    _add_train(sub)
    _add_index(sub)
    _add_query(sub)
    evaluate.add_eval_parser(sub)
    benchmark.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        if args.cmd == "train":
            from .train import train_command

            return train_command(args)
        if args.cmd == "index":
            return index_command(args)
        if args.cmd == "query":
            return query_command(args)
        if args.cmd == "demo":
            return evaluate.demo_command(args)
        if args.cmd == "eval":
            return evaluate.eval_command(args)
        if args.cmd == "bench-search":
            return benchmark.command(args)
    except MinihashError as e:
        print(f"minihash {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"minihash {args.cmd}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
