"""Argument checks of the conv ops' weights and inputs (shared by the one-shot ops and the packed objects)."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _checks as V
from .conv_shape import conv3x3_fits, conv3x3_output_size, deconv2x2_output_size


def conv3x3_layer(w: Any, stride: Any, padding: Any) -> tuple[np.ndarray, int, int]:
    """w[O, 3, 3, C], stride in {1, 2}, padding in {0, 1}."""
    w = V.quant_array(w, "w", 4)
    if w.shape[1:3] != (3, 3):
        raise ValueError(f"w must have shape (O, 3, 3, C) (OHWI), got {w.shape}")
    stride = V.int_scalar(stride, "stride")
    padding = V.int_scalar(padding, "padding")
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride}")
    if padding not in (0, 1):
        raise ValueError(f"padding must be 0 or 1, got {padding}")
    return w, stride, padding


def conv3x3_input(x: Any, channels: int, stride: int, padding: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """x[N, H, W, C] with C = `channels`; returns x and the output shape without its channel count."""
    x = V.quant_array(x, "x", 4)
    n, h, wd, c = x.shape
    if c != channels:
        raise ValueError(f"x has {c} channels but w expects {channels} (w is OHWI: (O, 3, 3, C))")
    if not conv3x3_fits(h, wd, padding):
        raise ValueError(f"x spatial size {h}x{wd} is smaller than the 3x3 kernel with padding={padding}")
    return x, (n, *conv3x3_output_size(h, wd, stride, padding))


def deconv2x2_layer(w: Any) -> np.ndarray:
    """w[C, 2, 2, O] (IHWO)."""
    w = V.quant_array(w, "w", 4)
    if w.shape[1:3] != (2, 2):
        raise ValueError(f"w must have shape (C, 2, 2, O) (IHWO), got {w.shape}")
    return w


def deconv2x2_input(x: Any, channels: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """x[N, H, W, C] with C = `channels`; returns x and the output shape without its channel count."""
    x = V.quant_array(x, "x", 4)
    n, h, wd, c = x.shape
    if c != channels:
        raise ValueError(f"x has {c} channels but w expects {channels} (w is IHWO: (C, 2, 2, O))")
    return x, (n, *deconv2x2_output_size(h, wd))
