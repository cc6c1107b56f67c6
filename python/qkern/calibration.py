"""Range calibration for activations: min-max, percentile, MSE, entropy (KL) and cross-entropy, NumPy only.

`Calibrator(method=...)` is an observer (call it on each batch, then `calculate_qparams()`); memory is
the histogram, never the batches. The histograms and searches follow ONNX Runtime's calibrators
(onnxruntime.quantization.calibrate: percentile, "onnxruntime" entropy) and TensorRT's
pytorch-quantization (MSE and "tensorrt" entropy), docs/peers.md P8.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _checks as V
from .observers import as_float32, min_max, native_core
from .qparams import QParams, calc_qparams

METHODS = ("minmax", "percentile", "mse", "entropy", "cross_entropy")
_F32 = np.float32


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    """scipy.stats.entropy(p, q): both normalised, sum p*log(p/q) (0 where p == 0)."""
    p = p / p.sum()
    q = q / q.sum()
    mask = p > 0
    with np.errstate(divide="ignore"):
        return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def smooth_distribution(p: np.ndarray, eps: float = 1e-4) -> np.ndarray | None:
    """Zeros become eps; the non-zeros give up the same total (ONNX Runtime's smoothing). None if all zero."""
    zeros = p == 0
    n_zeros = int(zeros.sum())
    n_nonzeros = p.size - n_zeros
    if not n_nonzeros:
        return None
    eps1 = eps * n_zeros / n_nonzeros
    return p.astype(_F32) + (eps * zeros.astype(_F32) + (-eps1) * (~zeros).astype(_F32))


def histogram(a: np.ndarray, bins: int | np.ndarray, range: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """numpy.histogram(a, bins, range): the edges from NumPy, the counting native when the backend is."""
    core = native_core()
    if core is None or a.dtype != _F32:
        return np.histogram(a, bins, range=range)
    edges = bins if isinstance(bins, np.ndarray) else np.histogram_bin_edges(a, bins, range=range)
    if edges.dtype != _F32 or edges.ndim != 1 or edges.size < 2:
        return np.histogram(a, bins, range=range)
    counts = np.empty(edges.size - 1, np.intp)
    core.histogram_edges(np.ascontiguousarray(a), np.ascontiguousarray(edges), counts)
    return counts, edges


class AbsHistogram:
    """Histogram of |x| over [0, amax] (TensorRT/ONNX Runtime style): later batches with a larger amax
    append bins of the same width, so old counts never move."""

    def __init__(self, bins: int) -> None:
        self.bins = bins
        self.hist: np.ndarray | None = None
        self.edges: np.ndarray | None = None

    def add(self, x: np.ndarray) -> None:
        a = np.abs(x)
        if self.hist is None:
            self.hist, edges = histogram(a, self.bins)
            self.edges = edges.astype(a.dtype)
            return
        edges = self.edges
        amax = a.max()
        if amax > edges[-1]:
            width = edges[1] - edges[0]
            edges = np.hstack((edges, np.arange(edges[-1] + width, amax + width, width)))
        hist, new_edges = histogram(a, edges)
        hist[: len(self.hist)] += self.hist
        self.hist, self.edges = hist, new_edges.astype(a.dtype)


class RealHistogram:
    """Histogram of x over [-t, t], t = max |x| so far (ONNX Runtime's collect_value/merge_histogram):
    a larger t adds whole bins of the old width on both sides."""

    def __init__(self, bins: int) -> None:
        self.bins = bins
        self.hist: np.ndarray | None = None
        self.edges: np.ndarray | None = None
        self.threshold: Any = None

    def add(self, x: np.ndarray) -> None:
        mn, mx = min_max(x)
        t = np.array(max(abs(mn), abs(mx)), dtype=x.dtype)
        if self.hist is None:
            self.hist, self.edges = histogram(x, self.bins, range=(-t, t))
            self.threshold = t
            return
        old_t = self.threshold
        if t <= old_t:
            hist, _ = histogram(x, len(self.hist), range=(-old_t, old_t))
            self.hist = hist + self.hist
            return
        if old_t == 0:
            hist, edges = histogram(x, len(self.hist), range=(-t, t))
            hist += self.hist
        else:
            n_old = len(self.hist)
            stride = 2 * old_t / n_old
            half = int((t - old_t) // stride + 1)
            t = half * stride + old_t
            hist, edges = histogram(x, n_old + 2 * half, range=(-t, t))
            hist[half : n_old + 2 * half - half] += self.hist
        self.hist, self.edges, self.threshold = hist, edges, t


def percentile_range(h: AbsHistogram | RealHistogram, percentile: float, symmetric: bool) -> tuple[float, float]:
    """ONNX Runtime's compute_percentile (before its clip to the observed min/max)."""
    cdf = np.cumsum(h.hist / h.hist.sum())
    if symmetric:
        e = h.edges[np.searchsorted(cdf, percentile / 100.0)]
        return -float(e), float(e)
    cut = (100.0 - percentile) / 200.0
    return float(h.edges[np.searchsorted(cdf, cut)]), float(h.edges[np.searchsorted(cdf, 1.0 - cut)])


def entropy_range_onnxruntime(h: RealHistogram, num_quantized_bins: int = 128) -> tuple[float, float]:
    """ONNX Runtime's get_entropy_threshold: grow a window around zero from num_quantized_bins/2 bins
    each side, merge it into num_quantized_bins, spread back over the non-zero bins (integer counts, as
    ONNX Runtime stores them), smooth, and keep the window with the least KL divergence."""
    hist, edges = h.hist, h.edges
    n = hist.size
    zero = n // 2
    half_q = num_quantized_bins // 2
    best, best_kl = (0.0, 0.0), np.inf
    for i in range(half_q, zero + 1):
        start, end = zero - i, min(zero + i + 1, n)
        sliced = hist[start:end]
        p = sliced.copy()
        p[0] += hist[:start].sum()
        p[-1] += hist[end:].sum()
        nonzero = p != 0
        merged = sliced.size // num_quantized_bins
        qb = np.add.reduceat(sliced[: merged * num_quantized_bins], np.arange(0, merged * num_quantized_bins, merged))
        qb[-1] += sliced[num_quantized_bins * merged :].sum()
        q = np.zeros(p.size, dtype=np.int64)
        for k in range(num_quantized_bins):
            norm = nonzero[k * merged : (k + 1) * merged].sum()
            if norm:
                q[k * merged : (k + 1) * merged] = qb[k] / norm
        ps, qs = smooth_distribution(p), smooth_distribution(q)
        kl = np.inf if ps is None or qs is None else float(_F32(_kl(ps, qs)))
        if kl < best_kl:  # np.argmin: the first minimum
            best_kl, best = kl, (float(edges[start]), float(edges[end]))
    return best


def entropy_amax_tensorrt(h: AbsHistogram, num_bits: int = 8, unsigned: bool = False, start_bin: int = 128) -> float:
    """TensorRT pytorch-quantization's _compute_amax_entropy on a |x| histogram: the last argmin of KL."""
    bins = h.hist.astype(np.float64).copy()
    bins[0] = bins[1]
    nbins = 1 << (num_bits - 1 + int(unsigned))
    kls = []
    starts = range(start_bin, len(bins) + 1)
    for i in starts:
        ref = bins[:i].copy()
        ref[i - 1] += bins[i:].sum()
        space = np.linspace(0, i, num=nbins + 1)
        dig = np.digitize(np.arange(i), space) - 1
        dig[bins[:i] == 0] = -1
        q = np.zeros(i)
        for d in range(nbins):
            sel = dig == d
            cnt = sel.sum()
            if cnt:
                q[sel] = bins[:i][sel].sum() / cnt
        if ref.sum() == 0 or q.sum() == 0:
            kls.append(np.inf)
            continue
        kls.append(_kl(ref, q) if np.all(q[ref > 0] > 0) else np.inf)
    kls_arr = np.array(kls)
    last = len(kls_arr) - 1 - int(np.argmin(kls_arr[::-1]))
    return float(h.edges[last + start_bin]) if last + start_bin < len(h.edges) else float(h.edges[-1])


def fake_quant_symmetric(x: np.ndarray, amax: float, num_bits: int, unsigned: bool) -> np.ndarray:
    """TensorRT's fake quantization: scale = (2^(bits-1+unsigned) - 1)/amax, round, clamp, unscale."""
    top = 2.0 ** (num_bits - 1 + int(unsigned)) - 1.0
    lo = 0.0 if unsigned else -top - 1.0
    scale = top / amax
    return np.clip(np.rint(x * scale), lo, top) / scale


def mse_errors(h: AbsHistogram, num_bits: int = 8, unsigned: bool = False, start_bin: int = 128) -> np.ndarray:
    """Weighted mean squared error of fake-quantizing every bin centre, for each candidate amax =
    centres[i], i >= start_bin (TensorRT's _compute_amax_mse). Entry j is candidate start_bin + j."""
    centres = (h.edges[1:].astype(np.float64) + h.edges[:-1]) / 2
    counts = h.hist.astype(np.float64)
    out = []
    for i in range(start_bin, len(centres)):
        amax = centres[i]
        if amax <= 0:
            out.append(np.inf)
            continue
        out.append(float(np.mean((fake_quant_symmetric(centres, amax, num_bits, unsigned) - centres) ** 2 * counts)))
    return np.array(out)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_cross_entropy(p_ref: np.ndarray, logits: np.ndarray) -> float:
    """Mean over rows of -sum_c p_ref[c] * log softmax(logits)[c] (docs/ptq.md eq. (P4))."""
    z = logits - logits.max(axis=1, keepdims=True)
    log_q = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-np.mean(np.sum(p_ref * log_q, axis=1)))


def cross_entropy_range(
    rows: np.ndarray, dtype: str, symmetric: bool, bits: int, grid: int = 16, smallest: float = 0.25
) -> tuple[float, float]:
    """The clipping range whose fake-quantized logits give the softmax closest (least cross-entropy) to the
    float softmax over `rows` [samples, classes]. Candidates: lo = a * min, hi = b * max for a, b on a
    `grid` from 1 down to `smallest` (one factor when symmetric or min >= 0); ties keep the widest range."""
    mn, mx = float(rows.min()), float(rows.max())
    p_ref = _softmax(rows.astype(np.float64))
    factors = np.linspace(1.0, smallest, grid)
    los = [mn] if mn >= 0 or symmetric else [mn * a for a in factors]
    best, best_ce = (mn, mx), np.inf
    for b in factors:
        for lo in los:
            hi = mx * b
            if symmetric:
                amax = max(abs(mn), abs(mx)) * b
                lo, hi = -amax, amax
            if hi <= lo or hi <= 0:
                continue
            qp = calc_qparams(lo, hi, dtype, symmetric=symmetric, bits=bits)
            ce = softmax_cross_entropy(p_ref, qp.dequantize(qp.quantize(rows)).astype(np.float64))
            if ce < best_ce - 1e-12:
                best, best_ce = (lo, hi), ce
    return best


class Calibrator:
    """An activation observer choosing its clipping range by `method`:

    - "minmax": the observed min and max.
    - "percentile": the `percentile` (e.g. 99.99) of |x| (symmetric) or both tails (affine), ONNX Runtime's.
    - "mse": the |x| threshold among the histogram's bin centres with the least quantization MSE.
    - "entropy": least KL divergence; `entropy_variant` "tensorrt" (2048-bin |x| histogram) or
      "onnxruntime" (128-bin signed histogram, 128 quantized bins).
    - "cross_entropy": for logits (class axis `class_axis`): the range whose fake-quantized softmax has the
      least cross-entropy to the float softmax (`cross_entropy_range`); keeps up to `max_samples` rows.

    `calculate_qparams()` turns the range into QParams (symmetric or affine, `bits`-bit, torch's rules).
    """

    def __init__(
        self,
        method: str = "minmax",
        *,
        dtype: Any = "uint8",
        symmetric: bool = False,
        bits: int = 8,
        percentile: float = 99.99,
        num_bins: int | None = None,
        num_quantized_bins: int = 128,
        entropy_variant: str = "tensorrt",
        start_bin: int = 128,
        class_axis: int = 1,
        max_samples: int = 20000,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if entropy_variant not in ("tensorrt", "onnxruntime"):
            raise ValueError(f"entropy_variant must be 'tensorrt' or 'onnxruntime', got {entropy_variant!r}")
        if not 0 < float(percentile) <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {percentile}")
        self.method, self.entropy_variant = method, entropy_variant
        self.dtype = V.dtype_name(dtype)
        self.symmetric, self.bits = bool(symmetric), V.int_scalar(bits, "bits")
        self.percentile, self.num_quantized_bins, self.start_bin = float(percentile), num_quantized_bins, start_bin
        self.class_axis = V.int_scalar(class_axis, "class_axis")
        self.max_samples = V.int_scalar(max_samples, "max_samples")
        real = (method == "entropy" and entropy_variant == "onnxruntime") or (method == "percentile" and not symmetric)
        default_bins = 128 if method == "entropy" and entropy_variant == "onnxruntime" else 2048
        self.num_bins = V.int_scalar(num_bins or default_bins, "num_bins")
        if self.num_bins < 2:  # every method reads at least two bins (the first and last edge)
            raise ValueError(f"num_bins must be >= 2, got {self.num_bins}")
        if (
            method == "entropy"
            and entropy_variant == "tensorrt"
            and not 1 <= V.int_scalar(start_bin, "start_bin") <= self.num_bins
        ):
            raise ValueError(f"start_bin must be in [1, num_bins={self.num_bins}] for entropy, got {start_bin}")
        if V.int_scalar(num_quantized_bins, "num_quantized_bins") < 2:
            raise ValueError(f"num_quantized_bins must be >= 2, got {num_quantized_bins}")
        self._hist_type = RealHistogram if real else AbsHistogram
        self.reset()

    def reset(self) -> None:
        self.min_val, self.max_val = np.inf, -np.inf
        self.histogram = self._hist_type(self.num_bins)
        self.rows: list[np.ndarray] = []
        self._n_rows = 0

    def _keep_rows(self, x: np.ndarray) -> None:
        if x.ndim < 2 or self._n_rows >= self.max_samples:
            return
        rows = np.moveaxis(x, self.class_axis, -1).reshape(-1, x.shape[self.class_axis])
        rows = rows[np.all(np.isfinite(rows), axis=1)][: self.max_samples - self._n_rows]
        self.rows.append(np.array(rows))
        self._n_rows += len(rows)

    def __call__(self, x: Any) -> Any:
        if self.method == "cross_entropy":
            self._keep_rows(as_float32(x))
        a = as_float32(x).reshape(-1)
        a = a[np.isfinite(a)]
        if a.size:
            mn, mx = min_max(a)
            self.min_val, self.max_val = min(self.min_val, float(mn)), max(self.max_val, float(mx))
            if self.method not in ("minmax", "cross_entropy"):
                self.histogram.add(a)
        return x

    def compute_range(self) -> tuple[float, float]:
        """The clipping range [lo, hi] this method picks (clipped to what was observed)."""
        if self.min_val > self.max_val:
            raise ValueError("the calibrator has not observed any finite value")
        mn, mx = self.min_val, self.max_val
        if self.method == "minmax" or (self.method == "cross_entropy" and not self.rows):
            return mn, mx
        if self.method == "cross_entropy":
            return cross_entropy_range(np.concatenate(self.rows), self.dtype, self.symmetric, self.bits)
        unsigned = mn >= 0
        if self.method == "percentile":
            lo, hi = percentile_range(self.histogram, self.percentile, self.symmetric)
        elif self.method == "entropy" and self.entropy_variant == "onnxruntime":
            lo, hi = entropy_range_onnxruntime(self.histogram, self.num_quantized_bins)
        else:
            if self.method == "entropy":
                amax = entropy_amax_tensorrt(self.histogram, self.bits, unsigned, self.start_bin)
            else:
                errors = mse_errors(self.histogram, self.bits, unsigned, self.start_bin)
                centres = (self.histogram.edges[1:].astype(np.float64) + self.histogram.edges[:-1]) / 2
                amax = float(centres[self.start_bin + int(np.argmin(errors))]) if errors.size else mx
            lo, hi = -amax, amax
        return max(lo, mn), min(hi, mx)

    def calculate_qparams(self) -> QParams:
        lo, hi = self.compute_range()
        return calc_qparams(lo, hi, self.dtype, symmetric=self.symmetric, bits=self.bits)

    def __repr__(self) -> str:
        return f"Calibrator(method={self.method!r}, dtype={self.dtype}, symmetric={self.symmetric}, bits={self.bits})"
