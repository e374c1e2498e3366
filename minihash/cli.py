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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="minihash", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    _add_train(sub)
    args = parser.parse_args(argv)
    try:
        if args.cmd == "train":
            from .train import train_command

            return train_command(args)
    except MinihashError as e:
        print(f"minihash {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"minihash {args.cmd}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
