"""Model files: save -> load is bit-identical; corrupted, truncated, foreign and newer files are ValueErrors;
a saved model loads and runs where torch cannot be imported."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import qkern
from qkern.model import ModelBuilder


def _model(rounding: str = "fp32") -> qkern.QuantizedModel:
    rng = np.random.default_rng(5)
    q_in = qkern.QParams(np.float32(0.04), 128)
    b = ModelBuilder(rounding=rounding)
    x = b.input(q_in, name="x")
    wq = qkern.QParams(rng.uniform(0.005, 0.01, 6).astype(np.float32), np.zeros(6, np.int32), "int8")
    w = rng.integers(-127, 128, (6, 3, 3, 3)).astype(np.int8)
    y = b.conv2d(x, w, wq, rng.integers(-99, 99, 6).astype(np.int32), qkern.QParams(np.float32(0.05), 0, qmin=0))
    z = b.conv2d(
        y,
        rng.integers(0, 256, (6, 1, 1, 6)).astype(np.uint8),
        qkern.QParams(0.01, 120),
        None,
        qkern.QParams(np.float32(0.05), 0, qmin=0),
        kernel_size=1,
        padding=0,
    )
    s = b.add(y, z, qkern.QParams(np.float32(0.07), 3))
    c = b.cat([s, b.requantize(y, qkern.QParams(np.float32(0.02), -1, "int8"))], qkern.QParams(np.float32(0.07), 3))
    m = b.max_pool2d(c, 2, 2)
    a = b.avg_pool2d(m, 2, 1, qkern.QParams(np.float32(0.05), 0))
    t = b.lut(a, rng.integers(0, 256, 256).astype(np.uint8), qkern.QParams(np.float32(0.1), 9))
    u = b.conv_transpose2x2(
        t,
        rng.integers(-127, 128, (12, 2, 2, 4)).astype(np.int8),
        qkern.QParams(0.01, 0, "int8"),
        None,
        qkern.QParams(np.float32(0.3), 100),
    )
    g = b.global_avg_pool(u, qkern.QParams(np.float32(0.2), 128))
    out = b.linear(
        b.flatten(g),
        rng.integers(-127, 128, (3, 4)).astype(np.int8),
        qkern.QParams(0.02, 0, "int8"),
        np.array([5, -5, 0], np.int32),
        qkern.QParams(np.float32(0.1), 128),
    )
    b.output(out, name="logits")
    b.output(u, name="map")
    return b.build()


X = np.random.default_rng(9).standard_normal((2, 3, 10, 10)).astype(np.float32)


@pytest.mark.parametrize("rounding", ["fp32", "gemmlowp"])
def test_save_load_bit_identical(tmp_path: Path, rounding: str) -> None:
    model = _model(rounding)
    path = tmp_path / "m.qkern"
    model.save(path)
    loaded = qkern.load(str(path))
    assert loaded.rounding == rounding
    assert [(s.name, s.op, s.inputs) for s in loaded.steps] == [(s.name, s.op, s.inputs) for s in model.steps]
    assert all(a.qparams == b.qparams for a, b in zip(loaded.steps, model.steps))
    t1, t2 = model.trace(X), loaded.trace(X)
    assert list(t1) == list(t2)
    for name in t1:
        assert t1[name].dtype == t2[name].dtype and np.array_equal(t1[name], t2[name]), name
    for a, b in zip(model(X), loaded(X)):
        assert np.array_equal(a, b)


def _doc(path: Path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("model.json"))


def _rewrite(src: Path, dst: Path, doc: dict | None = None, patch: dict[str, bytes] | None = None) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "model.json" and doc is not None:
                data = json.dumps(doc).encode()
            if patch and item.filename in patch:
                data = patch[item.filename]
            zout.writestr(item.filename, data)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "m.qkern"
    _model().save(path)
    return path


def test_newer_version_rejected(saved: Path, tmp_path: Path) -> None:
    doc = _doc(saved)
    doc["format_version"] = 2
    _rewrite(saved, tmp_path / "new.qkern", doc)
    with pytest.raises(ValueError, match=r"format version 2.*upgrade qkern"):
        qkern.load(tmp_path / "new.qkern")


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.update(format="onnx"),
        lambda d: d.update(format_version="1"),
        lambda d: d["steps"][1].update(op="exec"),
        lambda d: d["steps"][1].update(inputs=["nowhere"]),
        lambda d: d["steps"][1]["attrs"].update(stride=3),
        lambda d: d["steps"][1]["qparams"].update(scale=-1.0),
        lambda d: d["steps"][1]["qparams"].update(zero_point=1000),
        lambda d: next(iter(d["arrays"].values())).update(shape=[1, 2]),
        lambda d: next(iter(d["arrays"].values())).update(dtype="float32"),
        lambda d: d.update(outputs=[["y", "missing"]]),
        lambda d: d.pop("steps"),
    ],
)
def test_inconsistent_document_rejected(saved: Path, tmp_path: Path, edit) -> None:
    doc = _doc(saved)
    edit(doc)
    _rewrite(saved, tmp_path / "bad.qkern", doc)
    with pytest.raises(ValueError):
        qkern.load(tmp_path / "bad.qkern")


def test_corrupted_array_rejected(saved: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(saved) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".npy"))
        blob = bytearray(zf.read(name))
    blob[-1] ^= 1
    _rewrite(saved, tmp_path / "flip.qkern", patch={name: bytes(blob)})
    with pytest.raises(ValueError, match="SHA-256"):
        qkern.load(tmp_path / "flip.qkern")


def test_truncated_and_foreign_files_rejected(saved: Path, tmp_path: Path) -> None:
    data = saved.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 30):
        (tmp_path / "cut.qkern").write_bytes(data[:cut])
        with pytest.raises(ValueError):
            qkern.load(tmp_path / "cut.qkern")
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0xFF
    (tmp_path / "flip.qkern").write_bytes(bytes(flipped))
    with pytest.raises(ValueError):
        qkern.load(tmp_path / "flip.qkern")
    np.savez(tmp_path / "foreign.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match=r"model\.json is missing"):
        qkern.load(tmp_path / "foreign.npz")
    (tmp_path / "text.qkern").write_text("hello")
    with pytest.raises(ValueError, match="zip"):
        qkern.load(tmp_path / "text.qkern")
    with pytest.raises(TypeError, match="path"):
        qkern.load(3)


def test_float_op_model_refuses_to_save(tmp_path: Path) -> None:
    b = ModelBuilder()
    q = qkern.QParams(np.float32(0.1), 128)
    b.output(b.float_op([b.input(q)], lambda xs: xs[0], q, name="identity_fn"))
    model = b.build()
    assert model(np.zeros((1, 1, 2, 2), np.float32)).shape == (1, 1, 2, 2)
    with pytest.raises(ValueError, match="identity_fn"):
        model.save(tmp_path / "f.qkern")
    assert not (tmp_path / "f.qkern").exists()


_NO_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this process")
sys.meta_path.insert(0, Block())
import numpy as np, qkern
m = qkern.load(sys.argv[1])
x = np.load(sys.argv[2])
for a, b in zip(m(x), np.load(sys.argv[3], allow_pickle=False).values()):
    assert np.array_equal(a, b)
assert "torch" not in sys.modules
print("ok")
"""


def test_runs_where_torch_cannot_be_imported(saved: Path, tmp_path: Path) -> None:
    expect = qkern.load(saved)(X)
    np.save(tmp_path / "x.npy", X)
    np.savez(tmp_path / "y.npz", *expect)
    env_path = str(Path(qkern.__file__).parent.parent)
    res = subprocess.run(
        [sys.executable, "-c", _NO_TORCH, str(saved), str(tmp_path / "x.npy"), str(tmp_path / "y.npz")],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
        timeout=120,
        check=False,
    )
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
