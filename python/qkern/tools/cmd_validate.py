"""`qkern validate`: qkern's conv ops against torch's float and quantized ops and ONNX Runtime (needs torch)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from . import argtypes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--op", choices=["conv3x3", "deconv2x2", "all"], default="all", help="op to validate")
    parser.add_argument("--seed", type=argtypes.int_in(0), default=0, help="random seed")
    parser.add_argument("--no-ort", action="store_true", help="skip the ONNX Runtime comparison")
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")


def main(args: argparse.Namespace) -> int:
    import numpy as np

    from . import validate

    try:
        import torch  # noqa: F401
    except ImportError:
        print("qkern validate needs torch: pip install 'qkern[torch]'", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    checks = []
    if args.op in ("conv3x3", "all"):
        checks += validate.validate_conv3x3(rng, ort=not args.no_ort)
    if args.op in ("deconv2x2", "all"):
        checks += validate.validate_deconv2x2(rng)
    if args.json:
        print(json.dumps([dataclasses.asdict(c) | {"ok": c.ok} for c in checks], indent=2))
    else:
        print(validate.format_checks(checks))
    return 0 if all(c.ok for c in checks if c.is_qkern) else 1
