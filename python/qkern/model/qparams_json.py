"""QParams <-> JSON objects for the model file (float32 scales written as exact decimal doubles)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..qparams import QParams


def qparams_to_json(qp: QParams) -> dict[str, Any]:
    if qp.per_channel:
        scale: Any = [float(s) for s in np.asarray(qp.scale, dtype=np.float32)]
        zp: Any = [int(z) for z in np.asarray(qp.zero_point)]
    else:
        scale, zp = float(np.float32(qp.scale)), int(qp.zero_point)
    return {"scale": scale, "zero_point": zp, "dtype": qp.dtype, "axis": qp.axis, "qmin": qp.qmin, "qmax": qp.qmax}


def qparams_from_json(d: Any, what: str) -> QParams:
    """QParams from the JSON object `d`; anything malformed is a ValueError naming `what`."""
    if not isinstance(d, dict) or set(d) != {"scale", "zero_point", "dtype", "axis", "qmin", "qmax"}:
        raise ValueError(f"{what}: malformed qparams {d!r}")
    scale, zp = d["scale"], d["zero_point"]
    try:
        if isinstance(scale, list):
            if not all(isinstance(s, (int, float)) for s in scale) or not all(type(z) is int for z in zp):
                raise ValueError("non-numeric per-channel values")
            s_arr = np.asarray(scale, dtype=np.float64)
            s32 = s_arr.astype(np.float32)
            if not np.array_equal(s32.astype(np.float64), s_arr):
                raise ValueError("a scale is not a float32 value")
            return QParams(s32, np.asarray(zp, dtype=np.int32), d["dtype"], d["axis"], d["qmin"], d["qmax"])
        if not isinstance(scale, (int, float)) or type(zp) is not int or np.float64(np.float32(scale)) != scale:
            raise ValueError("scale must be a float32 number and zero_point an int")
        return QParams(np.float32(scale), zp, d["dtype"], d["axis"], d["qmin"], d["qmax"])
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"{what}: invalid qparams ({exc})") from None
