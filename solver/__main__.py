"""`python -m tplan` runs the command line."""

from .cli import run

run()
