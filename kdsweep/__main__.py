"""``python -m kdsweep`` is the ``kdsweep`` command."""

import sys

from kdsweep.cli.main import main

sys.exit(main())
