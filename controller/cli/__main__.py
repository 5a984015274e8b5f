"""``python -m controller.cli``: the same entry point as the ``imprimatur`` console script."""

import sys

from controller.cli import main

sys.exit(main())
