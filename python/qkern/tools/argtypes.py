"""argparse types for the CLI: a bad value becomes parser.error (one line on stderr, exit code 2)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

PEERS = ("torch", "onnxruntime", "numpy")


def int_in(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An integer in [lo, hi] (no upper bound when hi is None)."""
    span = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer {span}, got {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"expected an integer {span}, got {value}")
        return value

    return parse


positive_int = int_in(1)


def isa(text: str) -> str:
    """An ISA path this build can run on this CPU."""
    from ..runtime import available_isas

    if text not in available_isas():
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISA available here {available_isas()}")
    return text


def peers(text: str) -> str:
    """A comma-separated list of benchmark peers, or "none"."""
    unknown = [c.strip() for c in text.split(",") if c.strip() and c.strip() not in (*PEERS, "none")]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown peer(s) {unknown}; choose from {list(PEERS)}")
    return text


def shapes_file(text: str) -> str:
    """An existing file of shapes."""
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a file (give a file of shapes, one per line)")
    return text
