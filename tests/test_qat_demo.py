"""`python -m qkern.tools.demo_qat` on a tiny setting: the table, the timings and the PNG."""

from __future__ import annotations

import argparse

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")
demo_qat = pytest.importorskip("qkern.tools.demo_qat")

pytestmark = [pytest.mark.torch, pytest.mark.slow]


def test_demo_prints_the_table_and_writes_the_plot(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    parser = argparse.ArgumentParser()
    demo_qat.add_arguments(parser)
    png = tmp_path / "qat.png"
    args = parser.parse_args(
        [
            "--bits",
            "8",
            "--methods",
            "lsq",
            "dorefa",
            "--width",
            "4",
            "--float-epochs",
            "1",
            "--qat-epochs",
            "1",
            "--no-progress",
            "--plot",
            str(png),
        ]
    )
    try:
        assert demo_qat.main(args) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    header, row = out.splitlines()[:2]
    assert header.split() == ["bits", "float", "PTQ", "lsq", "fq/int", "dorefa", "fq/int"]
    cells = row.split()
    assert cells[0] == "8" and cells[-1] == "n/a*"  # DoReFa weights at 8 bits have no int8 form
    assert float(cells[3]) >= 0 and float(cells[5]) >= 0  # LSQ: fake-quant / integer accuracy
    assert "needs 9 bits" in out and "QAT (train + convert):" in out
    assert png.stat().st_size > 1000
