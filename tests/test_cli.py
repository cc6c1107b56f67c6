"""The command line is built from tables: every row names a module with add_arguments and main, and a new
row is a new subcommand (how `qkern demo ptq` or `qkern bench dynamic` are added)."""

from __future__ import annotations

import argparse
import importlib
import sys
import types

import pytest
from qkern.tools import cli, cmd_bench, cmd_demo


@pytest.mark.parametrize(
    "table", [cli.COMMANDS, cmd_demo.DEMOS, cmd_bench.BENCHES], ids=["commands", "demos", "benches"]
)
def test_every_row_names_a_module_with_add_arguments_and_main(table):
    for name, (module_name, help_text) in table.items():
        module = importlib.import_module(module_name)
        assert callable(module.add_arguments) and callable(module.main), name
        assert help_text


def test_each_kind_knows_its_name():
    args = cli.build_parser().parse_args(["bench", "conv3x3", "--repeat", "3"])
    assert (args.command_main_name, args.bench_main_name, args.repeat) == ("bench", "conv3x3", 3)


def test_one_table_row_adds_a_subcommand(monkeypatch, capsys):
    fake = types.ModuleType("qkern_fake_demo")

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--answer", type=int, default=41)

    def main(args: argparse.Namespace) -> int:
        print("fake demo ran with", args.answer)
        return args.answer

    fake.add_arguments, fake.main = add_arguments, main
    monkeypatch.setitem(sys.modules, "qkern_fake_demo", fake)
    monkeypatch.setitem(cmd_demo.DEMOS, "fake", ("qkern_fake_demo", "a demo made by the test"))
    assert cli.main(["demo", "fake", "--answer", "7"]) == 7
    assert "fake demo ran with 7" in capsys.readouterr().out


def test_unknown_kind_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "nonexistent"])
    assert e.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
