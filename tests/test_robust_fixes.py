"""Robustness fixes, one test each: C = 0 convolutions on every ISA, pickled/deep-copied packed weights and
arrays, Requant/QParams equality and hashing, observer and calibrator argument checks, huge histogram
ranges, QKERN_* environment warnings, the affinity-based thread default, the missing-extension message,
huge stride-0 views and CLI misuse."""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import qkern
from conftest import rand_q
from qkern import _backend, reference
from qkern.calibration import Calibrator
from qkern.observers import (
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    PerChannelMinMaxObserver,
)
from qkern.tools import cli

native = pytest.mark.skipif(_backend.core is None, reason="qkern._core is not built")
COMPILED_ISAS = ("avx512vnni", "avx2", "scalar")


@pytest.fixture
def restore_isa():
    isa = qkern.get_isa()
    yield
    if isa is not None:
        qkern.set_isa(isa)


@native
@pytest.mark.parametrize("isa", COMPILED_ISAS)
def test_every_compiled_isa_runs_or_is_reported(isa, rng, restore_isa):
    """A compiled ISA this CPU cannot run is a reported skip, never a silent hole in the ISA sweeps."""
    compiled = {k["isa"] for k in qkern.kernels()} | {"scalar"}
    if isa not in compiled:
        pytest.skip(f"{isa} is not compiled into this build")
    if isa not in qkern.available_isas():
        pytest.skip(f"{isa} is compiled but this CPU cannot run it: no native case ran on it here")
    qkern.set_isa(isa)
    a, b = rand_q(rng, np.uint8, (7, 70)), rand_q(rng, np.int8, (70, 33))
    np.testing.assert_array_equal(qkern.gemm(a, b, a_zero_point=3), reference.gemm(a, b, 3))
    x, w = rand_q(rng, np.uint8, (1, 5, 6, 9)), rand_q(rng, np.int8, (4, 3, 3, 9))
    np.testing.assert_array_equal(qkern.conv3x3(x, w, x_zero_point=5), reference.conv3x3(x, w, 1, 1, 5))


@pytest.mark.parametrize("isa", qkern.available_isas() or [None])
@pytest.mark.parametrize("stride", [1, 2])
def test_conv3x3_with_no_input_channels_gives_the_stage_of_the_bias(isa, stride, restore_isa):
    if isa is not None:
        qkern.set_isa(isa)
    x = np.zeros((2, 5, 4, 0), np.uint8)
    w = np.zeros((3, 3, 3, 0), np.int8)
    bias = np.array([-7, 0, 2**31 - 1], np.int32)
    rq = qkern.Requant(np.array([2**30, 2**31 - 1, 5]), np.array([0, -3, 2]), 10, dtype="uint8")
    for r in (None, rq):
        want = reference.conv3x3(x, w, stride, 1, 4, np.array([1, 2, 3]), bias, r)
        expected_raw = np.broadcast_to(bias, want.shape)
        if r is None:
            np.testing.assert_array_equal(want, expected_raw)
        kw = {"x_zero_point": 4, "w_zero_point": np.array([1, 2, 3])}
        np.testing.assert_array_equal(qkern.conv3x3(x, w, stride=stride, bias=bias, requant=r, **kw), want)
        packed = qkern.PackedConv3x3(w, kw["w_zero_point"], bias, r, stride=stride)
        np.testing.assert_array_equal(packed(x, x_zero_point=4), want)


@native
def test_unpickled_arrays_are_accepted_by_the_native_core(rng):
    """An unpickled array carries its own dtype object; the binding compares dtypes by value."""
    a, b = rand_q(rng, np.uint8, (3, 5)), rand_q(rng, np.int8, (5, 4))
    bias = np.arange(4, dtype=np.int32)
    a2, b2, bias2 = (pickle.loads(pickle.dumps(v)) for v in (a, b, bias))
    assert a2.dtype is not np.dtype(np.uint8) or b2.dtype is not np.dtype(np.int8)
    out = pickle.loads(pickle.dumps(np.empty((3, 4), np.int32)))
    got = qkern.gemm(a2, b2, bias=bias2, out=out)
    assert got is out
    np.testing.assert_array_equal(got, reference.gemm(a, b, 0, 0, bias))


