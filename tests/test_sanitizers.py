"""The native exactness tests again, against a `_core` built with ASan + UBSan (tools/sanitize.py).

An out-of-bounds read whose bytes are masked off or multiplied by zero leaves every output correct; only
a sanitizer sees it. The self-test proves that the setup reports a heap overread before the real run is
trusted.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "sanitize.py"
# The files that drive every native path (GEMM, conv3x3, deconv2x2; each ISA; 1 and 2 threads).
NATIVE_TESTS = ["tests/test_gemm_isa.py", "tests/test_conv_isa.py", "tests/test_kernel_edges.py",
                "tests/test_packed_conv.py", "tests/test_property_kernels.py",
                "tests/test_robust_bad_inputs.py"]  # fmt: skip


def _missing() -> str | None:
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return "sanitizer runtimes are set up for x86-64 Linux"
    for tool in ("g++", "cmake", "ninja"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    try:
        import pybind11  # noqa: F401
    except ImportError:
        return "needs pybind11"
    return None


MISSING = _missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=str(MISSING))


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=timeout)


def test_sanitizer_setup_reports_a_heap_overread():
    r = _run("--self-test", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "heap-buffer-overflow reported" in r.stdout


@pytest.mark.slow
def test_native_exactness_tests_pass_under_asan_and_ubsan():
    build_dir = ROOT / "build" / "sanitize"
    r = _run("--build-dir", str(build_dir), *NATIVE_TESTS, "-q", "-p", "no:cacheprovider", timeout=2400)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    assert f"sanitized qkern._core: {build_dir}" in r.stdout, out[-2000:]
    assert " passed" in r.stdout and "AddressSanitizer" not in out and "runtime error" not in out
