"""The `image-search` command: the desktop app when no command is given (or `gui`), else the CLI.

It lives above both `core` and `desktop`, so neither imports the other's front end: the CLI (core.cli)
knows nothing of Qt, and the desktop app never goes through the CLI module.
"""

from __future__ import annotations

import sys

CLI_COMMANDS = frozenset({"index", "search", "similar", "duplicates", "undo", "remove", "info", "serve"})
# Options that never take a value; every other option does (`--weights random`, `--query IMAGE`).
VALUELESS = frozenset({"-h", "--help", "--version", "--self-test", "--json"})


def first_word(argv: list[str]) -> str | None:
    """The first argument that is neither an option nor an option's value: the command, if any."""
    skip = False
    for token in argv:
        if skip:
            skip = False
        elif token == "--":
            return None
        elif token.startswith("-"):
            skip = "=" not in token and token not in VALUELESS
        else:
            return token
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    word = first_word(argv)
    if word is None and not {"-h", "--help", "--version"} & set(argv) or word == "gui":
        if word == "gui":
            argv.remove("gui")
        from desktop.__main__ import main as desktop_main  # Qt is imported only for the desktop app

        return desktop_main(argv, prog="image-search")
    from core.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
