"""Elementwise timings: quantize, dequantize, requantize and HistogramObserver, qkern vs torch in one run.

`python -m pytest benchmarks/test_bench_elementwise.py --benchmark-enable` times each qkern call with
pytest-benchmark (the answer is checked against the reference first). `python
benchmarks/test_bench_elementwise.py [--threads 2]` prints the markdown table of docs/benchmarks.md
("Elementwise"): medians of many rounds, qkern and torch measured alternately in the same process.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import qkern
from qkern.observers import HistogramObserver

SIZES = [256, 65536, 4194304]
SCALE, ZP = 0.05, 131


def _floats(n: int) -> np.ndarray:
    return (np.random.default_rng(0).standard_normal(n) * 3).astype(np.float32)


def _acc(n: int) -> np.ndarray:
    return np.random.default_rng(1).integers(-(2**20), 2**20, n, dtype=np.int64).astype(np.int32)


def _reference(fn: Callable[..., Any], *args: Any) -> Any:
    with qkern.backend("reference"):
        return fn(*args)


@pytest.mark.parametrize("n", SIZES)
def test_quantize(benchmark, n):
    x = _floats(n)
    np.testing.assert_array_equal(qkern.quantize(x, SCALE, ZP), _reference(qkern.quantize, x, SCALE, ZP))
    benchmark.group = f"quantize {n}"
    benchmark(qkern.quantize, x, SCALE, ZP)


@pytest.mark.parametrize("n", SIZES)
def test_dequantize(benchmark, n):
    q = qkern.quantize(_floats(n), SCALE, ZP)
    np.testing.assert_array_equal(qkern.dequantize(q, SCALE, ZP), _reference(qkern.dequantize, q, SCALE, ZP))
    benchmark.group = f"dequantize {n}"
    benchmark(qkern.dequantize, q, SCALE, ZP)


@pytest.mark.parametrize("rounding", ["gemmlowp", "single", "fp32"])
def test_requantize_1m(benchmark, rounding):
    acc = _acc(1 << 20)
    rq = qkern.Requant.from_scales(0.02, 0.004, 0.5, 128, rounding=rounding)
    np.testing.assert_array_equal(qkern.requantize(acc, rq), _reference(qkern.requantize, acc, rq))
    benchmark.group = "requantize 1M"
    benchmark(qkern.requantize, acc, rq)


def test_histogram_observer_1m(benchmark):
    x = _floats(1 << 20)
    obs = HistogramObserver()
    obs(x)
    benchmark.group = "HistogramObserver 1M"
    benchmark(obs, x)


def _medians_us(
    fns: list[Callable[[], Any]],
    rounds: int,
    budget_s: float = 0.02,
    stat: Callable[[list[float]], float] = statistics.median,
    pause_s: float = 0.03,
) -> list[float]:
    """`stat` (median, or min) over `rounds` of each fn's mean time per call (us). The fns take turns within
    every round, so all of them see the same phases of a shared machine; each runs ~budget_s per round.
    The order is shuffled every round (seeded), and each sample starts after a `pause_s` sleep and one
    untimed call: after a parallel call torch's OpenMP worker spins for another 8-10 ms of CPU time without
    yielding (measured here), which slowed whatever ran next on the two cores (a 4M quantize 1.25-1.66x,
    every size of it below torch's speed in runs without the pause)."""
    numbers = []
    for fn in fns:
        fn()
        start = time.perf_counter()
        fn()
        numbers.append(max(1, int(budget_s / max(time.perf_counter() - start, 1e-7))))
    times: list[list[float]] = [[] for _ in fns]
    order = list(range(len(fns)))
    shuffle = random.Random(0).shuffle
    for _ in range(rounds):
        shuffle(order)
        for j in order:
            time.sleep(pause_s)
            fns[j]()
            start = time.perf_counter()
            for _ in range(numbers[j]):
                fns[j]()
            times[j].append((time.perf_counter() - start) / numbers[j])
    return [stat(t) * 1e6 for t in times]


def elementwise_table(threads: int = 2, rounds: int = 15, stat: str = "median") -> list[str]:
    """Markdown rows: each op and size, medians (us) of qkern at `threads` threads and of torch at `threads`
    and at 1 thread (on a loaded machine torch's thread team can cost more than the work), the best
    torch's time over qkern's, and qkern's G values/s."""
    import torch
    import torch.ao.quantization  # imported up front: before it is, each quantized-tensor call costs ~20 ms here
    from tqdm import tqdm

    warnings.filterwarnings("ignore", category=UserWarning)
    torch.set_num_threads(threads)
    qkern.set_num_threads(threads)
    reduce = min if stat == "min" else statistics.median
    cases: list[tuple[str, int, Callable[[], Any], Callable[[], Any] | None]] = []
    for n in SIZES:
        x = _floats(n)
        tx = torch.from_numpy(x)
        cases.append(
            (
                "quantize per-tensor -> uint8",
                n,
                lambda x=x: qkern.quantize(x, SCALE, ZP),
                lambda tx=tx: torch.quantize_per_tensor(tx, SCALE, ZP, torch.quint8),
            )
        )
    for n in SIZES:
        q = qkern.quantize(_floats(n), SCALE, ZP)
        tq = torch.quantize_per_tensor(torch.from_numpy(_floats(n)), SCALE, ZP, torch.quint8)
        cases.append(
            (
                "dequantize uint8 -> float32",
                n,
                lambda q=q: qkern.dequantize(q, SCALE, ZP),
                lambda tq=tq: tq.dequantize(),
            )
        )
    x4 = _floats(8 * 64 * 64 * 64).reshape(8, 64, 64, 64)
    tx4 = torch.from_numpy(x4)
    cases.append(
        (
            "quantize_to_nhwc (NCHW float32 -> NHWC uint8)",
            x4.size,
            lambda: qkern.quantize_to_nhwc(x4, SCALE, ZP),
            lambda: torch.quantize_per_tensor(tx4, SCALE, ZP, torch.quint8).permute(0, 2, 3, 1).contiguous(),
        )
    )
    acc = _acc(1 << 20)
    for rounding in ("gemmlowp", "single", "fp32"):
        rq = qkern.Requant.from_scales(0.02, 0.004, 0.5, 128, rounding=rounding)
        cases.append(
            (f"requantize int32 -> uint8 ({rounding})", acc.size, lambda rq=rq: qkern.requantize(acc, rq), None)
        )
    xh = _floats(1 << 20)
    obs = HistogramObserver()
    tobs = torch.ao.quantization.HistogramObserver()
    txh = torch.from_numpy(xh)
    obs(xh)
    tobs(txh)
    cases.append(("HistogramObserver update", xh.size, lambda: obs(xh), lambda: tobs(txh)))
    rows = [
        f"| op | elements | qkern {threads}t (us) | torch {threads}t (us) | torch 1t (us) | best torch / qkern "
        "| qkern G values/s |",
        "|---|---|---|---|---|---|---|",
    ]

    def torch_threads(fn: Callable[[], Any], t: int) -> Callable[[], Any]:
        def run() -> Any:
            torch.set_num_threads(t)
            return fn()

        return run

    for name, n, ours, peer in tqdm(cases, desc="elementwise", unit="case"):
        cells, ratio = ["-", "-"], "-"
        if peer is None:
            (t_ours,) = _medians_us([ours], rounds, stat=reduce)
        else:
            t_ours, t_peer, t_peer1 = _medians_us(
                [ours, torch_threads(peer, threads), torch_threads(peer, 1)], rounds, stat=reduce
            )
            cells = [f"{t_peer:,.1f}", f"{t_peer1:,.1f}"]
            ratio = f"{min(t_peer, t_peer1) / t_ours:.2f}x"
        rows.append(f"| {name} | {n:,} | {t_ours:,.1f} | {cells[0]} | {cells[1]} | {ratio} | {n / t_ours / 1e3:.2f} |")
        torch.set_num_threads(threads)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--stat", choices=["median", "min"], default="median", help="statistic over the rounds")
    args = parser.parse_args()
    print(f"isa={qkern.get_isa()} threads={args.threads} stat={args.stat}")
    print("\n".join(elementwise_table(args.threads, args.rounds, args.stat)))


if __name__ == "__main__":
    main()
