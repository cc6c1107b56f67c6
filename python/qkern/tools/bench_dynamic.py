"""`qkern bench dynamic`: float32-in, float32-out dynamic int8 Linear layers, qkern against torch's x86
dynamic Linear, ONNX Runtime's quantize_dynamic graph and float torch/ORT, every answer checked against the
float Linear first; plus the accuracy of a small MLP on scikit-learn's digits."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import runtime
from ..dynamic import DynamicLinear

M_VALUES = (1, 16, 128)
KN_SHAPES = ((768, 3072), (1024, 1024))
# A peer whose output is further than this from the float Linear (relative to the output's largest
# magnitude) is reported wrong and never the best peer: int8 dynamic quantization lands near 1e-2.
MAX_RELATIVE_ERROR = 0.05
FLOAT_PEERS = ("torch float", "ort float")


def _quiet_torch() -> Any:
    """torch, with the deprecation warnings of its quantized peer silenced, or None when not installed."""
    try:
        import torch
    except ImportError:
        return None
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch")
    warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
    warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated.*")
    return torch


def _torch_peers(weight: np.ndarray, bias: np.ndarray, threads: int) -> dict[str, Callable[[np.ndarray], Any]]:
    torch = _quiet_torch()
    if torch is None:
        return {}
    torch.set_num_threads(threads)
    linear = torch.nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(weight))
        linear.bias.copy_(torch.from_numpy(bias))
    from torch.ao import quantization as tq

    torch.backends.quantized.engine = "x86"
    dynamic = tq.quantize_dynamic(torch.nn.Sequential(linear), {torch.nn.Linear}, dtype=torch.qint8)[0]

    def run(module: Any) -> Callable[[np.ndarray], Any]:
        def call(x: np.ndarray) -> Any:
            with torch.inference_mode():
                return module(torch.from_numpy(x)).numpy()

        return call

    return {"torch dynamic": run(dynamic), "torch float": run(linear)}


def _ort_peers(weight: np.ndarray, bias: np.ndarray, threads: int) -> dict[str, Callable[[np.ndarray], Any]]:
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        return {}
    n, k = weight.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["M", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["M", n])],
        [numpy_helper.from_array(np.ascontiguousarray(weight.T), "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sessions = {}
    with tempfile.TemporaryDirectory() as tmp:
        fp, q8 = os.path.join(tmp, "float.onnx"), os.path.join(tmp, "dynamic.onnx")
        onnx.save(model, fp)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            quantize_dynamic(fp, q8, weight_type=QuantType.QInt8)  # DynamicQuantizeLinear + MatMulInteger
        for name, path in (("ort dynamic", q8), ("ort float", fp)):
            sessions[name] = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def run(session: Any) -> Callable[[np.ndarray], Any]:
        return lambda x: session.run(None, {"x": x})[0]

    return {name: run(s) for name, s in sessions.items()}


def _median_us(fn: Callable[[], Any], seconds: float) -> float:
    """Median microseconds per call over about `seconds` of calls (after a warm-up)."""
    for _ in range(3):
        fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    reps = int(min(2000, max(15, seconds / once)))
    samples = np.empty(reps)
    for i in range(reps):
        t0 = time.perf_counter_ns()
        fn()
        samples[i] = time.perf_counter_ns() - t0
    return float(np.median(samples)) / 1e3


def bench_shape(
    m: int, k: int, n: int, *, threads: int, seconds: float, rounds: int, per_row: bool, seed: int = 0
) -> dict[str, Any]:
    """One row: median us per call of every implementation (alternating rounds), each checked first."""
    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
    bias = (rng.standard_normal(n) * 0.1).astype(np.float32)
    x = rng.standard_normal((m, k)).astype(np.float32)
    expected = x.astype(np.float64) @ weight.T.astype(np.float64) + bias
    impls: dict[str, Callable[[np.ndarray], Any]] = {
        "qkern": DynamicLinear(weight, bias, per_channel=True, reduce_range=True),
    }
    if per_row:
        impls["qkern per-row"] = DynamicLinear(weight, bias, per_channel=True, per_row=True)
    impls.update(_torch_peers(weight, bias, threads))
    impls.update(_ort_peers(weight, bias, threads))
    row: dict[str, Any] = {"M": m, "K": k, "N": n, "error": {}, "us": {}}
    for name, fn in impls.items():
        y = np.asarray(fn(x), dtype=np.float64)
        row["error"][name] = float(np.abs(y - expected).max() / np.abs(expected).max())
    samples: dict[str, list[float]] = {name: [] for name in impls}
    for _ in range(rounds):  # take turns, so that a slow phase of the shared machine hits every one alike
        for name, fn in impls.items():
            time.sleep(0.05)  # let the previous library's spinning worker threads go idle
            samples[name].append(_median_us(lambda fn=fn: fn(x), seconds / rounds))
    row["us"] = {name: float(np.median(s)) for name, s in samples.items()}
    peers = [
        t
        for name, t in row["us"].items()
        if not name.startswith("qkern") and name not in FLOAT_PEERS and row["error"][name] <= MAX_RELATIVE_ERROR
    ]
    row["best_int8_peer_us"] = min(peers) if peers else None
    row["speedup"] = row["best_int8_peer_us"] / row["us"]["qkern"] if peers else None
    return row


def format_table(rows: list[dict[str, Any]]) -> str:
    names = list(rows[0]["us"])
    head = "| M | K | N | " + " | ".join(f"{n} us" for n in names) + " | best int8 peer / qkern |"
    lines = [head, "|" + "---|" * (4 + len(names))]
    for r in rows:
        cells = []
        for n in names:
            wrong = r["error"][n] > MAX_RELATIVE_ERROR
            cells.append(f"{r['us'][n]:.1f}" + (" (WRONG)" if wrong else ""))
        speed = f"{r['speedup']:.2f}x" if r["speedup"] else "-"
        lines.append(f"| {r['M']} | {r['K']} | {r['N']} | " + " | ".join(cells) + f" | {speed} |")
    errs = {n: max(r["error"][n] for r in rows) for n in names}
    lines.append("")
    lines.append("max relative error vs the float64 Linear: " + ", ".join(f"{n} {e:.2e}" for n, e in errs.items()))
    return "\n".join(lines)


def digits_accuracy(*, seed: int = 0, epochs: int = 300, hidden: int = 64) -> dict[str, float] | None:
    """Test accuracy of a 64-hidden-64-10 ReLU MLP trained (seeded) on scikit-learn's digits: float, torch's
    dynamic int8, qkern per-tensor (torch-compatible) and qkern per-row."""
    torch = _quiet_torch()
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        return None
    if torch is None:
        return None
    from ..torch import dynamic as qtd

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, digits.target, test_size=0.3, random_state=seed)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, 10),
    )
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny steps: a second thread only adds hand-offs
    # Full-batch gradient descent with momentum, by hand: importing torch.optim pulls in torch._dynamo
    # (seconds), for a few hundred tiny steps.
    velocity = [torch.zeros_like(p) for p in model.parameters()]
    try:
        for _ in range(epochs):
            model.zero_grad()
            torch.nn.functional.cross_entropy(model(xt), yt).backward()
            with torch.no_grad():
                for p, v in zip(model.parameters(), velocity):
                    v.mul_(0.9).add_(p.grad)
                    p.sub_(0.1 * v)
    finally:
        torch.set_num_threads(threads)
    model.eval()
    from torch.ao import quantization as tq

    def accuracy(fn: Callable[[np.ndarray], Any]) -> float:
        return float((np.asarray(fn(x_test)).argmax(axis=1) == y_test).mean())

    with torch.no_grad():
        torch_dynamic = tq.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        return {
            "float": accuracy(lambda a: model(torch.from_numpy(a)).numpy()),
            "torch dynamic": accuracy(lambda a: torch_dynamic(torch.from_numpy(a)).numpy()),
            "qkern per-tensor": accuracy(qtd.quantize_dynamic_numpy(model)),
            "qkern per-row": accuracy(qtd.quantize_dynamic_numpy(model, per_row=True)),
        }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--m", type=int, nargs="+", default=list(M_VALUES), help="rows of x (default 1 16 128)")
    parser.add_argument(
        "--kn",
        type=str,
        nargs="+",
        default=[f"{k}x{n}" for k, n in KN_SHAPES],
        help="KxN shapes (default 768x3072 1024x1024)",
    )
    parser.add_argument("--threads", type=int, default=2, help="threads of every implementation (default 2)")
    parser.add_argument("--seconds", type=float, default=1.0, help="timing budget per implementation and shape")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds (default 5)")
    parser.add_argument("--per-row", action="store_true", help="also time qkern with per-row activation scales")
    parser.add_argument("--no-accuracy", action="store_true", help="skip the digits MLP accuracy table")


def main(args: argparse.Namespace) -> int:
    runtime.set_num_threads(args.threads)
    rows = []
    try:
        shapes = [tuple(int(v) for v in s.lower().split("x")) for s in args.kn]
    except ValueError:
        raise SystemExit(f"--kn takes KxN, e.g. 768x3072; got {args.kn}") from None
    from tqdm import tqdm

    todo = [(m, k, n) for k, n in shapes for m in args.m]
    for m, k, n in tqdm(todo, desc="bench dynamic", unit="shape"):
        rows.append(
            bench_shape(m, k, n, threads=args.threads, seconds=args.seconds, rounds=args.rounds, per_row=args.per_row)
        )
    info = runtime.info()
    print(
        f"qkern {info['version']} isa={info['isa']} threads={args.threads}; "
        "float32 in and out, microseconds per call (median)"
    )
    print(format_table(rows))
    if not args.no_accuracy:
        acc = digits_accuracy()
        if acc is None:
            print("digits accuracy: needs torch and scikit-learn")
        else:
            print("digits MLP test accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in acc.items()))
    wrong = [n for r in rows for n, e in r["error"].items() if n.startswith("qkern") and e > MAX_RELATIVE_ERROR]
    return 1 if wrong else 0
