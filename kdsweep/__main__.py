"""``python -m kdsweep`` is the ``kdsweep`` command."""

import sys

from kdsweep.cli import main

sys.exit(main())
