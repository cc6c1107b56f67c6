"""Count accumulator spills in a kernel's hot loops (docs/speed-design.md S3).

Compiles a target's kernel files to assembly with the build's flags, finds each basic block that holds at
least four multiply-add instructions and jumps back (the k-loops; a K tail runs through the same loop body)
and counts vector loads/stores that address the stack there (an epilogue runs once per tile and is not
counted). A correct build keeps all accumulators in registers: the count must be 0. Targets: `vnni` (the
6x64 and 12x32 kernels: vpdpbusd on zmm, the widest block holding all 24 accumulators) and `first-layer`
(the AVX2 first-layer convolution: vpmaddwd on ymm, four pixels' accumulators a block).
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
COMMON_FLAGS = ["-std=c++17", "-O3", "-ffp-contract=off"]
VNNI_FLAGS = ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512vnni"]
# target: (sources, ISA flags, multiply-add instruction, vector register, fewest multiply-adds in the widest block)
TARGETS = {
    "vnni": (
        [ROOT / "csrc/kernels/avx512vnni" / f for f in ("gemm_6x64c4_avx512vnni.cc", "gemm_12x32c4_avx512vnni.cc")],
        VNNI_FLAGS,
        "vpdpbusd",
        "zmm",
        24,
    ),
    "first-layer": ([ROOT / "csrc/kernels/avx2/conv_first_layer_avx2.cc"], ["-mavx2"], "vpmaddwd", "ymm", 4),
}


def hot_blocks(asm: str, op: str) -> list[list[str]]:
    """Blocks with >= 4 `op` that jump back to a label at or before them: the k-loop bodies, whether
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
        if jumps_back and sum(op in ln for ln in b) >= 4:
            loops.append(b)
    return loops


def spills(blocks: list[list[str]], reg: str) -> int:
    stack = re.compile(r"\((%rsp|%rbp)\)|\d\((%rsp|%rbp)")
    return sum(1 for b in blocks for ln in b if reg in ln and stack.search(ln))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", choices=sorted(TARGETS), default="vnni")
    p.add_argument("--cxx", default="g++")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--extra-flag", action="append", default=[], help="extra compiler flag (tests use -O0)")
    args = p.parse_args()
    sources, isa_flags, op, reg, min_widest = TARGETS[args.target]
    blocks = []
    with tempfile.TemporaryDirectory() as d:
        for source in sources:
            out = Path(d) / (source.stem + ".s")
            flags = [*COMMON_FLAGS, *isa_flags, *args.extra_flag]
            cmd = [args.cxx, *flags, f"-I{ROOT / 'csrc'}", "-S", "-o", str(out), str(source)]
            subprocess.run(cmd, check=True)
            blocks += hot_blocks(out.read_text(), op)
    n_ops = sum(op in ln for b in blocks for ln in b)
    n_spill = spills(blocks, reg)
    widest = max((sum(op in ln for ln in b) for b in blocks), default=0)
    print(f"{len(blocks)} hot blocks, {n_ops} {op} (widest block {widest}), {n_spill} {reg} stack references")
    if args.verbose:
        for b in blocks:
            print("\n".join(b), "\n")
    return 1 if n_spill or widest < min_widest else 0


if __name__ == "__main__":
    sys.exit(main())
