"""`qkern bench KIND`: each benchmark kind is one row of BENCHES (a module with add_arguments and main)."""

from __future__ import annotations

import argparse

from .registry import register

# kind -> (module exposing add_arguments(parser) and main(args) -> int, one-line help).
BENCHES: dict[str, tuple[str, str]] = {
    "gemm": ("qkern.tools.bench_shapes", "uint8 x int8 GEMM, requantized to uint8"),
    "conv3x3": ("qkern.tools.bench_shapes", "NHWC 3x3 convolution, stride 1/2, padding 0/1"),
    "deconv2x2": ("qkern.tools.bench_shapes", "NHWC 2x2 stride-2 transposed convolution"),
    "dynamic": ("qkern.tools.bench_dynamic", "dynamic int8 Linear (float in, float out) against torch and ORT"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    register(parser.add_subparsers(dest="bench", required=True, metavar="KIND"), BENCHES, "bench_main")


def main(args: argparse.Namespace) -> int:
    return int(args.bench_main(args))
