"""Commands and what only people read: the argument parser and commands (``commands``),
the closing table (``summary``), the report (``report``) and the results DataFrame
(``results``). A thin layer over the layers below; ``main`` is the ``kdsweep`` command."""

from kdsweep.cli.commands import main

__all__ = ["main"]
