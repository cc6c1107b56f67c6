"""The native histogram loops (HistogramObserver's min/max and histc, the calibrators' histograms) leave every
result exactly as the NumPy code computes it, on every ISA x {1, 2} threads."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import qkern
from qkern.calibration import Calibrator, histogram
from qkern.observers import HistogramObserver, histc, min_max


def _reference(fn, *args, **kwargs):
    with qkern.backend("reference"):
        return fn(*args, **kwargs)


def _bits_equal(a, b) -> None:
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(a, b) or np.array_equal(a.view(np.uint8), b.view(np.uint8))


def _batches(rng: np.random.Generator) -> list[np.ndarray]:
    """Growing, shrinking, constant and one-value batches, with exact edge values."""
    out = [
        (rng.standard_normal(70000) * 2).astype(np.float32),
        (rng.standard_normal(5000) * 0.5).astype(np.float32),  # inside the range: counts add up
        (rng.standard_normal(90001) * 9 + 3).astype(np.float32),  # wider: the old histogram moves
        np.full(1000, 7.25, np.float32),
        np.array([-40.0, 40.0, 0.0], np.float32),
        rng.uniform(-1e-30, 1e-30, 3000).astype(np.float32),
    ]
    return out


def _run_observer(batches: list[np.ndarray], **kwargs) -> HistogramObserver:
    obs = HistogramObserver(**kwargs)
    for b in batches:
        obs(b)
    return obs


@pytest.mark.parametrize("bins", [2048, 7])
def test_histogram_observer_native_equals_reference(isa_threads, rng, bins):
    batches = _batches(rng)
    native = _run_observer(batches, bins=bins)
    ref = _reference(_run_observer, batches, bins=bins)
    for name in ("min_val", "max_val", "histogram"):
        _bits_equal(getattr(native, name), getattr(ref, name))
    assert native.calculate_qparams() == _reference(ref.calculate_qparams)


def test_histogram_observer_single_value_first_batch_and_inf(isa_threads):
    batches = [np.full(100, 2.0, np.float32), np.array([1.0, np.inf, 3.0, -np.inf], np.float32)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the inf warning, raised on both backends
        native = _run_observer(batches, bins=64)
        ref = _reference(_run_observer, batches, bins=64)
    _bits_equal(native.histogram, ref.histogram)
    _bits_equal(native.min_val, ref.min_val)


def test_histc_edges_and_out_of_range_values(isa_threads, rng):
    lo, hi = np.float32(-1.5), np.float32(2.25)
    x = np.concatenate(
        [
            rng.uniform(-3, 4, 200001).astype(np.float32),
            np.array([lo, hi, np.nextafter(lo, -np.inf), np.nextafter(hi, np.inf), np.inf, -np.inf, np.nan]),
        ]
    ).astype(np.float32)
    for bins in (1, 3, 100, 2048):
        _bits_equal(histc(x, bins, lo, hi), _reference(histc, x, bins, lo, hi))
    _bits_equal(histc(x, 10, 1.0, 1.0), _reference(histc, x, 10, 1.0, 1.0))  # zero width widens


def test_min_max_matches_numpy_and_propagates_nan(isa_threads, rng):
    for n in (1, 7, 8, 9, 65537, 300001):
        x = rng.standard_normal(n).astype(np.float32)
        assert min_max(x) == (x.min(), x.max())
    x = rng.standard_normal(1000).astype(np.float32)
    x[500] = np.nan
    mn, mx = min_max(x)
    assert np.isnan(mn) and np.isnan(mx)


def test_histogram_equals_numpy(isa_threads, rng):
    a = np.abs(rng.standard_normal(150001)).astype(np.float32)
    for bins in (1, 5, 128, 2048):
        for rng_arg in (None, (np.float32(0), np.float32(1.5)), (np.float32(-0.0), np.float32(0.0))):
            got = histogram(a, bins, range=rng_arg)
            want = np.histogram(a, bins, range=rng_arg)
            _bits_equal(got[0], want[0])
            _bits_equal(got[1], want[1])
    edges = np.sort(rng.uniform(0, 3, 300)).astype(np.float32)
    edges[10:13] = edges[10]  # repeated edges
    _bits_equal(histogram(a, edges)[0], np.histogram(a, edges)[0])
    with pytest.raises(ValueError, match="monotonic"):
        histogram(a, edges[::-1].copy())


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("percentile", {"symmetric": True}),
        ("percentile", {"symmetric": False}),
        ("mse", {"num_bins": 300}),
        ("entropy", {"entropy_variant": "tensorrt", "num_bins": 300}),
        ("entropy", {"entropy_variant": "onnxruntime"}),
    ],
)
def test_calibrators_native_equal_reference(rng, method, kwargs):
    batches = [
        (rng.standard_normal(20000) * 2).astype(np.float32),
        (rng.standard_normal(20000) * 4).astype(np.float32),  # a wider batch: bins are appended
        (rng.standard_normal(5000) * 0.5).astype(np.float32),
    ]

    def run() -> Calibrator:
        cal = Calibrator(method, **kwargs)
        for b in batches:
            cal(b)
        return cal

    native, ref = run(), _reference(run)
    _bits_equal(native.histogram.hist, ref.histogram.hist)
    _bits_equal(native.histogram.edges, ref.histogram.edges)
    assert native.compute_range() == _reference(ref.compute_range)
