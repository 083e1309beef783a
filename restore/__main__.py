"""``python -m restore`` (and ``torchrun -m restore``) runs the command line."""

from .cli.main import run

run()
