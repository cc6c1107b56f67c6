"""`qkern demo KIND`: each demo kind is one row of DEMOS (a module with add_arguments and main)."""

from __future__ import annotations

import argparse

from .registry import register

# kind -> (module exposing add_arguments(parser) and main(args) -> int, one-line help).
DEMOS: dict[str, tuple[str, str]] = {
    "gemm": ("qkern.tools.demo_gemm", "quantize y = relu(x @ w), run it in integers, compare with float and reference"),
    "ptq": ("qkern.tools.demo_ptq", "train a digits classifier and a U-Net, quantize them, compare with torch and ORT"),
    "qat": ("qkern.tools.demo_qat", "QAT of the digits classifier, every method at 2/4/8 bits"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    register(parser.add_subparsers(dest="demo", required=True, metavar="KIND"), DEMOS, "demo_main")


def main(args: argparse.Namespace) -> int:
    return int(args.demo_main(args))
