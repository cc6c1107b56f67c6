"""Edge tests generated from the kernel list: every row of csrc/qkern/kernels.inc (`qkern.kernels()`), run
alone through the test-only entry points `_core._gemm_with_kernel` / `_gemm_float_with_kernel` on the
shapes where tile kernels break (depth around KR, width around NR, every row count up to MR, strided A,
the split store, each output form), equals the NumPy reference. Test ids carry the kernel's name; a row
whose ISA this CPU cannot run is collected and skipped."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest
import qkern
from conftest import QTYPES, rand_q, rand_zp, requant_cases
from qkern import _backend, _marshal
from qkern.reference import dynamic as ref_dynamic
from qkern.reference import gemm as reference_gemm

core = _backend.core
KERNELS = core.kernels() if core is not None else []
pytestmark = pytest.mark.skipif(core is None, reason="qkern._core is not built")


def _param(k: dict) -> pytest.param:
    runnable = k["isa"] in qkern.available_isas()
    return pytest.param(k, id=k["name"], marks=pytest.mark.skipif(not runnable, reason=f"this CPU lacks {k['isa']}"))


def _a_type(k: dict, ta):
    """A's dtype for the kernel: a 7-bit kernel (a_bits 7) takes uint8 only."""
    return np.uint8 if k["a_bits"] < 8 else ta


def _rand_a(k: dict, rng, ta, shape: tuple[int, ...]) -> np.ndarray:
    """Random A of dtype ta (uint8 for a 7-bit kernel) over the whole range the kernel accepts: below 2**a_bits
    for a 7-bit kernel, with 0 and 127 always present when there is room."""
    a = rand_q(rng, _a_type(k, ta), shape)
    if k["a_bits"] < 8:
        a &= (1 << k["a_bits"]) - 1
        if a.size >= 2:
            a.flat[:2] = (0, (1 << k["a_bits"]) - 1)
    return a


EVERY_KERNEL = [_param(k) for k in KERNELS]
NARROW_KERNELS = [_param(k) for k in KERNELS if k["max_n"]]
TYPE_PAIRS = list(itertools.product(QTYPES, QTYPES))


def _width(k: dict) -> int:
    """The widest output the kernel computes in one call: max_n for a narrow kernel, else two panels and a tail."""
    return k["max_n"] or 2 * k["nr"] + 3


def _widths(k: dict) -> list[int]:
    """n < NR, n = NR, n > NR (for a narrow kernel: up to max_n)."""
    nr = k["nr"]
    return sorted({n for n in (1, 2, nr - 1, nr, nr + 1, 2 * nr + 3) if 1 <= n <= _width(k)})


def _depths(k: dict) -> list[int]:
    """k < KR, k = KR, k > KR and not a multiple of it, several k-groups, a long depth with a tail."""
    kr = k["kr"]
    return sorted({d for d in (1, kr - 1, kr, kr + 1, 2 * kr - 1, 3 * kr + 1, 67) if d >= 1})


def run_kernel(k: dict, a: np.ndarray, za: int, b: np.ndarray, zb, bias, requant, split: int | None = None):
    """The named kernel's output (columns >= split in a second array when split is given)."""
    m, n = a.shape[0], b.shape[1]
    dt = _marshal.out_dtype(requant)
    zb_vec = np.broadcast_to(np.asarray(zb, dtype=np.int32), (n,)).copy()
    stage = _marshal.stage_args(requant, n)
    if split is None:
        out = np.full((m, n), 7, dtype=dt)
        core._gemm_with_kernel(k["name"], a, za, b, zb_vec, bias, stage, out)
        return out
    out, out2 = np.full((m, split), 7, dtype=dt), np.full((m, n - split), 7, dtype=dt)
    core._gemm_with_kernel(k["name"], a, za, b, zb_vec, bias, stage, out, split, out2)
    return np.concatenate([out, out2], axis=1)


def check(k: dict, rng, m: int, n: int, depth: int, ta=np.uint8, tb=np.int8, requant=None, bias=None, label="", **kw):
    a, b = _rand_a(k, rng, ta, (m, depth)), rand_q(rng, tb, (depth, n))
    za, zb = rand_zp(rng, a.dtype.type), rand_zp(rng, tb, n)
    got = run_kernel(k, a, za, b, zb, bias, requant, **kw)
    want = reference_gemm(a, b, za, zb, bias, requant)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want, err_msg=f"{k['name']} m={m} n={n} k={depth} {label} {kw}")


@pytest.mark.parametrize("kernel", EVERY_KERNEL)
@pytest.mark.parametrize(("ta", "tb"), TYPE_PAIRS, ids=lambda t: np.dtype(t).name)
def test_depth_around_kr(kernel, rng, ta, tb):
    for depth in _depths(kernel):
        check(kernel, rng, kernel["mr"], min(kernel["nr"], _width(kernel)), depth, ta, tb)


