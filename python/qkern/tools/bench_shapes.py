"""`qkern bench gemm|conv3x3|deconv2x2`: read a shapes file, verify, time qkern and its peers, print or plot."""

from __future__ import annotations

import argparse
import json
import sys

from .._constants import MAX_THREADS
from . import argtypes

# Fields of one line of a shapes file, per kind (benchmarks/shapes/<kind>.txt).
SHAPE_FIELDS = {
    "gemm": ("M", "N", "K"),
    "conv3x3": ("N", "H", "W", "C", "O", "stride", "padding"),
    "deconv2x2": ("N", "H", "W", "C", "O"),
}
DEFAULT_SHAPES = {
    "gemm": "1 1024 1024\n16 1024 1024\n1024 1024 1024\n",
    "conv3x3": "1 56 56 64 64 1 1\n1 28 28 128 128 1 1\n1 224 224 3 64 2 1\n",
    "deconv2x2": "1 28 28 128 64\n8 32 32 64 32\n",
}


def parse_shapes(text: str, kind: str = "gemm") -> list[tuple[int, ...]]:
    """One shape per non-empty line (`#` starts a comment; `x` and `,` separate like spaces)."""
    fields = SHAPE_FIELDS[kind]
    shapes = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.replace("x", " ").replace(",", " ").split()
        if len(parts) != len(fields):
            raise ValueError(f"{kind} shape line must be '{' '.join(fields)}', got {line!r}")
        shapes.append(tuple(int(p) for p in parts))
    return shapes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shapes",
        type=argtypes.shapes_file,
        help="file of shapes, one per line (# comments): gemm 'M N K', conv3x3 'N H W C O stride padding', "
        "deconv2x2 'N H W C O' (see benchmarks/shapes/); default: a small set",
    )
    parser.add_argument(
        "--repeat", type=argtypes.positive_int, default=20, help="timed repetitions per shape; the median is reported"
    )
    parser.add_argument(
        "--threads",
        type=argtypes.int_in(1, MAX_THREADS),
        help="threads for qkern and every peer (default: qkern's setting)",
    )
    parser.add_argument("--isa", type=argtypes.isa, help="force a lower ISA path (see `qkern info`)")
    parser.add_argument(
        "--compare",
        default="torch,onnxruntime,numpy",
        type=argtypes.peers,
        help="comma-separated peers: torch, onnxruntime, numpy, or none (missing ones are reported)",
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--plot", metavar="FILE.png", help="also draw a bar chart (needs matplotlib: the plot extra)")


def main(args: argparse.Namespace) -> int:
    from .. import runtime
    from . import bench_conv, bench_gemm

    kind = args.bench_main_name
    if args.isa:
        runtime.set_isa(args.isa)
    if args.shapes:
        with open(args.shapes) as f:
            text = f.read()
    else:
        text = DEFAULT_SHAPES[kind]
    try:
        shapes = parse_shapes(text, kind)
    except ValueError as e:
        print(f"qkern bench: {e}", file=sys.stderr)
        return 2
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("qkern bench: --plot needs matplotlib: pip install 'qkern[plot]'", file=sys.stderr)
            return 2
    compare = [c.strip() for c in args.compare.split(",") if c.strip()]
    threads = args.threads or runtime.get_num_threads()
    run = {
        "gemm": bench_gemm.bench_gemm,
        "conv3x3": bench_conv.bench_conv3x3,
        "deconv2x2": bench_conv.bench_deconv2x2,
    }
    rows = run[kind](shapes, threads=threads, repeat=args.repeat, compare=compare)
    print(json.dumps(rows, indent=2) if args.json else bench_gemm.format_rows(rows))
    if args.plot:
        bench_conv.plot_rows(rows, args.plot)
        print(f"plot written to {args.plot}")
    ok = all(r["correct"]["qkern"] and r.get("qkern_equals_reference", True) for r in rows)
    return 0 if ok else 1