def _packed_objects(rng):
    rq = qkern.Requant.from_scales(0.02, np.linspace(0.001, 0.01, 6), 0.1, 3)
    return [
        (qkern.PackedGemm(rand_q(rng, np.int8, (20, 6)), np.arange(6) - 3, np.arange(6, dtype=np.int32), rq),
         rand_q(rng, np.uint8, (5, 20))),
        (qkern.PackedConv3x3(rand_q(rng, np.int8, (6, 3, 3, 4)), 0, None, rq, stride=2, padding=0),
         rand_q(rng, np.uint8, (1, 7, 6, 4))),
        (qkern.PackedConvTranspose2x2(rand_q(rng, np.uint8, (4, 2, 2, 6)), 100),
         rand_q(rng, np.int8, (2, 3, 3, 4))),
    ]  # fmt: skip


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_packed_objects_pickle_and_deepcopy_then_repack(rng, how, restore_isa):
    for packed, x in _packed_objects(rng):
        want = packed(x)
        clone = pickle.loads(pickle.dumps(packed)) if how == "pickle" else copy.deepcopy(packed)
        assert type(clone) is type(packed) and clone is not packed
        np.testing.assert_array_equal(clone(x), want)
        weights = clone.b if isinstance(clone, qkern.PackedGemm) else clone.w
        assert not weights.flags.writeable
        assert clone.isa == qkern.get_isa()
        for isa in qkern.available_isas():  # a clone repacks for another ISA like the original
            qkern.set_isa(isa)
            np.testing.assert_array_equal(clone(x), want)
        with qkern.backend("reference"):
            np.testing.assert_array_equal(clone(x), want)


def test_requant_compares_and_hashes_by_value():
    a = qkern.Requant(np.array([2**30, 5]), np.array([1, -2]), 3, dtype="int8", qmin=-100)
    b = qkern.Requant(np.array([2**30, 5]), np.array([1, -2]), 3, dtype="int8", qmin=-100)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    different = [
        qkern.Requant(np.array([2**30, 6]), np.array([1, -2]), 3, dtype="int8", qmin=-100),
        qkern.Requant(np.array([2**30, 5]), np.array([1, -1]), 3, dtype="int8", qmin=-100),
        qkern.Requant(np.array([2**30, 5]), np.array([1, -2]), 4, dtype="int8", qmin=-100),
        qkern.Requant(np.array([2**30, 5]), np.array([1, -2]), 3, dtype="int8"),
        qkern.Requant(np.array([2**30, 5]), np.array([1, -2]), 3, dtype="int8", qmin=-100, rounding="single"),
        qkern.Requant(2**30, 1, 3, dtype="int8", qmin=-100),
    ]
    assert all(a != d for d in different)
    assert qkern.Requant(0.5) == qkern.Requant(np.float64(0.5)) and qkern.Requant(0.0) == qkern.Requant(-0.0)
    assert hash(qkern.Requant(0.0)) == hash(qkern.Requant(-0.0))
    assert a != "not a requant" and pickle.loads(pickle.dumps(a)) == a


def test_qparams_hash_agrees_with_equality():
    per_tensor = qkern.QParams(0.25, 3, "uint8")
    assert hash(per_tensor) == hash(qkern.QParams(np.float64(0.25), np.int64(3), "quint8"))
    per_channel = qkern.QParams(np.array([0.5, 0.25]), np.array([1, 2]), "int8", axis=1)
    twin = qkern.QParams(np.array([0.5, 0.25], np.float32), [1, 2], "int8", axis=1)
    assert per_channel == twin and hash(per_channel) == hash(twin)
    assert len({per_tensor, per_channel, twin, qkern.QParams(0.25, 4, "uint8")}) == 3
    for clone in (pickle.loads(pickle.dumps(per_channel)), copy.deepcopy(per_channel)):
        assert clone == per_channel and hash(clone) == hash(per_channel)
        assert not clone.scale.flags.writeable and not clone.zero_point.flags.writeable


