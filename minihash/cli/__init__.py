"""The command line: `minihash demo / train / index / query / eval / eval-nomatch / bench-search / bench-train /
checkpoint / validate`.

Every command is parsed (`args`) and dispatched here, each a thin call into its module (`commands`). The
contract of `index` and `query` (arguments and JSON output) is fixed: tests, benchmarks
and users rely on it.
"""
from __future__ import annotations

import os

# torch's worker threads sleep while they wait instead of spinning: on a machine busy with other work, spinning
# threads wait for each other's turn on a core, and a command runs several times slower (measured on 2 cores
# beside two training runs: a 0.9 M-parameter transformer embeds 640 windows in 0.7 s instead of 2.4-6.9 s).
# Read once, when torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import sys

from .._version import __version__
from ..errors import MinihashError
from ..recipe import train_from_args
from . import args as a
from .commands import (bench_command, bench_config, bench_train_command, checkpoint_command, demo_command, eval_command, eval_config,
                       eval_nomatch_command, index_command, query_command, shown, validate_command)

__all__ = ["COMMANDS", "bench_config", "build_parser", "eval_config", "main"]

COMMANDS = {"demo": (a.add_demo, demo_command), "train": (a.add_train, train_from_args),
            "index": (a.add_index, index_command), "query": (a.add_query, query_command),
            "eval": (a.add_eval, eval_command),
            "eval-nomatch": (a.add_eval_nomatch, eval_nomatch_command), "bench-search": (a.add_bench, bench_command),
            "bench-train": (a.add_bench_train, bench_train_command),
            "checkpoint": (a.add_checkpoint, checkpoint_command), "validate": (a.add_validate, validate_command)}


def build_parser() -> argparse.ArgumentParser:
    """The `minihash` parser, one subcommand per entry of COMMANDS."""
    parser = argparse.ArgumentParser(prog="minihash", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"minihash {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.cmd][1](args)
    except MinihashError as e:  # one line, naming the file and what to do
        print(f"minihash {args.cmd}: error: {shown(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"minihash {args.cmd}: interrupted", file=sys.stderr)
        return 130
