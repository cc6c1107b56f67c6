"""`qkern bench gemm`: verify every implementation's answer, then time qkern and its peers in one run."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _core, runtime
from ..packed import PackedGemm
from ..reference import gemm as reference_gemm
from ..requant import Requant

# vpdpbusd zmm measured on this project's reference CPU (docs/speed-design.md S1): GOP/s per core.
VNNI_PEAK_GOPS_PER_CORE = 458.0
# One live-peak probe: 24 vpdpbusd of 64 multiply-adds per iteration, about 3 ms at 458 GOP/s.
PROBE_ITERATIONS = 450_000

# Quantization parameters of the synthetic problem (any valid values give the same amount of work).
A_SCALE, A_ZP, B_SCALE, Y_SCALE, Y_ZP = 0.02, 128, 0.004, 0.5, 128


def median_time(
    fn: Callable[[], Any], repeat: int, warmup: int = 2, min_sample_s: float = 2e-3, warmup_s: float = 0.02
) -> float:
    """Median seconds per call of fn over `repeat` samples.

    Short calls are timed in batches (one sample = enough back-to-back calls to last `min_sample_s`), as
    timeit's autorange does: a single 10 us call timed alone mostly measures the timer, the frequency ramp
    and, on this VM, whether the other vCPU was descheduled. Before sampling, fn runs for at least
    `warmup_s` (and `warmup` calls): after the harness's settle pause every library's threads have gone
    to sleep, and the scheduler needs a few milliseconds to put woken threads back on separate CPUs.
    Every implementation is timed the same way.
    """
    t0 = time.perf_counter()
    for _ in range(warmup):
        fn()
    per_call = max((time.perf_counter() - t0) / max(warmup, 1), 1e-7)
    batch = max(1, min(10000, int(min_sample_s / per_call)))
    t_end = time.perf_counter() + warmup_s
    while time.perf_counter() < t_end:
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        times.append((time.perf_counter() - t0) / batch)
    return float(np.median(times))


def live_vnni_peak_gops(samples: int = 3) -> float | None:
    """This core's vpdpbusd GOP/s right now (median of `samples` probes), or None without avx512vnni.

    The nominal peak is a good day's figure; on a shared VM the core's speed drifts by 10-20% within
    minutes, and a kernel can only be as fast as the core is at that moment. The probe is an
    inline-assembly loop (csrc/kernels/avx512vnni/peak_probe_avx512vnni.cc) run on the calling thread.
    """
    if "avx512vnni" not in runtime.available_isas():
        return None
    ops = PROBE_ITERATIONS * 24 * 64 * 2
    return float(np.median([ops / _core.vnni_probe_seconds(PROBE_ITERATIONS) / 1e9 for _ in range(samples)]))


def check_answers(row: dict, checks: dict[str, tuple[Callable[[], Any], np.ndarray]], tolerance: int = 0) -> None:
    """Runs each implementation once and records whether it is within `tolerance` of its expected output."""
    row.setdefault("correct", {})
    row.setdefault("max_abs_diff", {})
    for name, (fn, want) in checks.items():
        got = np.asarray(fn())
        diff = int(np.abs(got.astype(np.int64) - want).max()) if got.size else 0
        row["correct"][name] = got.shape == want.shape and diff <= tolerance
        row["max_abs_diff"][name] = diff


def measure(
    row: dict, impls: dict[str, Callable[[], Any]], ops: float, threads: int, repeat: int, settle_s: float
) -> None:
    """Times every implementation in alternating rounds and fills row's GOP/s, best peer and ratios.

    Alternating round by round lets machine noise hit all of them alike. Before each phase, pause: every
    library here (qkern, ORT, torch's OpenMP) lets its workers spin after a call, and on 2 cores a
    spinning pool of the previous library would slow the next one. Peers whose answer was wrong (row's
    "correct") or that are marked in row["baselines"] (float ops) are never the "best peer".
    """
    samples: dict[str, list[float]] = {name: [] for name in impls}
    probes: list[float] = []
    # Rounds of 3 samples (at least 5 rounds, at most 15): the VM's slow phases last seconds, and the
    # more often the implementations take turns, the more evenly such a phase falls on all of them.
    rounds = max(5, min(15, repeat // 3))
    for _ in range(rounds):
        for name, fn in impls.items():
            time.sleep(settle_s)
            samples[name].append(median_time(fn, max(3, repeat // rounds), warmup=2))
        probe = live_vnni_peak_gops()
        if probe is not None:
            probes.append(probe)
    row["gops"], row["best_gops"] = {}, {}
    for name, ts in samples.items():
        row["gops"][name] = ops / float(np.median(ts)) / 1e9
        row["best_gops"][name] = ops / float(np.min(ts)) / 1e9
    baselines = row.get("baselines", [])
    valid = [g for p, g in row["gops"].items() if p != "qkern" and row["correct"].get(p) and p not in baselines]
    row["best_peer_gops"] = max(valid) if valid else None
    row["ratio_to_best_peer"] = row["gops"]["qkern"] / row["best_peer_gops"] if valid else None
    row["pct_of_vnni_peak"] = 100.0 * row["gops"]["qkern"] / (VNNI_PEAK_GOPS_PER_CORE * threads)
    # The same figure against the core's speed in this run (probed once per round, median).
    live = float(np.median(probes)) if probes else None
    row["live_peak_gops_per_core"] = live
    row["pct_of_live_peak"] = 100.0 * row["gops"]["qkern"] / (live * threads) if live else None


def _torch_peer(engine: str, a: np.ndarray, b: np.ndarray, threads: int) -> Callable[[], np.ndarray] | str:
    try:
        import torch
    except ImportError:
        return "torch not installed"
    if engine not in torch.backends.quantized.supported_engines:
        return f"engine {engine} not supported"
    torch.backends.quantized.engine = engine
    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
    xq = torch._make_per_tensor_quantized_tensor(torch.from_numpy(a), A_SCALE, A_ZP)
    wq = torch._make_per_tensor_quantized_tensor(torch.from_numpy(np.ascontiguousarray(b.T)), B_SCALE, 0)
    packed = torch.ops.quantized.linear_prepack(wq, None)
    linear = torch.ops.quantized.linear

    def run() -> np.ndarray:
        torch.backends.quantized.engine = engine
        return linear(xq, packed, Y_SCALE, Y_ZP)

    def result() -> np.ndarray:
        return run().int_repr().numpy()

    run.result = result  # type: ignore[attr-defined]
    return run


def ort_single_node_session(node: Any, inputs: list, output_type: int, inits: list, threads: int) -> Any:
    """An ONNX Runtime CPU session running one node (opset 13) on `threads` intra-op threads."""
    import onnxruntime as ort
    from onnx import helper

    graph = helper.make_graph([node], "qkern", inputs, [helper.make_tensor_value_info("y", output_type, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _ort_peer(op: str, a: np.ndarray, b: np.ndarray, threads: int) -> Callable[[], np.ndarray] | str:
    try:
        import onnxruntime  # noqa: F401
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return "onnxruntime/onnx not installed"
    m, k = a.shape
    inits = [numpy_helper.from_array(b, "b")]
    if op == "QLinearMatMul":
        inits += [
            helper.make_tensor("a_scale", TensorProto.FLOAT, [], [A_SCALE]),
            helper.make_tensor("a_zp", TensorProto.UINT8, [], [A_ZP]),
            helper.make_tensor("b_scale", TensorProto.FLOAT, [], [B_SCALE]),
            helper.make_tensor("b_zp", TensorProto.INT8, [], [0]),
            helper.make_tensor("y_scale", TensorProto.FLOAT, [], [Y_SCALE]),
            helper.make_tensor("y_zp", TensorProto.UINT8, [], [Y_ZP]),
        ]
        node = helper.make_node(op, ["a", "a_scale", "a_zp", "b", "b_scale", "b_zp", "y_scale", "y_zp"], ["y"])
        out_type = TensorProto.UINT8
    else:
        inits += [helper.make_tensor("a_zp", TensorProto.UINT8, [], [A_ZP])]
        node = helper.make_node(op, ["a", "b", "a_zp"], ["y"])
        out_type = TensorProto.INT32
    inputs = [helper.make_tensor_value_info("a", TensorProto.UINT8, [m, k])]
    sess = ort_single_node_session(node, inputs, out_type, inits, threads)
    feed = {"a": a}

    def run() -> np.ndarray:
        return sess.run(None, feed)[0]

    run.result = run  # type: ignore[attr-defined]
    return run


def bench_gemm(
    shapes: list[tuple[int, int, int]], *, threads: int, repeat: int, compare: list[str], settle_s: float = 0.3
) -> list[dict]:
    """One row per shape: GOP/s of qkern (PackedGemm, uint8 output, fp32 requant) and of each peer."""
    rng = np.random.default_rng(0)
    runtime.set_num_threads(threads)
    rows = []
    for m, n, k in shapes:
        a = rng.integers(0, 256, (m, k), dtype=np.uint8)
        b = rng.integers(-127, 128, (k, n), dtype=np.int8)
        rq = Requant.from_scales(A_SCALE, B_SCALE, Y_SCALE, Y_ZP, dtype="uint8", rounding="fp32")
        want_u8 = reference_gemm(a, b, A_ZP, 0, None, rq)
        want_i32 = reference_gemm(a, b, A_ZP, 0, None, None)
        packed = PackedGemm(b, 0, None, rq)
        out = np.empty((m, n), np.uint8)
        impls: dict[str, Any] = {"qkern": lambda packed=packed, a=a, out=out: packed(a, a_zero_point=A_ZP, out=out)}
        checks: dict[str, Any] = {"qkern": (impls["qkern"], want_u8)}  # the timed call itself, out= included
        notes: dict[str, str] = {}
        peers = []
        if "torch" in compare:
            peers += [
                ("torch-fbgemm", _torch_peer("fbgemm", a, b, threads), want_u8),
                ("torch-onednn", _torch_peer("onednn", a, b, threads), want_u8),
            ]
        if "onnxruntime" in compare:
            peers += [
                ("ort-QLinearMatMul", _ort_peer("QLinearMatMul", a, b, threads), want_u8),
                ("ort-MatMulInteger", _ort_peer("MatMulInteger", a, b, threads), want_i32),
            ]
        if "numpy" in compare and m * n * k > 2**28:
            notes["numpy-int32"] = "skipped: NumPy's integer matmul takes minutes at this size"
        elif "numpy" in compare:
            b32 = b.astype(np.int32)

            def np_run(a=a, b32=b32):
                return (a.astype(np.int32) - A_ZP) @ b32

            np_run.result = np_run  # type: ignore[attr-defined]
            peers.append(("numpy-int32", np_run, want_i32))
        for name, peer, want in peers:
            if isinstance(peer, str):
                notes[name] = peer
                continue
            impls[name] = peer
            checks[name] = (peer.result, want)
        row: dict[str, Any] = {
            "m": m,
            "n": n,
            "k": k,
            "threads": threads,
            "isa": runtime.get_isa(),
            "gops": {},
            "correct": {},
            "notes": notes,
        }
        check_answers(row, checks)
        measure(row, impls, 2.0 * m * n * k, threads, repeat, settle_s)
        rows.append(row)
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = []
    for r in rows:
        lines.append(r.get("title") or f"gemm M={r['m']} N={r['n']} K={r['k']}  threads={r['threads']} isa={r['isa']}")
        for name, g in sorted(r["gops"].items(), key=lambda kv: -kv[1]):
            if name in r.get("baselines", []):
                ok = "float baseline"
            elif r["correct"][name]:
                ok = "ok"
            else:
                ok = f"WRONG OUTPUT (max |diff| {r['max_abs_diff'][name]})"
            lines.append(f"  {name:<20} {g:9.1f} GOP/s median  {r['best_gops'][name]:9.1f} best round  {ok}")
        for name, why in r["notes"].items():
            lines.append(f"  {name:<20} {'-':>9}        ({why})")
        ratio = r["ratio_to_best_peer"]
        lines.append(f"  qkern / best peer: {ratio:.2f}x" if ratio else "  qkern / best peer: n/a (no peer)")
        lines.append(f"  qkern % of VNNI peak ({VNNI_PEAK_GOPS_PER_CORE:.0f} GOP/s/core): {r['pct_of_vnni_peak']:.0f}%")
        if r.get("live_peak_gops_per_core"):
            lines.append(
                f"  qkern % of live VNNI peak ({r['live_peak_gops_per_core']:.0f} GOP/s/core probed in this run):"
                f" {r['pct_of_live_peak']:.0f}%"
            )
    return "\n".join(lines)