def test_observer_quant_range_must_fit_the_dtype():
    with pytest.raises(ValueError, match="quant_min, quant_max"):
        MinMaxObserver(dtype="quint8", quant_min=0, quant_max=300)
    with pytest.raises(ValueError, match="quant_min, quant_max"):
        MinMaxObserver(dtype="qint8", quant_min=-200, quant_max=100)
    assert MinMaxObserver(dtype="qint8", quant_min=-100, quant_max=100).quant_max == 100


@pytest.mark.parametrize(
    "cls", [MinMaxObserver, MovingAverageMinMaxObserver, PerChannelMinMaxObserver,
            MovingAveragePerChannelMinMaxObserver, HistogramObserver],
)  # fmt: skip
def test_observers_reject_unknown_keywords(cls):
    with pytest.raises(TypeError, match="quant_maxx"):
        cls(quant_maxx=3)
    cls(factory_kwargs=None)  # torch's own keyword is accepted


@pytest.mark.parametrize("cls", [MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver])
def test_averaging_constant_must_be_in_0_1(cls):
    for bad in (0, -0.5, 1.0001, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="averaging_constant"):
            cls(averaging_constant=bad)
    with pytest.raises(TypeError, match="averaging_constant"):
        cls(averaging_constant="0.1")
    assert cls(averaging_constant=1).averaging_constant == 1.0


@pytest.mark.parametrize("magnitude", [1e30, 1e38, 3.4e38])
def test_histogram_observer_on_huge_finite_values(magnitude):
    obs = HistogramObserver()
    obs(np.array([0.0, magnitude / 3, magnitude], np.float32))  # warnings are errors in this suite
    obs(np.array([magnitude / 7], np.float32))
    qp = obs.calculate_qparams()
    assert np.isfinite(qp.scale) and qp.scale > 0 and obs.histogram.sum() == 4
    wide = HistogramObserver()
    wide(np.array([-magnitude, magnitude], np.float32))
    if 2 * magnitude < float(np.finfo(np.float32).max):
        assert np.isfinite(wide.calculate_qparams().scale)
    else:
        with pytest.raises(ValueError, match="wider than float32"):
            wide.calculate_qparams()


@pytest.mark.parametrize("method", ["entropy", "mse", "percentile"])
def test_calibrator_bin_counts_are_checked(method):
    with pytest.raises(ValueError, match="num_bins"):
        Calibrator(method, num_bins=1)
    with pytest.raises(ValueError, match="num_quantized_bins"):
        Calibrator(method, num_quantized_bins=0)
    c = Calibrator(method, num_bins=2, start_bin=1)
    c(np.linspace(-1, 2, 100))
    assert c.calculate_qparams().scale > 0


def test_entropy_start_bin_must_be_within_the_histogram():
    with pytest.raises(ValueError, match="start_bin"):
        Calibrator("entropy", num_bins=64)  # the default start_bin is 128


def _python(code: str, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONWARNINGS": "default", **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, env=full_env, **kw
    )


@native
@pytest.mark.parametrize(
    ("var", "value", "used"),
    [
        ("QKERN_ISA", "bogus", "using 'avx"),
        ("QKERN_ISA", "AVX2", "using '"),
        ("QKERN_NUM_THREADS", "abc", "threads"),
        ("QKERN_NUM_THREADS", "0", "threads"),
        ("QKERN_NUM_THREADS", "100000", "threads"),
        ("QKERN_NUM_THREADS", "2x", "threads"),
        ("QKERN_BACKEND", "fast", "using 'native'"),
    ],
)
def test_bad_environment_values_warn_once_naming_the_variable(var, value, used):
    r = _python("import qkern, qkern.ops; print(qkern.get_isa(), qkern.get_num_threads())", {var: value})
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "RuntimeWarning" in ln]
    assert len(lines) == 1 and f"{var}={value!r}" in lines[0] and used in lines[0], r.stderr
    if var == "QKERN_NUM_THREADS":
        assert r.stdout.split()[1] == str(len(os.sched_getaffinity(0))), r.stdout


