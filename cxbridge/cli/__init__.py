"""The ``cxbridge`` command line (typer + rich).

The app is assembled in :mod:`cxbridge.cli.app` (built-in command modules and plugin commands); the entry
point :func:`main` runs it and turns errors into one red line (see :mod:`cxbridge.cli.runner`).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    from .runner import run

    return run(argv)
