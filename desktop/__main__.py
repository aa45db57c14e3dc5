"""`python -m desktop [--query IMAGE] [--screenshot OUT.png] [--self-test]` plus every setting's flag."""

from __future__ import annotations

import argparse
import sys

from core.config import add_setting_arguments


def build_parser(prog: str = "python -m desktop") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="The Image Search desktop app.")
    add_setting_arguments(parser)
    parser.add_argument("--query", metavar="IMAGE", help="search with this image once the window is open")
    parser.add_argument("--screenshot", metavar="OUT.png",
                        help="save the window as a PNG once the results' thumbnails are drawn, then exit")
    parser.add_argument("--self-test", action="store_true",
                        help="open the window (offscreen unless QT_QPA_PLATFORM says otherwise), check that it "
                        "shows and the index opens, print the findings as JSON and exit (0 = fine)")
    parser.add_argument("--timeout", type=float, default=180.0,
                        help="seconds --screenshot and --self-test wait before giving up (default: 180)")
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m desktop") -> int:
    args = build_parser(prog).parse_args(argv)
    from desktop.app import run  # Qt is imported only once the arguments are fine

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
