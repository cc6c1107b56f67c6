"""Packed weights for 7-bit inputs (`input_bits=7`: uint8 below 128, a 7-bit activation range): the same
integers as the 8-bit packing on every ISA x {1, 2} threads, the promise checked on every call and backend,
and kept through pickling."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import qkern
from conftest import rand_q, requant_cases


def _seven_bit(rng, shape: tuple[int, ...]) -> np.ndarray:
    """uint8 below 128, both ends present."""
    a = rng.integers(0, 128, shape).astype(np.uint8)
    a.flat[:2] = (0, 127)
    return a


def _layers(rng, c: int, o: int, requant, w_dtype=np.int8):
    """(8-bit packing, 7-bit packing, input shape, zero-point argument) of each packed class."""
    wg, wc, wd = rand_q(rng, w_dtype, (c, o)), rand_q(rng, w_dtype, (o, 3, 3, c)), rand_q(rng, w_dtype, (c, 2, 2, o))
    zp = rng.integers(-5, 6, o).astype(np.int32) if w_dtype == np.int8 else 128
    bias = rng.integers(-5000, 5000, o).astype(np.int32)
    return [
        (qkern.PackedGemm(wg, zp, bias, requant), qkern.PackedGemm(wg, zp, bias, requant, input_bits=7), (37, c), "a"),
        *(
            (
                qkern.PackedConv3x3(wc, zp, bias, requant, stride=s, padding=p),
                qkern.PackedConv3x3(wc, zp, bias, requant, stride=s, padding=p, input_bits=7),
                (2, 9, 11, c),
                "x",
            )
            for s, p in ((1, 1), (2, 0))
        ),
        (
            qkern.PackedConvTranspose2x2(wd, zp, bias, requant),
            qkern.PackedConvTranspose2x2(wd, zp, bias, requant, input_bits=7),
            (2, 5, 6, c),
            "x",
        ),
    ]


# Channel counts through each conv3x3 path (the patch C <= 6, the kernel-row taps C <= 64, nine taps) and
# GEMM depths with and without a K tail of the 4-byte k-groups.
@pytest.mark.parametrize("c", [1, 3, 8, 13, 70])
@pytest.mark.parametrize("o", [1, 5, 16, 37])
def test_seven_bit_packing_gives_the_same_integers(isa_threads, rng, c, o):
    for requant_name, requant in list(requant_cases(rng, o).items())[::2]:
        for w_dtype in (np.int8, np.uint8):
            for eight, seven, shape, zp_name in _layers(rng, c, o, requant, w_dtype):
                x, zp = _seven_bit(rng, shape), int(rng.integers(0, 128))
                want = eight(x, **{f"{zp_name}_zero_point": zp})
                got = seven(x, **{f"{zp_name}_zero_point": zp})
                assert got.dtype == want.dtype
                np.testing.assert_array_equal(got, want, err_msg=f"{type(seven).__name__} {requant_name} {w_dtype}")


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_the_promise_is_checked(rng, backend):
    for _, seven, shape, zp_name in _layers(rng, 6, 5, None):
        kw = f"{zp_name}_zero_point"
        x = _seven_bit(rng, shape)
        with qkern.backend(backend):
            seven(x, **{kw: 127})
            high = x.copy()
            high.flat[-1] = 128
            with pytest.raises(ValueError, match="above 127"):
                seven(high, **{kw: 3})
            with pytest.raises(ValueError, match="zero point must be in"):
                seven(x, **{kw: 128})
            with pytest.raises(TypeError, match="must be uint8"):
                seven(x.view(np.int8), **{kw: 3})


def test_input_bits_is_checked_and_survives_pickling(rng):
    w = rand_q(rng, np.int8, (8, 4))
    for bad in (6, 9, 7.0, "7"):
        with pytest.raises(ValueError, match="input_bits"):
            qkern.PackedGemm(w, input_bits=bad)
    packed = qkern.PackedGemm(w, input_bits=7)
    copy = pickle.loads(pickle.dumps(packed))
    assert copy.input_bits == 7
    x = _seven_bit(rng, (3, 8))
    np.testing.assert_array_equal(copy(x), packed(x))
    with pytest.raises(ValueError, match="above 127"):
        copy(np.full((3, 8), 200, np.uint8))
