"""Run the CLI: logging set-up and the one-line error contract.

A :class:`~cxbridge.errors.CxbridgeError` prints ``error: <message>`` in red on stderr, without a traceback,
and exits 2 for configuration errors (the user must fix the config), 1 otherwise. Any other exception prints
``error: unexpected <Type>: <message>`` and exits 1. ``--debug`` (or ``CXBRIDGE_DEBUG=1``) adds the traceback
and DEBUG logging.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["error_line", "exit_code_for", "run", "setup_logging"]


def wants_debug(args: Sequence[str]) -> bool:
    """Whether ``--debug`` is among the global options (before the command) or ``CXBRIDGE_DEBUG`` is set."""
    if os.environ.get("CXBRIDGE_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}:
        return True
    for arg in args:
        if arg == "--debug":
            return True
        if arg == "--":
            break
    return False


def setup_logging(debug: bool) -> Callable[[], None]:
    """Log to stderr through :func:`cxbridge.logs.setup_logging` (redacting secrets), DEBUG with ``--debug``.

    Returns:
        A function restoring the previous logging state (so :func:`run` called in-process, e.g. by tests,
        leaves no handler behind on a stream that is gone).
    """
    from ..logs import setup_logging as _setup

    root = logging.getLogger()
    ours = logging.getLogger("cxbridge")
    before = (root.level, ours.level, list(root.handlers))
    handler = _setup(debug=debug)

    def restore() -> None:
        root.removeHandler(handler)
        for old in before[2]:
            if old not in root.handlers:
                root.addHandler(old)
        root.setLevel(before[0])
        ours.setLevel(before[1])

    return restore


def exit_code_for(exc: BaseException) -> int:
    """2 for configuration errors, 1 for everything else."""
    from ..errors import ConfigError

    return 2 if isinstance(exc, ConfigError) else 1


def error_line(exc: BaseException) -> str:
    """The one line shown for ``exc`` (without the ``error:`` prefix)."""
    from ..errors import CxbridgeError

    if isinstance(exc, CxbridgeError):
        text = str(exc)
    else:
        text = f"unexpected {type(exc).__name__}: {exc}"
    return " ".join(text.split()) or type(exc).__name__


def _print_error(exc: BaseException, debug: bool) -> None:
    from rich.console import Console
    from rich.markup import escape

    from ..errors import CxbridgeError
    from ..logs import format_exception
    from ..secrets import redact

    if debug:
        print(format_exception(exc, debug=True), file=sys.stderr)
    hint = "" if debug or isinstance(exc, CxbridgeError) else " (run with --debug for the traceback)"
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    console.print(f"[bold red]error:[/] {escape(redact(error_line(exc)))}{hint}")


def run(argv: Sequence[str] | None = None, *, app: Any = None) -> int:
    """Run the CLI and return its exit code; errors become one line on stderr.

    Args:
        argv: the arguments (default ``sys.argv[1:]``).
        app: a typer app (default :func:`cxbridge.cli.app.create_app`).
    """
    import typer

    from ..errors import CxbridgeError

    args = list(sys.argv[1:] if argv is None else argv)
    debug = wants_debug(args)
    restore_logging = setup_logging(debug)
    try:
        if app is None:
            from .app import create_app

            app = create_app()
        command = typer.main.get_command(app)
        command.main(args=args, prog_name="cxbridge", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    except CxbridgeError as exc:
        _print_error(exc, debug)
        return exit_code_for(exc)
    except Exception as exc:
        _print_error(exc, debug)
        return 1
    finally:
        restore_logging()
    return 0
