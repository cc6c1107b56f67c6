"""`qkern demo ptq`: train two small digits models, quantize them with qkern and with torch/ONNX Runtime, compare."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np

from .argtypes import positive_int

CLASSIFIER_METHODS = ("minmax", "percentile", "mse", "entropy", "cross_entropy")
UNET_METHODS = ("minmax", "percentile", "mse", "entropy")
# TensorRT-style entropy scans every end bin of its histogram; 512 bins keep that to seconds per model
CALIBRATOR_KWARGS = {"entropy": {"num_bins": 512}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=6, help="training epochs of each model (default 6)")
    parser.add_argument("--width", type=int, default=8, help="channels of the first layer (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data split, noise and training (default 0)")
    parser.add_argument("--calibration", type=int, default=256, help="calibration images (default 256)")
    parser.add_argument(
        "--rounds", type=positive_int, default=7, help="timing rounds; the runtimes take turns in each (default 7)"
    )
    parser.add_argument("--threads", type=int, default=2, help="threads of every runtime (default 2)")
    parser.add_argument("--out-dir", default=".", help="where the PNGs go (default: the current directory)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNGs (no matplotlib needed)")


def _metric_fn(kind: str, data: Any) -> Any:
    from qkern.torch import zoo

    if kind == "accuracy":
        return lambda out: zoo.accuracy(np.asarray(out), data.y_test)
    return lambda out: zoo.psnr(np.asarray(out), data.y_test)


def _evaluate(
    name: str, model: Any, data: Any, kind: str, methods: tuple[str, ...], args: argparse.Namespace, bar: Any
) -> tuple[list[tuple[str, float, float, float]], dict[str, Any]]:
    """Rows (label, metric, batch-1 ms, batch-32 ms; NaN where not timed) and the models made for plots."""
    import torch

    from qkern.torch import peers, quantize

    metric = _metric_fn(kind, data)
    calib = [data.x_train[i : i + 64] for i in range(0, min(args.calibration, len(data.x_train)), 64)]
    x_test = data.x_test
    nan = float("nan")
    rows: list[tuple[str, float, float, float]] = []
    with torch.no_grad():
        float_metric = metric(model(x_test).numpy())
    qmodels, scores = {}, {}
    for method in methods:
        bar.set_postfix_str(f"{name}: qkern {method}")
        qmodels[method] = quantize(model, calib, method=method, calibrator_kwargs=CALIBRATOR_KWARGS.get(method))
        scores[method] = metric(qmodels[method](x_test.numpy()))
    best = max(methods, key=lambda m: scores[m])
    bar.set_postfix_str(f"{name}: qkern 4-bit weights")
    q4 = quantize(model, calib, method=best, weight_bits=4, calibrator_kwargs=CALIBRATOR_KWARGS.get(best))
    bar.set_postfix_str(f"{name}: qkern 7-bit activations")
    # uint8 activations in [0, 127] (torch's x86 reduce_range): every layer runs the 7-bit kernels where the
    # ISA has them (docs/kernels.md)
    q7 = quantize(model, calib, method=best, act_bits=7, calibrator_kwargs=CALIBRATOR_KWARGS.get(best))
    bar.set_postfix_str(f"{name}: torch FX PTQ")
    tq = peers.torch_fx_ptq(model, calib)
    with torch.no_grad():
        torch_metric = metric(tq(x_test).numpy())
    bar.set_postfix_str(f"{name}: ONNX Runtime quantize_static")
    s32, s8 = peers.onnx_sessions(model, calib, threads=args.threads)
    ort_metric = metric(s8.run(None, {"x": x_test.numpy()})[0])

    qm = qmodels[best]
    runtimes = {
        "torch f32": lambda x: model(x),
        "torch FX int8 (x86)": lambda x: tq(x),
        "ORT f32": lambda x: s32.run(None, {"x": x.numpy()}),
        "ORT int8 (QDQ)": lambda x: s8.run(None, {"x": x.numpy()}),
        f"qkern int8 ({best})": lambda x: qm(x.numpy()),
        f"qkern int8, act 7-bit ({best})": lambda x: q7(x.numpy()),
    }
    batches = {n: x_test[:n].contiguous() for n in (1, 32)}
    calls = {(label, n): (lambda fn=fn, x=x: fn(x)) for label, fn in runtimes.items() for n, x in batches.items()}
    bar.set_postfix_str(f"{name}: timing, round 1/{args.rounds}")
    with torch.no_grad():
        ms = peers.interleaved_medians_ms(
            calls,
            rounds=args.rounds,
            seed=args.seed,
            on_round=lambda r: bar.set_postfix_str(f"{name}: timing, round {min(r + 2, args.rounds)}/{args.rounds}"),
        )
    timed = {label: (ms[(label, 1)], ms[(label, 32)]) for label in runtimes}
    rows.append(("float32 (torch)", float_metric, *timed["torch f32"]))
    rows.append(("ORT f32", float_metric, *timed["ORT f32"]))
    for method in methods:
        label = f"qkern int8 ({method})"
        rows.append((label, scores[method], *(timed[label] if label in timed else (nan, nan))))
    label7 = f"qkern int8, act 7-bit ({best})"
    rows.append((label7, metric(q7(x_test.numpy())), *timed[label7]))
    rows.append((f"qkern 4-bit weights ({best})", metric(q4(x_test.numpy())), nan, nan))
    rows.append(("torch FX int8 (x86)", torch_metric, *timed["torch FX int8 (x86)"]))
    rows.append(("ORT int8 (QDQ, per-channel)", ort_metric, *timed["ORT int8 (QDQ)"]))
    return rows, {"qkern": qm, "torch_int8": tq, "float": model, "calib": calib}


def _print_table(title: str, unit: str, rows: list[tuple[str, float, float, float]]) -> None:
    print(f"\n{title}")
    print(f"  {'model':<34} {unit:>9} {'batch 1 ms':>11} {'batch 32 ms':>12}")
    for label, m, b1, b32 in rows:
        t1 = "" if np.isnan(b1) else f"{b1:.3f}"
        t32 = "" if np.isnan(b32) else f"{b32:.3f}"
        print(f"  {label:<34} {m:>9.2f} {t1:>11} {t32:>12}")


def _plots(out_dir: str, unet: dict[str, Any], data: Any, sqnr: dict[str, list[dict[str, Any]]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    os.makedirs(out_dir, exist_ok=True)
    x = data.x_test[:8]
    with torch.no_grad():
        outs = [
            ("noisy input", x.numpy()),
            ("float", unet["float"](x).numpy()),
            ("qkern int8", unet["qkern"](x.numpy())),
            ("torch FX int8", unet["torch_int8"](x).numpy()),
            ("clean", data.y_test[:8].numpy()),
        ]
    fig, axes = plt.subplots(len(outs), 8, figsize=(8, len(outs) * 1.1))
    for r, (label, imgs) in enumerate(outs):
        for c in range(8):
            ax = axes[r, c]
            ax.imshow(np.clip(imgs[c, 0], 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=7)
    fig.tight_layout()
    digits_png = os.path.join(out_dir, "ptq_denoised_digits.png")
    fig.savefig(digits_png, dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(sqnr), figsize=(6 * len(sqnr), 3.5))
    for ax, (title, rows) in zip(np.atleast_1d(axes), sqnr.items()):
        ax.bar(range(len(rows)), [min(r["sqnr_db"], 80.0) for r in rows])
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([r["name"] for r in rows], rotation=70, fontsize=7)
        ax.set_ylabel("SQNR vs float (dB)")
        ax.set_title(title)
    fig.tight_layout()
    sqnr_png = os.path.join(out_dir, "ptq_layer_sqnr.png")
    fig.savefig(sqnr_png, dpi=120)
    plt.close(fig)
    return [digits_png, sqnr_png]


def main(args: argparse.Namespace) -> int:
    import warnings

    import torch
    from tqdm.auto import tqdm

    import qkern
    from qkern.torch import report, zoo

    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    qkern.set_num_threads(args.threads)
    bar = tqdm(total=4, desc="qkern demo ptq", unit="stage")
    clf, cdata = zoo.train_classifier(args.seed, args.epochs, args.width)
    bar.update()
    unet, udata = zoo.train_unet(args.seed, args.epochs, args.width)
    bar.update()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="torch")
        warnings.filterwarnings("ignore", module="onnxruntime")
        crows, cmodels = _evaluate("classifier", clf, cdata, "accuracy", CLASSIFIER_METHODS, args, bar)
        bar.update()
        urows, umodels = _evaluate("u-net", unet, udata, "psnr", UNET_METHODS, args, bar)
        bar.update()
    bar.close()
    print(f"qkern demo ptq: {qkern.get_isa()} path, {args.threads} threads; latencies are medians")
    _print_table("digits classifier (16x16, test set of 359)", "acc %", crows)
    _print_table("U-Net denoiser (32x32, noise sigma 0.3)", "PSNR dB", urows)
    if not args.no_plots:
        sqnr = {
            "classifier": report(clf, cmodels["qkern"], cdata.x_test[:64], show=False),
            "u-net": report(unet, umodels["qkern"], udata.x_test[:64], show=False),
        }
        for path in _plots(args.out_dir, umodels, udata, sqnr):
            print(f"wrote {path}")
    print(f"total {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m qkern.tools.demo_ptq", description=__doc__)
    add_arguments(parser)
    raise SystemExit(main(parser.parse_args()))
