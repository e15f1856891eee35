"""``python -m qlite.cli ...`` (e.g. under ``torchrun -m``), the same as the ``qlite`` script."""

import sys

from . import main

sys.exit(main())
