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


def pytest_report_header(config: pytest.Config) -> list[str]:
    info = qkern.info()
    return [f"qkern {info['version']}: backend={info['backend']} isas={info['available_isas']}"]
