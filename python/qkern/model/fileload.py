"""Reading a model file (qkern.model.fileformat): arrays are read with allow_pickle=False, every array's
SHA-256, dtype and shape is checked against the JSON, and the model is rebuilt through ModelBuilder, so a
file is data only: no code is ever run.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
import zlib
from typing import Any

import numpy as np

from .._version import __version__
from .builder import ModelBuilder, TensorRef
from .fileformat import (
    ARRAY_DTYPES,
    DOCUMENT,
    FORMAT_NAME,
    FORMAT_VERSION,
    MAX_ARRAY_BYTES,
    MAX_DOCUMENT_BYTES,
    file_path,
)
from .model import QuantizedModel
from .qparams_json import qparams_from_json


def _bad(msg: str) -> ValueError:
    return ValueError(f"not a valid qkern model file: {msg}")


def _read_member(zf: zipfile.ZipFile, member: str, limit: int) -> bytes:
    try:
        info = zf.getinfo(member)
    except KeyError:
        raise _bad(f"{member} is missing") from None
    if info.file_size > limit:
        raise _bad(f"{member} is implausibly large ({info.file_size} bytes)")
    with zf.open(info) as f:
        data = f.read(limit + 1)
    if len(data) != info.file_size:
        raise _bad(f"{member} is truncated")
    return data


def _check_document(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise _bad(f"the document's format is not {FORMAT_NAME!r}")
    version = doc.get("format_version")
    if type(version) is not int or version < 1:
        raise _bad(f"format_version must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"the model file has format version {version} (written by qkern {doc.get('qkern_version')!r}); "
            f"this qkern {__version__} reads versions up to {FORMAT_VERSION}: upgrade qkern to load it"
        )
    for key, kind in (("steps", list), ("inputs", list), ("outputs", list), ("arrays", dict), ("rounding", str)):
        if not isinstance(doc.get(key), kind):
            raise _bad(f"{key!r} must be a {kind.__name__}")
    return doc


def _load_arrays(zf: zipfile.ZipFile, specs: dict[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for ref, spec in specs.items():
        if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "sha256"}:
            raise _bad(f"array {ref!r} has a malformed entry")
        blob = _read_member(zf, f"{ref}.npy", MAX_ARRAY_BYTES)
        if hashlib.sha256(blob).hexdigest() != spec["sha256"]:
            raise _bad(f"array {ref!r} fails its SHA-256 check (the file is corrupted)")
        try:
            arr = np.load(io.BytesIO(blob), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise _bad(f"array {ref!r} is unreadable ({exc})") from None
        if not isinstance(arr, np.ndarray) or arr.dtype.name not in ARRAY_DTYPES or arr.dtype.name != spec["dtype"]:
            raise _bad(f"array {ref!r} has dtype {getattr(arr, 'dtype', None)}, the document says {spec['dtype']!r}")
        if list(arr.shape) != spec["shape"]:
            raise _bad(f"array {ref!r} has shape {arr.shape}, the document says {spec['shape']!r}")
        out[ref] = arr
    return out


def _rebuild(doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> QuantizedModel:
    b = ModelBuilder(rounding=doc["rounding"])
    tensors: dict[str, TensorRef] = {}
    for k, rec in enumerate(doc["steps"]):
        if not isinstance(rec, dict) or set(rec) != {"op", "name", "inputs", "qparams", "attrs", "arrays"}:
            raise _bad(f"step {k} is malformed")
        name, op, attrs = rec["name"], rec["op"], rec["attrs"]
        if not isinstance(attrs, dict) or not isinstance(rec["arrays"], dict) or not isinstance(rec["inputs"], list):
            raise _bad(f"step {name!r} is malformed")
        try:
            ins = [tensors[n] for n in rec["inputs"]]
            arr = {key: arrays[ref] for key, ref in rec["arrays"].items()}
        except (KeyError, TypeError):
            raise _bad(f"step {name!r} refers to an unknown step or array") from None
        qp = qparams_from_json(rec["qparams"], f"step {name!r}")
        try:
            tensors[name] = _call(b, op, name, ins, qp, attrs, arr)
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            raise _bad(f"step {name!r} ({op}) cannot be rebuilt: {exc}") from None
    try:
        for out_name, step_name in doc["outputs"]:
            b.output(tensors[step_name], name=out_name)
        model = b.build()
    except (TypeError, ValueError, KeyError) as exc:
        raise _bad(f"bad outputs ({exc})") from None
    if list(model.input_names) != doc["inputs"]:
        raise _bad("the input list does not match the input steps")
    return model


def _call(b: ModelBuilder, op: str, name: str, ins: list[TensorRef], qp: Any, attrs: dict, arr: dict) -> TensorRef:
    def wq() -> Any:
        return qparams_from_json(attrs["w_qparams"], f"step {name!r} weights")

    n_in = {"input": 0, "add": 2}.get(op, -1 if op == "cat" else 1)
    if n_in >= 0 and len(ins) != n_in:
        raise ValueError(f"{op} takes {n_in} input(s), got {len(ins)}")
    if op == "input":
        return b.input(qp, name=name)
    if op == "conv2d":
        k, s, p = attrs["kernel_size"], attrs["stride"], attrs["padding"]
        return b.conv2d(ins[0], arr["w"], wq(), arr.get("bias"), qp, kernel_size=k, stride=s, padding=p, name=name)
    if op == "conv_transpose2x2":
        return b.conv_transpose2x2(ins[0], arr["w"], wq(), arr.get("bias"), qp, name=name)
    if op == "linear":
        return b.linear(ins[0], arr["w"], wq(), arr.get("bias"), qp, name=name)
    if op == "add":
        return b.add(ins[0], ins[1], qp, name=name)
    if op == "cat":
        return b.cat(ins, qp, name=name)
    if op == "max_pool2d":
        if qp != ins[0].qparams:
            raise ValueError("a max pool's qparams must equal its input's")
        return b.max_pool2d(ins[0], attrs["kernel_size"], attrs["stride"], attrs["padding"], name=name)
    if op == "avg_pool2d":
        return b.avg_pool2d(ins[0], attrs["kernel_size"], attrs["stride"], qp, name=name)
    if op == "global_avg_pool":
        return b.global_avg_pool(ins[0], qp, name=name)
    if op == "flatten":
        return b.flatten(ins[0], name=name)
    if op == "lut":
        return b.lut(ins[0], arr["table"], qp, name=name)
    if op == "requantize":
        return b.requantize(ins[0], qp, name=name)
    raise ValueError(f"unknown op {op!r}")


def load_model(path: Any) -> QuantizedModel:
    """Read a model file; foreign, truncated, corrupted or newer files raise ValueError."""
    path = file_path(path)
    with open(path, "rb") as f:  # a missing file is the usual FileNotFoundError
        data = f.read()
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise _bad(f"not a zip archive ({exc})") from None
    try:
        with zf:
            raw = _read_member(zf, DOCUMENT, MAX_DOCUMENT_BYTES)
            try:
                doc = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                raise _bad(f"{DOCUMENT} is not JSON") from None
            doc = _check_document(doc)
            arrays = _load_arrays(zf, doc["arrays"])
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        OSError,
        EOFError,
        zlib.error,
        NotImplementedError,
        RuntimeError,
    ) as exc:
        raise _bad(f"damaged archive ({exc})") from None
    return _rebuild(doc, arrays)
