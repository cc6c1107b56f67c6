"""`qkern info`: version, backend, ISA paths, threads, compiler and the kernel list."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print as JSON")


def main(args: argparse.Namespace) -> int:
    from ..runtime import info

    d = info()
    if args.json:
        print(json.dumps(d, indent=2, default=str))
    else:
        width = max(len(k) for k in d)
        for k, v in d.items():
            print(f"{k:<{width}}  {v}")
    return 0
