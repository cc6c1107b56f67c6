"""prepare_qat: where quantizers go, BatchNorm folding, training, and the QAT protocol the converter reads."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import qkern

torch = pytest.importorskip("torch")
qat = pytest.importorskip("qkern.torch.qat")
qkern_torch = pytest.importorskip("qkern.torch")
qkern_torch = pytest.importorskip("qkern.torch")
qat_modules = pytest.importorskip("qkern.torch.qat_modules")
F = torch.nn.functional
nn = torch.nn

pytestmark = pytest.mark.torch

METHODS = ["fake_quant", "dorefa", "pact", "wrpn", "lsq"]


class SmallNet(nn.Module):
    """conv-BN-ReLU, a residual conv-BN + add + ReLU, average pool, linear: every kind of node prepare handles."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)) + y)
        return self.fc(torch.flatten(self.pool(y), 1))


def _prepare(method: str, bits: int = 4, **options) -> torch.fx.GraphModule:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return qkern_torch.prepare_qat(SmallNet(), method, bits, bits, **options)


def _train_steps(model: torch.nn.Module, rng: np.random.Generator, steps: int = 3) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(steps):
        x = torch.from_numpy(rng.random((8, 1, 6, 6), dtype=np.float32))
        y = torch.from_numpy(rng.integers(0, 3, 8))
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y) + qat.qat_regularization(model)
        loss.backward()
        opt.step()


@pytest.mark.parametrize("method", METHODS)
def test_quantizers_are_inserted_and_batchnorm_is_folded(method):
    gm = _prepare(method)
    kinds = [type(m).__name__ for name, m in gm.named_modules() if name.startswith("qat_quant_")]
    act = {
        "fake_quant": "FakeQuantize",
        "dorefa": "DoReFaActivation",
        "pact": "PACT",
        "wrpn": "WRPNActivation",
        "lsq": "LSQ",
    }[method]
    # input, after ReLU 1, conv2's output (feeds the add), after the add's ReLU, after the pool, the logits
    assert kinds == ["FakeQuantize", act, "FakeQuantize", act, "FakeQuantize", "FakeQuantize"]
    assert isinstance(gm.conv1, qat_modules.QATConv2d) and isinstance(gm.fc, qat_modules.QATLinear)
    assert isinstance(gm.conv1.bn, nn.BatchNorm2d) and isinstance(gm.conv2.bn, nn.BatchNorm2d)
    called = {n.target for n in gm.graph.nodes if n.op == "call_module"}
    assert not called & {"bn1", "bn2"}  # folded: the BatchNorms run inside the QAT convs
    # A QAT tracer keeps every protocol module as a leaf.
    traced = qkern_torch.trace(gm)
    leaves = {n.target for n in traced.graph.nodes if n.op == "call_module"}
    assert {"conv1", "conv2", "fc"} <= leaves and {f"qat_quant_{i}" for i in range(6)} <= leaves
    x = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    gm(x)
    gm.eval()
    traced.eval()
    assert torch.equal(traced(x), gm(x))


def _capture(gm: torch.nn.Module, module: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The input and output of `module` when `gm` runs on `x`."""
    captured: dict[str, torch.Tensor] = {}
    handle = module.register_forward_hook(lambda m, i, o: captured.update(inp=i[0], out=o))
    gm(x)
    handle.remove()
    return captured


@pytest.mark.parametrize("method", METHODS)
def test_trains_and_eval_forward_uses_exactly_the_exported_integers(rng, method):
    gm = _prepare(method)
    _train_steps(gm, rng)
    learnable = {"pact": "alpha", "lsq": "step"}.get(method)
    if learnable:
        grads = [p.grad for n, p in gm.named_parameters() if n.endswith(learnable)]
        assert grads and all(g is not None for g in grads)
    gm.eval()
    x = torch.from_numpy(rng.random((2, 1, 6, 6), dtype=np.float32))
    # Each layer's input grid comes from this quantizer; the eval bias is rounded onto s_in * s_w[o].
    for name, source in (("conv1", "qat_quant_0"), ("conv2", "qat_quant_1"), ("fc", "qat_quant_4")):
        layer = getattr(gm, name)
        assert layer.input_quant[0] is getattr(gm, source)
        w_int, qp, bias = layer.qkern_quantized_weight()
        assert w_int.dtype == np.int8 and w_int.shape == tuple(layer.weight.shape)
        assert np.all((w_int >= qp.qmin) & (w_int <= qp.qmax))
        w = torch.from_numpy(qkern.dequantize(w_int, qp.scale, qp.zero_point, axis=qp.axis))
        s_in = np.float64(getattr(gm, source).qkern_qparams().scale)
        acc_scale = s_in * np.broadcast_to(np.asarray(qp.scale, np.float64), bias.shape)
        b = torch.from_numpy((np.rint(bias.astype(np.float64) / acc_scale) * acc_scale).astype(np.float32))
        captured = _capture(gm, layer, x)
        if name == "fc":
            expected = F.linear(captured["inp"], w, b)
        else:
            expected = F.conv2d(captured["inp"], w, b, layer.stride, layer.padding)
        assert torch.equal(captured["out"], expected), name
    for name, mod in gm.named_modules():
        if name.startswith("qat_quant_"):
            captured = _capture(gm, mod, x)
            qp = mod.qkern_qparams()
            out = captured["out"].detach().numpy()
            assert qp.dtype == "uint8" and not qp.per_channel
            assert np.array_equal(qp.dequantize(qp.quantize(out)), out), name  # the output lies on the grid


def test_dorefa_weights_at_8_bits_warn_and_cannot_be_exported():
    with pytest.warns(UserWarning, match="9 bits"):
        gm = qkern_torch.prepare_qat(SmallNet(), "dorefa", 8, 8)
    gm(torch.zeros(2, 1, 6, 6))
    gm.eval()
    gm(torch.zeros(1, 1, 6, 6))  # the fake-quant model still runs
    with pytest.raises(ValueError, match="does not fit int8"):
        gm.conv1.qkern_quantized_weight()
    w_int, qp, _ = _prepare("dorefa", 7).conv1.qkern_quantized_weight()
    assert (qp.qmin, qp.qmax) == (-127, 127) and np.all(w_int % 2 != 0)  # odd multiples of 1 / 127


def test_prepare_rejects_bad_arguments():
    with pytest.raises(ValueError, match="method"):
        qkern_torch.prepare_qat(SmallNet(), "xnor")
    with pytest.raises(ValueError, match="weight_bits"):
        qkern_torch.prepare_qat(SmallNet(), "lsq", weight_bits=1)
    with pytest.raises(ValueError, match="act_bits"):
        qkern_torch.prepare_qat(SmallNet(), "lsq", act_bits=9)
    with pytest.raises(TypeError, match="model"):
        qkern_torch.prepare_qat("not a model")
    with pytest.raises(TypeError, match="unexpected options"):
        qkern_torch.prepare_qat(SmallNet(), "lsq", colour="blue")
    with pytest.raises(ValueError, match="bn_fold"):
        qkern_torch.prepare_qat(SmallNet(), "lsq", bn_fold="sideways")
