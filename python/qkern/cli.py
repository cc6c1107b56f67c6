"""The `qkern` command line: info, demo and bench (also `python -m qkern`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

from . import _backend
from ._env import MAX_THREADS
from .ops import gemm
from .qparams import calc_qparams
from .requant import Requant
from .runtime import info


def _cmd_info(args: argparse.Namespace) -> int:
    d = info()
    if args.json:
        print(json.dumps(d, indent=2, default=str))
    else:
        width = max(len(k) for k in d)
        for k, v in d.items():
            print(f"{k:<{width}}  {v}")
    return 0


def _sqnr_db(ref: np.ndarray, approx: np.ndarray) -> float:
    noise = float(np.sum((ref.astype(np.float64) - approx) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(ref.astype(np.float64) ** 2)) / noise)


def _cmd_demo(args: argparse.Namespace) -> int:
    """Quantize a float layer y = relu(x @ w), run it in integers, compare with float and with the reference."""
    rng = np.random.default_rng(args.seed)
    m, k, n = args.m, args.k, args.n
    x = np.maximum(rng.standard_normal((m, k)), 0).astype(np.float32)
    w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
    y = np.maximum(x @ w, 0)
    xq_p = calc_qparams(x.min(), x.max(), "uint8")
    wq_p = calc_qparams(w.min(axis=0), w.max(axis=0), "int8", symmetric=True, axis=1)
    yq_p = calc_qparams(0.0, float(y.max()), "uint8")
    xq, wq = xq_p.quantize(x), wq_p.quantize(w)
    print(f"qkern demo: y = relu(x[{m},{k}] @ w[{k},{n}]), uint8 activations, per-channel int8 weights")
    native = _backend.core is not None
    print(f"  native backend: {info()['isa']}" if native else "  the C++ extension is missing: reference backend only")
    ok = True
    for rounding in ("gemmlowp", "single", "fp32"):
        rq = Requant.from_scales(xq_p.scale, wq_p.scale, yq_p.scale, yq_p.zero_point, rounding=rounding, relu=True)
        t0 = time.perf_counter()
        yq = gemm(xq, wq, a_zero_point=xq_p.zero_point, b_zero_point=wq_p.zero_point, requant=rq)
        dt = time.perf_counter() - t0
        with _backend.backend("reference"):
            yr = gemm(xq, wq, a_zero_point=xq_p.zero_point, b_zero_point=wq_p.zero_point, requant=rq)
        exact = bool(np.array_equal(yq, yr))
        ok &= exact
        sqnr = _sqnr_db(y, yq_p.dequantize(yq))
        print(
            f"  {rounding:<8}  SQNR vs float {sqnr:5.1f} dB   native == reference: {exact if native else 'n/a'}   "
            f"{2 * m * k * n / dt / 1e9:7.2f} GOP/s"
        )
    return 0 if ok else 1


# Fields of one line of a shapes file, per op (benchmarks/shapes/<op>.txt).
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


def _parse_shapes(text: str, op: str = "gemm") -> list[tuple[int, ...]]:
    fields = SHAPE_FIELDS[op]
    shapes = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.replace("x", " ").replace(",", " ").split()
        if len(parts) != len(fields):
            raise ValueError(f"{op} shape line must be '{' '.join(fields)}', got {line!r}")
        shapes.append(tuple(int(p) for p in parts))
    return shapes


def _cmd_bench(args: argparse.Namespace) -> int:
    from . import bench, bench_conv, runtime

    if args.isa:
        runtime.set_isa(args.isa)
    if args.shapes:
        with open(args.shapes) as f:
            text = f.read()
    else:
        text = DEFAULT_SHAPES[args.op]
    try:
        shapes = _parse_shapes(text, args.op)
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
    run = {"gemm": bench.bench_gemm, "conv3x3": bench_conv.bench_conv3x3, "deconv2x2": bench_conv.bench_deconv2x2}
    rows = run[args.op](shapes, threads=threads, repeat=args.repeat, compare=compare)
    print(json.dumps(rows, indent=2) if args.json else bench.format_rows(rows))
    if args.plot:
        bench_conv.plot_rows(rows, args.plot)
        print(f"plot written to {args.plot}")
    ok = all(r["correct"]["qkern"] and r.get("qkern_equals_reference", True) for r in rows)
    return 0 if ok else 1


def _cmd_validate(args: argparse.Namespace) -> int:
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
        import dataclasses

        print(json.dumps([dataclasses.asdict(c) | {"ok": c.ok} for c in checks], indent=2))
    else:
        print(validate.format_checks(checks))
    return 0 if all(c.ok for c in checks if c.is_qkern) else 1


PEERS = ("torch", "onnxruntime", "numpy")


def _int_in(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An argparse type for an integer in [lo, hi]: misuse becomes parser.error (one line, exit code 2)."""
    span = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer {span}, got {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"expected an integer {span}, got {value}")
        return value

    return parse


