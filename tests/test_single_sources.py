"""Facts stated once: modules that still spell a shared constant themselves must agree with its one source."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import qkern
from qkern import observers, qparams
from qkern._constants import FLOAT32_EPS, MAX_THREADS


def test_float32_eps_is_two_to_the_minus_23_everywhere():
    assert FLOAT32_EPS == float(np.finfo(np.float32).eps) == 2.0**-23
    assert inspect.signature(qkern.calc_qparams).parameters["eps"].default == FLOAT32_EPS
    assert inspect.signature(qparams.calc_qparams).parameters["eps"].default == FLOAT32_EPS
    assert observers.EPS_F32 == FLOAT32_EPS


@pytest.mark.skipif(not qkern.available_isas(), reason="needs the native backend")
def test_thread_limit_is_enforced_at_its_value():
    threads = qkern.get_num_threads()
    try:
        qkern.set_num_threads(MAX_THREADS)
        assert qkern.get_num_threads() == MAX_THREADS
    finally:
        qkern.set_num_threads(threads)
    with pytest.raises(ValueError, match=f"\\[1, {MAX_THREADS}\\]"):
        qkern.set_num_threads(MAX_THREADS + 1)


@pytest.mark.skipif(not qkern.available_isas(), reason="needs the native backend")
def test_requant_mode_codes_agree_with_the_native_table():
    from qkern import _core
    from qkern.requant_params import MODE_CODES, RAW_MODE_CODE, ROUNDINGS

    assert set(MODE_CODES) == set(ROUNDINGS)
    assert dict(_core.requant_modes()) == {"raw": RAW_MODE_CODE, **MODE_CODES}


@pytest.mark.skipif(not qkern.available_isas(), reason="needs the native backend")
def test_thread_limit_agrees_with_the_native_pool():
    from qkern import _core

    assert _core.max_threads == MAX_THREADS
