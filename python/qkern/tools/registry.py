"""Builds argparse subcommands from a table of modules, so a new command or kind is one table row."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Mapping


def register(subparsers: argparse._SubParsersAction, table: Mapping[str, tuple[str, str]], dest: str) -> None:
    """Add one subparser per table row; the row's `main` is stored in `args.<dest>` and its name in
    `args.<dest>_name`, so nested tables (bench kinds, demo kinds) do not overwrite their parent's."""
    for name, (module_name, help_text) in table.items():
        module = importlib.import_module(module_name)
        parser = subparsers.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(parser)
        parser.set_defaults(**{dest: module.main, f"{dest}_name": name})
