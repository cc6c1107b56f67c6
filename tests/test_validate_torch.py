"""qkern validate: conv3x3 equals torch's quantized conv2d (fbgemm, onednn, x86) and ONNX Runtime's
QLinearConv in "fp32" mode, both ops are within 1 LSB of torch's float ops, conv_transpose2x2 equals
torch's qnnpack engine; and torch 2.13's fbgemm/onednn/x86 quantized conv_transpose2d bug is documented."""

from __future__ import annotations

import numpy as np
import pytest
from qkern.tools import cli

torch = pytest.importorskip("torch")
validate = pytest.importorskip("qkern.tools.validate")

try:
    import onnxruntime  # noqa: F401

    HAVE_ORT = True
except ImportError:
    HAVE_ORT = False


def test_validate_conv3x3_every_check_passes():
    checks = validate.validate_conv3x3(np.random.default_rng(1), ort=HAVE_ORT)
    oracles = {c.oracle for c in checks}
    assert "torch float conv2d" in oracles
    assert {f"torch quantized conv2d ({e})" for e in validate.ENGINES} & oracles
    if HAVE_ORT:
        assert "onnxruntime QLinearConv" in oracles
    failed = [c for c in checks if not c.ok]
    assert not failed, failed
    exact = [c for c in checks if c.must_equal]
    assert all(c.max_diff == 0 and c.frac_equal == 1.0 for c in exact)
    if validate.PEERS_EXACT:
        assert exact
    else:  # the peers' saturating AVX2 paths: qkern stays within 1 LSB of the float op (checked above)
        assert all(c.saturating_peer for c in checks if "quantized" in c.oracle or "QLinear" in c.oracle)


def test_validate_deconv2x2_qkern_checks_pass():
    checks = validate.validate_deconv2x2(np.random.default_rng(2))
    mine = [c for c in checks if c.is_qkern]
    assert any(c.oracle == "torch quantized (qnnpack)" for c in mine)
    assert any("per-channel" in c.case for c in mine)
    failed = [c for c in mine if not c.ok]
    assert not failed, failed


@pytest.mark.parametrize("engine", ["fbgemm", "onednn", "x86"])
def test_torch_quantized_conv_transpose2d_is_wrong_on_this_engine(engine):
    """Documents torch 2.13's bug: 16->8 channels on a 5x6 input is far from the float op on
    the fbgemm, onednn and x86 engines. Skipped once torch returns correct results."""
    if engine not in torch.backends.quantized.supported_engines:
        pytest.skip(f"{engine} not available")
    old = validate.DECONV_CASES
    try:
        validate.DECONV_CASES = [(1, 5, 6, 16, 8)]
        checks = validate.validate_deconv2x2(np.random.default_rng(3))
    finally:
        validate.DECONV_CASES = old
    peer = next(c for c in checks if c.subject == f"torch quantized ({engine})")
    mine = [c for c in checks if c.is_qkern]
    assert all(c.ok for c in mine)
    if peer.ok:
        pytest.skip(f"torch's {engine} quantized conv_transpose2d now matches the float op: bug fixed")
    assert peer.max_diff > 1


def test_validate_cli(capsys):
    assert cli.main(["validate", "--op", "deconv2x2"]) == 0
    out = capsys.readouterr().out
    assert "qkern:" in out and "checks passed" in out
