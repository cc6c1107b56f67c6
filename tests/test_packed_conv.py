"""PackedConv3x3 / PackedConvTranspose2x2: same results as the one-shot functions, own their weights,
reject bad input with a clear error, and the reference backend gives the same integers."""

from __future__ import annotations

import numpy as np
import pytest
import qkern
from conftest import rand_q, requant_cases


def test_packed_conv3x3_matches_one_shot_and_reference_backend(rng):
    x = rand_q(rng, np.uint8, (2, 9, 8, 20))
    w = rand_q(rng, np.int8, (33, 3, 3, 20))
    rq = requant_cases(rng, 33)["gemmlowp-pc"]
    packed = qkern.PackedConv3x3(w, 0, None, rq, stride=2, padding=0)
    want = qkern.conv3x3(x, w, stride=2, padding=0, x_zero_point=9, requant=rq)
    np.testing.assert_array_equal(packed(x, x_zero_point=9), want)
    with qkern.backend("reference"):
        np.testing.assert_array_equal(packed(x, x_zero_point=9), want)
    w[...] = 0  # the packed object owns a copy
    np.testing.assert_array_equal(packed(x, x_zero_point=9), want)
    out = np.empty_like(want)
    assert packed(x, x_zero_point=9, out=out) is out
    assert "PackedConv3x3" in repr(packed)


def test_packed_deconv_matches_one_shot(rng):
    x = rand_q(rng, np.int8, (1, 4, 5, 7))
    w = rand_q(rng, np.uint8, (7, 2, 2, 40))
    zp = rng.integers(0, 256, 40).astype(np.int32)
    bias = rng.integers(-1000, 1000, 40).astype(np.int32)
    packed = qkern.PackedConvTranspose2x2(w, zp, bias)
    want = qkern.conv_transpose2x2(x, w, x_zero_point=-3, w_zero_point=zp, bias=bias)
    np.testing.assert_array_equal(packed(x, x_zero_point=-3), want)
    with qkern.backend("reference"):
        np.testing.assert_array_equal(packed(x, x_zero_point=-3), want)


def test_packed_conv_bad_input(rng):
    w = rand_q(rng, np.int8, (4, 3, 3, 5))
    with pytest.raises(TypeError, match="w"):
        qkern.PackedConv3x3(w.astype(np.int16))
    with pytest.raises(ValueError, match="stride"):
        qkern.PackedConv3x3(w, stride=3)
    with pytest.raises(ValueError, match="padding"):
        qkern.PackedConv3x3(w, padding=2)
    with pytest.raises(ValueError, match="w_zero_point"):
        qkern.PackedConv3x3(w, np.zeros(3, np.int32))
    packed = qkern.PackedConv3x3(w)
    with pytest.raises(ValueError, match="channels"):
        packed(rand_q(rng, np.uint8, (1, 4, 4, 6)))
    with pytest.raises(TypeError, match="x"):
        packed(np.zeros((1, 4, 4, 5), np.float32))
    with pytest.raises(ValueError, match="x_zero_point"):
        packed(rand_q(rng, np.uint8, (1, 4, 4, 5)), x_zero_point=256)
    with pytest.raises(ValueError, match="smaller"):
        qkern.PackedConv3x3(w, padding=0)(rand_q(rng, np.uint8, (1, 2, 4, 5)))
    with pytest.raises(TypeError, match="out"):
        packed(rand_q(rng, np.uint8, (1, 4, 4, 5)), out=np.empty((1, 4, 4, 4), np.uint8))
    d = qkern.PackedConvTranspose2x2(rand_q(rng, np.int8, (5, 2, 2, 3)))
    with pytest.raises(ValueError, match="channels"):
        d(rand_q(rng, np.uint8, (1, 4, 4, 6)))
    with pytest.raises(ValueError, match="IHWO"):
        qkern.PackedConvTranspose2x2(rand_q(rng, np.int8, (5, 3, 3, 3)))


def test_bench_conv_cli_checks_and_reports(tmp_path, capsys):
    shapes = tmp_path / "conv.txt"
    shapes.write_text("# tiny\n1 6 7 8 16 1 1\n")
    from qkern.tools import cli

    assert cli.main(["bench", "conv3x3", "--shapes", str(shapes), "--repeat", "3", "--compare", "none"]) == 0
    out = capsys.readouterr().out
    assert "conv3x3 N=1 6x7 8->16" in out and "qkern" in out
    shapes.write_text("1 6 7 8\n")
    assert cli.main(["bench", "deconv2x2", "--shapes", str(shapes), "--compare", "none"]) == 2


def test_bound_calls_keep_their_arrays_and_check_them_when_bound() -> None:
    """A BoundCall (a model plan's native step, run by `_core.Program`) owns references to what it points
    into, so it runs correctly after every other reference is gone (the sanitizer run of this file sees a
    read of freed memory), and its arguments are checked when it is made, with the unbound call's errors."""
    import gc

    from qkern import _backend

    core = _backend.core
    if core is None:
        pytest.skip("qkern._core is not built")
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 256, (2, 4, 5, 7), dtype=np.uint8), rng.integers(0, 256, (2, 4, 5, 7), dtype=np.uint8)
    table = rng.integers(0, 256, 65536, dtype=np.uint8)
    out = np.empty_like(a)
    want = table[a.astype(np.int64) * 256 + b]
    program = core.Program([core.bind_model_pair_table(a, b, table, out)])
    del a, b, table
    gc.collect()
    program()
    assert np.array_equal(out, want)
    w = rng.integers(-128, 128, (3, 3, 3, 2)).astype(np.int8)
    packed = qkern.PackedConv3x3(w, 0, None, None, padding=1)
    x = rng.integers(0, 256, (1, 5, 5, 2), dtype=np.uint8)
    res = np.empty((1, 5, 5, 3), np.int32)
    with pytest.raises(ValueError, match="out has the wrong shape"):
        packed._core.bind(x, 0, np.empty((1, 4, 4, 3), np.int32))
    with pytest.raises(ValueError, match="table must have 65536 entries"):
        core.bind_model_pair_table(x, x, np.zeros(10, np.uint8), np.empty_like(x))
    call = packed._core.bind(x, 7, res)
    want = qkern.reference.conv3x3(x, w, 1, 1, 7, 0, None, None)
    del packed, x
    gc.collect()
    core.Program([call])()
    assert np.array_equal(res, want)
