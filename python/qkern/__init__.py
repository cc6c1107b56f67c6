"""qkern: exact, fast quantized (uint8/int8) GEMM and convolution kernels for the CPU. NumPy in, NumPy out.

Every native path equals the NumPy reference (`qkern.reference`) bit for bit. Torch is never imported
here; torch-facing tools live in modules that import it lazily.
"""

from ._backend import backend, get_backend, set_backend
from ._env import check_environment as _check_environment
from ._version import __version__
from .fixedpoint import quantize_multiplier
from .ops import conv3x3, conv_transpose2x2, gemm
from .overflow import max_safe_k
from .packed import PackedGemm
from .packed_conv import PackedConv3x3, PackedConvTranspose2x2
from .qparams import QParams, calc_qparams, dequantize, quantize
from .requant import Requant, requantize
from .runtime import available_isas, get_isa, get_num_threads, info, kernels, set_isa, set_num_threads

_check_environment()

__all__ = [
    "PackedConv3x3",
    "PackedConvTranspose2x2",
    "PackedGemm",
    "QParams",
    "Requant",
    "__version__",
    "available_isas",
    "backend",
    "calc_qparams",
    "conv3x3",
    "conv_transpose2x2",
    "dequantize",
    "gemm",
    "get_backend",
    "get_isa",
    "get_num_threads",
    "info",
    "kernels",
    "max_safe_k",
    "quantize",
    "quantize_multiplier",
    "requantize",
    "set_backend",
    "set_isa",
    "set_num_threads",
]
