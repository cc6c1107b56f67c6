"""Reference NHWC conv3x3 (stride 1/2, padding 0/1) and 2x2 stride-2 transposed conv, exact int32."""

from __future__ import annotations

import numpy as np

from ..conv_shape import conv3x3_output_size, deconv2x2_output_size
from ..requant_params import Requant
from .gemm import exact_matmul, finish


def conv3x3(
    x: np.ndarray,
    w: np.ndarray,
    stride: int = 1,
    padding: int = 1,
    x_zero_point: int = 0,
    w_zero_point: int | np.ndarray = 0,
    bias: np.ndarray | None = None,
    requant: Requant | None = None,
) -> np.ndarray:
    """out[n,y,x,o] = bias[o] + sum_{dy,dx,c} (x[n, s*y+dy-p, s*x+dx-p, c] - xz) * (w[o,dy,dx,c] - wz[o]).

    Padding reads as x_zero_point (real 0): it contributes nothing after the zero point is subtracted.
    """
    n, h, wd, c = x.shape
    o = w.shape[0]
    oh, ow = conv3x3_output_size(h, wd, stride, padding)
    xc = np.zeros((n, h + 2 * padding, wd + 2 * padding, c), dtype=np.int32)
    xc[:, padding : padding + h, padding : padding + wd] = x.astype(np.int32) - int(x_zero_point)
    taps = [
        xc[:, dy : dy + stride * (oh - 1) + 1 : stride, dx : dx + stride * (ow - 1) + 1 : stride, :]
        for dy in range(3)
        for dx in range(3)
    ]
    cols = np.stack(taps, axis=3).reshape(n * oh * ow, 9 * c)  # (dy, dx, c) order, as w[o, dy, dx, c]
    wz = np.asarray(w_zero_point, dtype=np.int32).reshape(-1, 1)
    wc = (w.astype(np.int32).reshape(o, 9 * c) - wz).T
    return finish(exact_matmul(cols, wc), bias, requant).reshape(n, oh, ow, o)


def conv_transpose2x2(
    x: np.ndarray,
    w: np.ndarray,
    x_zero_point: int = 0,
    w_zero_point: int | np.ndarray = 0,
    bias: np.ndarray | None = None,
    requant: Requant | None = None,
) -> np.ndarray:
    """out[n, 2i+di, 2j+dj, o] = bias[o] + sum_c (x[n,i,j,c] - xz) * (w[c,di,dj,o] - wz[o])."""
    n, h, wd, c = x.shape
    o = w.shape[3]
    xc = x.astype(np.int32).reshape(n * h * wd, c) - int(x_zero_point)
    wc = w.astype(np.int32) - np.asarray(w_zero_point, dtype=np.int32)
    out = finish(exact_matmul(xc, wc.reshape(c, 4 * o)), np.tile(bias, 4) if bias is not None else None, None)
    out = out.reshape(n, h, wd, 2, 2, o).transpose(0, 1, 3, 2, 4, 5).reshape(n, *deconv2x2_output_size(h, wd), o)
    return out if requant is None else finish(out.astype(np.int64), None, requant)
