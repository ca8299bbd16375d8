"""``python -m kdsweep`` is the ``kdsweep`` command."""

from kdsweep.cli import command

command()
