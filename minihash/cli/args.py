"""The arguments of every `minihash` command, each checked as it is parsed, before any work."""
from __future__ import annotations

import argparse
import math

from ..bench.run import METHODS as BENCH_METHODS
from ..bench.run import parse_size
from ..distort import CONDITIONS
from ..evaluate.calibrate import PER_LENGTH
from ..evaluate.protocol import METHODS as EVAL_METHODS
from ..search import METHODS as INDEX_METHODS
from ..search.pipeline import MIN_HOP_S


def _number(ok, what: str):
    """An argparse type: a float for which `ok` holds, else an error saying it must be `what`."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = math.nan
        if not ok(v):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return v
    return parse


hop_seconds = _number(lambda v: math.isfinite(v) and v >= MIN_HOP_S, f"a number of seconds >= {MIN_HOP_S:g}")
share = _number(lambda v: 0.0 <= v < 1.0, "a share in [0, 1), e.g. 0.05")


def _positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return int(text)


def add_demo(sub):
    p = sub.add_parser("demo", help="the whole pipeline on the embedded corpus (no files, no downloads): a report")
    p.add_argument("--out", default="minihash-demo", help="report folder")
    p.add_argument("--model", default=None, help="model file (default: the shipped model)")
    p.add_argument("--queries", type=int, default=None, help="queries per length and condition (default 60)")
    p.add_argument("--seed", type=int, default=0)


def add_train(sub):
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
                   help="share of training pairs band-limited at random, as a phone records (e.g. 0.2, as the "
                        "shipped model; 0: none)")
    p.add_argument("--mels", type=int, default=None, metavar="N", help="mel bands of the front end (default: the preset's)")
    p.add_argument("--n-fft", type=int, default=None, metavar="N", help="FFT size of the front end (default: the preset's)")
    p.add_argument("--log", choices=["log", "db"], default=None,
                   help="log-mel compression: natural log, or dB floored 80 dB under each window's maximum "
                        "(default: the preset's)")
    p.add_argument("--stem", choices=["patch", "conv"], default=None,
                   help="tokens from full-band patches or from strided 3x3 convolutions (default: the preset's)")
    p.add_argument("--stem-freq", type=int, default=1, metavar="F",
                   help="the conv stem's first convolution strides 2F mel bands (e.g. 4 with --mels 256: as many "
                        "rows as 64 bands give)")
    p.add_argument("--stem-channels", type=int, default=None, metavar="C",
                   help="the conv stem's channels: C, 2C, 4C over its three convolutions (default: the preset's, 16)")
    p.add_argument("--masks", type=float, default=0.0, metavar="P",
                   help="share of distorted views given SpecAugment time/frequency masks and a cut-out (0: none)")
    p.add_argument("--hash", choices=["ot", "sign", "none"], default="ot", help="hash loss: OT-balanced, plain sign (baseline), none")
    p.add_argument("--tau", type=float, default=0.1,
                   help="NT-Xent temperature: lower weighs the hardest negatives more (NAFP: 0.05)")
    p.add_argument("--per-track", type=int, default=1, metavar="N",
                   help="windows per track in a batch: N > 1 makes other places of the same recording negatives, "
                        "so the embedding learns where in a track it is, not only which track")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--budget-min", type=float, default=None, metavar="MIN",
                   help="train for this many minutes of step time (CPU time per thread, every resumed run counted): "
                        "sets --steps from the measured step time, for comparisons at an equal budget")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="bf16 autocast for the network; auto: where the CPU has AVX512-BF16 or AMX")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers producing training pairs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ckpt", default=None, help="checkpoint file, resumed from if present (default: OUT.ckpt)")
    p.add_argument("-o", "--out", required=True, help="model file to write (.safetensors, with a .json beside it)")


def add_index(sub):
    p = sub.add_parser("index", help="fingerprint every audio file under a folder and write an index")
    p.add_argument("refs", metavar="REFS_DIR", help="folder of reference audio (recursive); tracks are named by "
                                                    "their path relative to it")
    p.add_argument("-o", "--out", required=True, metavar="INDEX_DIR", help="index folder to write")
    p.add_argument("--model", default=None, help="model file (default: the shipped model)")
    p.add_argument("--method", choices=[m for m in INDEX_METHODS if m != "faiss"], default="hash")  # faiss: optional
    p.add_argument("--hop", type=hop_seconds, default=0.1, help="seconds between fingerprinted windows")
    p.add_argument("--max-false", type=share, default=0.05,
                   help="share of queries of audio not in the index allowed to match (sets the thresholds; "
                        "`minihash query --max-false` changes it later)")
    p.add_argument("--negatives", nargs="+", default=[], metavar="DIR",
                   help="music NOT in the index, to calibrate on besides the collection itself")
    p.add_argument("--calibration", type=_positive_int, default=PER_LENGTH, metavar="N",
                   help="excerpts per query length to calibrate the no-match decision on")


def add_query(sub):
    p = sub.add_parser("query", help="find where query recordings come from")
    p.add_argument("index", metavar="INDEX_DIR")
    p.add_argument("queries", nargs="+", metavar="QUERY_FILE")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--model", default=None, help="model file (default: the one recorded in the index)")
    p.add_argument("--hop", type=hop_seconds, default=0.5, help="seconds between the query's windows")
    p.add_argument("--max-false", type=share, default=None,
                   help="share of queries of audio not in the index allowed to match (default: the index's)")


def add_eval(sub):
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


def add_eval_nomatch(sub):
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
    p.add_argument("--queries", type=_positive_int, default=200,
                   help="excerpts per length, each heard in every cell (as many of the negatives)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--out", default="minihash-nomatch", help="folder for nomatch.md and roc.png")


def add_bench(sub):
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


def add_bench_train(sub):
    p = sub.add_parser("bench-train", help="what a training step costs here: fp32/bf16, pair workers, stems")
    p.add_argument("--preset", default="small")
    p.add_argument("--music", nargs="*", default=[], help="folders of music (default: 40 procedural tracks)")
    p.add_argument("--noise", nargs="*", default=[], help="folders of noise (default: the procedural noise bank)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=10, help="steps measured per variant, after 3 warm-up steps")
    p.add_argument("--compile", action="store_true", help="also the network under torch.compile (minutes to compile)")
    p.add_argument("--bf16", action="store_true",
                   help="also the bfloat16 rows where the CPU lacks native bf16 (emulated there: about 10x slower)")
    p.add_argument("--threads", type=int, default=None)


def add_validate(sub):
    p = sub.add_parser("validate", help="the in-training validation of minihash train, for finished models: top-1 "
                                        "of held-out windows as training distorts them and at 0 dB (seconds, "
                                        "not the minutes of minihash eval)")
    p.add_argument("models", nargs="+", help="model files (.safetensors); 'shipped' for the shipped model")
    p.add_argument("--val-music", nargs="*", default=[],
                   help="folders of held-out music (default: 20 procedural tracks training never sees)")
    p.add_argument("--noise", nargs="*", default=[], help="folders of noise recordings, as given to minihash train "
                                                          "(their evaluation split is used)")
    p.add_argument("--speech", nargs="*", default=[], help="folders of speech, for babble, as given to minihash train")
    p.add_argument("--snr", type=float, nargs=2, default=[-5.0, 20.0], metavar=("LOW", "HIGH"),
                   help="SNR range of val_top1's windows (default: the shipped recipe's)")
    p.add_argument("--band", type=float, default=0.2, metavar="P",
                   help="share of val_top1's windows band-limited (default: the shipped recipe's)")
    p.add_argument("--windows", type=_positive_int, default=2000, help="held-out windows (minihash train: 2000)")
    p.add_argument("--threads", type=int, default=None)


def add_checkpoint(sub):
    p = sub.add_parser("checkpoint", help="the record of a training checkpoint: the runs that made it, step time, "
                                          "machine, validations")
    p.add_argument("ckpt", nargs="+", help="checkpoints written by minihash train (--ckpt, default OUT.ckpt)")
    p.add_argument("--every", type=_positive_int, default=1000, help="show the validations every N steps (and the last)")
    p.add_argument("--export", metavar="OUT", default=None,
                   help="also write the checkpoint's weights as a model file (OUT.safetensors and its .json), to "
                        "evaluate a run before it ends")
    p.add_argument("--plot", metavar="PNG", default=None,
                   help="also draw the checkpoints' validations against steps and against hours of step time")
