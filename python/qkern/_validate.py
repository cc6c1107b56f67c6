"""Former name of `qkern._checks` (argument checking), kept only for modules that still import it."""

from ._checks import (  # noqa: F401
    QUANT_DTYPES,
    bias,
    dtype_name,
    dtype_range,
    int_scalar,
    np_dtype,
    qname,
    quant_array,
    scale,
    zero_point,
)
