"""The public kernels gemm, conv3x3 and conv_transpose2x2: argument checks, then native or reference."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _backend, overflow, reference
from . import _validate as V
from .requant import Requant

_EMPTY_I32 = np.zeros(0, np.int32)
_EMPTY_F32 = np.zeros(0, np.float32)


def _requant(requant: Any, channels: int) -> Requant | None:
    if requant is None:
        return None
    if not isinstance(requant, Requant):
        raise TypeError(f"requant must be a qkern.Requant or None, got {type(requant).__name__}")
    if requant.channels is not None and requant.channels != channels:
        raise ValueError(f"requant has {requant.channels} channels but the output has {channels}")
    return requant


def _stage(requant: Requant | None, channels: int) -> Any:
    core = _backend.core
    assert core is not None
    if requant is None:
        return core.StageArgs(0, _EMPTY_I32, _EMPTY_I32, _EMPTY_F32, 0, 0, 0)
    m, s, f = requant.expanded(channels)
    return core.StageArgs(requant.mode_code, m, s, f, requant.zero_point, requant.qmin, requant.qmax)


def _out(out: Any, shape: tuple[int, ...], requant: Requant | None, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
    dtype = np.dtype(np.int32) if requant is None else np.dtype(V.np_dtype(requant.dtype))
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray or None, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"out must have dtype {dtype.name}, got {out.dtype}")
    if out.shape != shape:
        raise ValueError(f"out must have shape {shape}, got {out.shape}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out must be C-contiguous and writeable")
    if any(np.may_share_memory(out, x) for x in inputs if x is not None):
        raise ValueError("out must not overlap an input array")
    return out


def _contiguous(x: np.ndarray) -> np.ndarray:
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


def _zp_vector(zp: int | np.ndarray, channels: int) -> np.ndarray:
    return np.ascontiguousarray(np.broadcast_to(np.asarray(zp, dtype=np.int32), (channels,)))


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
    requant = _requant(requant, n)
    out = _out(out, (a.shape[0], n), requant, (a, b, bias))
    if check_overflow:
        overflow.check_gemm(a, b, za, zb, bias)
    if _backend.get_backend() == "reference":
        out[...] = reference.gemm(a, b, za, zb, bias, requant)
        return out
    _backend.core.gemm(_contiguous(a), _contiguous(b), za, _zp_vector(zb, n), bias, _stage(requant, n), out)
    return out


def _conv_common(
    x_dtype: str, w: Any, x_zero_point: Any, w_zero_point: Any, bias: Any, requant: Any, out_channels: int
) -> tuple[int, int | np.ndarray, np.ndarray | None, Requant | None]:
    xz = V.zero_point(x_zero_point, x_dtype, "x_zero_point")
    wz = V.zero_point(w_zero_point, w.dtype.name, "w_zero_point", channels=out_channels)
    return xz, wz, V.bias(bias, out_channels), _requant(requant, out_channels)


def check_conv3x3_layer(w: Any, stride: Any, padding: Any) -> tuple[np.ndarray, int, int]:
    """w[O, 3, 3, C], stride in {1, 2}, padding in {0, 1}."""
    w = V.quant_array(w, "w", 4)
    if w.shape[1:3] != (3, 3):
        raise ValueError(f"w must have shape (O, 3, 3, C) (OHWI), got {w.shape}")
    stride = V.int_scalar(stride, "stride")
    padding = V.int_scalar(padding, "padding")
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride}")
    if padding not in (0, 1):
        raise ValueError(f"padding must be 0 or 1, got {padding}")
    return w, stride, padding


def check_conv3x3_input(x: Any, channels: int, stride: int, padding: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """x[N, H, W, C] with C = `channels`; returns x and the output shape without its channel count."""
    x = V.quant_array(x, "x", 4)
    n, h, wd, c = x.shape
    if c != channels:
        raise ValueError(f"x has {c} channels but w expects {channels} (w is OHWI: (O, 3, 3, C))")
    if h + 2 * padding < 3 or wd + 2 * padding < 3:
        raise ValueError(f"x spatial size {h}x{wd} is smaller than the 3x3 kernel with padding={padding}")
    oh, ow = reference.conv.conv3x3_output_size(h, wd, stride, padding)
    return x, (n, oh, ow)


def check_deconv2x2_layer(w: Any) -> np.ndarray:
    w = V.quant_array(w, "w", 4)
    if w.shape[1:3] != (2, 2):
        raise ValueError(f"w must have shape (C, 2, 2, O) (IHWO), got {w.shape}")
    return w


def check_deconv2x2_input(x: Any, channels: int) -> tuple[np.ndarray, tuple[int, ...]]:
    x = V.quant_array(x, "x", 4)
    n, h, wd, c = x.shape
    if c != channels:
        raise ValueError(f"x has {c} channels but w expects {channels} (w is IHWO: (C, 2, 2, O))")
    return x, (n, 2 * h, 2 * wd)


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
    w, stride, padding = check_conv3x3_layer(w, stride, padding)
    x, spatial = check_conv3x3_input(x, w.shape[3], stride, padding)
    o = w.shape[0]
    xz, wz, bias, requant = _conv_common(V.qname(x), w, x_zero_point, w_zero_point, bias, requant, o)
    out = _out(out, (*spatial, o), requant, (x, w, bias))
    if check_overflow:
        overflow.check_conv3x3(x, w, stride, padding, xz, wz, bias)
    if _backend.get_backend() == "reference":
        out[...] = reference.conv3x3(x, w, stride, padding, xz, wz, bias, requant)
        return out
    _backend.core.conv3x3(
        _contiguous(x), _contiguous(w), stride, padding, xz, _zp_vector(wz, o), bias, _stage(requant, o), out
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
    w = check_deconv2x2_layer(w)
    x, spatial = check_deconv2x2_input(x, w.shape[0])
    o = w.shape[3]
    xz, wz, bias, requant = _conv_common(V.qname(x), w, x_zero_point, w_zero_point, bias, requant, o)
    out = _out(out, (*spatial, o), requant, (x, w, bias))
    if check_overflow:
        overflow.check_conv_transpose2x2(x, w, xz, wz, bias)
    if _backend.get_backend() == "reference":
        out[...] = reference.conv_transpose2x2(x, w, xz, wz, bias, requant)
        return out
    _backend.core.deconv2x2(_contiguous(x), _contiguous(w), xz, _zp_vector(wz, o), bias, _stage(requant, o), out)
    return out
