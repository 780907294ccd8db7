"""``python -m rulab`` (and ``torchrun -m rulab``) runs the command line."""

import sys

from rulab.cli import main

sys.exit(main())