_positive_int = _int_in(1)


def _isa(text: str) -> str:
    from .runtime import available_isas

    if text not in available_isas():
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISA available here {available_isas()}")
    return text


def _peers(text: str) -> str:
    unknown = [c.strip() for c in text.split(",") if c.strip() and c.strip() not in (*PEERS, "none")]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown peer(s) {unknown}; choose from {list(PEERS)}")
    return text


def _shapes_file(text: str) -> str:
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a file (give a file of shapes, one per line)")
    return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qkern", description="Exact quantized CPU kernels: tools and checks.")
    sub = p.add_subparsers(dest="command", required=True)
    pi = sub.add_parser("info", help="build, backend, ISA and thread information")
    pi.add_argument("--json", action="store_true", help="print as JSON")
    pi.set_defaults(func=_cmd_info)
    pd = sub.add_parser("demo", help="quantize a float layer, run it in integers, check it against the reference")
    pd.add_argument("--m", type=_positive_int, default=256, help="rows of x (default 256)")
    pd.add_argument("--k", type=_positive_int, default=512, help="inner dimension (default 512)")
    pd.add_argument("--n", type=_positive_int, default=256, help="output channels (default 256)")
    pd.add_argument("--seed", type=_int_in(0), default=0, help="random seed")
    pd.set_defaults(func=_cmd_demo)
    pb = sub.add_parser("bench", help="verify, then time kernels against peers in the same run")
    pb.add_argument("op", choices=["gemm", "conv3x3", "deconv2x2"], help="kernel to benchmark")
    pb.add_argument(
        "--shapes",
        type=_shapes_file,
        help="file of shapes, one per line (# comments): gemm 'M N K', conv3x3 'N H W C O stride padding', "
        "deconv2x2 'N H W C O' (see benchmarks/shapes/); default: a small set",
    )
    pb.add_argument(
        "--repeat", type=_positive_int, default=20, help="timed repetitions per shape; the median is reported"
    )
    pb.add_argument(
        "--threads", type=_int_in(1, MAX_THREADS), help="threads for qkern and every peer (default: qkern's setting)"
    )
    pb.add_argument("--isa", type=_isa, help="force a lower ISA path (see `qkern info`)")
    pb.add_argument(
        "--compare",
        default="torch,onnxruntime,numpy",
        type=_peers,
        help="comma-separated peers: torch, onnxruntime, numpy, or none (missing ones are reported)",
    )
    pb.add_argument("--json", action="store_true", help="print results as JSON")
    pb.add_argument("--plot", metavar="FILE.png", help="also draw a bar chart (needs matplotlib: the plot extra)")
    pb.set_defaults(func=_cmd_bench)
    pv = sub.add_parser(
        "validate", help="compare qkern's conv ops with torch's float and quantized ops and ONNX Runtime's"
    )
    pv.add_argument("--op", choices=["conv3x3", "deconv2x2", "all"], default="all", help="op to validate")
    pv.add_argument("--seed", type=_int_in(0), default=0, help="random seed")
    pv.add_argument("--no-ort", action="store_true", help="skip the ONNX Runtime comparison")
    pv.add_argument("--json", action="store_true", help="print the checks as JSON")
    pv.set_defaults(func=_cmd_validate)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
