"""``python -m convgen``: the same as the ``convgen`` command."""

import sys

from .cli import main

sys.exit(main())
