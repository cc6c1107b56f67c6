"""`qkern validate`: quantize random float layers, run qkern, and compare with torch's float ops and
torch's / ONNX Runtime's quantized ops. Shows the torch 2.13 quantized conv_transpose2d bug."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..ops import conv3x3, conv_transpose2x2
from ..qparams import QParams, calc_qparams
from ..requant import Requant

# (N, H, W, C, O, stride, padding) for conv3x3 and (N, H, W, C, O) for conv_transpose2x2.
CONV_CASES = [(1, 5, 7, 3, 17, 1, 1), (2, 17, 13, 17, 8, 2, 1), (1, 14, 14, 64, 65, 1, 0), (3, 8, 9, 32, 32, 2, 0)]
DECONV_CASES = [(1, 5, 6, 16, 8), (2, 7, 5, 17, 65), (1, 14, 14, 64, 32), (3, 4, 4, 8, 8)]
ENGINES = ("fbgemm", "onednn", "x86")


def _cpu_has_vnni() -> bool:
    """Whether torch's and ONNX Runtime's u8s8 kernels run VNNI here (exact int32 dot products). Without it
    their AVX2 paths add u8*s8 pairs in saturating int16 (`vpmaddubsw`), so they are no exactness oracle."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


PEERS_EXACT = _cpu_has_vnni()
SATURATION_NOTE = "this CPU lacks VNNI: the peer's AVX2 u8s8 path saturates int16 pair sums"


@dataclass
class Check:
    """One comparison: qkern (or a peer) against an oracle."""

    op: str
    case: str
    subject: str
    oracle: str
    max_diff: int
    frac_equal: float
    must_equal: bool  # exact equality required (else within 1 LSB)
    is_qkern: bool = True
    notes: list[str] = field(default_factory=list)
    saturating_peer: bool = False  # the oracle may saturate (SATURATION_NOTE): agreement on >= 99% is asked

    @property
    def ok(self) -> bool:
        if self.saturating_peer:
            return self.frac_equal >= 0.99
        return self.max_diff == 0 if self.must_equal else self.max_diff <= 1


def _torch() -> Any:
    import torch

    warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    return torch


def _compare(got: np.ndarray, want: np.ndarray) -> tuple[int, float]:
    d = np.abs(got.astype(np.int64) - want.astype(np.int64))
    return int(d.max()) if d.size else 0, float(np.mean(d == 0)) if d.size else 1.0


def _layer(rng: np.random.Generator, x_shape: tuple[int, ...], w_shape: tuple[int, ...], axis: int, per_channel: bool):
    """Random float activations (ReLU'd normal) and weights, their qparams and quantized values."""
    x = np.maximum(rng.standard_normal(x_shape), -0.3).astype(np.float32)
    fan_in = int(np.prod(w_shape)) // w_shape[axis]
    w = (rng.standard_normal(w_shape) / np.sqrt(fan_in)).astype(np.float32)
    xp = calc_qparams(float(x.min()), float(x.max()), "uint8")
    if per_channel:
        other = tuple(i for i in range(w.ndim) if i != axis)
        wp = calc_qparams(w.min(axis=other), w.max(axis=other), "int8", symmetric=True)
        wp = QParams(wp.scale, wp.zero_point, "int8", axis=axis)
    else:
        wp = calc_qparams(float(w.min()), float(w.max()), "int8", symmetric=True)
    return xp, xp.quantize(x), wp, wp.quantize(w)


def _out_qparams(y: np.ndarray) -> QParams:
    return calc_qparams(float(y.min()), float(y.max()), "uint8")


def _deq(torch: Any, q: np.ndarray, p: QParams) -> Any:
    return torch.from_numpy(np.ascontiguousarray(p.dequantize(q)))


def _torch_qweight(torch: Any, wq: np.ndarray, wp: QParams, axis: int) -> Any:
    t = torch.from_numpy(np.ascontiguousarray(wq))
    if wp.axis is None:
        return torch._make_per_tensor_quantized_tensor(t, float(wp.scale), 0)
    scales = torch.from_numpy(np.asarray(wp.scale, np.float64))
    return torch._make_per_channel_quantized_tensor(t, scales, torch.zeros(len(scales), dtype=torch.int64), axis)


