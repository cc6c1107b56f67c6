"""The benchmark harness: the live VNNI peak probe and the figures derived from it (no timing asserted)."""

from __future__ import annotations

import pytest
import qkern
from qkern import _core
from qkern.tools import bench_gemm as bench

HAS_VNNI = "avx512vnni" in qkern.available_isas()


@pytest.mark.skipif(not HAS_VNNI, reason="the probe needs avx512vnni")
def test_vnni_probe_runs_and_checks_its_argument():
    assert _core.vnni_probe_seconds(1000) > 0.0
    with pytest.raises(ValueError, match="iterations"):
        _core.vnni_probe_seconds(0)
    peak = bench.live_vnni_peak_gops(samples=1)
    assert peak is not None and peak > 0.0


@pytest.mark.skipif(HAS_VNNI, reason="this CPU has avx512vnni")
def test_vnni_probe_refuses_without_vnni():
    with pytest.raises(ValueError, match="avx512vnni"):
        _core.vnni_probe_seconds(1000)
    assert bench.live_vnni_peak_gops() is None


def test_bench_rows_carry_the_live_peak_percentage():
    rows = bench.bench_gemm([(7, 33, 65)], threads=1, repeat=3, compare=[], settle_s=0.0)
    row = rows[0]
    assert row["correct"] == {"qkern": True}
    live = row["live_peak_gops_per_core"]
    if not HAS_VNNI:
        assert live is None and row["pct_of_live_peak"] is None
        return
    assert live > 0.0
    assert row["pct_of_live_peak"] == pytest.approx(100.0 * row["gops"]["qkern"] / live)
    assert "live VNNI peak" in bench.format_rows(rows)
