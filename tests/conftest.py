"""Shared fixtures: seeded RNG, the two backends, random quantized tensors and the odd-size lists."""

from __future__ import annotations

import numpy as np
import pytest
import qkern

# Size lists around 1 and around powers of two: where packing and tail bugs live.
ODD_SIZES = [*range(1, 11), 15, 16, 17, 31, 32, 33, 63, 64, 65]
QTYPES = [np.uint8, np.int8]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261123)


def rand_q(rng: np.random.Generator, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, size=shape, dtype=np.int64).astype(dtype)


def rand_zp(rng: np.random.Generator, dtype: type, n: int | None = None) -> int | np.ndarray:
    info = np.iinfo(dtype)
    if n is None:
        return int(rng.integers(info.min, info.max + 1))
    return rng.integers(info.min, info.max + 1, size=n).astype(np.int32)


ISA_THREADS = [(isa, t) for isa in qkern.available_isas() for t in (1, 2)]


@pytest.fixture(params=ISA_THREADS, ids=[f"{i}-{t}t" for i, t in ISA_THREADS])
def isa_threads(request):
    """Runs the test once per available ISA x {1, 2} threads, restoring the previous settings after."""
    isa, threads = request.param
    old_isa, old_threads = qkern.get_isa(), qkern.get_num_threads()
    qkern.set_isa(isa)
    qkern.set_num_threads(threads)
    yield request.param
    qkern.set_isa(old_isa)
    qkern.set_num_threads(old_threads)


def requant_cases(rng: np.random.Generator, n: int) -> dict[str, qkern.Requant | None]:
    """Raw output and each requant mode, per-tensor ("-pt") and per-channel ("-pc") over n channels."""
    ws = np.exp(rng.uniform(-8, -3, n))
    return {
        "raw": None,
        "gemmlowp-pt": qkern.Requant.from_scales(0.05, float(ws[0]), 0.4, 7, dtype="uint8"),
        "gemmlowp-pc": qkern.Requant.from_scales(0.05, ws, 0.3, -5, dtype="int8", relu=True),
        "single-pt": qkern.Requant.from_scales(0.05, float(ws[0]), 0.2, 100, dtype="uint8", rounding="single"),
        "single-pc": qkern.Requant.from_scales(0.05, ws, 0.2, 3, dtype="int8", rounding="single"),
        "fp32-pt": qkern.Requant.from_scales(0.05, float(ws[0]), 0.2, -3, dtype="int8", rounding="fp32"),
        "fp32-pc": qkern.Requant.from_scales(0.05, ws, 0.3, 128, dtype="uint8", rounding="fp32"),
    }


def pytest_report_header(config: pytest.Config) -> list[str]:
    info = qkern.info()
    return [f"qkern {info['version']}: backend={info['backend']} isas={info['available_isas']}"]
