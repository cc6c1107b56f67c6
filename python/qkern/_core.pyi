"""Type stubs of the compiled qkern._core module (internal; the public API is in qkern)."""

from typing import Any

import numpy as np
import numpy.typing as npt

class ArgumentError(ValueError): ...
class BoundCall: ...

class Program:
    def __init__(self, calls: list[BoundCall]) -> None: ...
    def __call__(self) -> None: ...
    def __len__(self) -> int: ...

class StageArgs:
    def __init__(
        self,
        mode: int,
        multiplier: npt.NDArray[np.int32],
        shift: npt.NDArray[np.int32],
        fmultiplier: npt.NDArray[np.float32],
        zero_point: int,
        qmin: int,
        qmax: int,
    ) -> None: ...

class PackedGemm:
    isa: str
    k: int
    n: int
    def __init__(
        self,
        b: npt.NDArray[Any],
        b_zero_point: npt.NDArray[np.int32],
        bias: npt.NDArray[np.int32] | None,
        stage: StageArgs,
        out_dtype: str,
        input_bits: int = 8,
    ) -> None: ...
    def run(self, a: npt.NDArray[Any], a_zero_point: int, out: npt.NDArray[Any]) -> None: ...
    def bind(self, a: npt.NDArray[Any], a_zero_point: int, out: npt.NDArray[Any]) -> BoundCall: ...

class PackedConv3x3:
    isa: str
    def __init__(
        self,
        w: npt.NDArray[Any],
        w_zero_point: npt.NDArray[np.int32],
        bias: npt.NDArray[np.int32] | None,
        stage: StageArgs,
        out_dtype: str,
        stride: int,
        padding: int,
        input_bits: int = 8,
    ) -> None: ...
    def run(self, x: npt.NDArray[Any], x_zero_point: int, out: npt.NDArray[Any]) -> None: ...
    def bind(self, x: npt.NDArray[Any], x_zero_point: int, out: npt.NDArray[Any]) -> BoundCall: ...

class PackedDeconv2x2:
    isa: str
    def __init__(
        self,
        w: npt.NDArray[Any],
        w_zero_point: npt.NDArray[np.int32],
        bias: npt.NDArray[np.int32] | None,
        stage: StageArgs,
        out_dtype: str,
        input_bits: int = 8,
    ) -> None: ...
    def run(self, x: npt.NDArray[Any], x_zero_point: int, out: npt.NDArray[Any]) -> None: ...
    def bind(self, x: npt.NDArray[Any], x_zero_point: int, out: npt.NDArray[Any]) -> BoundCall: ...

def gemm(
    a: npt.NDArray[Any],
    b: npt.NDArray[Any],
    a_zero_point: int,
    b_zero_point: npt.NDArray[np.int32],
    bias: npt.NDArray[np.int32] | None,
    stage: StageArgs,
    out: npt.NDArray[Any],
) -> None: ...
def conv3x3(
    x: npt.NDArray[Any],
    w: npt.NDArray[Any],
    stride: int,
    padding: int,
    x_zero_point: int,
    w_zero_point: npt.NDArray[np.int32],
    bias: npt.NDArray[np.int32] | None,
    stage: StageArgs,
    out: npt.NDArray[Any],
) -> None: ...
def deconv2x2(
    x: npt.NDArray[Any],
    w: npt.NDArray[Any],
    x_zero_point: int,
    w_zero_point: npt.NDArray[np.int32],
    bias: npt.NDArray[np.int32] | None,
    stage: StageArgs,
    out: npt.NDArray[Any],
) -> None: ...
def saturating_rounding_doubling_high_mul(
    a: npt.NDArray[np.int32], b: npt.NDArray[np.int32]
) -> npt.NDArray[np.int32]: ...
def rounding_divide_by_pot(x: npt.NDArray[np.int32], e: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]: ...
def saturating_shift_left(x: npt.NDArray[np.int32], e: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]: ...
def multiply_by_quantized_multiplier_single(
    x: npt.NDArray[np.int32], multiplier: npt.NDArray[np.int32], shift: npt.NDArray[np.int32]
) -> npt.NDArray[np.int64]: ...
def multiply_by_quantized_multiplier_gemmlowp(
    x: npt.NDArray[np.int32], multiplier: npt.NDArray[np.int32], shift: npt.NDArray[np.int32]
) -> npt.NDArray[np.int32]: ...
def requantize(
    acc: npt.NDArray[np.int32],
    bias: npt.NDArray[np.int32] | None,
    stage: StageArgs,
    out: npt.NDArray[Any],
    broadcast: bool = False,
) -> None: ...
def quantize_per_tensor(
    x: npt.NDArray[np.float32], inv: float, zero_point: float, qmin: float, qmax: float, is_signed: bool
) -> npt.NDArray[Any]: ...
def quantize_per_channel(
    x: npt.NDArray[np.float32],
    inv: npt.NDArray[np.float32],
    zero_point: npt.NDArray[np.float32],
    outer: int,
    channels: int,
    inner: int,
    qmin: float,
    qmax: float,
    out: npt.NDArray[Any],
) -> bool: ...
def dequantize_per_tensor(q: npt.NDArray[Any], scale: float, zero_point: int) -> npt.NDArray[np.float32]: ...
def dequantize_per_channel(
    q: npt.NDArray[Any],
    scale: npt.NDArray[np.float64],
    zero_point: npt.NDArray[np.int32],
    outer: int,
    channels: int,
    inner: int,
    out: npt.NDArray[np.float32],
) -> None: ...
def quantize_to_nhwc(
    x: npt.NDArray[np.float32], inv: float, zero_point: float, qmin: float, qmax: float, out: npt.NDArray[Any]
) -> bool: ...
def dequantize_to_nchw(q: npt.NDArray[Any], scale: float, zero_point: int, out: npt.NDArray[np.float32]) -> None: ...
def min_max(x: npt.NDArray[np.float32]) -> tuple[float, float, bool]: ...
def histc(x: npt.NDArray[np.float32], bins: int, lo: float, hi: float, counts: npt.NDArray[np.int64]) -> bool: ...
def histogram_edges(
    x: npt.NDArray[np.float32], edges: npt.NDArray[np.float32], counts: npt.NDArray[np.int64]
) -> None: ...

