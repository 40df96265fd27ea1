"""``python -m fcnxs`` (and ``torchrun -m fcnxs``) runs the command-line tool."""

import sys

from fcnxs.cli import main

sys.exit(main())
