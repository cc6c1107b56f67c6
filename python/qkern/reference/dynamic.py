"""Normative NumPy form of dynamic quantization: qparams (eq. (18)), per-row/per-tensor quantization (eq. (4))
and the float32 output form of the GEMM (eqs. (19)-(20)); every native path equals these bit for bit."""

from __future__ import annotations

import numpy as np

from ..qparams import _fma_to_f32

_F32 = np.float32
# torch's floor on a dynamic scale (quant_utils' SMALL_SCALE_THRESHOLD), part of eq. (18).
SMALL_SCALE = _F32(6.1e-5)
# Activation dtypes and the scheme code the native core uses for each.
SCHEMES = {"uint8": 0, "int8": 1}


def _tiny_or_unbounded(scale: float) -> bool:
    """float32(scale) is 0, or its float32 reciprocal overflows."""
    s32 = _F32(scale)
    with np.errstate(divide="ignore", over="ignore"):
        return bool(s32 == 0 or np.isinf(_F32(1.0) / s32))


def choose_qparams(min_val: float, max_val: float, dtype: str = "uint8", *, reduce_range: bool = False) -> tuple:
    """Eq. (18): (scale as float32, zero point, qmin, qmax) for the range [min_val, max_val].

    uint8 is torch's rule for dynamic quantization (quant_utils' ChooseQuantizationParams with qmin 0 and
    qmax 255, or 127 with reduce_range): double-precision scale, small scales floored, the zero point from
    the end with the smaller error term. The clamp of eq. (4) is then the full 0..255. int8 is symmetric:
    scale = max(|min|, |max|) / Q with Q = 127 (63 with reduce_range), the same floors, zero point 0,
    clamp -Q..Q.
    """
    lo = min(_F32(min_val), _F32(0.0))
    hi = max(_F32(max_val), _F32(0.0))
    if dtype == "int8":
        qmax = 63 if reduce_range else 127
        scale = float(max(-lo, hi)) / qmax
        if _tiny_or_unbounded(scale):
            scale = 0.1
        scale = max(scale, float(SMALL_SCALE))
        return _F32(scale), 0, -qmax, qmax
    if dtype != "uint8":
        raise ValueError(f"dtype must be 'uint8' or 'int8', got {dtype!r}")
    qmin, qmax = 0, (127 if reduce_range else 255)
    scale = (float(hi) - float(lo)) / (qmax - qmin)
    if _tiny_or_unbounded(scale):
        scale = 0.1
    if scale < float(SMALL_SCALE):  # the range grows with the scale, in float32
        small = _F32(scale)
        scale = float(SMALL_SCALE)
        if lo == 0:
            hi = SMALL_SCALE * _F32(qmax - qmin)
        elif hi == 0:
            lo = -SMALL_SCALE * _F32(qmax - qmin)
        else:
            amplifier = SMALL_SCALE / small
            lo, hi = lo * amplifier, hi * amplifier
    from_min = qmin - float(lo) / scale
    from_max = qmax - float(hi) / scale
    error_min = abs(qmin) - abs(float(lo) / scale)
    error_max = abs(qmax) - abs(float(hi) / scale)
    initial = from_min if error_min < error_max else from_max
    zp = qmin if initial < qmin else qmax if initial > qmax else int(np.rint(initial))
    return _F32(scale), zp, 0, 255


def quantize_activation(
    x: np.ndarray, dtype: str = "uint8", *, per_row: bool = False, reduce_range: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x float32 [M, K] -> (q [M, K], scale float32 [M or 1], zero point int32 [M or 1]): eq. (18) on each
    row's (or the tensor's) range, then eq. (4) with that row's parameters. x must be finite."""
    x = np.asarray(x, dtype=_F32)
    if not np.isfinite(x).all():
        raise ValueError("x must be finite (it holds NaN or inf)")
    rows = x if per_row else x.reshape(1, -1)
    params = [
        choose_qparams(r.min() if r.size else 0.0, r.max() if r.size else 0.0, dtype, reduce_range=reduce_range)
        for r in rows
    ]
    scale = np.array([p[0] for p in params], dtype=_F32)
    zp = np.array([p[1] for p in params], dtype=np.int32)
    qmin, qmax = choose_qparams(0.0, 0.0, dtype, reduce_range=reduce_range)[2:]
    inv = (_F32(1.0) / scale).astype(np.float64)[:, None]
    f = _fma_to_f32(x.astype(np.float64) * inv, zp.astype(np.float64)[:, None])
    q = np.clip(np.rint(f), qmin, qmax).astype(np.uint8 if dtype == "uint8" else np.int8)
    return q, scale, zp


def float_output(
    a: np.ndarray,
    a_scale: np.ndarray,
    a_zero_point: np.ndarray,
    b: np.ndarray,
    b_zero_point: np.ndarray,
    weight_scale: np.ndarray,
    bias: np.ndarray | None,
) -> np.ndarray:
    """Eqs. (19)-(20): y[m, n] = f32(f32(acc[m, n]) * f32(s_a[m] * s_w[n])) + bias[n], rounded to float32
    after each operation, with acc the wrapped int32 sum_k (a[m, k] - z_a[m]) (b[k, n] - z_b[n]).

    a [M, K] uint8/int8 with a_scale/a_zero_point of M entries (per row) or 1 (per tensor); b [K, N] with
    b_zero_point, weight_scale and bias (float32, or None: zeros) of N entries.
    """
    za = np.asarray(a_zero_point, dtype=np.int64).reshape(-1, 1)
    zb = np.asarray(b_zero_point, dtype=np.int64).reshape(1, -1)
    # Every product and partial sum is an integer below 2^53 in magnitude: float64 sums are exact.
    exact = (a.astype(np.float64) - za) @ (b.astype(np.float64) - zb)
    acc = ((exact.astype(np.int64) + 2**31) % 2**32 - 2**31).astype(np.int32)
    scale = np.asarray(a_scale, dtype=_F32).reshape(-1, 1) * np.asarray(weight_scale, dtype=_F32).reshape(1, -1)
    n = b.shape[1]
    fbias = np.zeros(n, dtype=_F32) if bias is None else np.asarray(bias, dtype=_F32)
    with np.errstate(over="ignore", invalid="ignore"):  # IEEE results (inf) as the kernels give them
        return (acc.astype(_F32) * scale) + fbias