# Integer model ops (qkern.model's steps; internal). Integers are NHWC uint8/int8; `out` is written in place.
def model_copy_channels(src: npt.NDArray[Any], dst: npt.NDArray[Any], col_offset: int) -> None: ...
def model_rescale(
    src: npt.NDArray[Any],
    dst: npt.NDArray[Any],
    col_offset: int,
    in_zp: int,
    multiplier: int,
    shift: int,
    out_zp: int,
    qmin: int,
    qmax: int,
) -> None: ...
def model_add(
    a: npt.NDArray[Any],
    b: npt.NDArray[Any],
    out: npt.NDArray[Any],
    z1: int,
    m1: int,
    s1: int,
    z2: int,
    m2: int,
    s2: int,
    mo: int,
    so: int,
    out_zp: int,
    qmin: int,
    qmax: int,
) -> None: ...
def model_pair_table(
    a: npt.NDArray[Any], b: npt.NDArray[Any], table: npt.NDArray[Any], out: npt.NDArray[Any]
) -> None: ...
def model_max_pool(x: npt.NDArray[Any], out: npt.NDArray[Any], k: int, stride: int, pad: int) -> None: ...
def model_avg_pool(
    x: npt.NDArray[Any],
    out: npt.NDArray[Any],
    k: int,
    stride: int,
    in_zp: int,
    multiplier: int,
    shift: int,
    out_zp: int,
    qmin: int,
    qmax: int,
) -> None: ...
def model_global_avg_pool(
    x: npt.NDArray[Any],
    out: npt.NDArray[Any],
    in_zp: int,
    multiplier: int,
    shift: int,
    out_zp: int,
    qmin: int,
    qmax: int,
) -> None: ...
def build_info() -> dict[str, Any]: ...
def requant_modes() -> dict[str, int]: ...
def kernels() -> list[dict[str, Any]]: ...

max_threads: int

def vnni_probe_seconds(iterations: int) -> float: ...

# Dynamic quantization (csrc/bindings/register_dynamic.cc): scheme 0 = uint8 affine, 1 = int8 symmetric.
def quantize_dynamic(
    x: npt.NDArray[np.float32], scheme: int, per_row: bool, reduce_range: bool
) -> tuple[npt.NDArray[Any], npt.NDArray[np.float32], npt.NDArray[np.int32]]: ...
def choose_dynamic_qparams(min_val: float, max_val: float, scheme: int, reduce_range: bool) -> tuple[float, int]: ...

class DynamicGemm:
    def __init__(
        self,
        b: npt.NDArray[np.int8],
        b_zero_point: npt.NDArray[np.int32],
        weight_scale: npt.NDArray[np.float32],
        bias: npt.NDArray[np.float32] | None,
        a_bits: int = 8,
    ) -> None: ...
    def run(
        self, x: npt.NDArray[np.float32], scheme: int, per_row: bool, reduce_range: bool, out: npt.NDArray[np.float32]
    ) -> None: ...
    def run_quantized(
        self,
        a: npt.NDArray[Any],
        a_scale: npt.NDArray[np.float32],
        a_zero_point: npt.NDArray[np.int32],
        per_row: bool,
        out: npt.NDArray[np.float32],
    ) -> None: ...
    @property
    def isa(self) -> str: ...
    @property
    def kernel(self) -> str: ...
    @property
    def k(self) -> int: ...
    @property
    def n(self) -> int: ...

# Tests only: one named kernel of kernels.inc on packed operands (tests/test_kernel_edges.py).
def _gemm_with_kernel(
    kernel: str,
    a: npt.NDArray[Any],
    a_zero_point: int,
    b: npt.NDArray[Any],
    b_zero_point: npt.NDArray[np.int32],
    bias: npt.NDArray[np.int32] | None,
    stage: StageArgs,
    out: npt.NDArray[Any],
    split: int = 0,
    out2: npt.NDArray[Any] | None = None,
) -> None: ...
def _gemm_float_with_kernel(
    kernel: str,
    a: npt.NDArray[Any],
    a_scale: npt.NDArray[np.float32],
    a_zero_point: npt.NDArray[np.int32],
    per_row: bool,
    b: npt.NDArray[Any],
    b_zero_point: npt.NDArray[np.int32],
    weight_scale: npt.NDArray[np.float32],
    bias: npt.NDArray[np.float32] | None,
    out: npt.NDArray[np.float32],
) -> None: ...

# The bound forms of the model ops: the same arguments as model_*, checked once.
def bind_model_rescale(*args: Any) -> BoundCall: ...
def bind_model_copy_channels(*args: Any) -> BoundCall: ...
def bind_model_add(*args: Any) -> BoundCall: ...
def bind_model_pair_table(*args: Any) -> BoundCall: ...
def bind_model_max_pool(*args: Any) -> BoundCall: ...
def bind_model_avg_pool(*args: Any) -> BoundCall: ...
def bind_model_global_avg_pool(*args: Any) -> BoundCall: ...
