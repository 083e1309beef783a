"""The ``restore`` Typer app, its root options, and the one error table (exit codes).

Command modules (eval, inspect, models, process, train) attach their commands to ``app``
here; restore.cli.main imports them to register them and runs the app.
"""

from __future__ import annotations

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


def error_exit_code(exc: BaseException) -> int:
    """The error table: which exit code a library error maps to."""
    from ..errors import ConfigError, UsageError

    code = getattr(exc, "exit_code", None)  # e.g. 130: training stopped by Ctrl-C
    if isinstance(code, int):
        return code
    return 2 if isinstance(exc, (ConfigError, UsageError)) else 1
