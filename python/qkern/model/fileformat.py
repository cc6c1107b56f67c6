"""The model file: a zip of .npy arrays plus one JSON document (docs/model.md, "File format"); its
constants and the writer. Reading (which rebuilds a model through ModelBuilder) is qkern.model.fileload,
so that the runtime can save without importing the builder.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from typing import Any

import numpy as np

from .._version import __version__
from . import steps as S
from .qparams_json import qparams_to_json

FORMAT_NAME = "qkern-model"
FORMAT_VERSION = 1
DOCUMENT = "model.json"
ARRAY_DTYPES = ("int8", "uint8", "int32")
MAX_DOCUMENT_BYTES = 64 << 20
MAX_ARRAY_BYTES = 4 << 30


def file_path(path: Any) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    return os.fspath(path)


def save_model(
    model_steps: list[S.Step], inputs: list[int], outputs: list[tuple[str, int]], rounding: str, path: Any
) -> None:
    """Write a model (its steps, input step indices, (output name, step index) pairs and rounding) to `path`;
    a model holding a float_op step cannot be saved (ValueError naming it)."""
    path = file_path(path)
    arrays: dict[str, np.ndarray] = {}
    steps = []
    names = [s.name for s in model_steps]
    for idx, step in enumerate(model_steps):
        if step.op == "float_op":
            raise ValueError(
                f"step {step.name!r} is a float_op (a Python function): models holding one cannot be saved"
            )
        refs = {}
        for key, arr in step.arrays.items():
            ref = f"a{idx}_{key}"
            arrays[ref] = np.ascontiguousarray(arr)
            refs[key] = ref
        steps.append(
            {
                "op": step.op,
                "name": step.name,
                "inputs": [names[i] for i in step.inputs],
                "qparams": qparams_to_json(step.qparams),
                "attrs": step.attrs,
                "arrays": refs,
            }
        )
    doc = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "qkern_version": __version__,
        "rounding": rounding,
        "inputs": [names[i] for i in inputs],
        "outputs": [[out, names[i]] for out, i in outputs],
        "steps": steps,
        "arrays": {},
    }
    blobs = {}
    for ref, arr in arrays.items():
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        blobs[ref] = buf.getvalue()
        doc["arrays"][ref] = {
            "dtype": arr.dtype.name,
            "shape": list(arr.shape),
            "sha256": hashlib.sha256(blobs[ref]).hexdigest(),
        }
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(DOCUMENT, json.dumps(doc, indent=1, sort_keys=True))
        for ref, blob in blobs.items():
            zf.writestr(f"{ref}.npy", blob)
