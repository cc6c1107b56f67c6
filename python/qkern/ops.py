"""The public kernels gemm, conv3x3 and conv_transpose2x2: argument checks, then native or reference."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _backend, overflow, reference
from . import _checks as V
from . import _conv_checks as C
from . import _marshal as M
from .requant_params import Requant


def gemm(
    a: np.ndarray,
    b: np.ndarray,
    *,
    a_zero_point: int = 0,
    b_zero_point: int | np.ndarray = 0,
    bias: np.ndarray | None = None,
    requant: Requant | None = None,
    out: np.ndarray | None = None,
    check_overflow: bool = False,
) -> np.ndarray:
    """C[M,N] = sum_k (a[m,k] - a_zero_point) * (b[k,n] - b_zero_point[n]) + bias[n], exact int32.

    a, b: uint8/int8 in any combination. Returns int32 when `requant` is None, else `requant.dtype`.
    check_overflow=True: a RuntimeWarning when an accumulator wrapped (see `qkern.max_safe_k`).
    """
    a = V.quant_array(a, "a", 2)
    b = V.quant_array(b, "b", 2)
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"a is {a.shape} and b is {b.shape}: a's columns (K) must equal b's rows")
    n = b.shape[1]
    za = V.zero_point(a_zero_point, V.qname(a), "a_zero_point")
    zb = V.zero_point(b_zero_point, V.qname(b), "b_zero_point", channels=n)
    bias = V.bias(bias, n)
    requant = M.checked_requant(requant, n)
    out = M.checked_out(out, (a.shape[0], n), requant, (a, b, bias))
    if check_overflow:
        overflow.check_gemm(a, b, za, zb, bias)
    if _backend.get_backend() == "reference":
        out[...] = reference.gemm(a, b, za, zb, bias, requant)
        return out
    _backend.core.gemm(M.contiguous(a), M.contiguous(b), za, M.zp_vector(zb, n), bias, M.stage_args(requant, n), out)
    return out


def _conv_common(
    x_dtype: str, w: Any, x_zero_point: Any, w_zero_point: Any, bias: Any, requant: Any, out_channels: int
) -> tuple[int, int | np.ndarray, np.ndarray | None, Requant | None]:
    xz = V.zero_point(x_zero_point, x_dtype, "x_zero_point")
    wz = V.zero_point(w_zero_point, w.dtype.name, "w_zero_point", channels=out_channels)
    return xz, wz, V.bias(bias, out_channels), M.checked_requant(requant, out_channels)


def conv3x3(
    x: np.ndarray,
    w: np.ndarray,
    *,
    stride: int = 1,
    padding: int = 1,
    x_zero_point: int = 0,
    w_zero_point: int | np.ndarray = 0,
    bias: np.ndarray | None = None,
    requant: Requant | None = None,
    out: np.ndarray | None = None,
    check_overflow: bool = False,
) -> np.ndarray:
    """NHWC 3x3 convolution: x[N,H,W,C], w[O,3,3,C] -> [N,OH,OW,O], OH = (H + 2*padding - 3)//stride + 1.

    Padding reads as x_zero_point (real 0). stride 1 or 2, padding 0 or 1.
    check_overflow=True: a RuntimeWarning when an accumulator wrapped (see `qkern.max_safe_k`).
    """
    w, stride, padding = C.conv3x3_layer(w, stride, padding)
    x, spatial = C.conv3x3_input(x, w.shape[3], stride, padding)
    o = w.shape[0]
    xz, wz, bias, requant = _conv_common(V.qname(x), w, x_zero_point, w_zero_point, bias, requant, o)
    out = M.checked_out(out, (*spatial, o), requant, (x, w, bias))
    if check_overflow:
        overflow.check_conv3x3(x, w, stride, padding, xz, wz, bias)
    if _backend.get_backend() == "reference":
        out[...] = reference.conv3x3(x, w, stride, padding, xz, wz, bias, requant)
        return out
    _backend.core.conv3x3(
        M.contiguous(x), M.contiguous(w), stride, padding, xz, M.zp_vector(wz, o), bias, M.stage_args(requant, o), out
    )
    return out


def conv_transpose2x2(
    x: np.ndarray,
    w: np.ndarray,
    *,
    x_zero_point: int = 0,
    w_zero_point: int | np.ndarray = 0,
    bias: np.ndarray | None = None,
    requant: Requant | None = None,
    out: np.ndarray | None = None,
    check_overflow: bool = False,
) -> np.ndarray:
    """2x2 stride-2 transposed convolution, NHWC: x[N,H,W,C], w[C,2,2,O] (IHWO) -> [N,2H,2W,O].

    check_overflow=True: a RuntimeWarning when an accumulator wrapped (see `qkern.max_safe_k`).
    """
    w = C.deconv2x2_layer(w)
    x, spatial = C.deconv2x2_input(x, w.shape[0])
    o = w.shape[3]
    xz, wz, bias, requant = _conv_common(V.qname(x), w, x_zero_point, w_zero_point, bias, requant, o)
    out = M.checked_out(out, (*spatial, o), requant, (x, w, bias))
    if check_overflow:
        overflow.check_conv_transpose2x2(x, w, xz, wz, bias)
    if _backend.get_backend() == "reference":
        out[...] = reference.conv_transpose2x2(x, w, xz, wz, bias, requant)
        return out
    _backend.core.deconv2x2(
        M.contiguous(x), M.contiguous(w), xz, M.zp_vector(wz, o), bias, M.stage_args(requant, o), out
    )
    return out
