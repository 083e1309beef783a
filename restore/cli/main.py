"""``restore``: the command-line entry point and its one error table.

Exit codes: 0 ok, 1 runtime failure (a file could not be restored, a checkpoint does not
fit), 2 usage error (bad option, bad config). Library errors become one line on stderr,
never a traceback (set RESTORE_DEBUG=1 to see one).

Command modules import torch inside their command bodies, so ``restore --help`` is fast.
"""

from __future__ import annotations

import os
import sys

import typer

from .. import __version__

app = typer.Typer(
    name="restore",
    help="Image restoration with i-LN transformers: super-resolution (x2/x3/x4), "
         "Gaussian denoising and JPEG artifact removal, on files and folders.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"restore {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Image restoration with i-LN transformers."""


def _register() -> None:
    """Attach the command modules (each imports heavy libraries only when it runs)."""
    from . import commands  # noqa: F401  (registers on import)


def error_exit_code(exc: BaseException) -> int:
    """The error table: which exit code a library error maps to."""
    from ..errors import ConfigError, UsageError

    code = getattr(exc, "exit_code", None)  # e.g. 130: training stopped by Ctrl-C
    if isinstance(code, int):
        return code
    return 2 if isinstance(exc, (ConfigError, UsageError)) else 1


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the error table above)."""
    from ..errors import RestoreError

    _register()
    try:
        # standalone mode: Typer/Click print usage errors themselves and exit with 2
        app(args=argv, prog_name="restore")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except RestoreError as exc:
        if os.environ.get("RESTORE_DEBUG"):
            raise
        print(f"restore: error: {exc}", file=sys.stderr)
        return error_exit_code(exc)
    except KeyboardInterrupt:
        print("restore: interrupted", file=sys.stderr)
        return 130
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
