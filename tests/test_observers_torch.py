"""Observers, calibration and QConfig against torch 2.13 and ONNX Runtime (optional test dependencies)."""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pytest
from qkern import calibration, observers, qconfig

torch = pytest.importorskip("torch")
tob = pytest.importorskip("torch.ao.quantization.observer")

QSCHEMES_PT = ["per_tensor_affine", "per_tensor_symmetric"]


def _torch_obs(name, **kw):
    kw = {k: getattr(torch, v) if k in ("dtype", "qscheme") else v for k, v in kw.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(tob, name)(**kw)


def _run_both(a, b, batches):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for x in batches:
            a(torch.from_numpy(x))
            b(x)
        s, z = a.calculate_qparams()
    return s.numpy().astype(np.float32), z.numpy(), b.calculate_qparams()


def _stream(rng, shape_fn, n):
    return [
        (rng.standard_normal(shape_fn()) * rng.uniform(1e-3, 50) + rng.uniform(-3, 3)).astype(np.float32)
        for _ in range(n)
    ]


def _configs(rng):
    """>= 50 observer configurations: every qscheme, u8/s8, reduce_range, custom ranges, constants."""
    out = []
    for i in range(64):
        dtype = ("quint8", "qint8")[i % 2]
        sym = (i // 2) % 2 == 1
        reduce = (i // 4) % 2 == 1 and not (sym and dtype == "quint8")
        kw = {"dtype": dtype, "reduce_range": reduce}
        if i % 8 == 7:  # a custom range (torch: reduce_range halves it)
            kw.update(quant_min=0, quant_max=127) if dtype == "quint8" else kw.update(quant_min=-32, quant_max=31)
        c = float(rng.choice([0.01, 0.1, 0.5, 1.0]))
        out.append((kw, sym, c, i % 2))
    return out


def test_minmax_family_equals_torch(rng):
    checked = 0
    for kw, sym, c, axis in _configs(rng):
        pt = "per_tensor_symmetric" if sym else "per_tensor_affine"
        pc = "per_channel_symmetric" if sym else "per_channel_affine"
        cases = [
            ("MinMaxObserver", dict(qscheme=pt), lambda: (int(rng.integers(1, 400)),)),
            ("MovingAverageMinMaxObserver", dict(qscheme=pt, averaging_constant=c), lambda: (17, 5)),
            ("PerChannelMinMaxObserver", dict(qscheme=pc, ch_axis=axis), lambda: (6, 7, 3)),
            (
                "MovingAveragePerChannelMinMaxObserver",
                dict(qscheme=pc, ch_axis=axis, averaging_constant=c),
                lambda: (6, 7, 3),
            ),
        ]
        for name, extra, shape in cases:
            a = _torch_obs(name, **kw, **extra)
            b = getattr(observers, name)(**kw, **extra)
            s, z, q = _run_both(a, b, _stream(rng, shape, int(rng.integers(2, 5))))
            np.testing.assert_array_equal(np.atleast_1d(q.scale), s, err_msg=f"{name} {kw} {extra}")
            np.testing.assert_array_equal(np.atleast_1d(q.zero_point), z, err_msg=f"{name} {kw} {extra}")
            checked += 1
    assert checked >= 200


def _hist_stream(rng, kind, n=3):
    out = []
    for k in range(n):
        if kind == "gaussian":
            x = rng.standard_normal(4000)
        elif kind == "laplace":
            x = rng.laplace(size=4000)
        elif kind == "relu":
            x = np.maximum(rng.standard_normal(4000), 0)
        elif kind == "bimodal":
            x = np.concatenate([rng.normal(-3, 0.5, 2000), rng.normal(2, 1, 2000)])
        else:  # growing range batch after batch
            x = rng.standard_normal(3000) * (k + 1) * 2 + k
        out.append(x.astype(np.float32))
    return out


@pytest.mark.parametrize("kind", ["gaussian", "laplace", "relu", "bimodal", "growing"])
def test_histogram_observer_matches_torch(rng, kind):
    for i in range(5):  # 5 kinds x 5 = 25 streams
        kw = [
            {},
            {"reduce_range": True},
            {"dtype": "qint8"},
            {"quant_min": 0, "quant_max": 127},
            {"qscheme": "per_tensor_symmetric", "dtype": "qint8"},
        ][i]
        a = _torch_obs("HistogramObserver", **kw)
        b = observers.HistogramObserver(**kw)
        s, z, q = _run_both(a, b, _hist_stream(rng, kind))
        assert int(q.zero_point) == int(z[0]), (kind, kw)
        assert abs(float(q.scale) - float(s[0])) <= 1e-6 * float(s[0]), (kind, kw, q.scale, s)


def test_histogram_observer_edge_cases(rng):
    b = observers.HistogramObserver()
    with pytest.warns(UserWarning, match="must run observer"):
        q = b.calculate_qparams()
    assert q.scale == np.float32(1.0) and q.zero_point == 0
    a = _torch_obs("HistogramObserver")
    x = np.array([1.0, np.inf, -2.0, -np.inf, 0.5], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a(torch.from_numpy(x))
    with pytest.warns(UserWarning, match="inf"):
        b(x)
    one = np.full(10, 0.25, np.float32)  # a zero-width first range, then growth
    s, z, q = _run_both(a, b, [one, rng.standard_normal(100).astype(np.float32)])
    assert int(q.zero_point) == int(z[0]) and abs(float(q.scale) - float(s[0])) <= 1e-6 * float(s[0])
    state = b.state_dict()
    c = observers.HistogramObserver()
    c.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    assert c.calculate_qparams() == b.calculate_qparams()
    assert b.histogram.size == 2048  # memory bounded by bins, whatever the batches
    b.reset()
    assert b.min_val == np.inf


def test_observer_arguments_and_errors():
    with pytest.raises(NotImplementedError):
        observers.MinMaxObserver(qscheme="per_tensor_symmetric", reduce_range=True)
    with pytest.raises(ValueError, match="include 0"):
        observers.MinMaxObserver(quant_min=1, quant_max=100)
    with pytest.raises(ValueError, match="qscheme"):
        observers.MinMaxObserver(qscheme="per_channel_affine")
    with pytest.raises(ValueError, match="qscheme"):
        observers.MinMaxObserver(qscheme="bogus")
    o = observers.MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    assert o.dtype == "int8" and o.symmetric
    o(torch.tensor([1.0, -3.0]))
    assert float(o.min_val) == -3.0
    p = observers.PerChannelMinMaxObserver(ch_axis=1)
    with pytest.warns(UserWarning):
        p.calculate_qparams()


def _ort_thresholds(method, symmetric, bins, batches, percentile=99.99):
    hc_mod = pytest.importorskip("onnxruntime.quantization.calibrate")
    hc = hc_mod.HistogramCollector(method, symmetric, bins, 128, percentile, "same")
    with contextlib.redirect_stdout(io.StringIO()):
        for b in batches:
            hc.collect({"x": b})
        res = hc.compute_collection_result()["x"]
    return float(res[0]), float(res[1])


@pytest.mark.parametrize("kind", ["gaussian", "laplace", "relu", "bimodal", "growing"])
def test_percentile_and_entropy_equal_onnxruntime(rng, kind):
    batches = _hist_stream(rng, kind)
    cases = [
        ("percentile", True, dict(method="percentile", symmetric=True, percentile=99.99)),
        ("percentile", False, dict(method="percentile", symmetric=False, percentile=99.99)),
        ("entropy", False, dict(method="entropy", entropy_variant="onnxruntime")),
    ]
    for method, sym, kw in cases:
        lo_ref, hi_ref = _ort_thresholds(method, sym, 2048 if method == "percentile" else 128, batches)
        c = calibration.Calibrator(**kw)
        for b in batches:
            c(b)
        lo, hi = c.compute_range()
        width = float(c.histogram.edges[1] - c.histogram.edges[0])
        assert abs(lo - lo_ref) <= width and abs(hi - hi_ref) <= width, (method, sym, lo, hi, lo_ref, hi_ref)


def test_mse_picks_the_least_error_candidate_by_brute_force(rng):
    for kind in ("gaussian", "laplace", "relu"):
        c = calibration.Calibrator("mse", symmetric=True, dtype="int8")
        for b in _hist_stream(rng, kind):
            c(b)
        h = c.histogram
        centres = (h.edges[1:].astype(np.float64) + h.edges[:-1]) / 2
        unsigned = c.min_val >= 0
        top = 2.0 ** (7 + int(unsigned)) - 1
        errors = []
        for amax in centres[c.start_bin :]:  # independent re-derivation of each candidate's error
            scale = top / amax
            q = np.clip(np.round(centres * scale), 0 if unsigned else -top - 1, top) / scale
            errors.append(float(np.sum((q - centres) ** 2 * h.hist) / len(centres)))
        best = centres[c.start_bin + int(np.argmin(errors))]
        _, hi = c.compute_range()
        assert hi == min(best, c.max_val)


def test_entropy_tensorrt_and_calibrator_qparams(rng):
    c = calibration.Calibrator("entropy", symmetric=True, dtype="int8")
    x = rng.laplace(size=20000).astype(np.float32)
    c(x)
    lo, hi = c.compute_range()
    assert 0 < hi < float(np.abs(x).max()) and lo == -hi
    q = c.calculate_qparams()
    assert q.zero_point == 0 and q.scale == np.float32(np.float32(hi) / np.float32(127.5))
    with pytest.raises(ValueError, match="method"):
        calibration.Calibrator("bogus")
    with pytest.raises(ValueError, match="observed"):
        calibration.Calibrator("minmax").compute_range()


def test_qconfig_defaults_match_torch():
    tq = pytest.importorskip("torch.ao.quantization")

    def describe(factory):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            o = factory()
        return (
            type(o).__name__,
            str(o.dtype).removeprefix("torch."),
            str(o.qscheme).removeprefix("torch."),
            o.reduce_range,
            o.quant_min,
            o.quant_max,
        )

    def mine(factory):
        o = factory()
        dt = {"uint8": "quint8", "int8": "qint8"}[o.dtype]
        return (type(o).__name__, dt, o.qscheme, o.reduce_range, o.quant_min, o.quant_max)

    pairs = [
        (qconfig.default_qconfig, tq.default_qconfig),
        (qconfig.default_per_channel_qconfig, tq.default_per_channel_qconfig),
    ]
    pairs += [(qconfig.get_default_qconfig(b), tq.get_default_qconfig(b)) for b in ("x86", "fbgemm", "qnnpack")]
    for ours, theirs in pairs:
        assert mine(ours.activation) == describe(theirs.activation)
        assert mine(ours.weight) == describe(theirs.weight)
    assert mine(qconfig.default_dynamic_qconfig.weight) == describe(tq.default_dynamic_qconfig.weight)
    dyn = qconfig.default_dynamic_qconfig.activation()
    assert dyn.is_dynamic and (dyn.quant_min, dyn.quant_max) == (0, 255)
    dyn(np.array([0.0, 4.0], np.float32))
    dyn(np.array([-1.0, 1.0], np.float32))
    assert float(dyn.min_val) == -1.0 and float(dyn.max_val) == 1.0  # the last batch's own range
