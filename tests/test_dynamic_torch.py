"""Dynamic quantization against torch 2.13 (x86): qparams and quantized activations equal torch's, outputs
within 1e-6 relative of torch.ao.nn.quantized.dynamic.Linear; qkern.torch.quantize_dynamic and its torch-free
form."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import qkern
from qkern.qconfig import default_dynamic_qconfig, per_channel_dynamic_qconfig
from qkern.reference import dynamic as R

torch = pytest.importorskip("torch")
import qkern.torch  # noqa: E402  (needs torch)

nn = torch.nn
pytestmark = pytest.mark.torch


def _inputs(rng):
    yield rng.standard_normal((4, 96)).astype(np.float32)
    yield rng.uniform(0, 5, (3, 33)).astype(np.float32)
    yield rng.uniform(-2, -0.1, (2, 40)).astype(np.float32)
    yield (rng.standard_normal((5, 17)) * 1e-3).astype(np.float32)
    yield rng.uniform(0, 1e-3, (5, 16)).astype(np.float32)
    yield (rng.standard_normal((2, 64)) * 1e6).astype(np.float32)
    yield np.zeros((2, 8), np.float32)
    for _ in range(20):
        yield (rng.standard_normal((3, 50)) * rng.uniform(1e-4, 1e3) + rng.uniform(-5, 5)).astype(np.float32)


@pytest.mark.parametrize("reduce_range", [False, True], ids=["full", "reduced"])
def test_qparams_and_activations_equal_torch(isa_threads, rng, reduce_range):
    for x in _inputs(rng):
        ts, tz = torch._choose_qparams_per_tensor(torch.from_numpy(x), reduce_range)
        scale, zp, _, _ = R.choose_qparams(x.min(), x.max(), "uint8", reduce_range=reduce_range)
        assert (scale, zp) == (np.float32(ts), tz)
        q, s, z = qkern._backend.core.quantize_dynamic(x, 0, False, reduce_range)
        assert (s[0], z[0]) == (scale, zp)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            tq = torch.quantize_per_tensor(torch.from_numpy(x), float(ts), int(tz), torch.quint8)
        assert np.array_equal(q, tq.int_repr().numpy())


def _torch_dynamic(model, per_channel):
    """torch's own dynamic quantization (torch.ao, deprecated: used here only as the peer)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from torch.ao import quantization as tq

        qconfig = tq.per_channel_dynamic_qconfig if per_channel else tq.default_dynamic_qconfig
        return tq.quantize_dynamic(model, {nn.Linear: qconfig}, dtype=torch.qint8)


def _close(ours, theirs):
    """Within 1e-6 relative of the output's magnitude."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6 * float(np.abs(theirs).max()))


@pytest.mark.parametrize("per_channel", [False, True], ids=["w-pt", "w-pc"])
def test_outputs_match_torch_dynamic_linear(isa_threads, per_channel):
    torch.manual_seed(3)
    float_model = nn.Sequential(nn.Linear(96, 130), nn.ReLU(), nn.Linear(130, 33))
    theirs = _torch_dynamic(float_model, per_channel)
    qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    ours = qkern.torch.quantize_dynamic(float_model, {nn.Linear}, qconfig=qconfig)
    assert isinstance(ours[0], qkern.torch.DynamicQuantizedLinear)
    for m in (1, 7, 64):
        x = torch.randn(m, 96) * 2
        with torch.no_grad():
            # Layer by layer, on the same input, so each comparison is of one dynamic Linear.
            for i in (0, 2):
                _close(ours[i](x), theirs[i](x))
                x = torch.relu(float_model[i](x)) if i == 0 else x


def test_quantize_dynamic_model_and_torch_free_form(rng):
    torch.manual_seed(4)
    float_model = nn.Sequential(nn.Linear(20, 40), nn.GELU(), nn.Dropout(0.1), nn.Linear(40, 16), nn.ReLU()).eval()
    x = torch.randn(6, 20)
    for per_row in (False, True):
        qmodel = qkern.torch.quantize_dynamic(float_model, per_row=per_row)
        assert isinstance(float_model[0], nn.Linear)  # not in place
        y = qmodel(x)
        assert isinstance(y, torch.Tensor) and y.dtype == torch.float32 and y.shape == (6, 16)
        with torch.no_grad():
            ref = float_model(x)
        assert float((y - ref).abs().max()) < 0.05 * float(ref.abs().max())
        numpy_model = qkern.torch.quantize_dynamic_numpy(qmodel)
        np.testing.assert_allclose(numpy_model(x.numpy()), y.numpy(), rtol=1e-5, atol=1e-5)
        direct = qkern.torch.quantize_dynamic_numpy(float_model, per_row=per_row)
        np.testing.assert_allclose(direct(x.numpy()), y.numpy(), rtol=1e-5, atol=1e-5)
    # Leading dimensions pass through; nested modules are found.
    nested = nn.Sequential(nn.Sequential(nn.Linear(20, 8)), nn.ReLU())
    q = qkern.torch.quantize_dynamic(nested, inplace=True)
    assert q is nested and isinstance(nested[0][0], qkern.torch.DynamicQuantizedLinear)
    assert q(torch.randn(2, 3, 20)).shape == (2, 3, 8)


def test_torch_bad_input():
    with pytest.raises(TypeError, match="model"):
        qkern.torch.quantize_dynamic("not a model")
    with pytest.raises(ValueError, match="qconfig_spec"):
        qkern.torch.quantize_dynamic(nn.Linear(3, 2), {nn.Conv2d})
    with pytest.raises(TypeError, match="qconfig"):
        qkern.torch.quantize_dynamic(nn.Linear(3, 2), qconfig="x86")
    layer = qkern.torch.quantize_dynamic(nn.Linear(3, 2))
    with pytest.raises(TypeError, match="x"):
        layer(torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="x"):
        layer(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="torch-free"):
        qkern.torch.quantize_dynamic_numpy(nn.Sequential(nn.Linear(3, 2), nn.Tanh()))


def test_bench_dynamic_runs_and_checks_every_peer(capsys):
    import argparse

    from qkern.tools import bench_dynamic

    parser = argparse.ArgumentParser()
    bench_dynamic.add_arguments(parser)
    args = parser.parse_args(["--m", "1", "3", "--kn", "64x40", "--seconds", "0.01", "--rounds", "1", "--no-accuracy"])
    assert bench_dynamic.main(args) == 0
    table = capsys.readouterr().out
    assert "| 3 | 64 | 40 |" in table and "WRONG" not in table
    row = bench_dynamic.bench_shape(2, 48, 24, threads=1, seconds=0.01, rounds=1, per_row=True)
    assert set(row["us"]) >= {"qkern", "qkern per-row", "torch dynamic", "torch float"}
    assert all(e < bench_dynamic.MAX_RELATIVE_ERROR for e in row["error"].values())
    assert row["speedup"] is not None and row["speedup"] > 0


@pytest.mark.slow
def test_digits_accuracy_of_quantized_mlp():
    pytest.importorskip("sklearn")
    from qkern.tools import bench_dynamic

    acc = bench_dynamic.digits_accuracy()
    assert acc["float"] > 0.9
    for name in ("torch dynamic", "qkern per-tensor", "qkern per-row"):
        assert acc[name] > acc["float"] - 0.02, acc