@native
def test_good_environment_values_are_silent():
    r = _python("import qkern; print(qkern.get_isa(), qkern.get_num_threads())",
                {"QKERN_ISA": "scalar", "QKERN_NUM_THREADS": "3", "QKERN_BACKEND": "native"})  # fmt: skip
    assert r.returncode == 0 and r.stderr == "" and r.stdout.split() == ["scalar", "3"], r.stderr
    empty = _python("import qkern", {"QKERN_ISA": "", "QKERN_NUM_THREADS": "", "QKERN_BACKEND": ""})
    assert empty.returncode == 0 and empty.stderr == "", empty.stderr  # empty reads as unset


@native
@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity")
def test_default_thread_count_follows_the_cpu_affinity():
    env = {k: v for k, v in os.environ.items() if k != "QKERN_NUM_THREADS"}
    r = subprocess.run(
        [sys.executable, "-c", "import os, qkern; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
         "print(qkern.get_num_threads())"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert r.returncode == 0 and r.stdout.strip() == "1", r.stderr


def test_missing_extension_warning_says_so():
    r = _python(
        """
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "qkern._core":
                    raise ModuleNotFoundError("No module named 'qkern._core'")
        sys.meta_path.insert(0, Block())
        from qkern.tools import cli
        sys.exit(cli.main(["demo", "gemm", "--m", "4", "--k", "8", "--n", "4"]))
        """
    )
    assert r.returncode == 0, r.stderr
    assert "extension qkern._core is missing" in r.stderr and "circular" not in r.stderr, r.stderr
    assert "reference backend" in r.stdout and "native == reference: True" not in r.stdout, r.stdout


def test_huge_stride_0_views_fail_before_any_copy():
    """Views claiming 2^31+ elements: every argument check and the output allocation come before the
    contiguous copy, so a bad call fails at once and an impossible one is a MemoryError without a copy."""
    huge_a = np.broadcast_to(np.uint8(1), (2**31, 8))
    b = np.ones((8, 4), np.int8)
    start = time.perf_counter()
    bad_calls = [
        (ValueError, "K", lambda: qkern.gemm(huge_a, np.ones((7, 4), np.int8))),
        (ValueError, "a_zero_point", lambda: qkern.gemm(huge_a, b, a_zero_point=300)),
        (ValueError, "bias", lambda: qkern.gemm(huge_a, b, bias=np.zeros(5, np.int32))),
        (ValueError, "out", lambda: qkern.gemm(huge_a, b, out=np.zeros((3, 4), np.int32))),
        (ValueError, "a", lambda: qkern.PackedGemm(b)(np.broadcast_to(np.uint8(1), (2**31, 7)))),
        (ValueError, "x_zero_point",
         lambda: qkern.PackedConv3x3(np.ones((2, 3, 3, 8), np.int8))(
             np.broadcast_to(np.uint8(1), (1, 2**16, 2**15, 8)), x_zero_point=-1)),
        (MemoryError, "allocate", lambda: qkern.gemm(np.broadcast_to(np.uint8(1), (2**40, 8)), b)),
    ]  # fmt: skip
    for err, match, call in bad_calls:
        with pytest.raises(err, match=match):
            call()
    assert time.perf_counter() - start < 5.0  # nothing was materialised


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "gemm", "--shapes", "64 64 64"],
        ["bench", "gemm", "--isa", "bogus"],
        ["bench", "gemm", "--threads", "-3"],
        ["bench", "gemm", "--threads", "5000"],
        ["demo", "gemm", "--seed", "-1"],
        ["bench", "gemm", "--repeat", "0"],
        ["bench", "gemm", "--compare", "bogus"],
        ["demo", "gemm", "--m", "0"],
        ["demo", "gemm", "--k", "x"],
        ["nosuchcommand"],
    ],
)
def test_cli_misuse_is_one_line_and_exit_code_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("qkern") and "error:" in err[-1] and "Traceback" not in "\n".join(err)