def _peer_check(case: str, oracle: str, max_diff: int, frac_equal: float) -> Check:
    """qkern's fp32 mode against a quantized peer: exact where the peer computes exact int32 sums."""
    if PEERS_EXACT:
        return Check("conv3x3", case, "qkern fp32", oracle, max_diff, frac_equal, True)
    return Check("conv3x3", case, "qkern fp32", oracle, max_diff, frac_equal, False, notes=[SATURATION_NOTE],
                 saturating_peer=True)  # fmt: skip


def validate_conv3x3(rng: np.random.Generator, *, ort: bool = True) -> list[Check]:
    torch = _torch()
    checks: list[Check] = []
    for n, h, w, c, o, stride, pad in CONV_CASES:
        for per_channel in (False, True):
            case = f"N={n} {h}x{w} {c}->{o} s{stride} p{pad} {'per-channel' if per_channel else 'per-tensor'}"
            xp, xq, wp, wq = _layer(rng, (n, h, w, c), (o, 3, 3, c), 0, per_channel)
            x_nchw = _deq(torch, xq, xp).permute(0, 3, 1, 2)
            w_oihw = _deq(torch, wq, wp).permute(0, 3, 1, 2)
            yf = torch.nn.functional.conv2d(x_nchw, w_oihw, None, stride, pad).permute(0, 2, 3, 1).numpy()
            yp = _out_qparams(yf)
            want_float = yp.quantize(yf)
            rq = Requant.from_scales(xp.scale, wp.scale, yp.scale, yp.zero_point, rounding="fp32")
            got = conv3x3(xq, wq, stride=stride, padding=pad, x_zero_point=xp.zero_point, requant=rq)
            checks.append(Check("conv3x3", case, "qkern fp32", "torch float conv2d", *_compare(got, want_float), False))
            for rounding in ("gemmlowp", "single"):
                rq2 = Requant.from_scales(xp.scale, wp.scale, yp.scale, yp.zero_point, rounding=rounding)
                got2 = conv3x3(xq, wq, stride=stride, padding=pad, x_zero_point=xp.zero_point, requant=rq2)
                md, fe = _compare(got2, want_float)
                checks.append(Check("conv3x3", case, f"qkern {rounding}", "torch float conv2d", md, fe, False))
            xt = torch._make_per_tensor_quantized_tensor(torch.from_numpy(xq), float(xp.scale), xp.zero_point)
            xt = xt.permute(0, 3, 1, 2)
            wt = _torch_qweight(torch, wq.transpose(0, 3, 1, 2), wp, 0)
            for engine in ENGINES:
                if engine not in torch.backends.quantized.supported_engines:
                    continue
                torch.backends.quantized.engine = engine
                packed = torch.ops.quantized.conv2d_prepack(wt, None, [stride] * 2, [pad] * 2, [1, 1], 1)
                yt = torch.ops.quantized.conv2d(xt, packed, float(yp.scale), yp.zero_point)
                ref = yt.int_repr().permute(0, 2, 3, 1).numpy()
                md, fe = _compare(got, ref)
                checks.append(_peer_check(case, f"torch quantized conv2d ({engine})", md, fe))
            if ort:
                ref = _ort_qlinearconv(xq, xp, wq, wp, yp, stride, pad)
                if ref is not None:
                    md, fe = _compare(got, ref)
                    checks.append(_peer_check(case, "onnxruntime QLinearConv", md, fe))
    return checks


def _ort_qlinearconv(xq, xp, wq, wp, yp, stride, pad) -> np.ndarray | None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    from .bench_conv import qlinearconv_session

    x_nchw = np.ascontiguousarray(xq.transpose(0, 3, 1, 2))
    sess = qlinearconv_session(
        wq.transpose(0, 3, 1, 2),
        x_nchw.shape,
        (xp.scale, xp.zero_point),
        wp.scale,
        (yp.scale, yp.zero_point),
        stride,
        pad,
        1,
    )
    return sess.run(None, {"x": x_nchw})[0].transpose(0, 2, 3, 1)


