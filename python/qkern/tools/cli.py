"""The `qkern` command line (also `python -m qkern`): every subcommand is registered from COMMANDS."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .registry import register

# name -> (module exposing add_arguments(parser) and main(args) -> int, one-line help).
# A module's top level imports only what building its parser needs; heavy imports go inside main().
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("qkern.tools.cmd_info", "build, backend, ISA and thread information"),
    "demo": ("qkern.tools.cmd_demo", "end-to-end demos: quantize, run in integers, check against the reference"),
    "bench": ("qkern.tools.cmd_bench", "verify, then time kernels against peers in the same run"),
    "validate": (
        "qkern.tools.cmd_validate",
        "compare qkern's conv ops with torch's float and quantized ops and ONNX Runtime's",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qkern", description="Exact quantized CPU kernels: tools and checks.")
    register(parser.add_subparsers(dest="command", required=True), COMMANDS, "command_main")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.command_main(args))


if __name__ == "__main__":
    sys.exit(main())
