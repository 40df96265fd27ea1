"""``python -m fcnxs`` (and ``torchrun -m fcnxs``) runs the command-line tool."""

from fcnxs.cli import run_command

run_command()
