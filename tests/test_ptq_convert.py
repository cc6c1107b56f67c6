"""PTQ of torch models: converted layers equal the public kernels, agreement with the fake-quant simulation."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import qkern  # noqa: E402
from qkern.torch import calibrate, convert, prepare, simulate, zoo  # noqa: E402
from qkern.torch.plan import GraphPlan, quantize_bias  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(scope="session")
def classifier():
    """The seeded digits classifier (trained once per session) and its PTQ conversion on 256 calibration images."""
    torch.set_num_threads(2)
    model, data = zoo.cached_classifier(seed=0, epochs=6, width=8)
    prepared = prepare(model, example_inputs=data.x_train[:8])
    calibrate(prepared, [data.x_train[i : i + 128] for i in range(0, 256, 128)])
    return model, data, prepared, convert(prepared)


@pytest.fixture(scope="module")
def unet():
    """An untrained U-Net (random weights) converted on random calibration data: deconv and cat paths."""
    torch.manual_seed(3)
    model = zoo.UNet(width=4).eval()
    x = torch.rand(4, 1, 16, 16)
    prepared = prepare(model, example_inputs=x)
    calibrate(prepared, [x])
    return model, x, prepared, convert(prepared)


def _layer_steps(prepared):
    """(step name, fx node, kind) of each conv / deconv / linear layer of a prepared graph."""
    plan = GraphPlan(prepared)
    for node, kind in plan.kinds.items():
        if kind in ("conv", "deconv", "linear"):
            yield plan.value_name(plan.chain(node)), node, kind, plan


def _check_layers_equal_public_kernels(prepared, qmodel, x):
    acts = qmodel.trace(x)
    infos = {s.name: s for s in qmodel.steps}
    checked = 0
    for name, node, kind, plan in _layer_steps(prepared):
        info = infos[name]
        x_int = acts[info.inputs[0]]
        in_qp = qmodel.qparams(info.inputs[0])
        out_qp = qmodel.qparams(name)
        module = plan.modules[str(node.target)]
        w, w_qp, bias = plan.weight(module, kind)  # output channel first, torch layout otherwise
        bias_q = quantize_bias(bias, in_qp.scale, w_qp.scale, w.shape[0])
        base = qkern.Requant.from_scales(
            in_qp.scale, w_qp.scale, out_qp.scale, out_qp.zero_point, dtype=out_qp.dtype, rounding="fp32"
        )
        rq = qkern.Requant(
            base.multiplier,
            None,
            out_qp.zero_point,
            dtype=out_qp.dtype,
            qmin=out_qp.qmin,
            qmax=out_qp.qmax,
            rounding="fp32",
        )
        xz, wz = int(in_qp.zero_point), w_qp.zero_point
        if kind == "conv" and module.kernel_size[0] == 3:
            expect = qkern.conv3x3(
                x_int,
                np.ascontiguousarray(w.transpose(0, 2, 3, 1)),
                stride=module.stride[0],
                padding=module.padding[0],
                x_zero_point=xz,
                w_zero_point=wz,
                bias=bias_q,
                requant=rq,
            )
        elif kind == "conv":
            s = module.stride[0]
            a = np.ascontiguousarray(x_int[:, ::s, ::s, :])
            flat = qkern.gemm(
                a.reshape(-1, a.shape[-1]),
                np.ascontiguousarray(w[:, :, 0, 0].T),
                a_zero_point=xz,
                b_zero_point=wz,
                bias=bias_q,
                requant=rq,
            )
            expect = flat.reshape(*a.shape[:3], -1)
        elif kind == "deconv":
            expect = qkern.conv_transpose2x2(
                x_int,
                np.ascontiguousarray(w.transpose(1, 2, 3, 0)),
                x_zero_point=xz,
                w_zero_point=wz,
                bias=bias_q,
                requant=rq,
            )
        else:  # the Linear's input is a flatten of a [N, C, 1, 1] pool here: both column orders agree
            expect = qkern.gemm(
                x_int, np.ascontiguousarray(w.T), a_zero_point=xz, b_zero_point=wz, bias=bias_q, requant=rq
            )
        np.testing.assert_array_equal(acts[name], expect, err_msg=name)
        checked += 1
    return checked


def test_classifier_layers_equal_public_kernels(classifier):
    _, data, prepared, qmodel = classifier
    assert _check_layers_equal_public_kernels(prepared, qmodel, data.x_test[:16].numpy()) == 6


def test_unet_layers_equal_public_kernels(unet):
    _, x, prepared, qmodel = unet
    ops = [s.op for s in qmodel.steps]
    assert ops.count("conv_transpose2x2") == 2 and ops.count("cat") == 2 and "float_op" not in ops
    assert _check_layers_equal_public_kernels(prepared, qmodel, x.numpy()) == 11


def test_cat_inputs_share_the_cat_qparams(unet):
    _, _, _, qmodel = unet
    infos = {s.name: s for s in qmodel.steps}
    for s in qmodel.steps:
        if s.op == "cat":
            shared = [infos[i].qparams == s.qparams for i in s.inputs]
            assert any(shared), s.name  # every producer can requantize onto the cat's grid; the first one does


def test_fused_relu_clamps_at_the_zero_point(classifier):
    _, _, _, qmodel = classifier
    convs = [s for s in qmodel.steps if s.op == "conv2d"]
    assert convs and all(s.qparams.qmin == s.qparams.zero_point for s in convs if s.name != "block_bn2")
    no_relu = next(s for s in convs if s.name == "block_bn2")  # conv + BN before the residual add: no ReLU
    assert no_relu.qparams.qmin == 0 and no_relu.qparams.zero_point > 0


def test_integer_model_agrees_with_fake_quant_simulation(classifier):
    _, data, prepared, qmodel = classifier
    with torch.no_grad():
        sim = simulate(prepared)(data.x_test).numpy().argmax(1)
    pred = qmodel(data.x_test.numpy()).argmax(1)
    assert np.mean(pred == sim) >= 0.99


def test_int8_accuracy_within_0_3_points_of_float(classifier):
    model, data, _, qmodel = classifier
    with torch.no_grad():
        acc_float = zoo.accuracy(model(data.x_test).numpy(), data.y_test)
    acc_int8 = zoo.accuracy(qmodel(data.x_test), data.y_test)
    assert acc_float > 90.0
    assert acc_int8 >= acc_float - 0.3


def test_save_load_gives_identical_outputs(classifier, tmp_path):
    _, data, _, qmodel = classifier
    path = tmp_path / "digits.qkern"
    qmodel.save(path)
    loaded = qkern.load(path)
    x = data.x_test[:32].numpy()
    np.testing.assert_array_equal(loaded.run_int(qmodel.trace(x)["x"]), qmodel.run_int(qmodel.trace(x)["x"]))
    np.testing.assert_array_equal(loaded(x), qmodel(x))


def test_one_and_two_threads_and_reference_backend_agree(unet):
    _, x, _, qmodel = unet
    old = qkern.get_num_threads()
    try:
        qkern.set_num_threads(1)
        one = qmodel.trace(x.numpy())
        qkern.set_num_threads(2)
        two = qmodel.trace(x.numpy())
    finally:
        qkern.set_num_threads(old)
    with qkern.backend("reference"):
        ref = qmodel.trace(x.numpy())
    for name in one:
        np.testing.assert_array_equal(one[name], two[name], err_msg=name)
        np.testing.assert_array_equal(one[name], ref[name], err_msg=name)


def test_saved_model_runs_where_torch_cannot_be_imported(classifier, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    _, data, _, qmodel = classifier
    x = data.x_test[:8].numpy()
    np.save(tmp_path / "x.npy", x)
    qmodel.save(tmp_path / "m.qkern")
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any `import torch` now raises ImportError
        "import numpy as np, qkern\n"
        f"m = qkern.load({str(tmp_path / 'm.qkern')!r})\n"
        f"np.save({str(tmp_path / 'y.npy')!r}, m(np.load({str(tmp_path / 'x.npy')!r})))\n"
    )
    env = {"PYTHONPATH": str(Path(qkern.__file__).parent.parent), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), qmodel(x))


@pytest.fixture(scope="module")
def seven_bit_models(classifier, unet):
    """The classifier and the U-Net converted with 7-bit activations (uint8 in [0, 127], act_bits=7)."""
    out = {}
    for name, model, x, calib in (
        ("classifier", classifier[0], classifier[1].x_test[:16], [classifier[1].x_train[:128]]),
        ("unet", unet[0], unet[1], [unet[1]]),
    ):
        prepared = prepare(model, example_inputs=calib[0][:8], act_bits=7)
        calibrate(prepared, calib)
        out[name] = (prepared, convert(prepared), x)
    return out


@pytest.mark.parametrize("name", ["classifier", "unet"])
def test_seven_bit_activations_run_seven_bit_layers_exactly(seven_bit_models, name):
    """Every layer of a model with 7-bit activations reads uint8 below 128, so it is packed with input_bits=7
    (the ISA's 7-bit kernel), and its integer output still equals the public 8-bit kernels' on the same
    operands, layer by layer."""
    prepared, qmodel, x = seven_bit_models[name]
    packed = [s.packed for s in qmodel._steps if hasattr(s, "packed")]
    assert packed and all(p.input_bits == 7 for p in packed)
    assert all(qmodel.qparams(s.name).qmax <= 127 for s in qmodel.steps if s.op in ("conv2d", "linear"))
    assert _check_layers_equal_public_kernels(prepared, qmodel, x.numpy()) == (6 if name == "classifier" else 11)
