"""Normative NumPy integer ops of the model runtime: rescale, add, cat, pools, LUT (docs/model.md).

Every multiplier is a fixed-point pair (M, shift) from `quantize_multiplier` applied with the single
rounding of docs/quantization.md eq. (12): (x*M + 2^(30-shift)) >> (31-shift), ties toward +inf
(docs/model.md eq. (M1)). The native model ops equal these functions bit for bit.
"""

from __future__ import annotations

import numpy as np

from ..fixedpoint import multiply_by_quantized_multiplier_single, quantize_multiplier

ADD_LEFT_SHIFT = 20  # docs/model.md eq. (M3): headroom bits before the input multipliers of add
MAX_POOL_COUNT = 1 << 23  # a window of at most 2^23 elements keeps the int32 sum of (q - z) exact (eq. (M5))


def _f64(scale: object) -> np.float64:
    return np.float64(np.float32(scale))


def rescale_multiplier(in_scale: float, out_scale: float) -> tuple[int, int]:
    """(M, shift) for the real multiplier s_in / s_out (eq. (M2)), scales read as float32."""
    return quantize_multiplier(_f64(in_scale) / _f64(out_scale))


def add_multipliers(scale1: float, scale2: float, out_scale: float) -> tuple[int, int, int, int, int, int]:
    """(M1, shift1, M2, shift2, Mout, shift_out) of the fixed-point add (eq. (M3))."""
    s1, s2, so = _f64(scale1), _f64(scale2), _f64(out_scale)
    twice_max = 2.0 * max(s1, s2)
    m1, sh1 = quantize_multiplier(s1 / twice_max)
    m2, sh2 = quantize_multiplier(s2 / twice_max)
    mo, sho = quantize_multiplier(twice_max / (float(1 << ADD_LEFT_SHIFT) * so))
    return m1, sh1, m2, sh2, mo, sho


def avg_multiplier(in_scale: float, count: int, out_scale: float) -> tuple[int, int]:
    """(M, shift) for s_in / (count * s_out): the mean and the rescale in one rounding (eq. (M5))."""
    return quantize_multiplier(_f64(in_scale) / (float(count) * _f64(out_scale)))


def _finish(v: np.ndarray, zero_point: int, qmin: int, qmax: int, dtype: str) -> np.ndarray:
    return np.clip(v + zero_point, qmin, qmax).astype(dtype)


def _mul(x: np.ndarray, multiplier: int, shift: int) -> np.ndarray:
    return multiply_by_quantized_multiplier_single(x.astype(np.int64), multiplier, shift)


def rescale(
    q: np.ndarray,
    in_zero_point: int,
    multiplier: int,
    shift: int,
    out_zero_point: int,
    qmin: int,
    qmax: int,
    dtype: str,
) -> np.ndarray:
    """Eq. (M2): clamp(z_o + mul(q - z_i, M, shift), qmin, qmax) as `dtype`."""
    return _finish(_mul(q.astype(np.int64) - in_zero_point, multiplier, shift), out_zero_point, qmin, qmax, dtype)


def add(
    q1: np.ndarray,
    z1: int,
    m1: int,
    sh1: int,
    q2: np.ndarray,
    z2: int,
    m2: int,
    sh2: int,
    mo: int,
    sho: int,
    out_zero_point: int,
    qmin: int,
    qmax: int,
    dtype: str,
) -> np.ndarray:
    """Eq. (M3): each input (q - z) << 20 scaled by its multiplier, summed, scaled to the output, clamped."""
    a = _mul((q1.astype(np.int64) - z1) << ADD_LEFT_SHIFT, m1, sh1)
    b = _mul((q2.astype(np.int64) - z2) << ADD_LEFT_SHIFT, m2, sh2)
    return _finish(_mul(a + b, mo, sho), out_zero_point, qmin, qmax, dtype)


def cat(parts: list[np.ndarray]) -> np.ndarray:
    """Eq. (M4): concatenation along the last axis of inputs already on the output's grid."""
    return np.concatenate(parts, axis=-1)


def pool_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Floor-mode output length of a pooling window (as torch with ceil_mode=False)."""
    return (size + 2 * padding - kernel) // stride + 1


def _windows(x: np.ndarray, kernel: int, stride: int, ho: int, wo: int) -> list[np.ndarray]:
    """The kernel x kernel strided views of NHWC `x` whose element [n, i, j, c] is window (i, j)'s cell."""
    return [
        x[:, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride, :]
        for i in range(kernel)
        for j in range(kernel)
    ]


def max_pool2d(q: np.ndarray, kernel: int, stride: int, padding: int) -> np.ndarray:
    """Max over kh x kw windows of NHWC integers; padded cells never win (eq. (M6))."""
    n, h, w, c = q.shape
    ho, wo = pool_output_size(h, kernel, stride, padding), pool_output_size(w, kernel, stride, padding)
    lowest = np.iinfo(q.dtype).min
    padded = np.full((n, h + 2 * padding, w + 2 * padding, c), lowest, dtype=q.dtype)
    padded[:, padding : padding + h, padding : padding + w, :] = q
    out = np.full((n, ho, wo, c), lowest, dtype=q.dtype)
    for win in _windows(padded, kernel, stride, ho, wo):
        np.maximum(out, win, out=out)
    return out


def avg_pool2d(
    q: np.ndarray,
    kernel: int,
    stride: int,
    in_zero_point: int,
    multiplier: int,
    shift: int,
    out_zero_point: int,
    qmin: int,
    qmax: int,
    dtype: str,
) -> np.ndarray:
    """Eq. (M5): int32 sum of (q - z_i) over each kernel x kernel window (no padding), then one rescale."""
    n, h, w, c = q.shape
    ho, wo = pool_output_size(h, kernel, stride, 0), pool_output_size(w, kernel, stride, 0)
    acc = np.zeros((n, ho, wo, c), dtype=np.int64)
    centred = q.astype(np.int64) - in_zero_point
    for win in _windows(centred, kernel, stride, ho, wo):
        acc += win
    return _finish(_mul(acc, multiplier, shift), out_zero_point, qmin, qmax, dtype)


def global_avg_pool(
    q: np.ndarray,
    in_zero_point: int,
    multiplier: int,
    shift: int,
    out_zero_point: int,
    qmin: int,
    qmax: int,
    dtype: str,
) -> np.ndarray:
    """Eq. (M5) with one window covering H x W: NHWC in, [N, 1, 1, C] out."""
    acc = (q.astype(np.int64) - in_zero_point).sum(axis=(1, 2), keepdims=True)
    return _finish(_mul(acc, multiplier, shift), out_zero_point, qmin, qmax, dtype)


def lut(q: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Eq. (M7): out = table[q - lowest value of q's dtype] (256 entries)."""
    return table[q.astype(np.int64) - int(np.iinfo(q.dtype).min)]
