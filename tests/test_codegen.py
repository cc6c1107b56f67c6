"""CI guard: the VNNI microkernel's k-loops keep all 24 accumulators in registers, and the AVX2 first-layer
convolution its pixels' accumulators (docs/speed-design.md S3)."""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "check_spills.py"
pytestmark = pytest.mark.skipif(
    shutil.which("g++") is None or platform.machine() not in ("x86_64", "AMD64"), reason="needs g++ on x86-64"
)


def _run(*extra: str, target: str = "vnni") -> subprocess.CompletedProcess:
    args = [sys.executable, str(TOOL), f"--target={target}"] + [f"--extra-flag={f}" for f in extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


def test_vnni_kernel_loops_have_no_accumulator_spills():
    r = _run()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "widest block 24" in r.stdout and " 0 zmm stack references" in r.stdout


def test_first_layer_loops_have_no_accumulator_spills():
    r = _run(target="first-layer")
    assert r.returncode == 0, r.stdout + r.stderr
    assert " 0 ymm stack references" in r.stdout


def test_spill_detector_fires_on_spilling_code():
    r = _run("-O0")  # -O0 keeps every variable on the stack: the detector must report it
    assert r.returncode == 1, r.stdout + r.stderr
