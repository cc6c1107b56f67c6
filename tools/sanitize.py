"""Run pytest against a `qkern._core` built with AddressSanitizer and UndefinedBehaviorSanitizer.

An out-of-bounds read in a kernel (a tile edge, a K tail, a padding tap) usually returns garbage that is
masked off or multiplied by zero, so the exactness tests cannot see it; ASan can. This tool builds the
extension from this checkout with `-fsanitize=address,undefined` (CMake + Ninja, into --build-dir), then
runs `python -m pytest ARGS` in a child process that preloads the sanitizer runtimes and installs the
sanitized module as `qkern._core` before qkern is imported. Any report aborts the child: exit status != 0.

    python tools/sanitize.py tests/test_gemm_isa.py -q        # build (incrementally), then run
    python tools/sanitize.py --self-test                      # prove that a heap overread is reported

Needs g++ with libasan/libubsan, cmake, ninja and pybind11 (the `test` extra installs the last three).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SANITIZE_FLAGS = "-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
# Leaks: CPython and NumPy keep allocations until exit by design; the kernels allocate nothing that outlives
# a call except packed weights, which Python owns.
ASAN_OPTIONS = "detect_leaks=0:exitcode=86"
UBSAN_OPTIONS = "print_stacktrace=1:halt_on_error=1:exitcode=87"
MODULE_MARK = "sanitized qkern._core:"


def _cpu_has(flag: str) -> bool:
    """Whether /proc/cpuinfo lists `flag` (False where there is no such file)."""
    try:
        return flag in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


def runtime_libraries() -> list[str]:
    """The compiler's ASan and UBSan shared runtimes (ASan's must be loaded first)."""
    libs = []
    for name in ("libasan.so", "libubsan.so"):
        path = subprocess.run(["g++", f"-print-file-name={name}"], capture_output=True, text=True, check=True)
        found = path.stdout.strip()
        if not os.path.isabs(found) or not os.path.exists(found):
            raise SystemExit(f"sanitize.py: g++ has no {name}")
        libs.append(found)
    return libs


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["LD_PRELOAD"] = ":".join(runtime_libraries())
    env["ASAN_OPTIONS"] = ASAN_OPTIONS
    env["UBSAN_OPTIONS"] = UBSAN_OPTIONS
    return env


def build(build_dir: Path) -> Path:
    """Configures (once) and builds the sanitized extension; returns the module's path."""
    import pybind11

    build_dir.mkdir(parents=True, exist_ok=True)
    if not (build_dir / "build.ninja").exists():
        subprocess.run(
            [
                "cmake", "-G", "Ninja", "-S", str(ROOT), "-B", str(build_dir),
                "-DSKBUILD_PROJECT_NAME=qkern", "-DSKBUILD_PROJECT_VERSION=0.0.0",
                # Debug keeps pybind11 from adding LTO; the kernels' own -O3 still applies.
                "-DCMAKE_BUILD_TYPE=Debug", "-DQKERN_WERROR=OFF",
                # -g1: function names and line tables for the reports, a third of -g's build time.
                "-DCMAKE_CXX_FLAGS_DEBUG=-g1", "-DQKERN_BINDINGS_FLAGS=-O0",
                # Kernels this CPU cannot run would only lengthen the build (the VNNI tiles are most of it).
                f"-DQKERN_AVX512VNNI={'ON' if _cpu_has('avx512_vnni') else 'OFF'}",
                f"-DCMAKE_CXX_FLAGS={SANITIZE_FLAGS}",
                f"-DCMAKE_MODULE_LINKER_FLAGS={SANITIZE_FLAGS}",
                f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
                f"-DPython_EXECUTABLE={sys.executable}",
            ],
            check=True,
        )  # fmt: skip
    subprocess.run(["cmake", "--build", str(build_dir)], check=True)
    modules = sorted(build_dir.glob("_core*.so"))
    if len(modules) != 1:
        raise SystemExit(f"sanitize.py: expected one _core module in {build_dir}, found {modules}")
    return modules[0]


def run_child(module: Path, pytest_args: list[str]) -> int:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--inner", str(module), *pytest_args]
    return subprocess.run(cmd, env=child_env(), cwd=ROOT).returncode


def inner(module: str, pytest_args: list[str]) -> int:
    """In the sanitized child: import `module` as qkern._core, then run pytest in this process."""
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.ExtensionFileLoader("qkern._core", module)
    spec = importlib.util.spec_from_file_location("qkern._core", module, loader=loader)
    core = importlib.util.module_from_spec(spec)
    loader.exec_module(core)
    sys.modules["qkern._core"] = core
    import pytest
    from qkern import _backend

    if _backend.core is not core:
        raise SystemExit("sanitize.py: qkern did not pick up the sanitized module")
    print(MODULE_MARK, core.__file__, flush=True)
    # --capture=sys: pytest leaves file descriptor 2 alone, so a sanitizer report (written there just
    # before the process exits) is not lost in a capture file.
    return int(pytest.main(["--capture=sys", *pytest_args]))


SELF_TEST_SOURCE = r"""
#include <cstdlib>
extern "C" int read_past_end(int n) {
  volatile int* p = static_cast<int*>(std::malloc(sizeof(int) * n));
  for (int i = 0; i < n; ++i) p[i] = i;
  int v = p[n];  // one element past the allocation
  std::free(const_cast<int*>(p));
  return v;
}
"""


def self_test() -> int:
    """Builds a library with one heap overread and calls it in a sanitized child: must be reported."""
    with tempfile.TemporaryDirectory() as tmp:
        src, lib = Path(tmp) / "overread.cc", Path(tmp) / "liboverread.so"
        src.write_text(SELF_TEST_SOURCE)
        compile_cmd = ["g++", "-shared", "-fPIC", "-O1", *SANITIZE_FLAGS.split(), str(src), "-o", str(lib)]
        subprocess.run(compile_cmd, check=True)
        code = f"import ctypes; ctypes.CDLL({str(lib)!r}).read_past_end(7)"
        r = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True)
    reported = "heap-buffer-overflow" in r.stderr and r.returncode != 0
    print(f"self-test: exit status {r.returncode}, heap-buffer-overflow {'reported' if reported else 'NOT reported'}")
    return 0 if reported else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--inner"]:
        return inner(argv[1], argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--build-dir", type=Path, default=ROOT / "build" / "sanitize")
    parser.add_argument("--self-test", action="store_true", help="check that the sanitizer setup reports an overread")
    args, pytest_args = parser.parse_known_args(argv)
    if args.self_test:
        return self_test()
    return run_child(build(args.build_dir), pytest_args)


if __name__ == "__main__":
    sys.exit(main())
