"""`python -m desktop [--query IMAGE] [--screenshot OUT.png] [--self-test]` plus the CLI's global options."""

from __future__ import annotations

import argparse
import sys

from core.cli import global_options, gui_options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m desktop", parents=[global_options(), gui_options()],
                                     description="The Image Search desktop app.")
    parser.set_defaults(command=None)  # what core.cli.settings_from expects
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from desktop.app import run  # Qt is imported only once the arguments are fine

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
