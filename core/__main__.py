"""`python -m core`: the command-line interface (core.cli)."""

from core.cli import main

raise SystemExit(main())
