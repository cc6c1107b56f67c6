"""Fast conv3x3 and conv_transpose2x2: every available ISA x {1, 2} threads equals the reference bit for
bit, one-shot and prepacked, on odd spatial sizes, odd channel counts and batches 1 and 3."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import qkern
from conftest import QTYPES, rand_q, rand_zp, requant_cases
from qkern import _backend
from qkern.conv_shape import conv3x3_fits

pytestmark = pytest.mark.skipif(_backend.core is None, reason="qkern._core is not built")

SIZES = [(1, 1), (2, 3), (5, 7), (17, 13)]
CHANNELS = [1, 3, 5, 17, 63, 65, 129]
BATCHES = [1, 3]
TYPE_PAIRS = list(itertools.product(QTYPES, QTYPES))


def _bias(rng, o):
    return rng.integers(-(2**31), 2**31, o, dtype=np.int64).astype(np.int32) if rng.random() < 0.7 else None


def _pick(rng, items):
    return items[int(rng.integers(len(items)))]


def _conv_case(rng, tx, tw, stride, padding, name, rq, size=None, c=None, o=None, n=None):
    h, w = size or _pick(rng, SIZES)
    if not conv3x3_fits(h, w, padding):
        h, w = h + 2, w + 2
    c, o, n = c or _pick(rng, CHANNELS), o or _pick(rng, CHANNELS), n or _pick(rng, BATCHES)
    if rq is not None and rq.channels is not None and rq.channels != o:
        rq = requant_cases(rng, o)[name]
    x, wt = rand_q(rng, tx, (n, h, w, c)), rand_q(rng, tw, (o, 3, 3, c))
    xz = rand_zp(rng, tx)
    wz = rand_zp(rng, tw, o) if name.endswith("pc") or rng.random() < 0.5 else rand_zp(rng, tw)
    bias = _bias(rng, o)
    want = qkern.reference.conv3x3(x, wt, stride, padding, xz, wz, bias, rq)
    kw = dict(x_zero_point=xz, w_zero_point=wz, bias=bias, requant=rq)
    msg = f"n={n} {h}x{w} c={c} o={o} s={stride} p={padding} {name}"
    np.testing.assert_array_equal(qkern.conv3x3(x, wt, stride=stride, padding=padding, **kw), want, err_msg=msg)
    packed = qkern.PackedConv3x3(wt, wz, bias, rq, stride=stride, padding=padding)
    np.testing.assert_array_equal(packed(x, x_zero_point=xz), want, err_msg="packed " + msg)


@pytest.mark.parametrize(("tx", "tw"), TYPE_PAIRS, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize(("stride", "padding"), [(1, 0), (1, 1), (2, 0), (2, 1)])
def test_conv3x3_every_isa_and_thread_count_equals_reference(rng, isa_threads, tx, tw, stride, padding):
    for name, rq in requant_cases(rng, 8).items():
        _conv_case(rng, tx, tw, stride, padding, name, rq)


@pytest.mark.parametrize("c", CHANNELS)
def test_conv3x3_every_channel_count_and_size(rng, isa_threads, c):
    """Both A paths: C <= 64 reads three kernel-row taps, larger C nine C-deep taps (K tails when C % 4)."""
    for size in SIZES:
        for stride, padding in ((1, 1), (2, 0)):
            name = _pick(rng, list(requant_cases(rng, 1)))
            _conv_case(
                rng,
                np.uint8,
                np.int8,
                stride,
                padding,
                name,
                None if name == "raw" else requant_cases(rng, 1)[name],
                size=size,
                c=c,
                o=_pick(rng, CHANNELS),
                n=_pick(rng, BATCHES),
            )


@pytest.mark.parametrize(("h", "w"), [(1, 40), (2, 31), (3, 13), (14, 14)])
@pytest.mark.parametrize("c", [7, 17, 64, 65])
def test_conv3x3_tiles_in_padding_rows_skip_taps_exactly(rng, isa_threads, h, w, c):
    """Tiles wholly in the top or bottom output row drop the kernel row outside the image and add its
    zero-point products to their bias instead (docs/kernels.md): with s8 or u8 on either side, per-channel
    weight zero points (row sums), K tails (C % 4), both A paths, 6- and 12-row tiles and stride 2."""
    for tx, tw in TYPE_PAIRS:
        for o in (8, 40):
            stride = _pick(rng, [1, 1, 2])
            name = _pick(rng, ["raw", "raw-pc", "fp32-pt", "gemmlowp-pc", "single-pc"])
            rq = requant_cases(rng, o).get(name)  # "raw-pc": raw output, per-channel weight zero points
            _conv_case(rng, tx, tw, stride, 1, name, rq, size=(h, w), c=c, o=o, n=_pick(rng, BATCHES))


@pytest.mark.parametrize("c", [1, 2, 4, 6, 7, 8])
def test_conv3x3_first_layer_channel_counts(rng, isa_threads, c):
    """C <= 6 copies each tile's windows into a patch (one 9*C-byte tap), C = 7..64 reads three kernel-row
    taps: both sides of the boundary, every operand type, strides 1 and 2, borders and K tails."""
    for tx, tw in TYPE_PAIRS:
        for stride, padding in ((2, 1), (1, 1), (1, 0)):
            name = _pick(rng, ["raw", "raw-pc", "fp32-pt", "fp32-pc", "gemmlowp-pc", "single-pt"])
            rq = requant_cases(rng, 40).get(name)
            _conv_case(rng, tx, tw, stride, padding, name, rq, size=_pick(rng, [(9, 14), (5, 7)]), c=c, o=40)


@pytest.mark.parametrize("c", [1, 2, 3, 4, 5, 6])
def test_conv3x3_first_layer_windows_at_the_end_of_the_input(rng, isa_threads, c):
    """The last windows of an exactly sized input: the byte patch (AVX-512) copies them in place, the AVX2
    first-layer routine widens the rows into its band and reads one element past a window's kernel row
    when 3*C is odd (the band's slack; the sanitizer run of this file sees any read past either array).
    Images wider than the bordered copy's limit are read in place, so the input's end is the caller's."""
    for tx in QTYPES:
        for stride, padding in ((1, 0), (1, 1), (2, 0), (2, 1)):
            for h, w in ((3, 40), (4, 35)):
                x = np.empty(1 * h * w * c, dtype=tx).reshape(1, h, w, c)  # exactly sized: ends with the array
                x[...] = rand_q(rng, tx, x.shape)
                wt = rand_q(rng, np.int8, (5, 3, 3, c))
                xz = rand_zp(rng, tx)
                rq = requant_cases(rng, 5)["fp32-pc"]
                want = qkern.reference.conv3x3(x, wt, stride, padding, xz, 0, None, rq)
                packed = qkern.PackedConv3x3(wt, 0, None, rq, stride=stride, padding=padding)
                got = packed(x, x_zero_point=xz)
                np.testing.assert_array_equal(got, want, err_msg=f"{h}x{w} c={c} s={stride} p={padding} {tx}")


def _deconv_case(rng, tx, tw, name, size=None, c=None, o=None, n=None):
    h, w = size or _pick(rng, SIZES)
    c, o, n = c or _pick(rng, CHANNELS), o or _pick(rng, CHANNELS), n or _pick(rng, BATCHES)
    rq = requant_cases(rng, o)[name]
    x, wt = rand_q(rng, tx, (n, h, w, c)), rand_q(rng, tw, (c, 2, 2, o))
    xz = rand_zp(rng, tx)
    wz = rand_zp(rng, tw, o) if name.endswith("pc") or rng.random() < 0.5 else rand_zp(rng, tw)
    bias = _bias(rng, o)
    want = qkern.reference.conv_transpose2x2(x, wt, xz, wz, bias, rq)
    msg = f"n={n} {h}x{w} c={c} o={o} {name}"
    got = qkern.conv_transpose2x2(x, wt, x_zero_point=xz, w_zero_point=wz, bias=bias, requant=rq)
    np.testing.assert_array_equal(got, want, err_msg=msg)
    packed = qkern.PackedConvTranspose2x2(wt, wz, bias, rq)
    np.testing.assert_array_equal(packed(x, x_zero_point=xz), want, err_msg="packed " + msg)


@pytest.mark.parametrize(("tx", "tw"), TYPE_PAIRS, ids=lambda t: np.dtype(t).name)
def test_deconv2x2_every_isa_and_thread_count_equals_reference(rng, isa_threads, tx, tw):
    for name in requant_cases(rng, 1):
        for _ in range(2):
            _deconv_case(rng, tx, tw, name)


@pytest.mark.parametrize("o", CHANNELS)
def test_deconv2x2_every_output_channel_count(rng, isa_threads, o):
    """2*O % 64 != 0 puts the dy boundary inside a 64-column panel: the split store."""
    for size in SIZES:
        _deconv_case(rng, np.int8, np.int8, _pick(rng, list(requant_cases(rng, 1))), size=size, o=o)


def test_conv_large_shapes_split_across_threads(rng, isa_threads):
    """Enough work for the thread pool (> 2^21 MACs), several m-blocks and n-blocks."""
    x = rand_q(rng, np.uint8, (2, 20, 23, 64))
    w = rand_q(rng, np.int8, (130, 3, 3, 64))
    rq = requant_cases(rng, 130)["fp32-pc"]
    want = qkern.reference.conv3x3(x, w, 1, 1, 3, 0, None, rq)
    np.testing.assert_array_equal(qkern.conv3x3(x, w, x_zero_point=3, requant=rq), want)
    wd = rand_q(rng, np.int8, (64, 2, 2, 70))
    rq = requant_cases(rng, 70)["gemmlowp-pc"]
    want = qkern.reference.conv_transpose2x2(x, wd, 3, 1, None, rq)
    np.testing.assert_array_equal(qkern.conv_transpose2x2(x, wd, x_zero_point=3, w_zero_point=1, requant=rq), want)


@pytest.mark.parametrize("w", [8, 32, 33, 130])
@pytest.mark.parametrize("c", [1, 3, 6, 9, 33, 72])
def test_conv3x3_padding_in_place_and_on_a_bordered_copy(rng, isa_threads, w, c):
    """Padding 1 on narrow images runs on a copy of the input with a real x_zero_point border; wider ones
    (conv3x3.cc: wider than kBorderCopyMaxWidth in tuning.h, 32) assemble border windows in place. Both, on
    the patch (C <= 6), kernel-row (9, 33) and nine-tap (72) paths, both strides, with weight zero points
    (row sums of windows in the padding)."""
    for stride in (1, 2):
        tx, tw = _pick(rng, TYPE_PAIRS)
        x, wt = rand_q(rng, tx, (2, 3, w, c)), rand_q(rng, tw, (11, 3, 3, c))
        xz, wz = rand_zp(rng, tx), rand_zp(rng, tw, 11)
        rq = requant_cases(rng, 11)["fp32-pc"]
        want = qkern.reference.conv3x3(x, wt, stride, 1, xz, wz, None, rq)
        packed = qkern.PackedConv3x3(wt, wz, None, rq, stride=stride, padding=1)
        np.testing.assert_array_equal(packed(x, x_zero_point=xz), want, err_msg=f"w={w} c={c} s={stride}")


@pytest.mark.parametrize("c", [4, 9, 33, 72])
@pytest.mark.parametrize(("stride", "padding"), [(1, 1), (1, 0), (2, 1), (2, 0)])
@pytest.mark.parametrize("tx", QTYPES, ids=lambda t: np.dtype(t).name)
def test_conv_weight_zero_point_window_sums(rng, isa_threads, c, stride, padding, tx):
    """Row sums from per-pixel sums (conv3x3.cc window_sums): the patch (C = 4), kernel-row (9, 33) and
    nine-tap (72) paths, pixel sums byte-wise (C < 16) and by psadbw, an input over 64 KiB (C = 72: the
    pixel sums run on the pool in several blocks), windows in the padding, scalar and per-channel weight
    zero points."""
    x = rand_q(rng, tx, (2, 30, 31, c))
    w = rand_q(rng, np.int8, (20, 3, 3, c))
    xz = rand_zp(rng, tx)
    for wz in (rand_zp(rng, np.int8), rand_zp(rng, np.int8, 20)):
        for name, rq in (("raw", None), ("fp32-pc", requant_cases(rng, 20)["fp32-pc"])):
            want = qkern.reference.conv3x3(x, w, stride, padding, xz, wz, None, rq)
            packed = qkern.PackedConv3x3(w, wz, None, rq, stride=stride, padding=padding)
            np.testing.assert_array_equal(packed(x, x_zero_point=xz), want, err_msg=f"{name} wz={wz}")


def test_packed_conv_follows_isa_changes(rng):
    x = rand_q(rng, np.int8, (1, 6, 5, 20))
    w = rand_q(rng, np.uint8, (9, 3, 3, 20))
    packed = qkern.PackedConv3x3(w, 128, None, None)
    want = qkern.reference.conv3x3(x, w, 1, 1, -4, 128)
    old = qkern.get_isa()
    try:
        for isa in qkern.available_isas():
            qkern.set_isa(isa)
            np.testing.assert_array_equal(packed(x, x_zero_point=-4), want)
            assert packed.isa == isa
    finally:
        qkern.set_isa(old)