@pytest.mark.parametrize("kernel", EVERY_KERNEL)
def test_width_around_nr(kernel, rng):
    for n, depth in itertools.product(_widths(kernel), (kernel["kr"], 4 * kernel["kr"] + 1)):
        check(kernel, rng, kernel["mr"], n, depth)


@pytest.mark.parametrize("kernel", EVERY_KERNEL)
def test_every_row_count(kernel, rng):
    for m in [*range(1, kernel["mr"] + 1), 2 * kernel["mr"] + 1]:
        check(kernel, rng, m, _width(kernel), 3 * kernel["kr"] + 1, np.int8, np.uint8)


@pytest.mark.parametrize("kernel", EVERY_KERNEL)
def test_strided_a(kernel, rng):
    m, n, depth = kernel["mr"] + 1, _width(kernel), 2 * kernel["kr"] + 1
    for pad in (1, 13, 64):
        for ta in QTYPES:
            wide = _rand_a(kernel, rng, ta, (m, depth + pad))
            a = wide[:, pad // 2 : pad // 2 + depth]  # rows `depth + pad` bytes apart, not aligned
            b = rand_q(rng, np.int8, (depth, n))
            za, zb = rand_zp(rng, wide.dtype.type), rand_zp(rng, np.int8, n)
            got = run_kernel(kernel, a, za, b, zb, None, None)
            np.testing.assert_array_equal(got, reference_gemm(np.ascontiguousarray(a), b, za, zb), err_msg=f"pad={pad}")


def _left_shift_requant(rng, n: int) -> qkern.Requant:
    """gemmlowp with multipliers above 1 (a left shift, eq. (11)): the path without the one-shift form."""
    return qkern.Requant.from_scales(0.5, np.exp(rng.uniform(0.5, 3, n)), 0.25, 3, dtype="uint8")


@pytest.mark.parametrize("kernel", EVERY_KERNEL)
@pytest.mark.parametrize("with_bias", [False, True], ids=["no-bias", "bias"])
def test_each_output_form(kernel, rng, with_bias):
    n = _width(kernel)
    cases = {**requant_cases(rng, n), "gemmlowp-left": _left_shift_requant(rng, n)}
    for name, requant in cases.items():
        bias = rng.integers(-(2**31), 2**31, n, dtype=np.int64).astype(np.int32) if with_bias else None
        for m in (1, kernel["mr"]):
            check(kernel, rng, m, n, 5 * kernel["kr"] + 1, requant=requant, bias=bias, label=name)


@pytest.mark.parametrize("kernel", EVERY_KERNEL)
def test_split_store(kernel, rng):
    n, nr = _width(kernel), kernel["nr"]
    splits = sorted({s for s in (0, 1, nr - 1, nr, nr + 5, n // 2, n - 1, n) if 0 <= s <= n})
    requants = [None, *requant_cases(rng, n).values()]
    for split, requant in itertools.product(splits, requants[::3]):
        check(kernel, rng, kernel["mr"], n, 3 * kernel["kr"] + 1, requant=requant, split=split)


@pytest.mark.parametrize("kernel", EVERY_KERNEL)
@pytest.mark.parametrize("per_row", [False, True], ids=["per-tensor", "per-row"])
@pytest.mark.parametrize("ta", QTYPES, ids=lambda t: np.dtype(t).name)
def test_float_output(kernel, rng, per_row, ta):
    for m, n in ((1, _width(kernel)), (kernel["mr"] + 1, min(kernel["nr"] - 1, _width(kernel)) or 1)):
        depth = 4 * kernel["kr"] + 3
        a, b = _rand_a(kernel, rng, ta, (m, depth)), rand_q(rng, np.int8, (depth, n))
        count = m if per_row else 1
        a_scale = np.exp(rng.uniform(-6, 0, count)).astype(np.float32)
        a_zp = np.array([rand_zp(rng, a.dtype.type) for _ in range(count)], dtype=np.int32)
        zb = np.zeros(n, dtype=np.int32)
        w_scale = np.exp(rng.uniform(-8, -2, n)).astype(np.float32)
        for bias in (None, rng.normal(size=n).astype(np.float32)):
            out = np.full((m, n), np.nan, dtype=np.float32)
            core._gemm_float_with_kernel(kernel["name"], a, a_scale, a_zp, per_row, b, zb, w_scale, bias, out)
            want = ref_dynamic.float_output(a, a_scale, a_zp, b, zb, w_scale, bias)
            np.testing.assert_array_equal(out, want, err_msg=f"m={m} n={n}")


@pytest.mark.parametrize("kernel", EVERY_KERNEL)
def test_threads_agree(kernel, rng):
    """A call large enough for the pool (m * n * k above the threading threshold) gives the same integers on 1
    and 2 threads."""
    m, n, depth = 6 * kernel["mr"] + 1, _width(kernel), 1031
    a, b = _rand_a(kernel, rng, np.uint8, (m, depth)), rand_q(rng, np.int8, (depth, n))
    za, zb = rand_zp(rng, np.uint8), rand_zp(rng, np.int8, n)
    requant = requant_cases(rng, n)["fp32-pc"]
    want = reference_gemm(a, b, za, zb, None, requant)
    old = qkern.get_num_threads()
    try:
        for threads in (1, 2):
            qkern.set_num_threads(threads)
            np.testing.assert_array_equal(run_kernel(kernel, a, za, b, zb, None, requant), want, err_msg=f"{threads}t")
    finally:
        qkern.set_num_threads(old)


SEVEN_BIT_KERNELS = [_param(k) for k in KERNELS if k["a_bits"] < 8]


@pytest.mark.parametrize("kernel", SEVEN_BIT_KERNELS)
def test_seven_bit_kernel_at_its_extremes(kernel):
    """Every pair at the largest magnitude a 7-bit kernel allows (A = 127 against B = -128 and 127, and A = 0):
    the int16 pair sums it forms (at most 2 * 127 * 128) stay exact, over depths with and without a tail."""
    n = _width(kernel)
    for depth, a_val, b_val in itertools.product((4, 7, 257), (127, 0), (-128, 127)):
        a = np.full((kernel["mr"], depth), a_val, np.uint8)
        b = np.full((depth, n), b_val, np.int8)
        got = run_kernel(kernel, a, 3, b, -2, None, None)
        np.testing.assert_array_equal(got, reference_gemm(a, b, 3, -2), err_msg=f"k={depth} a={a_val} b={b_val}")


@pytest.mark.parametrize("kernel", SEVEN_BIT_KERNELS)
def test_seven_bit_kernel_refuses_int8_a(kernel, rng):
    a, b = rand_q(rng, np.int8, (2, 8)), rand_q(rng, np.int8, (8, 4))
    with pytest.raises(ValueError, match="7-bit activations need uint8 A"):
        run_kernel(kernel, a, 0, b, 0, None, None)


@pytest.mark.parametrize("kernel", NARROW_KERNELS)
def test_narrow_kernel_refuses_wider_outputs(kernel, rng):
    a, b = rand_q(rng, np.uint8, (2, 8)), rand_q(rng, np.int8, (8, kernel["max_n"] + 1))
    with pytest.raises(ValueError, match="at most"):
        run_kernel(kernel, a, 0, b, 0, None, None)


def test_unknown_kernel_is_refused():
    a, b = np.zeros((2, 8), np.uint8), np.zeros((8, 4), np.int8)
    with pytest.raises(ValueError, match="no kernel named"):
        core._gemm_with_kernel(
            "tile_gemm_nonexistent",
            a,
            0,
            b,
            np.zeros(4, np.int32),
            None,
            _marshal.stage_args(None, 4),
            np.zeros((2, 4), np.int32),
        )


# ---- the contract itself ----

DRIVERS = ["csrc/qkern/gemm.cc", "csrc/qkern/conv3x3.cc", "csrc/qkern/deconv2x2.cc", "csrc/qkern/tile_driver.h"]


@pytest.mark.parametrize("path", DRIVERS)
def test_drivers_never_ask_which_isa(path):
    """Everything a driver needs about a kernel comes from its kernels.inc row (KernelInfo): no ISA enum value,
    no build switch of a kernel file, no per-ISA function name in the drivers."""
    source = (Path(__file__).resolve().parents[1] / path).read_text()
    code = "\n".join(line.split("//")[0] for line in source.splitlines())
    for pattern in (r"Isa::k\w+", r"QKERN_HAVE_\w+", r"__(avx2|avx512\w*)\b", r"\.isa\s*[=!]="):
        assert not re.search(pattern, code), f"{path} asks which ISA: {re.search(pattern, code).group(0)}"


def test_int16_kernels_compute_first_layers():
    """Every kernel that multiplies A as int16 names its first-layer conv (the conv driver requires one there:
    it has no int16 patch path), and the others, which read a byte patch, name none."""
    for k in qkern.kernels():
        assert k["first_layer"] == k["a_int16"], k["name"]


def test_every_kernel_has_generated_edge_tests():
    """Each name in qkern.kernels() is a parameter (and so a test id) of every edge test above."""
    names = [k["name"] for k in qkern.kernels()]
    assert [p.id for p in EVERY_KERNEL] == names
    kinds = [obj for name, obj in globals().items() if name.startswith("test_") and hasattr(obj, "pytestmark")]
    marks = [m for obj in kinds for m in obj.pytestmark if m.name == "parametrize" and m.args[0] == "kernel"]
    assert len(marks) >= 8
    for m in marks:
        ids = [p.id for p in m.args[1]]
        subsets = (
            [k["name"] for k in qkern.kernels() if k["max_n"]],
            [k["name"] for k in qkern.kernels() if k["a_bits"] < 8],
        )
        assert ids == names or ids in subsets
