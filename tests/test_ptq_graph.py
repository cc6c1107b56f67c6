"""PTQ graph handling: tracing errors, float fallback warning, LUT ops, flatten->Linear order, QAT protocol, options."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import qkern  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from qkern.calibration import Calibrator, calc_qparams, softmax_cross_entropy  # noqa: E402
from qkern.torch import TracingError, calibrate, convert, prepare, quantize, report, simulate  # noqa: E402
from torch import nn  # noqa: E402

pytestmark = pytest.mark.torch


def _quantized(model, x, **kwargs):
    prepared = prepare(model.eval(), example_inputs=x, **kwargs)
    calibrate(prepared, [x])
    return prepared, convert(prepared)


class _Branchy(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: not traceable
            return x
        return -x


class _HasBranchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.gate = _Branchy()

    def forward(self, x):
        return self.gate(self.conv(x))


def test_tracing_failure_names_the_module_and_line():
    with pytest.raises(TracingError, match=r"'gate' \(_Branchy\).*x\.sum\(\) > 0"):
        prepare(_HasBranchy(), example_inputs=torch.rand(1, 1, 4, 4))


class _Odd(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        y = torch.cumsum(self.conv(x), dim=3)  # no integer kernel
        return F.softmax(self.head(y), dim=1)


def test_unsupported_ops_warn_once_and_still_run():
    torch.manual_seed(0)
    model, x = _Odd().eval(), torch.rand(2, 3, 6, 6)
    prepared = prepare(model, example_inputs=x)
    calibrate(prepared, [x])
    with pytest.warns(UserWarning, match=r"2 node\(s\) .*cumsum.*softmax") as record:
        qmodel = convert(prepared)
    assert len(record) == 1
    assert [s.op for s in qmodel.steps].count("float_op") == 2
    with torch.no_grad():
        ref = model(x).numpy()
    out = qmodel(x.numpy())
    assert out.shape == ref.shape and np.abs(out - ref).max() < 0.05
    with pytest.raises(ValueError, match="cumsum"):
        qmodel.save("/dev/null")


class _Unary(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.act = nn.Hardswish()

    def forward(self, x):
        return torch.sigmoid(self.act(self.conv(x)))


def test_elementwise_ops_become_lookup_tables():
    torch.manual_seed(1)
    model, x = _Unary().eval(), torch.randn(4, 2, 5, 5)
    _, qmodel = _quantized(model, x)
    assert [s.op for s in qmodel.steps] == ["input", "conv2d", "lut", "lut"]
    acts = qmodel.trace(x.numpy())
    # each table entry is quantize(f(dequantize(q))): check the sigmoid step on every input value it saw
    hs, sg = qmodel.steps[2], qmodel.steps[3]
    real = hs.qparams.dequantize(acts[hs.name])
    expect = sg.qparams.quantize(torch.sigmoid(torch.from_numpy(real)).numpy())
    np.testing.assert_array_equal(acts[sg.name], expect)
    with torch.no_grad():
        assert np.abs(qmodel(x.numpy()) - model(x).numpy()).max() < 0.02


class _FlatHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, stride=2, padding=1)
        self.fc = nn.Linear(3 * 4 * 4, 5)

    def forward(self, x):
        y = F.relu(self.conv(x))
        return self.fc(y.view(y.size(0), -1))


def test_linear_after_spatial_flatten_gets_nhwc_columns():
    torch.manual_seed(2)
    model, x = _FlatHead().eval(), torch.rand(8, 1, 8, 8)
    prepared, qmodel = _quantized(model, x)
    assert [s.op for s in qmodel.steps] == ["input", "conv2d", "flatten", "linear"]
    with torch.no_grad():
        sim = simulate(prepared)(x).numpy()
        ref = model(x).numpy()
    out = qmodel(x.numpy())
    step = float(qmodel.qparams("fc").scale)
    assert np.abs(out - sim).max() <= 3 * step  # a wrong column order would be off by the whole range
    assert np.abs(out - ref).max() < 0.05 * np.abs(ref).max() + 3 * step


class _ActGrid(nn.Module):
    """A QAT activation quantizer: a fixed uint8 grid of step 1/15 on 0..15 (4 bits)."""

    def qkern_qparams(self):
        return qkern.QParams(np.float32(1 / 15), 0, "uint8", qmin=0, qmax=15)

    def forward(self, x):
        qp = self.qkern_qparams()
        return torch.fake_quantize_per_tensor_affine(x, float(qp.scale), 0, qp.qmin, qp.qmax)


class _QATConv(nn.Conv2d):
    """A QAT weight module: integer weights i * 0.05 in -7..7, bias 0.1 (fixed, so the test knows them)."""

    def __init__(self):
        super().__init__(2, 3, 3, padding=1)
        g = torch.Generator().manual_seed(5)
        self.w_int = torch.randint(-7, 8, self.weight.shape, generator=g).to(torch.int8)

    def qkern_quantized_weight(self):
        qp = qkern.QParams(np.float32(0.05), 0, "int8", qmin=-7, qmax=7)
        return self.w_int.numpy(), qp, np.full(3, 0.1, np.float32)

    def forward(self, x):
        return F.conv2d(x, self.w_int.float() * 0.05, torch.full((3,), 0.1), padding=1)


class _QATNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_in = _ActGrid()
        self.conv = _QATConv()
        self.q_out = _ActGrid()

    def forward(self, x):
        return self.q_out(F.relu(self.conv(self.q_in(x))))


def test_qat_protocol_quantizers_and_weight_modules_are_honoured():
    x = torch.rand(2, 2, 6, 6, generator=torch.Generator().manual_seed(0))
    qmodel = convert(_QATNet(), x)  # not prepared: convert prepares it, the quantizers fix every grid
    grid = _ActGrid().qkern_qparams()
    assert [s.op for s in qmodel.steps] == ["input", "conv2d"]
    assert qmodel.qparams("x") == grid and qmodel.qparams("q_out") == grid
    acts = qmodel.trace(x.numpy())
    wq = qkern.QParams(np.float32(0.05), 0, "int8", qmin=-7, qmax=7)
    bias_q = np.rint(0.1 / (np.float64(np.float32(1 / 15)) * np.float64(np.float32(0.05)))).astype(np.int32)
    rq = qkern.Requant.from_scales(grid.scale, wq.scale, grid.scale, 0, dtype="uint8", rounding="fp32")
    rq = qkern.Requant(rq.multiplier, None, 0, dtype="uint8", qmin=0, qmax=15, rounding="fp32")
    w = np.ascontiguousarray(_QATNet().conv.w_int.numpy().transpose(0, 2, 3, 1))
    expect = qkern.conv3x3(acts["x"], w, x_zero_point=0, bias=np.full(3, bias_q, np.int32), requant=rq)
    np.testing.assert_array_equal(acts["q_out"], expect)
    with torch.no_grad():
        ref = _QATNet()(x).numpy()
    # The QAT forward is on the same grid: equal, or one step apart where its float32 sum rounds the other
    # way at a tie (inputs of 40 seeds: never more than one step, at least 97% equal).
    diff = np.abs(qmodel(x.numpy()) - ref)
    assert diff.max() <= float(grid.scale) + 1e-6
    assert np.mean(diff < 1e-6) > 0.95


def test_k_bit_weights_and_int8_activations():
    torch.manual_seed(4)
    model, x = _FlatHead().eval(), torch.rand(8, 1, 8, 8)
    _, q4 = _quantized(model, x, weight_bits=4, act_bits=6, act_dtype="int8", per_channel=False)
    conv = next(s for s in q4.steps if s.op == "conv2d")
    assert conv.qparams.dtype == "int8" and conv.qparams.zero_point == 0
    assert (conv.qparams.qmin, conv.qparams.qmax) == (0, 31)  # 6-bit symmetric, ReLU clamps at zero
    acts = q4.trace(x.numpy())
    assert acts["x"].dtype == np.int8 and -32 <= acts["x"].min() and acts["x"].max() <= 31
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(q4(x.numpy()) - ref).max() < 0.2 * np.abs(ref).max()


def test_cross_entropy_calibrator_keeps_the_softmax():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1, (512, 10)).astype(np.float32)
    logits[:4] *= 40  # a few outliers stretch the min-max range
    cal = Calibrator("cross_entropy", bits=4)
    cal(logits)
    lo, hi = cal.compute_range()
    assert logits.min() <= lo < hi <= logits.max()
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)

    def ce(q):
        return softmax_cross_entropy(p.astype(np.float64), q.dequantize(q.quantize(logits)).astype(np.float64))

    chosen = cal.calculate_qparams()
    minmax = calc_qparams(float(logits.min()), float(logits.max()), "uint8", bits=4)
    assert ce(chosen) <= ce(minmax)


def test_cross_entropy_method_applies_to_the_logits_only():
    torch.manual_seed(6)
    model, x = _FlatHead().eval(), torch.rand(16, 1, 8, 8)
    prepared = prepare(model, example_inputs=x, method="cross_entropy", layer_methods={"conv": "mse"})
    methods = prepared.qkern_config.methods
    assert methods["fc"] == "cross_entropy" and methods["x"] == "minmax"
    assert methods["relu"] == "mse"  # the conv's observer sits after its fused ReLU; set through the module name
    calibrate(prepared, [x])
    convert(prepared)


def test_quantize_and_report():
    torch.manual_seed(7)
    model, x = _FlatHead().eval(), torch.rand(16, 1, 8, 8)
    qmodel = quantize(model, [x[:8], x[8:]], method="mse")
    rows = report(model, qmodel, x, show=False)
    assert [r["name"] for r in rows] == ["x", "relu", "fc"]
    assert all(r["sqnr_db"] > 20 for r in rows)
    assert rows[1]["weight_mse"] > 0 and np.isnan(rows[0]["weight_mse"])


def test_bad_arguments_name_themselves():
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match="method"):
        prepare(_FlatHead(), example_inputs=x, method="bogus")
    with pytest.raises(ValueError, match="weight_bits"):
        prepare(_FlatHead(), example_inputs=x, weight_bits=9)
    with pytest.raises(ValueError, match="layer_methods"):
        prepare(_FlatHead(), example_inputs=x, layer_methods={"nope": "mse"})
    with pytest.raises(ValueError, match="example_inputs"):
        prepare(_FlatHead())
    with pytest.raises(TypeError, match="model"):
        prepare("not a model", example_inputs=x)
    with pytest.raises(ValueError, match="calibration"):
        convert(prepare(_FlatHead(), example_inputs=x))
    with pytest.raises(ValueError, match="calibration_data"):
        quantize(_FlatHead(), [])


class _Pools(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.act = nn.ReLU6(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.proj = nn.Conv2d(6, 6, 1)
        self.avg = nn.AvgPool2d(2)

    def forward(self, x):
        y = self.pool(self.act(self.bn(self.conv(x))))
        z = F.relu6(torch.add(self.proj(y), y))
        return self.avg(z)


def test_pools_relu6_and_add_lower_to_integer_steps():
    torch.manual_seed(8)
    model = _Pools().eval()
    model.bn.running_mean.uniform_(-0.2, 0.2)
    model.bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(4, 3, 8, 8)
    prepared, qmodel = _quantized(model, x)
    assert [s.op for s in qmodel.steps] == ["input", "conv2d", "max_pool2d", "conv2d", "add", "avg_pool2d"]
    act = qmodel.steps[1]
    assert act.name == "act" and act.qparams.qmin == act.qparams.zero_point
    assert qmodel.qparams("pool") == act.qparams  # max pool keeps its input's qparams
    with torch.no_grad():
        sim = simulate(prepared)(x).numpy()
        ref = model(x).numpy()
    out = qmodel(x.numpy())
    step = float(qmodel.qparams("avg").scale)
    assert np.abs(out - sim).max() <= 4 * step
    assert np.abs(out - ref).max() <= 0.05 * np.abs(ref).max() + 4 * step


@pytest.mark.parametrize("rounding", ["gemmlowp", "single"])
def test_requant_rounding_is_selectable(rounding):
    torch.manual_seed(9)
    model, x = _FlatHead().eval(), torch.rand(4, 1, 8, 8)
    prepared, qmodel = _quantized(model, x, rounding=rounding)
    acts = qmodel.trace(x.numpy())
    in_qp, out_qp = qmodel.qparams("x"), qmodel.qparams("relu")
    w = prepared.conv.weight.detach().numpy()
    flat = w.reshape(3, -1)
    w_qp = qkern.calc_qparams(flat.min(1), flat.max(1), "int8", symmetric=True)
    w_q = w_qp.quantize(w.reshape(3, -1)).reshape(w.shape)
    bias = np.rint(
        prepared.conv.bias.detach().numpy().astype(np.float64)
        / (np.float64(in_qp.scale) * w_qp.scale.astype(np.float64))
    ).astype(np.int32)
    base = qkern.Requant.from_scales(in_qp.scale, w_qp.scale, out_qp.scale, out_qp.zero_point, rounding=rounding)
    rq = qkern.Requant(
        base.multiplier, base.shift, out_qp.zero_point, qmin=out_qp.qmin, qmax=out_qp.qmax, rounding=rounding
    )
    expect = qkern.conv3x3(
        acts["x"],
        np.ascontiguousarray(w_q.transpose(0, 2, 3, 1)),
        stride=2,
        x_zero_point=int(in_qp.zero_point),
        bias=bias,
        requant=rq,
    )
    np.testing.assert_array_equal(acts["relu"], expect)
