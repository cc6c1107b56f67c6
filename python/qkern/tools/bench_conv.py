"""`qkern bench conv3x3|deconv2x2`: check every implementation against the float op, then time qkern
and its peers (torch quantized engines, ONNX Runtime, torch float32) in one run."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import runtime
from ..packed_conv import PackedConv3x3, PackedConvTranspose2x2
from ..reference import conv3x3 as reference_conv3x3
from ..reference import conv_transpose2x2 as reference_deconv2x2
from ..requant import Requant
from .bench_gemm import check_answers, measure, ort_single_node_session

# Quantization parameters of the synthetic problems: u8 activations, symmetric s8 weights.
X_SCALE, X_ZP, W_SCALE, Y_SCALE, Y_ZP = 0.02, 128, 0.004, 0.5, 128

Peer = Callable[[], Any]


def float_op_oracle(acc: np.ndarray) -> np.ndarray:
    """The float op on the dequantized operands, requantized: round(acc * sx*sw/sy) + zy, clamped. The
    exact accumulator times the scales is the float result without float rounding error, so every
    correct implementation is within 1 LSB of this (it differs only in how it rounds the scale)."""
    y = np.rint(acc.astype(np.float64) * (X_SCALE * W_SCALE / Y_SCALE)) + Y_ZP
    return np.clip(y, 0, 255).astype(np.int64)


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    return torch


def _torch_quantized(torch: Any, x: np.ndarray, w_oihw: np.ndarray) -> tuple[Any, Any]:
    # NHWC bytes viewed as NCHW: a channels-last quantized tensor, no copy.
    xq = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), X_SCALE, X_ZP).permute(0, 3, 1, 2)
    wq = torch._make_per_tensor_quantized_tensor(torch.from_numpy(np.ascontiguousarray(w_oihw)), W_SCALE, 0)
    return xq, wq


def _torch_engine_peer(engine: str, make: Callable[[Any], Peer], threads: int) -> Peer | str:
    torch = _torch()
    if torch is None:
        return "torch not installed"
    if engine not in torch.backends.quantized.supported_engines:
        return f"engine {engine} not supported"
    torch.set_num_threads(threads)
    torch.backends.quantized.engine = engine
    try:
        op = make(torch)
    except RuntimeError as e:  # an engine that rejects the configuration
        return f"{engine}: {str(e).splitlines()[0][:80]}"

    def run() -> Any:
        torch.backends.quantized.engine = engine
        return op()

    def result() -> np.ndarray:
        return run().int_repr().permute(0, 2, 3, 1).numpy()

    run.result = result  # type: ignore[attr-defined]
    return run


def _torch_float_peer(make: Callable[[Any], Peer], threads: int) -> Peer | str:
    torch = _torch()
    if torch is None:
        return "torch not installed"
    torch.set_num_threads(threads)
    op = make(torch)

    def result() -> np.ndarray:
        y = op().permute(0, 2, 3, 1).numpy().astype(np.float64)
        return np.clip(np.rint(y / Y_SCALE) + Y_ZP, 0, 255).astype(np.int64)

    op.result = result  # type: ignore[attr-defined]
    return op


def qlinearconv_session(
    w_oihw: np.ndarray,
    x_shape: tuple[int, ...],
    x_qparams: tuple[float, int],
    w_scale: Any,
    y_qparams: tuple[float, int],
    stride: int,
    padding: int,
    threads: int,
) -> Any:
    """ONNX Runtime QLinearConv (u8 x, s8 symmetric weights, u8 y; NCHW) with per-tensor or per-channel
    weight scales."""
    from onnx import TensorProto, helper, numpy_helper

    ws = np.atleast_1d(np.asarray(w_scale, np.float32))
    inits = [
        helper.make_tensor("xs", TensorProto.FLOAT, [], [float(x_qparams[0])]),
        helper.make_tensor("xz", TensorProto.UINT8, [], [int(x_qparams[1])]),
        numpy_helper.from_array(np.ascontiguousarray(w_oihw), "w"),
        numpy_helper.from_array(ws if ws.size > 1 else ws.reshape(()), "ws"),
        numpy_helper.from_array(np.zeros(ws.shape if ws.size > 1 else (), np.int8), "wz"),
        helper.make_tensor("ys", TensorProto.FLOAT, [], [float(y_qparams[0])]),
        helper.make_tensor("yz", TensorProto.UINT8, [], [int(y_qparams[1])]),
    ]
    node = helper.make_node(
        "QLinearConv",
        ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"],
        ["y"],
        kernel_shape=[3, 3],
        strides=[stride, stride],
        pads=[padding] * 4,
    )
    inputs = [helper.make_tensor_value_info("x", TensorProto.UINT8, list(x_shape))]
    return ort_single_node_session(node, inputs, TensorProto.UINT8, inits, threads)


def _ort_qlinearconv_peer(x: np.ndarray, w: np.ndarray, stride: int, padding: int, threads: int) -> Peer | str:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return "onnxruntime/onnx not installed"
    x_nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # ORT's QLinearConv takes NCHW
    sess = qlinearconv_session(
        w.transpose(0, 3, 1, 2), x_nchw.shape, (X_SCALE, X_ZP), W_SCALE, (Y_SCALE, Y_ZP), stride, padding, threads
    )
    feed = {"x": x_nchw}

    def run() -> np.ndarray:
        return sess.run(None, feed)[0]

    run.result = lambda: run().transpose(0, 2, 3, 1)  # type: ignore[attr-defined]
    return run


def _requant() -> Requant:
    return Requant.from_scales(X_SCALE, W_SCALE, Y_SCALE, Y_ZP, dtype="uint8", rounding="fp32")


def _row(op: str, shape: tuple[int, ...], threads: int, ops: float) -> dict:
    return {
        "op": op,
        "shape": list(shape),
        "threads": threads,
        "isa": runtime.get_isa(),
        "ops": ops,
        "correct": {},
        "notes": {},
        "baselines": [],
    }


def _finish(row: dict, impls: dict[str, Peer], checks: dict, peers: list, threads: int, repeat: int, settle: float):
    for name, peer, want in peers:
        if isinstance(peer, str):
            row["notes"][name] = peer
            continue
        impls[name] = peer
        checks[name] = (peer.result, want)
    check_answers(row, checks, tolerance=1)
    measure(row, impls, row["ops"], threads, repeat, settle)


def bench_conv3x3(
    shapes: list[tuple[int, ...]], *, threads: int, repeat: int, compare: list[str], settle_s: float = 0.3
) -> list[dict]:
    """shapes: (N, H, W, C, O, stride, padding). GOP/s = 2 * N*OH*OW * O * 9*C / time."""
    rng = np.random.default_rng(0)
    runtime.set_num_threads(threads)
    rows = []
    for n, h, w, c, o, stride, padding in shapes:
        x = rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)
        wt = rng.integers(-127, 128, (o, 3, 3, c), dtype=np.int8)
        rq = _requant()
        exact = reference_conv3x3(x, wt, stride, padding, X_ZP, 0, None, rq)
        oracle = float_op_oracle(reference_conv3x3(x, wt, stride, padding, X_ZP, 0, None, None))
        packed = PackedConv3x3(wt, 0, None, rq, stride=stride, padding=padding)
        out = np.empty(exact.shape, np.uint8)
        row = _row("conv3x3", (n, h, w, c, o, stride, padding), threads, 2.0 * exact.size * 9 * c)
        row["title"] = (
            f"conv3x3 N={n} {h}x{w} {c}->{o} stride={stride} pad={padding}  threads={threads} isa={row['isa']}"
        )
        row["qkern_equals_reference"] = bool(np.array_equal(packed(x, x_zero_point=X_ZP, out=out), exact))
        impls: dict[str, Peer] = {"qkern": lambda p=packed, x=x, out=out: p(x, x_zero_point=X_ZP, out=out)}
        checks = {"qkern": (impls["qkern"], oracle)}  # the timed call itself, out= included
        peers: list = []
        w_oihw = wt.transpose(0, 3, 1, 2)
        if "torch" in compare:

            def quantized(torch: Any, x=x, w_oihw=w_oihw, s=stride, p=padding) -> Peer:
                xq, wq = _torch_quantized(torch, x, w_oihw)
                pk = torch.ops.quantized.conv2d_prepack(wq, None, [s, s], [p, p], [1, 1], 1)
                return lambda: torch.ops.quantized.conv2d(xq, pk, Y_SCALE, Y_ZP)

            def floating(torch: Any, x=x, w_oihw=w_oihw, s=stride, p=padding) -> Peer:
                xf = (torch.from_numpy(x).float() - X_ZP).mul_(X_SCALE).permute(0, 3, 1, 2)
                wf = (torch.from_numpy(np.ascontiguousarray(w_oihw)).float() * W_SCALE).to(
                    memory_format=torch.channels_last
                )
                return lambda: torch.nn.functional.conv2d(xf, wf, None, s, p)

            for engine in ("fbgemm", "onednn"):
                peers.append((f"torch-{engine}", _torch_engine_peer(engine, quantized, threads), oracle))
            peers.append(("torch-float32", _torch_float_peer(floating, threads), oracle))
            row["baselines"].append("torch-float32")
        if "onnxruntime" in compare:
            peers.append(("ort-QLinearConv", _ort_qlinearconv_peer(x, wt, stride, padding, threads), oracle))
        _finish(row, impls, checks, peers, threads, repeat, settle_s)
        rows.append(row)
    return rows


def bench_deconv2x2(
    shapes: list[tuple[int, ...]], *, threads: int, repeat: int, compare: list[str], settle_s: float = 0.3
) -> list[dict]:
    """shapes: (N, H, W, C, O). GOP/s = 2 * N*H*W * 4*O * C / time."""
    rng = np.random.default_rng(0)
    runtime.set_num_threads(threads)
    rows = []
    for n, h, w, c, o in shapes:
        x = rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)
        wt = rng.integers(-127, 128, (c, 2, 2, o), dtype=np.int8)
        rq = _requant()
        exact = reference_deconv2x2(x, wt, X_ZP, 0, None, rq)
        oracle = float_op_oracle(reference_deconv2x2(x, wt, X_ZP, 0, None, None))
        packed = PackedConvTranspose2x2(wt, 0, None, rq)
        out = np.empty(exact.shape, np.uint8)
        row = _row("deconv2x2", (n, h, w, c, o), threads, 2.0 * n * h * w * 4 * o * c)
        row["title"] = f"conv_transpose2x2 N={n} {h}x{w} {c}->{o} stride=2  threads={threads} isa={row['isa']}"
        row["qkern_equals_reference"] = bool(np.array_equal(packed(x, x_zero_point=X_ZP, out=out), exact))
        impls: dict[str, Peer] = {"qkern": lambda p=packed, x=x, out=out: p(x, x_zero_point=X_ZP, out=out)}
        checks = {"qkern": (impls["qkern"], oracle)}  # the timed call itself, out= included
        peers: list = []
        w_iohw = wt.transpose(0, 3, 1, 2)  # torch ConvTranspose2d weight [C, O, 2, 2]
        if "torch" in compare:

            def quantized(torch: Any, x=x, w_iohw=w_iohw) -> Peer:
                xq, wq = _torch_quantized(torch, x, w_iohw)
                pk = torch.ops.quantized.conv_transpose2d_prepack(wq, None, [2, 2], [0, 0], [0, 0], [1, 1], 1)
                return lambda: torch.ops.quantized.conv_transpose2d(xq, pk, Y_SCALE, Y_ZP)

            def floating(torch: Any, x=x, w_iohw=w_iohw) -> Peer:
                xf = (torch.from_numpy(x).float() - X_ZP).mul_(X_SCALE).permute(0, 3, 1, 2)
                wf = torch.from_numpy(np.ascontiguousarray(w_iohw)).float() * W_SCALE
                return lambda: torch.nn.functional.conv_transpose2d(xf, wf, None, 2)

            for engine in ("fbgemm", "onednn", "qnnpack"):
                peers.append((f"torch-{engine}", _torch_engine_peer(engine, quantized, threads), oracle))
            peers.append(("torch-float32", _torch_float_peer(floating, threads), oracle))
            row["baselines"].append("torch-float32")
        if "onnxruntime" in compare:
            row["notes"]["onnxruntime"] = "no quantized ConvTranspose operator in ONNX Runtime's CPU provider"
        _finish(row, impls, checks, peers, threads, repeat, settle_s)
        rows.append(row)
    return rows


def plot_rows(rows: list[dict], path: str) -> None:
    """Bar chart: GOP/s per shape and implementation; wrong outputs hatched, float baselines grey."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install 'qkern[plot]'") from None
    names = sorted({k for r in rows for k in r["gops"]}, key=lambda k: (k != "qkern", k))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(rows)), 4.5))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        labelled = False
        for j, r in enumerate(rows):
            if name not in r["gops"]:
                continue
            wrong = not r["correct"].get(name, True) and name not in r["baselines"]
            ax.bar(
                j + i * width,
                r["gops"][name],
                width,
                color=f"C{i}",
                hatch="//" if wrong else None,
                edgecolor="black" if wrong else None,
                label=None if labelled else name,
            )
            labelled = True
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(rows))])
    ax.set_xticklabels([" ".join(str(v) for v in r["shape"]) for r in rows], rotation=20, fontsize=8)
    ax.set_ylabel("GOP/s (median)")
    ax.set_title(f"{rows[0]['op']}, {rows[0]['threads']} threads (hatched: wrong output)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