def validate_deconv2x2(rng: np.random.Generator) -> list[Check]:
    torch = _torch()
    checks: list[Check] = []
    for n, h, w, c, o in DECONV_CASES:
        for per_channel in (False, True):
            case = f"N={n} {h}x{w} {c}->{o} {'per-channel' if per_channel else 'per-tensor'}"
            xp, xq, wp, wq = _layer(rng, (n, h, w, c), (c, 2, 2, o), 3, per_channel)
            x_nchw = _deq(torch, xq, xp).permute(0, 3, 1, 2)
            w_iohw = _deq(torch, wq, wp).permute(0, 3, 1, 2)
            yf = torch.nn.functional.conv_transpose2d(x_nchw, w_iohw, None, 2).permute(0, 2, 3, 1).numpy()
            yp = _out_qparams(yf)
            want_float = yp.quantize(yf)
            rq = Requant.from_scales(xp.scale, wp.scale, yp.scale, yp.zero_point, rounding="fp32")
            got = conv_transpose2x2(xq, wq, x_zero_point=xp.zero_point, requant=rq)
            checks.append(
                Check(
                    "conv_transpose2x2",
                    case,
                    "qkern fp32",
                    "torch float conv_transpose2d",
                    *_compare(got, want_float),
                    False,
                )
            )
            if per_channel:  # torch's quantized transposed conv is per-tensor here; qkern is the only per-channel one
                continue
            xt = torch._make_per_tensor_quantized_tensor(torch.from_numpy(xq), float(xp.scale), xp.zero_point)
            xt = xt.permute(0, 3, 1, 2)
            wt = _torch_qweight(torch, wq.transpose(0, 3, 1, 2), wp, 1)
            for engine in ("qnnpack", *ENGINES):
                if engine not in torch.backends.quantized.supported_engines:
                    continue
                torch.backends.quantized.engine = engine
                packed = torch.ops.quantized.conv_transpose2d_prepack(wt, None, [2, 2], [0, 0], [0, 0], [1, 1], 1)
                yt = torch.ops.quantized.conv_transpose2d(xt, packed, float(yp.scale), yp.zero_point)
                ref = yt.int_repr().permute(0, 2, 3, 1).numpy()
                if engine == "qnnpack":
                    md, fe = _compare(got, ref)
                    checks.append(
                        Check("conv_transpose2x2", case, "qkern fp32", "torch quantized (qnnpack)", md, fe, True)
                    )
                else:  # the peer itself against the float op: this is where torch 2.13 is wrong
                    md, fe = _compare(ref, want_float)
                    checks.append(
                        Check(
                            "conv_transpose2x2",
                            case,
                            f"torch quantized ({engine})",
                            "torch float conv_transpose2d",
                            md,
                            fe,
                            False,
                            is_qkern=False,
                        )
                    )
    return checks


def format_checks(checks: list[Check]) -> str:
    lines = []
    for ck in checks:
        verdict = "ok" if ck.ok else ("FAIL" if ck.is_qkern else "WRONG (torch bug)")
        rule = "==" if ck.must_equal else "<=1 LSB"
        lines.append(
            f"{ck.op:<18} {ck.case:<40} {ck.subject:<26} vs {ck.oracle:<32} {rule:<7} "
            f"max|diff| {ck.max_diff:3d}  equal {100 * ck.frac_equal:6.2f}%  {verdict}"
        )
    qk = [c for c in checks if c.is_qkern]
    lines.append(f"qkern: {sum(c.ok for c in qk)}/{len(qk)} checks passed")
    bad = [c for c in checks if not c.is_qkern and not c.ok]
    if bad:
        lines.append(
            f"torch quantized conv_transpose2d is wrong in {len(bad)} of "
            f"{sum(not c.is_qkern for c in checks)} engine/case pairs (up to {max(c.max_diff for c in bad)} LSB "
            "off the float op); qkern's conv_transpose2x2 is within 1 LSB everywhere"
        )
    return "\n".join(lines)
