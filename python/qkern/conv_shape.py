"""Output sizes of the conv ops (docs/quantization.md): the one Python statement of each formula."""

from __future__ import annotations


def conv3x3_fits(h: int, w: int, padding: int) -> bool:
    """Whether an h x w input padded by `padding` on each side holds at least one 3x3 window."""
    return h + 2 * padding >= 3 and w + 2 * padding >= 3


def conv3x3_output_size(h: int, w: int, stride: int, padding: int) -> tuple[int, int]:
    """(OH, OW) of a 3x3 convolution: OH = (H + 2*padding - 3) // stride + 1 (needs conv3x3_fits)."""
    return (h + 2 * padding - 3) // stride + 1, (w + 2 * padding - 3) // stride + 1


def deconv2x2_output_size(h: int, w: int) -> tuple[int, int]:
    """(OH, OW) of a 2x2 stride-2 transposed convolution without padding: every input pixel makes a 2x2 block."""
    return 2 * h, 2 * w
