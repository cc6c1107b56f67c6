"""`qkern demo qat`: QAT on the digits classifier with each method at 2, 4 and 8 bits, fake-quant and integer.

Trains the float DigitsNet (qkern.torch.zoo), quantizes it post-training at each width (the PTQ baseline),
then fine-tunes a copy with each QAT method, converts every trained model to a qkern QuantizedModel and prints
the test accuracy of the fake-quant model beside that of the integer model, with a plot of accuracy vs bits.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from typing import Any

import numpy as np

METHODS = ("fake_quant", "dorefa", "pact", "wrpn", "lsq")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="seed of the data split, the float model and QAT")
    parser.add_argument("--bits", type=int, nargs="+", default=[2, 4, 8], help="widths (weights = activations)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, help="QAT methods")
    parser.add_argument("--width", type=int, default=16, help="DigitsNet width multiplier (channels of the stem)")
    parser.add_argument("--float-epochs", type=int, default=12, help="epochs of float training")
    parser.add_argument("--qat-epochs", type=int, default=4, help="epochs of QAT fine-tuning per model")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of QAT fine-tuning")
    parser.add_argument("--plot", default="qat_accuracy.png", help="PNG of accuracy vs bits ('' for none)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: these small convolutions gain little from more threads)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _integer_accuracy(qat_model: Any, data: Any, zoo: Any) -> tuple[float | None, str]:
    """Test accuracy of the converted integer model, or None with the reason it cannot be converted exactly."""
    from qkern.torch import convert

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            qmodel = convert(qat_model, data.x_train[:256])
    except ValueError as exc:
        return None, str(exc)
    return zoo.accuracy(qmodel(data.x_test.numpy()), data.y_test), ""


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train, quantize and evaluate; returns {"float": acc, "ptq": {bits: acc}, "qat": {(method, bits): (fq, int)}}."""
    import torch
    import torch.nn.functional as F

    from qkern.torch import prepare_qat, quantize, zoo
    from qkern.torch.qat import qat_regularization

    progress = not args.no_progress
    torch.set_num_threads(max(1, args.threads))
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    model, data = zoo.train_classifier(args.seed, epochs=args.float_epochs, width=args.width, progress=progress)
    with torch.no_grad():
        float_acc = zoo.accuracy(model(data.x_test), data.y_test)
    timings = {"float training": time.perf_counter() - t0}

    t0 = time.perf_counter()
    calib = [data.x_train[i : i + 128] for i in range(0, 512, 128)]
    ptq = {}
    for bits in args.bits:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            qmodel = quantize(model, calib, weight_bits=bits, act_bits=bits)
        ptq[bits] = zoo.accuracy(qmodel(data.x_test.numpy()), data.y_test)
    timings["PTQ"] = time.perf_counter() - t0

    def loss_fn(logits: torch.Tensor, target: torch.Tensor, qat_model: torch.nn.Module) -> torch.Tensor:
        return F.cross_entropy(logits, target) + qat_regularization(qat_model)

    results: dict[tuple[str, int], tuple[float, float | None, str]] = {}
    t0 = time.perf_counter()
    runs = [(m, b) for b in args.bits for m in args.methods]
    bar = _progress(runs, progress)
    for method, bits in bar:
        if hasattr(bar, "set_postfix_str"):
            bar.set_postfix_str(f"{method} {bits} bits")
        torch.manual_seed(args.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # DoReFa weights at 8 bits: reported in the table
            qat_model = prepare_qat(model, method, weight_bits=bits, act_bits=bits, pact_alpha=4.0, pact_alpha_l2=1e-4)
        qat_model = zoo._train(
            qat_model,
            data,
            lambda y, t, m=qat_model: loss_fn(y, t, m),
            epochs=args.qat_epochs,
            seed=args.seed,
            lr=args.lr,
            desc=f"QAT {method} {bits}b",
            progress=progress,
        )
        with torch.no_grad():
            fq_acc = zoo.accuracy(qat_model(data.x_test), data.y_test)
        int_acc, why = _integer_accuracy(qat_model, data, zoo)
        results[(method, bits)] = (fq_acc, int_acc, why)
    timings["QAT (train + convert)"] = time.perf_counter() - t0
    return {"float": float_acc, "ptq": ptq, "qat": results, "timings": timings}


def _progress(items: list[Any], enabled: bool) -> Any:
    if not enabled:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is in the demo extras
        return items
    return tqdm(items, desc="QAT runs", unit="model")


def format_table(res: dict[str, Any], bits_list: list[int], methods: list[str]) -> str:
    """Rows: bits; columns: float, PTQ, then each method as fake-quant / integer accuracy (%)."""
    head = ["bits", "float", "PTQ"] + [f"{m} fq/int" for m in methods]
    rows = [head]
    for bits in bits_list:
        row = [str(bits), f"{res['float']:.2f}", f"{res['ptq'][bits]:.2f}"]
        for m in methods:
            fq, integer, _ = res["qat"][(m, bits)]
            row.append(f"{fq:.2f} / " + ("n/a*" if integer is None else f"{integer:.2f}"))
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    notes = sorted({why.split(":")[0] for (_, _), (_, i, why) in res["qat"].items() if i is None})
    if notes:
        lines.append("* no exact int8 model: " + "; ".join(notes) + " (the weight grid needs 9 bits)")
    return "\n".join(lines)


def plot(res: dict[str, Any], bits_list: list[int], methods: list[str], path: str) -> None:
    """Accuracy vs bits per method (fake-quant solid, integer dashed), float and PTQ for reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.axhline(res["float"], color="black", lw=1, label="float")
    ax.plot(bits_list, [res["ptq"][b] for b in bits_list], "k:o", label="PTQ (integer)")
    for m in methods:
        (line,) = ax.plot(bits_list, [res["qat"][(m, b)][0] for b in bits_list], "-o", label=f"{m} fake-quant")
        ints = [res["qat"][(m, b)][1] for b in bits_list]
        ax.plot(
            bits_list, [np.nan if v is None else v for v in ints], "--x", color=line.get_color(), label=f"{m} integer"
        )
    ax.set_xlabel("bits (weights and activations)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(bits_list)
    ax.set_title("Digits classifier: QAT methods vs bits")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(args: argparse.Namespace) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        print("qkern demo qat needs torch (pip install 'qkern[torch]')", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    res = run(args)
    print(format_table(res, args.bits, args.methods))
    for what, seconds in res["timings"].items():
        print(f"{what}: {seconds:.1f} s")
    if args.plot:
        try:
            plot(res, args.bits, args.methods, args.plot)
            print(f"plot: {args.plot}")
        except ImportError:
            print("no plot: matplotlib is not installed", file=sys.stderr)
    print(f"total: {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m qkern.tools.demo_qat", description=__doc__)
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
