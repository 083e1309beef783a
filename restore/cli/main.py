"""``restore``: the command-line entry point.

Exit codes (the error table, restore.cli.app.error_exit_code): 0 ok, 1 runtime failure (a file could not be restored, a checkpoint does not
fit), 2 usage error (bad option, bad config), 130/143 stopped by Ctrl-C/SIGTERM (run(), the
console script, then ends by the signal itself: a shell sees 130/143). Library errors become one line on stderr,
never a traceback (set RESTORE_DEBUG=1 to see one).

Command modules import torch inside their command bodies, so ``restore --help`` is fast.
The Typer app and the error table live in restore.cli.app, which the command modules
import; this module imports them (``_register``), never the other way round.
"""

from __future__ import annotations

import os
import sys

from .app import app, error_exit_code  # noqa: F401  (the entry point's names)


def _register() -> None:
    """Attach the command modules (each imports heavy libraries only when it runs)."""
    from . import commands  # noqa: F401  (registers on import)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the error table above)."""
    from ..errors import Interrupted, RestoreError

    _register()
    try:
        # standalone mode: Typer/Click print usage errors themselves and exit with 2
        app(args=argv, prog_name="restore")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if code == 130:  # Typer turns a KeyboardInterrupt outside our handlers into a bare 130
            _after_ctrl_c("restore: interrupted")
        return code
    except Interrupted as exc:  # a stop the user asked for, not an error
        _after_ctrl_c(f"restore: {exc}", echoed=error_exit_code(exc) == 130)
        return error_exit_code(exc)
    except RestoreError as exc:
        if os.environ.get("RESTORE_DEBUG"):
            raise
        print(f"restore: error: {exc}", file=sys.stderr)
        return error_exit_code(exc)
    except KeyboardInterrupt:
        _after_ctrl_c("restore: interrupted")
        return 130
    return 0


def _after_ctrl_c(line: str, echoed: bool = True) -> None:
    """``line`` on stderr, on a line of its own after the "^C" a terminal echoes for a
    Ctrl-C (``echoed``; a SIGTERM echoes nothing)."""
    print(("\n" if echoed and sys.stderr.isatty() else "") + line, file=sys.stderr)


def run() -> None:
    """Console-script entry point. Stopped by Ctrl-C or SIGTERM (exit 130/143), the process
    ends by that signal once its line is out, as Python itself does on an uncaught Ctrl-C:
    a shell loop (``for d in */; do restore ...; done``) or make then stops as well,
    instead of taking 130 for a program that handled the signal and going on."""
    import signal

    code = main()
    stops = {128 + signal.SIGINT: signal.SIGINT, 128 + signal.SIGTERM: signal.SIGTERM}
    if code in stops and os.name == "posix":
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(stops[code], signal.SIG_DFL)
        os.kill(os.getpid(), stops[code])
    sys.exit(code)


if __name__ == "__main__":
    run()
