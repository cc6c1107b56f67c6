"""Count accumulator spills in the VNNI microkernel's hot loop (docs/speed-design.md S3).

Compiles the VNNI kernel files (the 6x64 and the 12x32 kernel) to assembly with the build's flags, finds each
basic block that holds vpdpbusd instructions and jumps back (the k-loops of the tile variants; the K tail
runs through the same loop body) and counts zmm loads/stores that address the stack there (the epilogue
runs once per tile and is not counted). A correct build keeps all accumulators in registers: the count must be 0.
Exit status 1 on any spill; `--verbose` prints the blocks.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "csrc/kernels/avx512vnni" / f for f in ("gemm_6x64c4_avx512vnni.cc", "gemm_12x32c4_avx512vnni.cc")]
FLAGS = [
    "-std=c++17",
    "-O3",
    "-ffp-contract=off",
    "-mavx512f",
    "-mavx512bw",
    "-mavx512vl",
    "-mavx512dq",
    "-mavx512vnni",
]


def hot_blocks(asm: str) -> list[list[str]]:
    """Blocks with >= 4 vpdpbusd that jump back to a label at or before them: the k-loop bodies, whether
    GCC rotated the loop (the block jumps to itself) or not (it jumps back to a separate header)."""
    blocks, current = [], []
    for line in asm.splitlines():
        if re.match(r"^\.?L\w+:|^_Z\w+:", line):
            blocks.append(current)
            current = []
        current.append(line)
    blocks.append(current)
    position = {b[0].rstrip(":"): i for i, b in enumerate(blocks) if b and b[0].endswith(":")}
    loops = []
    for i, b in enumerate(blocks):
        targets = [m.group(1) for ln in b if (m := re.match(r"\s+j\w+\s+(\S+)$", ln))]
        jumps_back = any(position.get(t, len(blocks)) <= i for t in targets)
        if jumps_back and sum("vpdpbusd" in ln for ln in b) >= 4:
            loops.append(b)
    return loops


def spills(blocks: list[list[str]]) -> int:
    stack = re.compile(r"\((%rsp|%rbp)\)|\d\((%rsp|%rbp)")
    return sum(1 for b in blocks for ln in b if "zmm" in ln and stack.search(ln))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cxx", default="g++")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--extra-flag", action="append", default=[], help="extra compiler flag (tests use -O0)")
    args = p.parse_args()
    blocks = []
    with tempfile.TemporaryDirectory() as d:
        for source in SOURCES:
            out = Path(d) / (source.stem + ".s")
            cmd = [args.cxx, *FLAGS, *args.extra_flag, f"-I{ROOT / 'csrc'}", "-S", "-o", str(out), str(source)]
            subprocess.run(cmd, check=True)
            blocks += hot_blocks(out.read_text())
    n_dot = sum("vpdpbusd" in ln for b in blocks for ln in b)
    n_spill = spills(blocks)
    widest = max((sum("vpdpbusd" in ln for ln in b) for b in blocks), default=0)
    print(f"{len(blocks)} hot blocks, {n_dot} vpdpbusd (widest block {widest}), {n_spill} zmm stack references")
    if args.verbose:
        for b in blocks:
            print("\n".join(b), "\n")
    return 1 if n_spill or widest < 24 else 0


if __name__ == "__main__":
    sys.exit(main())
