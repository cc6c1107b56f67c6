"""`python -m qkern`: the same command line as the `qkern` console script."""

import sys

from .tools.cli import main

sys.exit(main())
