"""QAT models converted by qkern.torch.convert: integer tensors and predictions agree with the fake-quant forward."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
qkern_torch = pytest.importorskip("qkern.torch")
zoo = pytest.importorskip("qkern.torch.zoo")
F = torch.nn.functional

pytestmark = [pytest.mark.torch, pytest.mark.slow]

METHODS = ["fake_quant", "dorefa", "pact", "wrpn", "lsq"]


@pytest.fixture(scope="session")
def float_digits():
    """A small seeded DigitsNet (width 4) trained briefly in float, and its data (one torch thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield zoo.train_classifier(seed=0, epochs=3, width=4, progress=False)
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def qat_digits(float_digits):
    """One QAT model per method at 4 bits, fine-tuned one epoch from the float model (seeded), in eval mode."""
    model, data = float_digits
    trained = {}
    for method in METHODS:
        torch.manual_seed(0)
        qat_model = qkern_torch.prepare_qat(model, method, weight_bits=4, act_bits=4)
        trained[method] = zoo._train(qat_model, data, F.cross_entropy, epochs=1, seed=0, lr=3e-3, progress=False)
    return trained, data


@pytest.mark.parametrize("method", METHODS)
def test_converted_model_agrees_with_fake_quant(qat_digits, method):
    trained, data = qat_digits
    qat_model = trained[method]
    with torch.no_grad():
        fake = qat_model(data.x_test).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        qmodel = qkern_torch.convert(qat_model, data.x_train[:64])
    integer = qmodel(data.x_test.numpy())
    agree = np.mean(fake.argmax(axis=1) == integer.argmax(axis=1))
    assert agree >= 0.99, f"{method}: {agree:.4f} of predictions agree"

    # Each QAT quantizer's output, as integers on its own grid, against the integer model's tensor there.
    x = data.x_test[:32]
    outputs = {}
    hooks = [
        m.register_forward_hook(lambda mod, i, o, name=name: outputs.update({name: o}))
        for name, m in qat_model.named_modules()
        if name.startswith("qat_quant_")
    ]
    with torch.no_grad():
        qat_model(x)
    for h in hooks:
        h.remove()
    trace = qmodel.trace(x.numpy())
    first = next(iter(trace))  # the input step (the input quantizer's grid)
    for name, out in outputs.items():
        step = name if name in trace else first
        qp = getattr(qat_model, name).qkern_qparams()
        assert qmodel.qparams(step) == qp, name  # the trained grid, exactly
        expected = qp.quantize(out.numpy())
        if expected.ndim == 4:
            expected = expected.transpose(0, 2, 3, 1)  # NCHW -> NHWC
        got = trace[step].reshape(expected.shape)
        # Same integers up to float32 rounding of products near a tie.
        assert np.mean(got == expected) >= 0.999, f"{method} {name}: {np.mean(got == expected):.5f}"
