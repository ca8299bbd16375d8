"""Commands and what only people read: the argument parser and commands (``commands``),
the closing table (``summary``), the report (``report``) and the results DataFrame
(``results``). A thin layer over the layers below; ``main`` is the ``kdsweep`` command."""

from kdsweep.cli.commands import main
from kdsweep.cli.exit import run_and_exit

__all__ = ["command", "main"]


def command() -> None:
    """The ``kdsweep`` console command: :func:`main`, then a quick exit with its status."""
    run_and_exit(main)
