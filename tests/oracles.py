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


def int16_pair_saturation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Outputs [M, N] of a[M, K] (u8) @ b[K, N] (s8) where an AVX2 `vpmaddubsw` kernel can saturate: some
    adjacent pair a[m, 2j]*b[2j, n] + a[m, 2j+1]*b[2j+1, n] leaves int16. fbgemm's and MLAS's u8s8 AVX2
    paths add such pairs in int16, so their results may differ there (and only there) from exact int32."""
    k2 = a.shape[1] - a.shape[1] % 2
    a64, b64 = a.astype(np.int64), b.astype(np.int64)
    pairs = a64[:, 0:k2:2, None] * b64[None, 0:k2:2] + a64[:, 1:k2:2, None] * b64[None, 1:k2:2]
    return ((pairs > 32767) | (pairs < -32768)).any(axis=1)


def assert_equal_except_int16_saturation(got: np.ndarray, peer: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """`peer` (a library's u8s8 result) equals the exact `got` everywhere except where the peer's int16
    pair sums can saturate (int16_pair_saturation); with VNNI or int16-widening kernels that set is empty."""
    differ = got != peer
    if b.dtype == np.int8 and a.dtype == np.uint8:
        unexplained = differ & ~int16_pair_saturation(a, b)
    else:
        unexplained = differ
    assert not unexplained.any(), f"{int(unexplained.sum())} outputs differ without int16 saturation"
