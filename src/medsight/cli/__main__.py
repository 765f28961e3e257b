"""`python -m medsight.cli` runs the command line."""

from medsight.cli.main import run

run()
