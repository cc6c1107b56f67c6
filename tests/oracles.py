"""Independent int64 oracles for the tests: loop-over-taps einsum computations, separate from qkern.reference."""

from __future__ import annotations

import numpy as np
from qkern.conv_shape import conv3x3_output_size


def wrap(v: np.ndarray) -> np.ndarray:
    return (((v.astype(np.int64) + 2**31) % 2**32) - 2**31).astype(np.int32)


def gemm_int64(a, b, za, zb, bias) -> np.ndarray:
    ac = a.astype(np.int64) - za
    bc = b.astype(np.int64) - np.asarray(zb, dtype=np.int64)
    acc = np.einsum("mk,kn->mn", ac, bc)
    if bias is not None:
        acc = acc + bias
    return wrap(acc)


def conv3x3_int64(x, w, stride, padding, xz, wz, bias) -> np.ndarray:
    n, h, wd, _ = x.shape
    o = w.shape[0]
    oh, ow = conv3x3_output_size(h, wd, stride, padding)
    wc = w.astype(np.int64) - np.asarray(wz, dtype=np.int64).reshape(-1, 1, 1, 1)
    acc = np.zeros((n, oh, ow, o), dtype=np.int64)
    for oy in range(oh):
        for ox in range(ow):
            for dy in range(3):
                for dx in range(3):
                    iy, ix = oy * stride + dy - padding, ox * stride + dx - padding
                    if 0 <= iy < h and 0 <= ix < wd:
                        xc = x[:, iy, ix, :].astype(np.int64) - xz
                        acc[:, oy, ox, :] += xc @ wc[:, dy, dx, :].T
                    # a padding tap reads xz: (xz - xz) * w contributes 0
    if bias is not None:
        acc = acc + bias
    return wrap(acc)


def deconv2x2_int64(x, w, xz, wz, bias) -> np.ndarray:
    n, h, wd, _ = x.shape
    o = w.shape[3]
    wc = w.astype(np.int64) - np.asarray(wz, dtype=np.int64)
    out = np.zeros((n, 2 * h, 2 * wd, o), dtype=np.int64)
    xc = x.astype(np.int64) - xz
    for di in range(2):
        for dj in range(2):
            out[:, di::2, dj::2, :] = np.einsum("nijc,co->nijo", xc, wc[:, di, dj, :])
    if bias is not None:
        out = out + bias
    return wrap(out)


def gemm_triple_loop(a, b, za, zb, bias) -> np.ndarray:
    """A literal triple loop in Python ints, for small shapes."""
    m, k = a.shape
    n = b.shape[1]
    zb = np.broadcast_to(np.asarray(zb), (n,))
    out = np.zeros((m, n), dtype=np.int64)
    for i in range(m):
        for j in range(n):
            s = 0 if bias is None else int(bias[j])
            for t in range(k):
                s += (int(a[i, t]) - za) * (int(b[t, j]) - int(zb[j]))
            out[i, j] = s
    return wrap(out)
