"""Fixed cost per step of a QuantizedModel at batch 1: `python -m qkern.model.bench [--reps N]`.

A 10-step model on an 8x8 image (compute is tiny) is timed three ways: whole calls (`model(x)`,
`model.run_int(xq)`), and each planned step alone; the per-step figure is what a step costs beyond
its kernel's arithmetic at this size.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from .. import QParams, get_isa, get_num_threads, set_num_threads
from .builder import ModelBuilder
from .model import QuantizedModel


def small_model(seed: int = 0, channels: int = 8) -> QuantizedModel:
    """input, conv3x3, conv3x3, conv1x1, add, max pool, conv3x3, global pool, flatten, linear."""
    rng = np.random.default_rng(seed)
    c = channels

    def w(*shape: int) -> np.ndarray:
        return rng.integers(-127, 128, shape).astype(np.int8)

    def wq(o: int) -> QParams:
        return QParams(np.full(o, 0.01, np.float32), np.zeros(o, np.int32), "int8")

    relu = QParams(np.float32(0.05), 0, qmin=0)
    b = ModelBuilder()
    x = b.input(QParams(np.float32(0.02), 128), name="x")
    y = b.conv2d(x, w(c, 3, 3, 3), wq(c), None, relu)
    y = b.conv2d(y, w(c, 3, 3, c), wq(c), None, relu)
    z = b.conv2d(y, w(c, 1, 1, c), wq(c), None, relu, kernel_size=1, padding=0)
    y = b.add(y, z, relu)
    y = b.max_pool2d(y, 2, 2)
    y = b.conv2d(y, w(2 * c, 3, 3, c), wq(2 * c), None, relu)
    y = b.global_avg_pool(y, relu)
    y = b.linear(b.flatten(y), w(10, 2 * c), wq(10), None, QParams(np.float32(0.1), 128))
    b.output(y, name="logits")
    return b.build()


def _median_us(fn: Callable[[], object], reps: int, rounds: int = 9) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        times.append((time.perf_counter() - t0) / reps)
    return float(np.median(times) * 1e6)


def measure(reps: int = 2000, threads: int = 1) -> dict[str, object]:
    """Median microseconds: whole calls, per planned step, and the mean per step."""
    old = get_num_threads()
    set_num_threads(threads)
    try:
        model = small_model()
        x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
        xq = model.trace(x)["x"]
        model(x)
        plan = next(iter(model._plans.values()))
        per_step = [_median_us(fn, reps) for fn in plan.fns]
        names = [s.name for s in model._steps if s.op not in ("input", "flatten")]
        return {
            "isa": get_isa(),
            "threads": threads,
            "steps": len(model.steps),
            "call_us": _median_us(lambda: model(x), reps),
            "run_int_us": _median_us(lambda: model.run_int(xq), reps),
            "step_us": dict(zip(names, per_step)),
            "mean_step_us": float(np.mean(per_step)),
        }
    finally:
        set_num_threads(old)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2000, help="calls per timing round (9 rounds, median)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    r = measure(args.reps, args.threads)
    print(f"isa {r['isa']}, {r['threads']} thread(s), {r['steps']} steps, batch 1, 8x8 image")
    print(f"model(x)        {r['call_us']:8.2f} us   (quantize + steps + dequantize)")
    print(f"run_int(xq)     {r['run_int_us']:8.2f} us")
    for name, us in r["step_us"].items():  # type: ignore[union-attr]
        print(f"  {name:<20} {us:8.2f} us")
    print(f"mean per step   {r['mean_step_us']:8.2f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
